package client

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// slogForTest logs through t.Log, so logs show with -v and next to failures.
func slogForTest(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if len(id) != 32 {
			t.Fatalf("request id %q: want 32 hex digits (128 bits)", id)
		}
		if _, err := hex.DecodeString(id); err != nil {
			t.Fatalf("request id %q is not hex: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
	if got := requestID(WithRequestID(context.Background(), "mine")); got != "mine" {
		t.Errorf("requestID with WithRequestID = %q, want %q", got, "mine")
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{}.withDefaults()
	if len(cfg.Endpoints) != 1 || cfg.Endpoints[0] != DefaultEndpoint {
		t.Errorf("default endpoints = %v, want [%s]", cfg.Endpoints, DefaultEndpoint)
	}
	if cfg.DialTimeout <= 0 || cfg.RequestTimeout <= 0 || cfg.Logger == nil {
		t.Errorf("zero Config not filled in: %+v", cfg)
	}
	for _, bad := range []Config{
		{Endpoints: []string{"a:1", ""}},
		{DialTimeout: -time.Second},
		{RequestTimeout: -time.Second},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) succeeded, want a config error", bad)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name string
		code codes.Code
		msg  string
		hint errHint
		want error // nil: no sentinel, the status error comes back as is
	}{
		{"no node", codes.NotFound, "node /a does not exist", hintNode, ErrNoNode},
		{"no parent", codes.NotFound, "node /a does not exist (parent of /a/b)", hintNode, ErrNoNode},
		{"node named session", codes.NotFound, "node /session does not exist", hintNode, ErrNoNode},
		{"create with unknown session", codes.NotFound, "session 0x2a not found or expired", hintNode, ErrSessionExpired},
		{"keep-alive not found", codes.NotFound, "keep-alive: session 0x2a not found or expired", hintSession, ErrSessionExpired},
		{"exists", codes.AlreadyExists, "node /a already exists", hintNode, ErrNodeExists},
		{"bad version", codes.FailedPrecondition, "version mismatch on /a: expected 1, current 2", hintNode, ErrBadVersion},
		{"not empty", codes.FailedPrecondition, "node /a is not empty: it has 2 children", hintNode, ErrNotEmpty},
		{"ephemeral parent", codes.FailedPrecondition, "ephemeral node /e cannot have children (creating /e/x)", hintNode, ErrEphemeralParent},
		{"other precondition", codes.FailedPrecondition, "something else", hintNode, nil},
		{"invalid", codes.InvalidArgument, "data: 2000000 bytes, limit 1048576", hintNode, ErrInvalidArgument},
		{"denied", codes.PermissionDenied, "spiffe://colony.local/sidecar/web may not write /colony/services/payments/x", hintNode, ErrPermissionDenied},
		{"unauthenticated", codes.Unauthenticated, "a verified client certificate is required", hintNode, ErrUnauthenticated},
		{"unavailable", codes.Unavailable, "no leader", hintNode, ErrUnavailable},
		{"deadline", codes.DeadlineExceeded, "context deadline exceeded", hintNode, context.DeadlineExceeded},
		{"canceled", codes.Canceled, "context canceled", hintNode, context.Canceled},
		{"internal", codes.Internal, "boom", hintNode, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := status.Error(tt.code, tt.msg)
			err := toError(in, tt.hint)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.want)
			}
			for _, s := range []error{ErrNoNode, ErrNodeExists, ErrBadVersion, ErrNotEmpty, ErrEphemeralParent, ErrSessionExpired, ErrInvalidArgument, ErrUnavailable} {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("%v also matches %v", err, s)
				}
			}
			if err.Error() != tt.msg {
				t.Errorf("Error() = %q, want the server's message %q", err.Error(), tt.msg)
			}
			if got := status.Code(err); got != tt.code {
				t.Errorf("status.Code = %v, want %v", got, tt.code)
			}
			if st, _ := status.FromError(err); st.Message() != tt.msg {
				t.Errorf("status message = %q, want %q", st.Message(), tt.msg)
			}
		})
	}
	// A coordinator's reason decides, whatever the message's wording or the
	// call's hint.
	for _, tt := range []struct {
		code   codes.Code
		reason string
		hint   errHint
		want   error
	}{
		{codes.NotFound, contract.ReasonSessionNotFound, hintNode, ErrSessionExpired},
		{codes.NotFound, contract.ReasonNoNode, hintSession, ErrNoNode},
		{codes.NotFound, contract.ReasonNotFound, hintNode, ErrNotFound},
		{codes.FailedPrecondition, contract.ReasonNotEmpty, hintNode, ErrNotEmpty},
		{codes.FailedPrecondition, contract.ReasonEphemeralParent, hintNode, ErrEphemeralParent},
		{codes.FailedPrecondition, contract.ReasonBadVersion, hintNode, ErrBadVersion},
	} {
		st, err := status.New(tt.code, "worded some other way").WithDetails(&errdetails.ErrorInfo{Reason: tt.reason, Domain: contract.ErrorDomain})
		if err != nil {
			t.Fatal(err)
		}
		if got := toError(st.Err(), tt.hint); !errors.Is(got, tt.want) {
			t.Errorf("reason %s: %v is not %v", tt.reason, got, tt.want)
		}
		// The same reason in a failed Multi op.
		oe := &colonyv1.OpError{Code: int32(tt.code), Message: "worded some other way", Reason: tt.reason}
		if got := toError(opStatus(oe).Err(), tt.hint); !errors.Is(got, tt.want) {
			t.Errorf("op reason %s: %v is not %v", tt.reason, got, tt.want)
		}
	}
	plain := errors.New("not a status")
	if toError(plain, hintNode) != plain {
		t.Error("an error without a status was changed")
	}
}

