//go:build unix

package robustness

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestBreakerOverrideOnRestartedNode reproduces a bug the robustness run
// found (seed 1007, 60s): Breakers.SetOverride checks that the callee is
// known against the serving node's own tree, so a node that has just
// restarted (and not yet replayed the policy's entry) answers NotFound
// "unknown callee" for a callee whose policy was committed long before.
// Skipped unless ROBUSTNESS_REPRO=1 while the bug is open.
func TestBreakerOverrideOnRestartedNode(t *testing.T) {
	if os.Getenv("ROBUSTNESS_REPRO") != "1" {
		t.Skip("known bug, see the comment; run with ROBUSTNESS_REPRO=1")
	}
	start := time.Now()
	c := newCluster(t, t.TempDir(), clusterOptions{Nodes: 3, Seed: 1}, newEventLog(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := retryAdmin(ctx, c, func(ctx context.Context, n *Node) error {
		_, err := colonyv1.NewBreakersClient(n.clientConn()).ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{
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
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := colonyv1.NewBreakersClient(n.clientConn()).SetOverride(actx, &colonyv1.SetOverrideRequest{
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
