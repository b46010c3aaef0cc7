package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestEnvoyLegLoadReports checks that the Envoy of the walkthrough's Envoy
// leg is counted from its load reports (envoy.yaml's
// cluster_manager.load_stats_config): a client that presents itself as that
// Envoy opens the load reporting stream Envoy opens to the sidecar, gets
// the clusters and interval to report, and reports catalog's calls as
// Envoy does (per locality: successful, errored, issued). Those reports
// alone, with no access log stream, trip storefront->catalog, each call
// counted exactly once.
func TestEnvoyLegLoadReports(t *testing.T) {
	b := loadBootstrap(t)
	service, instance, _ := strings.Cut(b.node.GetId(), "/")

	srv := coordinatortest.StartNode(t)
	admin := newClient(t, srv.Addr())
	applyPolicyFile(t, admin, "policy.yaml")
	startSidecar(t, sidecar.Config{Service: "catalog", Instance: "k1", Protocol: "http", Address: "127.0.0.1:9201", Coordinators: []string{srv.Addr()}})
	sc := startSidecar(t, sidecar.Config{Service: service, Instance: instance, Address: "127.0.0.1:9303",
		Callees: []string{"catalog"}, Coordinators: []string{srv.Addr()}, ReportInterval: 100 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(sc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := proto.Clone(b.node).(*corev3.Node)
	node.UserAgentName = "envoy"
	if err := stream.Send(&lrsv3.LoadStatsRequest{Node: node}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("the sidecar's load reporting service: %v", err)
	}
	if !resp.GetSendAllClusters() && !slices.Contains(resp.GetClusters(), "catalog") {
		t.Fatalf("the sidecar asks for the load of %v (all: %v): want catalog's", resp.GetClusters(), resp.GetSendAllClusters())
	}
	interval := resp.GetLoadReportingInterval().AsDuration()
	if interval <= 0 {
		t.Fatalf("the sidecar asks for reports every %v", interval)
	}

	// One interval's calls through Envoy: catalog answered 12 of 16 with
	// 5xx. Envoy counts those as errors; the policy needs 10 calls, half
	// failed, and (one storefront instance registered) one failing
	// instance.
	const ok, failed = 4, 12
	if err := stream.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{{
		ClusterName: "catalog",
		UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{{
			Locality:                &corev3.Locality{},
			TotalSuccessfulRequests: ok,
			TotalErrorRequests:      failed,
			TotalIssuedRequests:     ok + failed,
		}},
		LoadReportInterval: resp.GetLoadReportingInterval(),
	}}}); err != nil {
		t.Fatal(err)
	}
	for {
		info, err := admin.GetBreaker(ctx, service, "catalog", 5)
		if err == nil && info.Record.State == breaker.Open {
			ev := info.Record.Evidence
			t.Logf("Envoy's load reports alone: %s->catalog OPEN, generation %d, cause %s, evidence %d calls, %d failed", service, info.Record.Generation, info.Record.Cause, ev.Calls, ev.Failures)
			if ev.Calls != ok+failed || ev.Failures != failed {
				t.Errorf("trip evidence: %d calls, %d failed; want Envoy's %d and %d, each counted once", ev.Calls, ev.Failures, ok+failed, failed)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s->catalog never tripped on Envoy's load reports: %+v %v", service, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
