package guard

import (
	"io"
	"log/slog"
	"testing"

	"github.com/colonymesh/colony/breaker"
)

// BenchmarkAllow is the guard's cost on the call path: the check and the
// outcome record of one admitted call, with 100 callees followed.
//
//	go test -run '^$' -bench . -benchmem ./sidecar/guard/
func BenchmarkAllow(b *testing.B) {
	for _, st := range []breaker.State{breaker.Closed, breaker.Open} {
		b.Run(st.String(), func(b *testing.B) {
			g, err := New(Config{Sidecar: "127.0.0.1:1", Instance: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			for i := range 100 {
				g.apply(breaker.PairRecord{Caller: "checkout", Callee: "svc" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Record: breaker.Record{State: breaker.Closed}}, "")
			}
			g.apply(breaker.PairRecord{Caller: "checkout", Callee: "payments", Record: breaker.Record{State: st, Generation: 3}}, "")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := g.Allow("payments")
					if err == nil {
						p.Done(false, false)
					}
				}
			})
		})
	}
}
