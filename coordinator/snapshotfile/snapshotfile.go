// Package snapshotfile is the format of Colony's snapshot files, the
// backups an operator keeps: the Maintenance service (coordinator/api)
// streams one of a node's state, Read checks one and describes it, and
// Restore builds a new node's data dir from one, offline (etcd's
// `snapshot save` / `snapshot status` / `snapshot restore`; `colony
// snapshot status/restore` call Read and Restore).
//
// A snapshot file is the FSM's snapshot format (what raft's snapshots hold:
// a SnapshotHeader, then SnapshotRecords up to one with end set, each
// length-delimited, as internal/ztree writes and restores them) followed by
// the SHA-256 of everything before it (SumLen bytes).
package snapshotfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/coordinator/raftnet"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// Errors of snapshot files.
var (
	// ErrCorrupt: the file is truncated, was changed after it was
	// saved, or is not a snapshot file.
	ErrCorrupt = errors.New("snapshot: corrupt or truncated file")
	// ErrDataDirNotEmpty: Restore was given a data dir that holds
	// something already.
	ErrDataDirNotEmpty = errors.New("snapshot: data dir is not empty")
)

const (
	// SumLen is the length of the checksum that ends a snapshot file: the
	// one definition, used by the Maintenance service that writes them.
	SumLen = sha256.Size
	// maxRecord bounds one record a snapshot file may hold, as the
	// FSM's restore does, so a corrupt length cannot allocate without bound.
	maxRecord = 64 << 20
	// restoredTerm is the raft term of a restored snapshot: a new cluster's
	// first election then starts above it.
	restoredTerm = 1
)

// Info describes a snapshot file.
type Info struct {
	// Index is the raft index the snapshot is at.
	Index uint64 `json:"index"`
	// Time is the leader time of Index.
	Time time.Time `json:"time"`
	// Size is the file's length in bytes, checksum included.
	Size int64 `json:"sizeBytes"`
	// SHA256 is the checksum the file ends with, in hex.
	SHA256 string `json:"sha256"`
	// Nodes counts the znodes (the root included) and DataBytes their data.
	Nodes     int   `json:"nodes"`
	DataBytes int64 `json:"dataBytes"`
	// Sessions counts the open sessions, RequestIDs the remembered request
	// ids (for retries) and Members the member registry's entries.
	Sessions   int `json:"sessions"`
	RequestIDs int `json:"requestIds"`
	Members    int `json:"members"`
}

// Read checks the snapshot file at path and describes it: its
// length, its checksum, then every record, as a node restoring it would.
// An unusable file's error matches ErrCorrupt.
func Read(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, _, err := check(f)
	return info, err
}

// check checks a whole snapshot file and returns what it holds
// and its body (the snapshot without the checksum).
func check(f *os.File) (*Info, *io.SectionReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size <= SumLen {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, too short for a snapshot", ErrCorrupt, f.Name(), size)
	}
	body := io.NewSectionReader(f, 0, size-SumLen)
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	want := make([]byte, SumLen)
	if _, err := f.ReadAt(want, size-SumLen); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return nil, nil, fmt.Errorf("%w: %s: checksum mismatch (the file ends with %x..., its contents hash to %x...): it was truncated or changed after it was saved",
			ErrCorrupt, f.Name(), want[:6], got[:6])
	}
	// The checks a node makes when it restores a snapshot, then the counts.
	if err := ztree.New().Restore(bufio.NewReaderSize(io.NewSectionReader(f, 0, body.Size()), 64<<10)); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, f.Name(), err)
	}
	info := &Info{Size: size, SHA256: hex.EncodeToString(want)}
	if err := copyRecords(io.Discard, io.NewSectionReader(f, 0, body.Size()), info, false); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, f.Name(), err)
	}
	return info, io.NewSectionReader(f, 0, body.Size()), nil
}

