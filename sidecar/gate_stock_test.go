package sidecar_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/sidecar"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
	"github.com/colonymesh/colony/xds"
)

// TestStockClientTripsProbesAndRecovers: the only caller is a stock gRPC-Go
// xDS client (no Colony code in its calls). The callee fails: the pair
// trips on its load reports alone. In HALF_OPEN its calls go through the
// sidecar's probe gate, which lets through no more than the instance's
// permits (counted at the callee) and rejects the rest with a message
// naming the spent permits; the failing probe re-opens the pair; once the
// callee heals, the next HALF_OPEN's probes close it.
func TestStockClientTripsProbesAndRecovers(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	admin, err := client.New(client.Config{Endpoints: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const permits = 3
	applyPolicy(t, admin, `{"window":"10s","buckets":5,"minimumCalls":10,"failureRateThreshold":0.5,"openDuration":"1s","backoffMultiplier":1,
		"minFailingInstances":1,"probeBudget":3,"successesToClose":3,"probeTimeout":"30s","halfOpenMaxWait":"60s"}`)
	be := startHealthBackend(t)
	startSidecar(t, srv.Addr(), "payments", "p1", be.addr.Port)
	x, err := sidecar.NewXDS(xds.Config{LoadReportInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sc, err := sidecar.New(sidecar.Config{Service: "checkout", Instance: "c1", Coordinators: []string{srv.Addr()},
		Address: "127.0.0.1:9100", APIAddr: "127.0.0.1:0", ReportInterval: 50 * time.Millisecond,
		SessionTTL: time.Second, DegradedAfter: 5 * time.Second, Logger: quietLog()}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	waitCallee(t, sc, 10*time.Second, "callee endpoints", func(c sidecar.Callee, _ sidecar.View) bool { return len(c.Endpoints) == 1 })

	// The stock client calls in a loop, one call at a time, for at most a
	// minute; aborted counts the calls its routes aborted.
	const node = "checkout/c1"
	stock := dialXDSClient(t, sc.Addr(), node, false)
	be.fail.Store(true)
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	var aborted, gated atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			switch err := check(stock); {
			case err == nil:
			case strings.Contains(err.Error(), "fault injection"):
				aborted.Add(1)
			case strings.Contains(err.Error(), "probe permits"):
				gated.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer wg.Wait()
	defer stop()

	// quiet waits until the client enforces generation gen and has had a
	// call aborted since: no call of it is in flight to the callee then.
	quiet := func(gen uint64) int64 {
		t.Helper()
		waitUntil(t, 20*time.Second, "the client enforces the generation", func() bool {
			for _, e := range x.Enforcements() {
				if e.Callee == "payments" && e.Generation == gen && e.NodeID == node {
					return true
				}
			}
			return false
		})
		n := aborted.Load()
		waitUntil(t, 10*time.Second, "an aborted call", func() bool { return aborted.Load() > n })
		return be.calls.Load()
	}

	start := time.Now()
	open1 := waitCallee(t, sc, 30*time.Second, "OPEN from the stock client's load reports", func(c sidecar.Callee, _ sidecar.View) bool {
		return state(c) == breaker.Open
	}).Record
	t.Logf("OPEN %v after the callee started failing, on the stock client's reports alone", time.Since(start).Round(time.Millisecond))
	atOpen1 := quiet(open1.Generation)

	// HALF_OPEN with the callee still failing: a probe fails, the pair
	// re-opens.
	half := waitCallee(t, sc, 20*time.Second, "HALF_OPEN", func(c sidecar.Callee, _ sidecar.View) bool {
		return state(c) == breaker.HalfOpen
	})
	if half.Record.Probes["c1"] != permits || half.ProbeSecret == "" || sc.View().ProbeGate == "" {
		t.Fatalf("HALF_OPEN view %+v (gate %q): want %d permits, a secret and a probe gate", half, sc.View().ProbeGate, permits)
	}
	open2 := waitCallee(t, sc, 30*time.Second, "re-OPEN on a failed stock probe", func(c sidecar.Callee, _ sidecar.View) bool {
		return state(c) == breaker.Open && c.Record.Generation > half.Record.Generation
	}).Record
	probes := quiet(open2.Generation) - atOpen1
	t.Logf("HALF_OPEN with the callee failing: %d calls reached the callee, %d permits, %d calls rejected by the gate; re-opened by %s",
		probes, permits, gated.Load(), open2.Cause)
	if probes < 1 || probes > permits {
		t.Errorf("%d probes reached the callee in one HALF_OPEN period, want 1..%d", probes, permits)
	}

	// The callee heals: the next HALF_OPEN's probes close the pair.
	be.fail.Store(false)
	waitCallee(t, sc, 60*time.Second, "CLOSED on the stock client's successful probes", func(c sidecar.Callee, _ sidecar.View) bool {
		return state(c) == breaker.Closed && c.Record.Generation > open2.Generation
	})
	info, err := admin.GetBreaker(context.Background(), "checkout", "payments", 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("closed: %+v", info.Record.Evidence)
	if info.Record.Evidence.Condition != breaker.ConditionProbesSucceeded {
		t.Errorf("closed on %v, want %v", info.Record.Evidence.Condition, breaker.ConditionProbesSucceeded)
	}
}