func TestFailoverRetriesWriteWithSameRequestID(t *testing.T) {
	a, b := startNode(t), startNode(t)
	a.tree.set(status.Error(codes.Unavailable, "no leader"), false, 0)
	b.tree.set(nil, false, 7)
	c := newTestClient(t, Config{}, a.addr, b.addr)
	ctx := context.Background()

	p, stat, err := c.Create(ctx, "/a", []byte("x"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if p != "/a" || stat.GetCzxid() != 7 {
		t.Errorf("Create = %q, %v", p, stat)
	}
	aIDs, bIDs := a.tree.ids(), b.tree.ids()
	if len(aIDs) != 1 || len(bIDs) != 1 || aIDs[0] != bIDs[0] {
		t.Fatalf("request ids: first endpoint %v, second %v; want the same single id on both", aIDs, bIDs)
	}
	if c.LastZxid() != 7 {
		t.Errorf("LastZxid = %d, want 7", c.LastZxid())
	}

	// The client now sticks to the endpoint that answered.
	if _, err := c.Set(ctx, "/a", []byte("y"), AnyVersion); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if a.tree.callCount() != 1 || b.tree.callCount() != 2 {
		t.Errorf("calls: first endpoint %d, second %d; want 1 and 2", a.tree.callCount(), b.tree.callCount())
	}
	if ids := b.tree.ids(); ids[0] == ids[1] {
		t.Errorf("two logical writes shared request id %q", ids[0])
	}

	// A caller-chosen request id is used as is.
	if _, err := c.Set(WithRequestID(ctx, "retry-me"), "/a", nil, 3); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if ids := b.tree.ids(); ids[len(ids)-1] != "retry-me" {
		t.Errorf("request id = %q, want retry-me", ids[len(ids)-1])
	}
}

func TestFailoverFromDeadAndHungEndpoints(t *testing.T) {
	hung, good := startNode(t), startNode(t)
	hung.tree.set(nil, true, 0)
	good.tree.set(nil, false, 9)
	c := newTestClient(t, Config{RequestTimeout: 200 * time.Millisecond}, deadAddr(t), hung.addr, good.addr)

	data, _, err := c.Get(context.Background(), "/a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(data) != "v" {
		t.Errorf("Get = %q", data)
	}
	if hung.tree.callCount() == 0 {
		t.Error("the hung endpoint was never tried")
	}
	if c.Endpoint() != good.addr {
		t.Errorf("current endpoint = %s, want %s", c.Endpoint(), good.addr)
	}
}

func TestNoRetryOnAnswer(t *testing.T) {
	a, b := startNode(t), startNode(t)
	a.tree.set(status.Error(codes.FailedPrecondition, "version mismatch on /a: expected 1, current 4"), false, 0)
	c := newTestClient(t, Config{}, a.addr, b.addr)

	_, err := c.Set(context.Background(), "/a", nil, 1)
	if !errors.Is(err, ErrBadVersion) {
		t.Fatalf("Set error = %v, want ErrBadVersion", err)
	}
	if !strings.Contains(err.Error(), "current 4") {
		t.Errorf("error %q lost the server's message", err)
	}
	if b.tree.callCount() != 0 {
		t.Error("an answered request was retried on another endpoint")
	}
}

func TestGiveUpWhenNothingIsAvailable(t *testing.T) {
	a := startNode(t)
	a.tree.set(status.Error(codes.Unavailable, "no leader"), false, 0)
	c := newTestClient(t, Config{}, a.addr, deadAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	_, _, err := c.Get(ctx, "/a")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get error = %v; want it to match ErrUnavailable and context.DeadlineExceeded", err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("status.Code = %v, want Unavailable", status.Code(err))
	}
	if a.tree.callCount() < 2 {
		t.Errorf("the live endpoint was tried %d times; want retries", a.tree.callCount())
	}
}

func TestSessionConsistentReads(t *testing.T) {
	a := startNode(t)
	a.tree.set(nil, false, 40)
	c := newTestClient(t, Config{}, a.addr)
	ctx := context.Background()

	if _, _, err := c.Create(ctx, "/a", nil); err != nil {
		t.Fatal(err)
	}
	a.tree.set(nil, false, 41)
	var h *colonyv1.ResponseHeader
	if _, _, err := c.Get(ctx, "/a", WithSessionConsistency(), WithHeader(&h)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	reads := a.tree.reads
	if reads[0].GetConsistency() != colonyv1.Consistency_CONSISTENCY_SESSION || reads[0].GetMinZxid() != 40 {
		t.Errorf("session read sent %v", reads[0])
	}
	if reads[1].GetConsistency() != colonyv1.Consistency_CONSISTENCY_LINEARIZABLE || reads[1].GetMinZxid() != 0 {
		t.Errorf("default read sent %v", reads[1])
	}
	if h.GetZxid() != 41 {
		t.Errorf("WithHeader got %v, want zxid 41", h)
	}
}

func TestMultiFailure(t *testing.T) {
	a := startNode(t)
	a.tree.multi = &colonyv1.MultiResponse{
		Header:    header(5),
		Succeeded: false,
		FailedOp:  1,
		Results: []*colonyv1.OpResult{
			{Result: &colonyv1.OpResult_Error{Error: &colonyv1.OpError{Code: int32(codes.Aborted), Message: "not applied: op 1 failed"}}},
			{Result: &colonyv1.OpResult_Error{Error: &colonyv1.OpError{Code: int32(codes.FailedPrecondition), Message: "version mismatch on /b: expected 2, current 3"}}},
		},
	}
	c := newTestClient(t, Config{}, a.addr)

	resp, err := c.Multi(context.Background(), CreateOp("/a", nil, Sequential()), CheckOp("/b", 2))
	if !errors.Is(err, ErrBadVersion) {
		t.Fatalf("Multi error = %v, want ErrBadVersion", err)
	}
	if resp.GetFailedOp() != 1 {
		t.Errorf("Multi response = %v", resp)
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("status.Code = %v", status.Code(err))
	}
}

func TestOpBuilders(t *testing.T) {
	if v := SetOp("/a", nil, AnyVersion).GetSet().ExpectedVersion; v != nil {
		t.Errorf("SetOp with AnyVersion sets expected_version %d", *v)
	}
	if v := DeleteOp("/a", 4).GetDelete().ExpectedVersion; v == nil || *v != 4 {
		t.Errorf("DeleteOp expected_version = %v, want 4", v)
	}
	cr := CreateOp("/e", nil, Ephemeral(7), Sequential()).GetCreate()
	if cr.GetKind() != colonyv1.NodeKind_NODE_KIND_EPHEMERAL || cr.GetSessionId() != 7 || !cr.GetSequential() {
		t.Errorf("CreateOp = %v", cr)
	}
	if tr := CreateOp("/t", nil, TTL(1500*time.Microsecond)).GetCreate(); tr.GetKind() != colonyv1.NodeKind_NODE_KIND_TTL || tr.GetTtlMs() != 1 {
		t.Errorf("TTL create = %v", tr)
	}
}

func TestClosedClient(t *testing.T) {
	a := startNode(t)
	c := newTestClient(t, Config{}, a.addr)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "/a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := c.OpenSession(context.Background(), time.Second, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("OpenSession after Close = %v, want ErrClosed", err)
	}
}

// silentAddr returns a loopback address that accepts TCP connections and
// never says a word (a paused process: the kernel still accepts).
func silentAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// An endpoint that accepts connections but does not answer, or refuses
// them, costs a fraction of the caller's deadline, not the whole attempt
// (RequestTimeout here is far longer than the caller's deadline): the
// request is served by the next endpoint within the deadline.
func TestFailoverWithinCallerDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(t *testing.T) string
	}{
		{"accepts but never handshakes", silentAddr},
		{"connected but never answers", func(t *testing.T) string {
			n := startNode(t)
			n.tree.set(nil, true, 0)
			return n.addr
		}},
		{"refuses connections", deadAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := startNode(t)
			good.tree.set(nil, false, 9)
			bad := tc.bad(t)
			c := newTestClient(t, Config{RequestTimeout: time.Minute, DialTimeout: time.Minute}, bad, good.addr)
			if tc.name == "connected but never answers" {
				// Connect first, so the attempt reaches the server.
				ep := c.eps[0]
				ep.conn.Connect()
				eventually(t, "a connection to the hung endpoint", func() bool { return ep.conn.GetState() == connectivity.Ready })
			}
			ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
			defer cancel()
			if _, _, err := c.Get(ctx, "/a"); err != nil {
				t.Fatalf("Get with %s first: %v", tc.name, err)
			}
			if c.Endpoint() != good.addr {
				t.Errorf("current endpoint = %s, want %s", c.Endpoint(), good.addr)
			}
		})
	}
}
