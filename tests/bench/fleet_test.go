package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fleetResult is the part of `colony bench fleet -o json` the test reads.
type fleetResult struct {
	Sidecars         int              `json:"sidecars"`
	Ready            int              `json:"ready"`
	RampSeconds      float64          `json:"rampSeconds"`
	ReportsPerSecond float64          `json:"reportsPerSecond"`
	LoadBefore       string           `json:"loadBefore"`
	LoadAfter        string           `json:"loadAfter"`
	CPUCores         float64          `json:"cpuCores"`
	IdleCores        float64          `json:"idleCpuCores"`
	CPUMillicores    float64          `json:"cpuMillicoresPerSidecar"`
	RSSBytes         int64            `json:"rssBytes"`
	RSSPerSidecar    int64            `json:"rssBytesPerSidecar"`
	ProjectedCores   float64          `json:"projectedCpuCores"`
	ProjectedRSS     int64            `json:"projectedRssBytes"`
	SimulatorCores   float64          `json:"simulatorCpuCores"`
	Errors           map[string]int64 `json:"errors"`
	CleanupError     string           `json:"cleanupError"`
	Coordinators     []struct {
		Name      string  `json:"name"`
		CPUCores  float64 `json:"cpuCores"`
		WaitCores float64 `json:"waitCores"`
	} `json:"coordinators"`
	Trip struct {
		Pairs, Decided, Watchers, Seen int
		ReportToDecision               latencyMs `json:"reportToDecision"`
		DecisionToWatch                latencyMs `json:"decisionToWatch"`
		TripToWatch                    latencyMs `json:"tripToWatch"`
	} `json:"trip"`
}

type latencyMs struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// TestFleet runs `colony bench fleet`, as an operator would, against a
// secure 3-member cluster of coordinator processes, measuring them through
// /proc (--pid): every simulated sidecar must come up, see the trip, and
// no call may fail. COLONY_FLEET_SIDECARS lists the fleet sizes, run one
// after the other on the same cluster (default 20);
// COLONY_FLEET_FLAGS adds flags (e.g. "--measure 20s");
// COLONY_FLEET_OUT names a directory for each run's JSON.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of coordinator processes")
	}
	sizes := []int{20}
	if v := os.Getenv("COLONY_FLEET_SIDECARS"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 2 {
				t.Fatalf("COLONY_FLEET_SIDECARS: %q is not a fleet size (2 or more)", s)
			}
			sizes = append(sizes, n)
		}
	}
	c := startColonyWith(t, 3, true)
	bin := colonyBinary(t)
	for _, n := range sizes {
		t.Run(fmt.Sprintf("sidecars=%d", n), func(t *testing.T) {
			args := []string{"bench", "fleet", "--endpoints", strings.Join(c.grpc, ","),
				"--sidecars", strconv.Itoa(n), "-o", "json"}
			args = append(args, c.pki.ClientArgs()...)
			if n <= 100 {
				args = append(args, "--measure", "2s", "--per-service", "5")
			}
			for _, p := range c.procs {
				args = append(args, "--pid", strconv.Itoa(p.cmd.Process.Pid))
			}
			args = append(args, strings.Fields(os.Getenv("COLONY_FLEET_FLAGS"))...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			runErr := cmd.Run()
			var res fleetResult
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("colony %s: %v; no result (%v)\nstderr: %s", strings.Join(args, " "), runErr, err, stderr.String())
			}
			if dir := os.Getenv("COLONY_FLEET_OUT"); dir != "" {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("fleet-%d.json", n)), stdout.Bytes(), 0o644); err != nil {
					t.Error(err)
				}
			}
			tr := res.Trip
			t.Logf("sidecars %d: ready %d in %.1fs, %.0f reports/s, load %s -> %s; coordinators %.2f cores (%.2f idle), RSS %.0f MiB; "+
				"per sidecar %.3f millicores, %.1f KiB; projected at 50,000: %.1f cores, %.0f MiB; simulator %.2f cores; "+
				"trip %d/%d pairs, seen by %d/%d; report-to-decision p50 %.1f p99 %.1f ms; decision-to-watch p50 %.1f p99 %.1f max %.1f ms; "+
				"trip-to-watch p50 %.1f p99 %.1f ms; errors %v",
				n, res.Ready, res.RampSeconds, res.ReportsPerSecond, res.LoadBefore, res.LoadAfter, res.CPUCores, res.IdleCores, float64(res.RSSBytes)/(1<<20),
				res.CPUMillicores, float64(res.RSSPerSidecar)/1024, res.ProjectedCores, float64(res.ProjectedRSS)/(1<<20), res.SimulatorCores,
				tr.Decided, tr.Pairs, tr.Seen, tr.Watchers, tr.ReportToDecision.P50Ms, tr.ReportToDecision.P99Ms,
				tr.DecisionToWatch.P50Ms, tr.DecisionToWatch.P99Ms, tr.DecisionToWatch.MaxMs, tr.TripToWatch.P50Ms, tr.TripToWatch.P99Ms, res.Errors)
			// Which member led (an election may have moved it): its CPU
			// against the followers' shows where the fleet's cost lands.
			if err := c.refreshLeader(t, ctx); err != nil {
				t.Logf("leader unknown after the run: %v", err)
			} else {
				var line []string
				for i, p := range c.procs {
					role := "follower"
					if c.grpc[i] == c.leader {
						role = "leader"
					}
					for _, m := range res.Coordinators {
						if m.Name == fmt.Sprintf("pid %d", p.cmd.Process.Pid) {
							line = append(line, fmt.Sprintf("%s %s %.2f cores (run-queue wait %.2f)", c.ids[i], role, m.CPUCores, m.WaitCores))
						}
					}
				}
				t.Logf("members: %s", strings.Join(line, "; "))
			}
			if res.Ready != n || tr.Seen != n || tr.Decided != tr.Pairs {
				t.Errorf("ready %d, trip seen by %d of %d sidecars, %d of %d pairs decided", res.Ready, tr.Seen, n, tr.Decided, tr.Pairs)
			}
			if len(res.Errors) != 0 {
				t.Errorf("errors: %v", res.Errors)
			}
			if res.CleanupError != "" {
				t.Errorf("cleanup: %s", res.CleanupError)
			}
			if runErr != nil && !t.Failed() {
				t.Errorf("colony bench fleet: %v\nstderr: %s", runErr, stderr.String())
			}
		})
	}
}
