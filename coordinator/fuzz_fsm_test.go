package coordinator

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/internal/watchhub"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// fuzzEntries cuts data into raft log entries: each entry is a length byte,
// a type byte (odd: a configuration entry, which only advances the index)
// and that many bytes of command, which may or may not decode.
func fuzzEntries(data []byte) []*raft.Log {
	var logs []*raft.Log
	for i := 0; i+2 <= len(data) && len(logs) < 64; {
		n, typ := int(data[i]), data[i+1]
		i += 2
		end := min(i+n, len(data))
		l := &raft.Log{Index: uint64(len(logs) + 1), Term: 1, Type: raft.LogCommand, Data: data[i:end]}
		if typ%2 == 1 {
			l.Type = raft.LogConfiguration
		}
		logs = append(logs, l)
		i = end
	}
	return logs
}

func fsmSnapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.tree.View().WriteSnapshot(&buf); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return buf.Bytes()
}

// FuzzFSMApply feeds the FSM raft entries decoded from arbitrary bytes:
// malformed commands never panic, every node (however raft batches the
// entries) ends in the same state at the last index, and that state
// survives a snapshot and Restore. Restoring the raw input as a snapshot
// either works or fails leaving the FSM as it was.
func FuzzFSMApply(f *testing.F) {
	entry := func(c *peerv1.Command) []byte {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		return append([]byte{byte(len(b)), 0}, b...)
	}
	txnOf := func(ops ...*colonyv1.Op) *peerv1.Command {
		return &peerv1.Command{RequestId: "r1", TimeMs: 1000, Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}}
	}
	create := &colonyv1.Op{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/a", Data: []byte("x")}}}
	set := &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: "/a", Data: []byte("y")}}}
	open := &peerv1.Command{TimeMs: 1000, Op: &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: 5000, Name: "s"}}}
	var seed []byte
	seed = append(seed, entry(txnOf(create))...)
	seed = append(seed, entry(open)...)
	seed = append(seed, 0, 1) // a configuration entry
	seed = append(seed, entry(txnOf(set))...)
	seed = append(seed, entry(txnOf(create))...) // a retry: deduplicated
	f.Add(seed)
	f.Add([]byte{3, 0, 0xff, 0xff, 0xff})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		logs := fuzzEntries(data)
		if len(logs) == 0 {
			return
		}
		whole := newFSM(watchhub.New(watchhub.Config{}))
		defer whole.hub.Close()
		whole.ApplyBatch(logs)
		single := newFSM(watchhub.New(watchhub.Config{}))
		defer single.hub.Close()
		for _, l := range logs {
			single.Apply(l)
		}
		last := logs[len(logs)-1].Index
		if whole.applied.Load() != last || single.applied.Load() != last {
			t.Fatalf("applied %d and %d, want %d", whole.applied.Load(), single.applied.Load(), last)
		}
		snap := fsmSnapshotBytes(t, whole)
		if !bytes.Equal(snap, fsmSnapshotBytes(t, single)) {
			t.Fatal("batched and one-by-one application differ")
		}
		restored := newFSM(watchhub.New(watchhub.Config{}))
		defer restored.hub.Close()
		if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
			t.Fatalf("restoring the FSM's own snapshot: %v", err)
		}
		if !bytes.Equal(fsmSnapshotBytes(t, restored), snap) {
			t.Fatal("snapshot round trip differs")
		}
		if err := whole.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if whole.applied.Load() != last || !bytes.Equal(fsmSnapshotBytes(t, whole), snap) {
				t.Fatal("a failed Restore changed the FSM")
			}
		}
	})
}
