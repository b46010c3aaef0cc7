package coordinator

import (
	"testing"

	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestTrackerFollowsAppliedState: the leader's tracker changes only with the
// applied tree, whatever a command asked for or its result said. Results
// that do not match the tree are what a command answered from the dedup
// table looks like.
func TestTrackerFollowsAppliedState(t *testing.T) {
	s := &Server{fsm: &fsm{tree: ztree.New()}}
	tr := newSessionTracker(s)
	tr.arm()
	open := &peerv1.Command{Op: &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: 5000}}}
	closeCmd := func(id uint64) *peerv1.Command {
		return &peerv1.Command{Op: &peerv1.Command_CloseSession{CloseSession: &peerv1.CloseSession{SessionId: id}}}
	}
	ok := &peerv1.CommandResult{Result: &peerv1.CommandResult_Ok{Ok: &peerv1.Empty{}}}
	apply := func(e ztree.Entry) {
		res, _ := s.fsm.tree.Apply([]ztree.Entry{e})
		tr.observeApplied([]ztree.Entry{e}, res)
	}
	alive := func(id uint64) bool {
		_, ok, err := tr.touch(id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	apply(ztree.Entry{Index: 1, Cmd: open}) // session 1
	if !alive(1) {
		t.Fatal("session 1 not tracked after its open applied")
	}
	// A close answered from the dedup table: OK, but the tree still holds 1.
	s.fsm.tree.Apply([]ztree.Entry{{Index: 2, Cmd: &peerv1.Command{Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}}}})
	tr.observeApplied([]ztree.Entry{{Index: 2, Cmd: closeCmd(1)}}, []*peerv1.CommandResult{ok})
	if !alive(1) {
		t.Error("session 1 forgotten by a close the tree did not apply (a ghost)")
	}
	// An open answered with a session that is not in the tree.
	s.fsm.tree.Apply([]ztree.Entry{{Index: 3, Cmd: &peerv1.Command{Op: &peerv1.Command_Noop{Noop: &peerv1.Noop{}}}}})
	replay := &peerv1.CommandResult{Result: &peerv1.CommandResult_OpenSession{OpenSession: &colonyv1.OpenSessionResponse{SessionId: 77, TtlMs: 5000}}}
	tr.observeApplied([]ztree.Entry{{Index: 3, Cmd: open}}, []*peerv1.CommandResult{replay})
	if alive(77) {
		t.Error("session 77 tracked from a reply, though the tree never held it")
	}
	// A real close ends tracking.
	apply(ztree.Entry{Index: 4, Cmd: closeCmd(1)})
	if alive(1) {
		t.Error("session 1 still tracked after its close applied")
	}
}
