package watchhub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/watchhub"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// BenchmarkPublish measures the cost of Publish on the FSM apply goroutine,
// for entries of one event and for multis, with a full ring (every publish
// evicts) and idle watchers (which cost Publish nothing).
func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("events=%d", size), func(b *testing.B) {
			h := watchhub.New(watchhub.Config{MaxEvents: 1024})
			defer h.Close()
			for range 200 {
				s, err := h.Subscribe(everything, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			// Events are immutable: make them ahead, a chunk at a time, with
			// the timer stopped.
			const chunk = 1024
			var (
				z       uint64
				entries [][]*colonyv1.Event
			)
			b.ReportAllocs()
			for b.Loop() {
				if len(entries) == 0 {
					b.StopTimer()
					entries = make([][]*colonyv1.Event, chunk)
					for i := range entries {
						for range size {
							entries[i] = append(entries[i], &colonyv1.Event{
								Type: changed, Path: "/colony/breakers/a/b", Zxid: z + uint64(i) + 1, Data: make([]byte, 64),
							})
						}
					}
					b.StartTimer()
				}
				z++
				h.Publish(z, entries[0])
				entries = entries[1:]
			}
		})
	}
}

// BenchmarkFanout200 measures delivery latency: the time from Publish of one
// event to its receipt by all of 200 watchers, each calling Next in its own
// goroutine. ns/op is the mean; p99-ns the 99th percentile.
func BenchmarkFanout200(b *testing.B) {
	const watchers = 200
	h := watchhub.New(watchhub.Config{})
	var (
		wg        sync.WaitGroup
		remaining atomic.Int64          // watchers yet to receive the current event
		allGot    = make(chan struct{}) // signalled by the last one
	)
	for range watchers {
		s, err := h.Subscribe(everything, 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer s.Close()
			for {
				evs, err := s.Next(context.Background())
				if err != nil {
					return // ErrClosed at the end
				}
				if remaining.Add(-int64(len(evs))) == 0 {
					allGot <- struct{}{}
				}
			}
		})
	}

	var (
		z         uint64
		latencies []time.Duration
	)
	for b.Loop() {
		z++
		ev := &colonyv1.Event{Type: changed, Path: "/colony/breakers/a/b", Zxid: z}
		remaining.Store(watchers)
		start := time.Now()
		h.Publish(z, []*colonyv1.Event{ev})
		<-allGot
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	h.Close()
	wg.Wait()

	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)*99/100]), "p99-ns")
}
