package coordinator

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/coordinator/api"
	"github.com/colonymesh/colony/coordinator/snapshotfile"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// saveSnapshot streams a snapshot from conn's node into a file and returns
// its path and the first message.
func saveSnapshot(t *testing.T, conn *grpc.ClientConn, req *colonyv1.SnapshotRequest) (string, *colonyv1.SnapshotResponse) {
	t.Helper()
	stream, err := colonyv1.NewMaintenanceClient(conn).Snapshot(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var (
		first *colonyv1.SnapshotResponse
		buf   bytes.Buffer
	)
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("snapshot stream: %v", err)
		}
		if first == nil {
			first = m
		}
		if len(m.GetBlob()) > api.SnapshotChunk {
			t.Fatalf("blob of %d bytes, above the %d-byte chunk", len(m.GetBlob()), api.SnapshotChunk)
		}
		buf.Write(m.GetBlob())
	}
	if first == nil || first.GetIndex() == 0 || first.GetHeader().GetMemberId() == "" {
		t.Fatalf("first message %v: want the header, index and size", first)
	}
	if got := uint64(buf.Len()); got != first.GetSizeBytes() {
		t.Fatalf("received %d bytes, announced %d", got, first.GetSizeBytes())
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, first
}

// freeAddr returns a loopback address nobody listens on (for a restored
// node's raft address, which must be known before it starts).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestSnapshotSaveRestore(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxT(t)
	l := c.leader()
	big := bytes.Repeat([]byte("x"), 3*api.SnapshotChunk) // spans several chunks
	for _, op := range []*colonyv1.CreateRequest{
		{Path: "/app", Data: []byte("v1")},
		{Path: "/app/big", Data: big},
		{Path: "/app/job-", Sequential: true},
		{Path: "/app/ttl", Kind: colonyv1.NodeKind_NODE_KIND_TTL, TtlMs: 3600_000},
	} {
		if _, err := l.tree.Create(ctx, op); err != nil {
			t.Fatalf("create %s: %v", op.Path, err)
		}
	}
	if _, err := l.tree.Set(ctx, &colonyv1.SetRequest{Path: "/app", Data: []byte("v2")}); err != nil {
		t.Fatal(err)
	}

	// From a follower, linearizable: it has every acknowledged write.
	f := c.followers()[0]
	path, first := saveSnapshot(t, f.conn, &colonyv1.SnapshotRequest{})
	if first.GetHeader().GetMemberId() != f.cfg.NodeID {
		t.Errorf("served by %s, want the follower %s", first.GetHeader().GetMemberId(), f.cfg.NodeID)
	}
	info, err := snapshotfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	// "/", "/app" and its three children, and the registry's three members.
	if info.Index != first.GetIndex() || info.Nodes < 5 || info.Members != 3 || info.DataBytes < int64(len(big)) {
		t.Errorf("ReadSnapshotFile = %+v; want index %d, at least 5 nodes and 3 members", info, first.GetIndex())
	}
	want := map[string]*colonyv1.GetResponse{}
	for _, p := range []string{"/app", "/app/big", "/app/job-0000000001", "/app/ttl"} {
		r, err := f.tree.Get(ctx, &colonyv1.GetRequest{Path: p})
		if err != nil {
			t.Fatalf("get %s: %v", p, err)
		}
		want[p] = r
	}

	// Restore into a new single-node cluster and read the same tree there.
	dir := filepath.Join(t.TempDir(), "restored")
	raftAddr := freeAddr(t)
	var progress int64
	rinfo, err := snapshotfile.Restore(path, snapshotfile.RestoreConfig{DataDir: dir, NodeID: "r1", RaftAddr: raftAddr,
		Progress: func(n int64) { progress = n }})
	if err != nil {
		t.Fatal(err)
	}
	if rinfo.SHA256 != info.SHA256 || progress != info.Size-snapshotfile.SumLen {
		t.Errorf("restore: info %+v, progress %d; want the file's (%s, %d bytes)", rinfo, progress, info.SHA256, info.Size-snapshotfile.SumLen)
	}
	cfg := testConfig(t, "r1", dir)
	cfg.RaftAddr = raftAddr
	cfg.Bootstrap = true // ignored: the data dir has state
	r := newTestClusterFrom(t, cfg)
	for p, w := range want {
		got, err := r.tree.Get(ctx, &colonyv1.GetRequest{Path: p})
		if err != nil {
			t.Fatalf("restored get %s: %v", p, err)
		}
		if !bytes.Equal(got.Data, w.Data) || !proto.Equal(got.Stat, w.Stat) {
			t.Errorf("restored %s = %q %v; want %q %v", p, trim(got.Data), got.Stat, trim(w.Data), w.Stat)
		}
	}
	// It is a working cluster of one, past the snapshot's index, and it
	// kept none of the old cluster's member addresses.
	cr, err := r.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/app/after"})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Stat.Czxid <= info.Index {
		t.Errorf("a write after the restore got zxid %d, want above the snapshot's %d", cr.Stat.Czxid, info.Index)
	}
	st, err := r.clu.Status(ctx, &colonyv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || st.Members[0].Id != "r1" || st.LeaderId != "r1" {
		t.Errorf("restored cluster status: %v", st)
	}
	for id := range r.srv.memberMap() {
		if id != "r1" {
			t.Errorf("restored registry holds %s of the old cluster", id)
		}
	}
}

