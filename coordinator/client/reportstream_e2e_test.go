package client_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestE2EReportStream runs a sidecar's client against a secure 3-member
// cluster: its reports go on a ReportStream, are authorized and validated
// message by message as unary Reports are, are each counted once, and a
// rejected one leaves the stream usable. The client, told by the leader's
// acks that it leads, moves its requests and its persistent watch to a
// follower, and the watch neither misses nor repeats an event across the
// move.
func TestE2EReportStream(t *testing.T) {
	pki := coordinatortest.NewPKI(t)
	nodes := coordinatortest.StartSecureCluster(t, pki, 3, func(cfg *coordinator.Config) {
		cfg.WatchProgressInterval = 50 * time.Millisecond // the watch moves at its next message
	})
	ctx := testContext(t)
	var leader string
	var eps []string
	for _, n := range nodes {
		if n.IsLeader() {
			leader = n.Addr()
			eps = append([]string{n.Addr()}, eps...)
		} else {
			eps = append(eps, n.Addr())
		}
	}
	if leader == "" {
		t.Fatal("no leader among the nodes")
	}

	admin, err := client.New(client.Config{Endpoints: eps, TLS: pki.ClientTLS(trust.RoleAdmin, "ops")})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments"}}, "test", false); err != nil {
		t.Fatal(err)
	}
	dir := contract.ServiceDir("checkout")
	for _, p := range []string{dir, contract.RegistrationPath("checkout", "i1")} {
		if _, _, err := admin.Create(ctx, p, nil); err != nil {
			t.Fatalf("creating %s: %v", p, err)
		}
	}

	sc, err := client.New(client.Config{Endpoints: eps, TLS: pki.ClientTLS(trust.RoleSidecar, "checkout")})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	w, err := sc.Watch(ctx, dir, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := sc.Endpoint(); got != leader {
		t.Fatalf("the client starts on %s, want the first endpoint %s", got, leader)
	}

	report := func(caller, callee string, successes int64) error {
		return sc.Report(ctx, &colonyv1.OutcomeReport{
			Caller: caller, Callee: callee, Instance: "i1",
			Counts: outcome.ToProto(breaker.Counts{Successes: successes}),
		})
	}
	// Events before, during and after the move: the watch must deliver
	// each once, in order.
	var want []string
	create := func(i int) {
		p := fmt.Sprintf("%s/n%02d", dir, i)
		if _, _, err := admin.Create(ctx, p, nil); err != nil {
			t.Fatalf("creating %s: %v", p, err)
		}
		want = append(want, p)
	}
	for i := range 5 {
		create(i)
	}
	// The client moves once an ack says the node leads and its connection
	// to the follower it picked is ready (it does not wait for a handshake
	// on the request path): a few reports on a quick machine, more where
	// the handshake is slow.
	moveBy := time.Now().Add(10 * time.Second)
	reports := 0 // of 10 successes to checkout->payments
	for i := 0; i < 3 || sc.Endpoint() == leader; i++ {
		if time.Now().After(moveBy) {
			t.Errorf("after %d reports acknowledged by the leader in 10s the client still uses it (%s)", i, sc.Endpoint())
			break
		}
		if err := report("checkout", "payments", 10); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		reports++
		create(5 + i)
	}

	// Rejected messages: the same errors as Report, and the stream goes on.
	if err := report("checkout", "nowhere", 1); status.Code(err) != codes.NotFound {
		t.Errorf("report for an unknown callee = %v, want NotFound", err)
	}
	if err := report("billing", "payments", 1); status.Code(err) != codes.PermissionDenied {
		t.Errorf("report as another service = %v, want PermissionDenied", err)
	}
	if err := report("checkout", "payments", 10); err != nil {
		t.Fatalf("report after rejections: %v", err)
	}
	reports++
	info, err := admin.GetBreaker(ctx, "checkout", "payments", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(10 * reports); info.Live.Successes != want {
		t.Errorf("the leader counted %d successes, want %d (%d reports of 10, each once)", info.Live.Successes, want, reports)
	}

	deadline := time.Now().Add(10 * time.Second)
	for w.Resumes() == 0 && time.Now().Before(deadline) {
		create(len(want))
		time.Sleep(20 * time.Millisecond) // pacing the writes; the check is the event order below
	}
	if w.Resumes() == 0 {
		t.Fatal("the watch never moved off the leader")
	}
	for range 3 {
		create(len(want))
	}
	var last uint64
	for i, p := range want {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.GetPath() != p || ev.GetType() != colonyv1.EventType_EVENT_TYPE_CREATED || ev.GetZxid() <= last {
			t.Fatalf("event %d = %s %s at %d (previous %d), want the creation of %s", i, ev.GetType(), ev.GetPath(), ev.GetZxid(), last, p)
		}
		last = ev.GetZxid()
	}
}
