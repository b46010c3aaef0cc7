package ztree_test

import (
	"fmt"

	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The coordinator validates ops at the edge, proposes a Command through raft,
// applies committed entries with Apply, hands the events to watchers and
// answers reads from a View.
func ExampleTree() {
	ops := []*colonyv1.Op{
		{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/locks"}}},
		{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: "/locks/job-", Sequential: true, Data: []byte("me")}}},
	}
	if err := ztree.ValidateOps(ops, ztree.DefaultLimits()); err != nil {
		fmt.Println(ztree.Code(err), err)
		return
	}

	tree := ztree.New()
	cmd := &peerv1.Command{RequestId: "req-1", TimeMs: 1_700_000_000_000, Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}}
	results, events := tree.Apply([]ztree.Entry{{Index: 1, Cmd: cmd}})

	multi := results[0].GetTxn()
	fmt.Println("succeeded:", multi.GetSucceeded(), "path:", multi.GetResults()[1].GetCreate().GetPath())
	for _, e := range events {
		fmt.Println(e.GetZxid(), e.GetType(), e.GetPath())
	}

	v := tree.View()
	names, stat, _ := v.Children("/locks")
	fmt.Println(names, stat.GetCversion(), v.Index())

	// A failed op comes back as an OpError; FromOpError turns it back into
	// an error that matches the sentinel.
	results, _ = tree.Apply([]ztree.Entry{{Index: 2, Cmd: &peerv1.Command{Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops[:1]}}}}})
	err := ztree.FromOpError(results[0].GetTxn().GetResults()[0].GetError())
	fmt.Println(ztree.Code(err), err)
	// Output:
	// succeeded: true path: /locks/job-0000000000
	// 1 EVENT_TYPE_CREATED /locks
	// 1 EVENT_TYPE_CHILDREN_CHANGED /
	// 1 EVENT_TYPE_CREATED /locks/job-0000000000
	// 1 EVENT_TYPE_CHILDREN_CHANGED /locks
	// [job-0000000000] 1 1
	// AlreadyExists node /locks already exists
}