// newTestClusterFrom starts one node from cfg, closed at cleanup, and waits
// until it leads.
func newTestClusterFrom(t *testing.T, cfg Config) *testNode {
	t.Helper()
	c := &testCluster{t: t, nodes: map[string]*testNode{}}
	t.Cleanup(c.closeAll)
	n := c.start(cfg)
	c.leader()
	return n
}

func trim(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// withSum appends b's checksum to b, as a snapshot file ends.
func withSum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// TestSnapshotRestoreCluster restores one file into three data dirs with the
// same peers: they form a cluster holding the snapshot's tree.
func TestSnapshotRestoreCluster(t *testing.T) {
	src := newTestCluster(t, 1)
	ctx := ctxT(t)
	if _, err := src.leader().tree.Create(ctx, &colonyv1.CreateRequest{Path: "/kept", Data: []byte("yes")}); err != nil {
		t.Fatal(err)
	}
	path, _ := saveSnapshot(t, src.leader().conn, &colonyv1.SnapshotRequest{})

	peers := map[string]string{"a": freeAddr(t), "b": freeAddr(t), "c": freeAddr(t)}
	c := &testCluster{t: t, nodes: map[string]*testNode{}}
	t.Cleanup(c.closeAll)
	for id, addr := range peers {
		dir := filepath.Join(t.TempDir(), id)
		if _, err := snapshotfile.Restore(path, snapshotfile.RestoreConfig{DataDir: dir, NodeID: id, Peers: peers}); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, id, dir)
		cfg.RaftAddr = addr
		c.start(cfg)
	}
	c.waitVoters(3)
	for id := range peers {
		got, err := c.node(id).tree.Get(ctx, &colonyv1.GetRequest{Path: "/kept"})
		if err != nil || string(got.Data) != "yes" {
			t.Errorf("%s: get /kept = %v, %v", id, got, err)
		}
	}
}

func TestSnapshotSessionConsistency(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.leader()
	path, first := saveSnapshot(t, n.conn, &colonyv1.SnapshotRequest{Consistency: colonyv1.Consistency_CONSISTENCY_SESSION})
	if _, err := snapshotfile.Read(path); err != nil {
		t.Fatalf("session-consistent snapshot at %d: %v", first.GetIndex(), err)
	}
	stream, err := colonyv1.NewMaintenanceClient(n.conn).Snapshot(ctxT(t), &colonyv1.SnapshotRequest{Consistency: 7})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "consistency") {
		t.Errorf("unknown consistency: %v, want an error naming it", err)
	}
}

func TestSnapshotRestoreRefusesBadInput(t *testing.T) {
	c := newTestCluster(t, 1)
	// A value larger than everything else in the tree, so the cases below
	// that cut or change the file do so inside the body, whatever else a
	// fresh cluster holds: the test controls the sizes it depends on.
	if _, err := c.leader().tree.Create(ctxT(t), &colonyv1.CreateRequest{Path: "/bulk", Data: bytes.Repeat([]byte("b"), 4<<10)}); err != nil {
		t.Fatal(err)
	}
	path, _ := saveSnapshot(t, c.leader().conn, &colonyv1.SnapshotRequest{})
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) < 4<<10 {
		t.Fatalf("the snapshot is %d bytes; it holds a 4 KiB value", len(good))
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		file string
		dir  string // "": a fresh path
		cfg  snapshotfile.RestoreConfig
		want error
		msg  string
	}{
		{name: "truncated", file: write("t.db", good[:len(good)/2]), want: snapshotfile.ErrCorrupt, msg: "checksum mismatch"},
		{name: "last byte missing", file: write("l.db", good[:len(good)-1]), want: snapshotfile.ErrCorrupt, msg: "checksum mismatch"},
		{name: "shorter than a checksum", file: write("s.db", good[:snapshotfile.SumLen]), want: snapshotfile.ErrCorrupt, msg: "too short"},
		{name: "a byte changed", file: write("c.db", flipped), want: snapshotfile.ErrCorrupt, msg: "checksum mismatch"},
		{name: "empty", file: write("e.db", nil), want: snapshotfile.ErrCorrupt, msg: "too short"},
		{name: "not a snapshot", file: write("n.db", append([]byte("hello, world"), make([]byte, 32)...)), want: snapshotfile.ErrCorrupt},
		{name: "checksum right, records wrong", file: write("r.db", withSum([]byte("\x03abc not records"))), want: snapshotfile.ErrCorrupt, msg: "invalid snapshot"},
		{name: "data dir not empty", file: path, dir: nonEmpty, want: snapshotfile.ErrDataDirNotEmpty, msg: "raft.db"},
		{name: "id not a peer", file: path, cfg: snapshotfile.RestoreConfig{Peers: map[string]string{"a": "127.0.0.1:1"}}, msg: "not one of the peers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := tt.dir
			if dir == "" {
				dir = filepath.Join(parent, "data")
			}
			cfg := tt.cfg
			cfg.DataDir, cfg.NodeID = dir, "r1"
			if cfg.Peers == nil {
				cfg.RaftAddr = "127.0.0.1:7401"
			}
			_, err := snapshotfile.Restore(tt.file, cfg)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("RestoreSnapshot = %v; want %v containing %q", err, tt.want, tt.msg)
			}
			// Nothing half-made: no data dir, no temporary beside it.
			if tt.dir == "" {
				if entries, _ := os.ReadDir(parent); len(entries) != 0 {
					t.Errorf("left behind: %v", entries)
				}
			} else if entries, _ := os.ReadDir(tt.dir); len(entries) != 1 {
				t.Errorf("the non-empty data dir changed: %v", entries)
			}
		})
	}
}
