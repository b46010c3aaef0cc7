package xds

import (
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
)

// BenchmarkFlipToEnforce measures, with a real gRPC-Go xDS client on
// 127.0.0.1, the time from Update(OPEN) until the client's calls fail
// (ns/op), and the time from the sidecar seeing the record to the client's
// ACK of the routes (ack-p50/p99-µs). Each iteration first closes the
// breaker again, untimed.
//
//	go test -run '^$' -bench FlipToEnforce ./xds/
func BenchmarkFlipToEnforce(b *testing.B) {
	backends := []*backend{startBackend(b), startBackend(b)}
	var mu sync.Mutex
	var acks []time.Duration
	s, addr := startServer(b, Config{
		Logger: slog.New(slog.DiscardHandler),
		OnEnforced: func(e Enforcement) {
			if e.State == breaker.Open {
				mu.Lock()
				acks = append(acks, e.FromSeen)
				mu.Unlock()
			}
		},
	})
	if err := s.Update(grpcState(backends, nil)); err != nil {
		b.Fatal(err)
	}
	cc := dialXDS(b, addr, "checkout-1", "payments")
	waitCall(b, cc, 500, "first call", func(err error) bool { return err == nil })

	var flips []time.Duration
	gen := uint64(1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		gen++
		if err := s.Update(grpcState(backends, liveRecord(breaker.Closed, gen, nil))); err != nil {
			b.Fatal(err)
		}
		waitCall(b, cc, 1000, "CLOSED again", func(err error) bool { return err == nil })
		gen++
		b.StartTimer()

		start := time.Now()
		if err := s.Update(grpcState(backends, liveRecord(breaker.Open, gen, nil))); err != nil {
			b.Fatal(err)
		}
		calls := 0
		for ; calls < 100000; calls++ {
			if isUnavailable(callOnce(cc)) {
				break
			}
		}
		if calls == 100000 {
			b.Fatal("OPEN not enforced after 100000 calls")
		}
		flips = append(flips, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(pct(flips, 50), "flip-p50-µs")
	b.ReportMetric(pct(flips, 99), "flip-p99-µs")
	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(pct(acks, 50), "ack-p50-µs")
	b.ReportMetric(pct(acks, 99), "ack-p99-µs")
}

// pct returns the p-th percentile of ds in microseconds.
func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return float64(s[max(i-1, 0)].Nanoseconds()) / 1e3
}

// BenchmarkTranslate measures Translate for a caller with 50 callees of 10
// endpoints each.
func BenchmarkTranslate(b *testing.B) {
	st := State{Caller: "checkout", Instance: "checkout-1"}
	for i := 0; i < 50; i++ {
		c := Callee{Name: "svc-" + strconv.Itoa(i), Protocol: Protocol(i % 2)}
		for j := 0; j < 10; j++ {
			c.Endpoints = append(c.Endpoints, Endpoint{Address: "10.0." + strconv.Itoa(i) + "." + strconv.Itoa(j), Port: 8080, Zone: "z" + strconv.Itoa(j%3)})
		}
		if i%5 == 0 {
			c.Breaker = &breaker.PairRecord{Record: breaker.Record{State: breaker.Open, Generation: 2}}
		}
		st.Callees = append(st.Callees, c)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Translate(Config{}, st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateFlip measures Update for a breaker flip (one callee's
// routes change) with 50 callees of 10 endpoints each and no clients: the
// sidecar's share of the flip, before any push.
func BenchmarkUpdateFlip(b *testing.B) {
	s, err := NewServer(Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	st := State{Caller: "checkout", Instance: "checkout-1"}
	for i := 0; i < 50; i++ {
		c := Callee{Name: "svc-" + strconv.Itoa(i), Protocol: Protocol(i % 2)}
		for j := 0; j < 10; j++ {
			c.Endpoints = append(c.Endpoints, Endpoint{Address: "10.0." + strconv.Itoa(i) + "." + strconv.Itoa(j), Port: 8080})
		}
		st.Callees = append(st.Callees, c)
	}
	if err := s.Update(st); err != nil {
		b.Fatal(err)
	}
	gen := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		gen++
		state := breaker.Open
		if gen%2 == 0 {
			state = breaker.Closed
		}
		st.Callees[7].Breaker = &breaker.PairRecord{Record: breaker.Record{State: state, Generation: gen}}
		if err := s.Update(st); err != nil {
			b.Fatal(err)
		}
	}
}
