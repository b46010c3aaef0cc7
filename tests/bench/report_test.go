package bench

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// cpuTime is the CPU (user + system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestReportCPU measures the CPU one sidecar's report period costs, sent
// as a unary Breakers.Report and as a message on a Breakers.ReportStream,
// against a secure in-process 3-member cluster (to a follower, which
// forwards to the leader, as most of a fleet's reports go): the CPU of the
// whole process (the three members and the client) per report, in rounds
// that alternate the two ways so that a shared machine's load falls on
// both alike. COLONY_REPORT_ROUNDS (default 5) rounds of
// COLONY_REPORT_N (default 2000) reports each. It asserts nothing about
// speed; it logs each round and the medians.
func TestReportCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	rounds, n := envInt(t, "COLONY_REPORT_ROUNDS", 5), envInt(t, "COLONY_REPORT_N", 2000)
	pki := coordinatortest.NewPKI(t)
	nodes := coordinatortest.StartSecureCluster(t, pki, 3)
	var follower string
	for _, nd := range nodes {
		if !nd.IsLeader() {
			follower = nd.Addr()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	admin, err := client.New(client.Config{Endpoints: []string{follower}, TLS: pki.ClientTLS(trust.RoleAdmin, "bench")})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: "payments"}}, "bench", false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{contract.ServiceDir("checkout"), contract.RegistrationPath("checkout", "i1")} {
		if _, _, err := admin.Create(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := grpc.NewClient(follower, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(trust.RoleSidecar, "checkout"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	breakers := colonyv1.NewBreakersClient(conn)
	reports := []*colonyv1.OutcomeReport{{Caller: "checkout", Callee: "payments", Instance: "i1", Counts: outcome.ToProto(breaker.Counts{Successes: 20})}}

	unary := func() error {
		for range n {
			if _, err := breakers.Report(ctx, &colonyv1.ReportRequest{Reports: reports}); err != nil {
				return err
			}
		}
		return nil
	}
	stream, err := breakers.ReportStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	streamed := func() error {
		for range n {
			seq++
			if err := stream.Send(&colonyv1.ReportStreamRequest{Seq: seq, Reports: reports}); err != nil {
				return err
			}
			ack, err := stream.Recv()
			if err != nil {
				return err
			}
			if len(ack.GetRejected()) > 0 {
				return fmt.Errorf("report %d rejected: %v", seq, ack.GetRejected()[0].GetError())
			}
		}
		return nil
	}
	// Warm both paths up (connections, the pair's creation).
	for _, f := range []func() error{unary, streamed} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	per := map[string][]float64{}
	for r := range rounds {
		for _, way := range []struct {
			name string
			f    func() error
		}{{"unary", unary}, {"stream", streamed}} {
			c0, w0 := cpuTime(t), time.Now()
			if err := way.f(); err != nil {
				t.Fatalf("%s: %v", way.name, err)
			}
			cpu, wall := cpuTime(t)-c0, time.Since(w0)
			us := float64(cpu.Microseconds()) / float64(n)
			per[way.name] = append(per[way.name], us)
			t.Logf("round %d %-6s: %.1f µs CPU per report (%.0f reports/s, one in flight)", r+1, way.name, us, float64(n)/wall.Seconds())
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"unary", "stream"} {
		med, lo, hi := spread(per[name])
		t.Logf("%s: median %.1f µs CPU per report, range %.1f-%.1f (%d rounds of %d)", name, med, lo, hi, rounds, n)
	}
}

// median, with the range, of a round's figures.
func spread(v []float64) (med, lo, hi float64) {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2], s[0], s[len(s)-1]
}