// copyRecords copies a snapshot record by record from src to dst, counting
// what it holds into info, leaving the member registry out if dropMembers.
// The snapshot must end at its end record.
func copyRecords(dst io.Writer, src io.Reader, info *Info, dropMembers bool) error {
	br := bufio.NewReaderSize(src, 64<<10)
	bw := bufio.NewWriterSize(dst, 64<<10)
	mo := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	var hdr peerv1.SnapshotHeader
	if err := (protodelim.UnmarshalOptions{MaxSize: 1 << 10}).UnmarshalFrom(br, &hdr); err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	info.Index, info.Time = hdr.GetIndex(), time.UnixMilli(hdr.GetTimeMs())
	if _, err := mo.MarshalTo(bw, &hdr); err != nil {
		return err
	}
	uo := protodelim.UnmarshalOptions{MaxSize: maxRecord}
	for i := 0; ; i++ {
		var rec peerv1.SnapshotRecord
		if err := uo.UnmarshalFrom(br, &rec); err != nil {
			return fmt.Errorf("reading record %d: %w", i, err)
		}
		switch x := rec.GetRecord().(type) {
		case *peerv1.SnapshotRecord_Node:
			info.Nodes++
			info.DataBytes += int64(len(x.Node.GetData()))
		case *peerv1.SnapshotRecord_Session:
			info.Sessions++
		case *peerv1.SnapshotRecord_Dedup:
			info.RequestIDs++
		case *peerv1.SnapshotRecord_Member:
			info.Members++
			if dropMembers {
				continue
			}
		}
		if _, err := mo.MarshalTo(bw, &rec); err != nil {
			return err
		}
		if rec.GetEnd() {
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("bytes after the end record")
	}
	return bw.Flush()
}

// RestoreConfig says what node Restore makes.
type RestoreConfig struct {
	// DataDir is the new node's data dir. It must not exist, or be empty.
	DataDir string
	// NodeID is the new node's id (coordinator.Config.NodeID); with Peers,
	// one of theirs.
	NodeID string
	// Peers are the voters of the new cluster, id -> raft address, as in
	// coordinator.Config.Peers: every member restores the same file with
	// the same Peers and its own NodeID. Empty: NodeID alone, at RaftAddr.
	Peers map[string]string
	// RaftAddr is the node's raft address when Peers is empty (the address
	// it will listen on: the node's RaftAdvertise, or else its RaftAddr).
	RaftAddr string
	// Progress, if set, is called as the snapshot is written into the data
	// dir, with the bytes read of the file so far.
	Progress func(read int64)
}

// Restore builds the data dir of a node of a new cluster from a snapshot
// file, offline. A node started on it (coordinator.Config.DataDir) starts
// at the snapshot's index with its znodes, sessions and remembered request
// ids, in a cluster of cfg.Peers (or of itself alone); the node's Bootstrap
// and Peers are then ignored, since the data dir has state. The member
// registry is left out: the old cluster's addresses must not be dialled,
// and every node registers its own when it starts. Sessions in the snapshot
// get a full TTL from the new leader and expire unless their owners
// reconnect.
//
// It checks the whole file first (ErrCorrupt), refuses a data dir that
// holds anything (ErrDataDirNotEmpty), builds the new one beside it and
// renames it into place: on any error no data dir is left behind.
func Restore(path string, cfg RestoreConfig) (*Info, error) {
	conf, err := restoreConfiguration(cfg)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, body, err := check(f)
	if err != nil {
		return nil, err
	}
	if info.Index == 0 {
		return nil, fmt.Errorf("%w: %s: the snapshot is at index 0", ErrCorrupt, path)
	}

	dir := filepath.Clean(cfg.DataDir)
	existed := false
	switch entries, err := os.ReadDir(dir); {
	case err == nil && len(entries) > 0:
		return nil, fmt.Errorf("%w: %s holds %s and %d more entries; restore into a new directory",
			ErrDataDirNotEmpty, dir, entries[0].Name(), len(entries)-1)
	case err == nil:
		existed = true
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("data dir: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restoring-")
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // as a node makes its own
		return nil, fmt.Errorf("data dir: %w", err)
	}

	snaps, err := raft.NewFileSnapshotStoreWithLogger(tmp, 1, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("creating the snapshot store: %w", err)
	}
	_, trans := raft.NewInmemTransport("") // only encodes the peers of the old meta format
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, info.Index, restoredTerm, conf, info.Index, trans)
	if err != nil {
		return nil, fmt.Errorf("creating the snapshot: %w", err)
	}
	var src io.Reader = body
	if cfg.Progress != nil {
		src = &progressReader{r: body, f: cfg.Progress}
	}
	if err := copyRecords(sink, src, &Info{}, true); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("writing the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil { // fsyncs the state file and the directory
		return nil, fmt.Errorf("writing the snapshot: %w", err)
	}

	if existed {
		if err := os.Remove(dir); err != nil { // empty, checked above
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	done = true
	if d, err := os.Open(parent); err == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return info, nil
}

// restoreConfiguration is the raft configuration a restored node starts
// with.
func restoreConfiguration(cfg RestoreConfig) (raft.Configuration, error) {
	var conf raft.Configuration
	if cfg.DataDir == "" {
		return conf, errors.New("snapshot restore: DataDir is required")
	}
	if cfg.NodeID == "" {
		return conf, errors.New("snapshot restore: NodeID is required")
	}
	peers := cfg.Peers
	if len(peers) == 0 {
		if cfg.RaftAddr == "" {
			return conf, errors.New("snapshot restore: RaftAddr is required without Peers")
		}
		peers = map[string]string{cfg.NodeID: cfg.RaftAddr}
	}
	if _, ok := peers[cfg.NodeID]; !ok {
		return conf, fmt.Errorf("snapshot restore: NodeID %q is not one of the peers", cfg.NodeID)
	}
	for id, addr := range peers {
		if id == "" || addr == "" {
			return conf, fmt.Errorf("snapshot restore: peer %q at %q: want an id and a raft address", id, addr)
		}
	}
	return raftnet.Voters(peers), nil
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r io.Reader
	n int64
	f func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.f(p.n)
	return n, err
}
