//go:build unix

package robustness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestBreakerOverrideOnRestartedNode is the regression test of a bug the
// robustness run found (seed 1007, 60s): Breakers.SetOverride checked that
// the callee is known against the serving node's own tree only, so a node
// that had just restarted (and not yet replayed the policy's entry) answered
// NotFound "unknown callee" for a callee whose policy was committed long
// before. A miss on the local tree is now checked again on a linearizable
// view (coordinator.knownCallee).
func TestBreakerOverrideOnRestartedNode(t *testing.T) {
	start := time.Now()
	c := newCluster(t, t.TempDir(), clusterOptions{Nodes: 3, Seed: 1}, newEventLog(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := retryAdmin(ctx, c, func(ctx context.Context, n *Node) error {
		_, err := colonyv1.NewBreakersClient(n.Conn()).ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{
			Policies: []*colonyv1.PolicySpec{{Callee: rbCallee, Policy: []byte(`{}`)}}, By: "repro"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Enough entries after the policy that replaying them takes a moment.
	for i := range 300 {
		retryAdmin(ctx, c, func(ctx context.Context, n *Node) error {
			_, err := n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: fmt.Sprintf("/repro-%d", i), RequestId: fmt.Sprintf("repro-%d", i)})
			if status.Code(err) == codes.AlreadyExists {
				return nil
			}
			return err
		})
	}
	n := c.Nodes[2]
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := colonyv1.NewBreakersClient(n.Conn()).SetOverride(actx, &colonyv1.SetOverrideRequest{
			Caller: rbCaller, Callee: rbCallee, Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "repro", By: "repro"})
		acancel()
		switch status.Code(err) {
		case codes.OK:
			return
		case codes.NotFound:
			t.Fatalf("SetOverride through %s right after its restart: %v (the policy was committed before the restart)", n.ID, err)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no answer")
}
