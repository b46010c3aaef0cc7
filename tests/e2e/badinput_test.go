//go:build unix

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestBadInputServerStaysHealthy: requests a user gets wrong are refused
// with the status code a client can act on and a message naming the field,
// the limit or the current version; afterwards every node still accepts
// writes.
func TestBadInputServerStaysHealthy(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 90*time.Second)
	leader := c.WaitLeader(t, ctx)
	f := c.Others(leader)[0] // through a follower: errors must survive forwarding
	tree := f.Tree()

	// /bad/v at version 2, for the compare-and-set cases.
	mustRetry(t, ctx, "create /bad", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad", RequestId: "bad-root"})
	})
	mustRetry(t, ctx, "create /bad/v", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad/v", Data: []byte("0"), RequestId: "bad-v"})
	})
	for i := 1; i <= 2; i++ {
		mustRetry(t, ctx, "set /bad/v", func(ctx context.Context) (*colonyv1.SetResponse, error) {
			return tree.Set(ctx, &colonyv1.SetRequest{Path: "/bad/v", Data: fmt.Appendf(nil, "%d", i), RequestId: fmt.Sprintf("bad-v-%d", i)})
		})
	}

	const maxData = 1 << 20 // the server's default limit
	big := make([]byte, maxData+1)
	const unknownSession = 0xdeadbeef

	tests := []struct {
		name string
		call func(context.Context) error
		code codes.Code
		msg  []string // every one must appear in the message
	}{
		{"create relative path", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "bad/rel"})
			return err
		}, codes.InvalidArgument, []string{"path", `"bad/rel"`}},
		{"create trailing slash", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad/x/"})
			return err
		}, codes.InvalidArgument, []string{"path", `"/bad/x/"`}},
		{"create empty segment", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad//x"})
			return err
		}, codes.InvalidArgument, []string{"path", "empty segment"}},
		{"get dot-dot segment", func(ctx context.Context) error {
			_, err := tree.Get(ctx, &colonyv1.GetRequest{Path: "/bad/../v"})
			return err
		}, codes.InvalidArgument, []string{"path", `".."`}},
		{"set empty path", func(ctx context.Context) error {
			_, err := tree.Set(ctx, &colonyv1.SetRequest{Path: ""})
			return err
		}, codes.InvalidArgument, []string{"path"}},
		{"create path too long", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/" + strings.Repeat("a", 2000)})
			return err
		}, codes.InvalidArgument, []string{"path", "1024"}},
		{"create oversize data", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad/big", Data: big})
			return err
		}, codes.InvalidArgument, []string{"data", fmt.Sprint(maxData + 1), fmt.Sprint(maxData)}},
		{"set oversize data", func(ctx context.Context) error {
			_, err := tree.Set(ctx, &colonyv1.SetRequest{Path: "/bad/v", Data: big})
			return err
		}, codes.InvalidArgument, []string{"data", fmt.Sprint(maxData)}},
		{"create 3 MiB of data", func(ctx context.Context) error {
			// Well past the data limit, still within the message limit: the
			// error must name the field, not a gRPC framing limit.
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad/huge", Data: make([]byte, 3<<20)})
			return err
		}, codes.InvalidArgument, []string{"data", fmt.Sprint(3 << 20), fmt.Sprint(maxData)}},
		{"ephemeral for unknown session", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{
				Path: "/bad/eph", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL, SessionId: unknownSession,
			})
			return err
		}, codes.NotFound, []string{"session", fmt.Sprintf("%#x", unknownSession)}},
		{"ephemeral without session", func(ctx context.Context) error {
			_, err := tree.Create(ctx, &colonyv1.CreateRequest{Path: "/bad/eph", Kind: colonyv1.NodeKind_NODE_KIND_EPHEMERAL})
			return err
		}, codes.InvalidArgument, []string{"session_id"}},
		{"set wrong version", func(ctx context.Context) error {
			_, err := tree.Set(ctx, &colonyv1.SetRequest{Path: "/bad/v", Data: []byte("x"), ExpectedVersion: proto.Int64(7)})
			return err
		}, codes.FailedPrecondition, []string{"/bad/v", "expected 7", "current 2"}},
		{"delete wrong version", func(ctx context.Context) error {
			_, err := tree.Delete(ctx, &colonyv1.DeleteRequest{Path: "/bad/v", ExpectedVersion: proto.Int64(0)})
			return err
		}, codes.FailedPrecondition, []string{"/bad/v", "expected 0", "current 2"}},
		{"set missing node", func(ctx context.Context) error {
			_, err := tree.Set(ctx, &colonyv1.SetRequest{Path: "/bad/none", Data: []byte("x")})
			return err
		}, codes.NotFound, []string{"/bad/none"}},
		{"keep-alive unknown session", func(ctx context.Context) error {
			_, err := f.Sessions().KeepAlive(ctx, &colonyv1.KeepAliveRequest{SessionId: unknownSession})
			return err
		}, codes.NotFound, []string{"session", fmt.Sprintf("%#x", unknownSession)}},
		{"open session negative ttl", func(ctx context.Context) error {
			_, err := f.Sessions().Open(ctx, &colonyv1.OpenSessionRequest{TtlMs: -5})
			return err
		}, codes.InvalidArgument, []string{"ttl_ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := retry(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, tc.call(ctx) })
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(st.Message(), m) {
					t.Errorf("message %q does not mention %q", st.Message(), m)
				}
			}
		})
	}

	// Nothing was applied, and every node still takes writes.
	got := mustRetry(t, ctx, "get /bad/v", func(ctx context.Context) (*colonyv1.GetResponse, error) {
		return tree.Get(ctx, &colonyv1.GetRequest{Path: "/bad/v"})
	})
	if string(got.Data) != "2" || got.Stat.GetVersion() != 2 {
		t.Errorf("/bad/v after the rejected writes: %q version %d, want %q version 2", got.Data, got.Stat.GetVersion(), "2")
	}
	for _, p := range []string{"/bad/big", "/bad/eph"} {
		ex := mustRetry(t, ctx, "exists "+p, func(ctx context.Context) (*colonyv1.ExistsResponse, error) {
			return tree.Exists(ctx, &colonyv1.ExistsRequest{Path: p})
		})
		if ex.Exists {
			t.Errorf("%s exists after its create was rejected", p)
		}
	}
	for i, node := range c.Running() {
		v := int64(3 + i)
		mustRetry(t, ctx, "set through "+node.ID, func(ctx context.Context) (*colonyv1.SetResponse, error) {
			return node.Tree().Set(ctx, &colonyv1.SetRequest{
				Path: "/bad/v", Data: fmt.Appendf(nil, "%d", v), ExpectedVersion: proto.Int64(v - 1), RequestId: "bad-after-" + node.ID,
			})
		})
	}
}
