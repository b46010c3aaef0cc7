package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

// A small fleet against a secure 3-member cluster comes up, every sidecar
// sees its service's pair to the failing callee OPEN, no call fails, and
// stopping the fleet removes its registrations. Eight sidecars: the race
// detector and a busy CI machine share two cores with this cluster.
func TestRunFleetTripSeenByEverySidecar(t *testing.T) {
	pki := coordinatortest.NewPKI(t)
	nodes := coordinatortest.StartSecureCluster(t, pki, 3)
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.Addr())
	}
	tlsCfg := pki.ClientTLS(trust.RoleAdmin, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunFleet(ctx, FleetConfig{
		Endpoints: eps, TLS: tlsCfg, Sidecars: 8, PerService: 4, Callees: 2,
		Measure: 3 * time.Second, Resources: []Sampler{SelfSampler()},
		// The cluster runs in this process, beside the sidecars: a report
		// period of 1s (a timeout of 2s) keeps a loaded machine or the race
		// detector from turning slowness into failed reports, and three
		// periods measured hold reports however the periods fall.
		ReportInterval: time.Second, StartRate: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready != 8 {
		t.Fatalf("%d of 8 sidecars came up; errors %v", res.Ready, res.Errors)
	}
	if res.Services != 2 || res.Trip.Pairs != 2 || res.Trip.Decided != 2 {
		t.Errorf("services %d, trip pairs %d, decided %d; want 2 each", res.Services, res.Trip.Pairs, res.Trip.Decided)
	}
	if res.Trip.Seen != 8 || res.Trip.DecisionToWatch.N != 8 || res.Trip.TripToWatch.N != 8 {
		t.Errorf("trip seen by %d sidecars (latency samples %d, %d), want 8", res.Trip.Seen, res.Trip.DecisionToWatch.N, res.Trip.TripToWatch.N)
	}
	if res.Trip.ReportToDecision.N != 2 {
		t.Errorf("report-to-decision samples %d, want 2 (one per pair)", res.Trip.ReportToDecision.N)
	}
	if len(res.Errors) != 0 {
		t.Errorf("errors: %v", res.Errors)
	}
	if res.ReportsPerSecond <= 0 {
		t.Errorf("reports/s %v while the fleet ran", res.ReportsPerSecond)
	}
	if len(res.Coordinators) != 1 || res.Coordinators[0].Error != "" || res.Coordinators[0].RSSBytes <= 0 {
		t.Errorf("resources: %+v", res.Coordinators)
	}
	if res.ProjectedSidecars != ProjectTo || res.ProjectedRSSBytes <= 0 {
		t.Errorf("projection: %d sidecars, %d bytes", res.ProjectedSidecars, res.ProjectedRSSBytes)
	}
	if res.CleanupError != "" {
		t.Errorf("cleanup: %s", res.CleanupError)
	}
	// Every session was closed, so every registration went, and the
	// emptied service directories were deleted.
	c, err := client.New(client.Config{Endpoints: eps, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 4 {
		kids, _, err := c.Children(ctx, contract.ServiceDir(serviceName("fleetsim", i)))
		if !errors.Is(err, client.ErrNoNode) {
			t.Errorf("%s after the run: children %v, error %v; want no such node", serviceName("fleetsim", i), kids, err)
		}
	}
}

// colony bench fleet runs against a secure node with the certificate flags,
// prints its result as JSON, exits 0 when the goal is met and leaves
// nothing behind.
func TestBenchFleetCommand(t *testing.T) {
	pki := coordinatortest.NewPKI(t)
	addr := coordinatortest.StartSecureNode(t, pki).Addr()
	files := pki.Issue(trust.RoleAdmin, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errw clitest.SyncBuffer
	_, err := clitest.Run(ctx, clitest.Root(NewBenchCmd), &out, &errw, "",
		"bench", "fleet", "--endpoints", addr, "--cacert", filepath.Join(pki.Dir, "ca.crt"),
		"--cert", files.Cert, "--key", files.Key, "--sidecars", "6", "--per-service", "3",
		"--callees", "1", "--measure", "1s", "--prefix", "benchtest", "-o", "json")
	if err != nil {
		t.Fatalf("bench fleet: %v\nstderr: %s\nstdout: %s", err, errw.String(), out.String())
	}
	var res FleetResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("output is not a result: %v\n%s", err, out.String())
	}
	if res.Ready != 6 || res.Trip.Seen != 6 || len(res.Errors) != 0 {
		t.Errorf("ready %d, trip seen by %d, errors %v; want 6, 6, none", res.Ready, res.Trip.Seen, res.Errors)
	}
	c, err := client.New(client.Config{Endpoints: []string{addr}, TLS: pki.ClientTLS(trust.RoleAdmin, "check")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pairs, err := c.ListBreakers(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if strings.HasPrefix(p.GetCaller(), "benchtest-") {
			t.Errorf("pair %s -> %s left behind", p.GetCaller(), p.GetCallee())
		}
	}
	kids, _, err := c.Children(ctx, contract.ServicesRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		if strings.HasPrefix(k, "benchtest-") {
			t.Errorf("service directory %s left behind", k)
		}
	}
}

// A configuration outside the limits is refused with the field named.
func TestFleetConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*FleetConfig)
		want string
	}{
		{"no endpoints", func(c *FleetConfig) { c.Endpoints = nil }, "endpoints"},
		{"one sidecar", func(c *FleetConfig) { c.Sidecars = 1 }, "sidecars: 1 is outside"},
		{"more per service than sidecars", func(c *FleetConfig) { c.PerService = 41 }, "per-service: 41"},
		{"too many sidecars", func(c *FleetConfig) { c.Sidecars = maxSidecars + 1 }, "sidecars:"},
		{"one per service", func(c *FleetConfig) { c.PerService = 1 }, "per-service: 1"},
		{"too many callees", func(c *FleetConfig) { c.Callees = contract.MaxOutcomesPerReport }, "callees:"},
		{"fast reports", func(c *FleetConfig) { c.ReportInterval = time.Millisecond }, "report-interval"},
		{"bad prefix", func(c *FleetConfig) { c.Prefix = "Bad Name" }, "prefix:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := FleetConfig{Endpoints: []string{"127.0.0.1:1"}, Sidecars: 40}
			tc.edit(&cfg)
			cfg.withDefaults()
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
