package coordinator

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// A client written in any language tells apart the kinds of error that
// share a code by the ErrorInfo reason on the wire, never by the words of
// the message: each reachable kind carries its reason, through the leader
// and through a follower (which forwards writes).
func TestErrorsCarryTheirReason(t *testing.T) {
	c := newTestCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	if _, err := leader.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/full"}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/full/child"}); err != nil {
		t.Fatal(err)
	}
	sess, err := leader.sess.Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/eph", SessionId: sess.GetSessionId(), Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{leader, c.followers()[0]} {
		for _, tt := range []struct {
			name   string
			call   func() error
			code   codes.Code
			reason string
		}{
			{"get missing", func() error {
				_, err := n.tree.Get(ctx, &colonyv1.GetRequest{Path: "/missing"})
				return err
			}, codes.NotFound, contract.ReasonNoNode},
			{"create existing", func() error {
				_, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/full"})
				return err
			}, codes.AlreadyExists, contract.ReasonNodeExists},
			{"set wrong version", func() error {
				_, err := n.tree.Set(ctx, &colonyv1.SetRequest{Path: "/full", ExpectedVersion: proto.Int64(7)})
				return err
			}, codes.FailedPrecondition, contract.ReasonBadVersion},
			{"delete non-empty", func() error {
				_, err := n.tree.Delete(ctx, &colonyv1.DeleteRequest{Path: "/full"})
				return err
			}, codes.FailedPrecondition, contract.ReasonNotEmpty},
			{"create under ephemeral", func() error {
				_, err := n.tree.Create(ctx, &colonyv1.CreateRequest{Path: "/eph/x"})
				return err
			}, codes.FailedPrecondition, contract.ReasonEphemeralParent},
			{"keep-alive unknown session", func() error {
				_, err := n.sess.KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: sess.GetSessionId() + 1000})
				return err
			}, codes.NotFound, contract.ReasonSessionNotFound},
			{"unknown breaker", func() error {
				_, err := colonyv1.NewBreakersClient(n.conn).GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: "checkout", Callee: "nowhere"})
				return err
			}, codes.NotFound, contract.ReasonNotFound},
		} {
			err := tt.call()
			st := status.Convert(err)
			var reason string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == contract.ErrorDomain {
					reason = info.GetReason()
				}
			}
			if st.Code() != tt.code || reason != tt.reason {
				t.Errorf("%s, %s through %s: %v, reason %q; want %v, reason %q", n.cfg.NodeID, tt.name, n.cfg.NodeID, err, reason, tt.code, tt.reason)
			}
		}
	}
	// A failed op of a Multi carries its reason too.
	resp, err := leader.tree.Multi(ctx, &colonyv1.MultiRequest{Ops: []*colonyv1.Op{
		{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: "/full"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetResults()[resp.GetFailedOp()].GetError(); e.GetReason() != contract.ReasonNotEmpty {
		t.Errorf("multi's failed op: %v, want reason %s", e, contract.ReasonNotEmpty)
	}
}
