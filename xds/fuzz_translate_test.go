package xds

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/colonymesh/colony/breaker"
)

// FuzzTranslate: whatever breaker record and registry a sidecar holds,
// Translate either rejects the state with ErrInvalidState (a bad name, a
// duplicate endpoint, an address that is no IP) or emits resources that pass
// the Envoy types' own validation: never ErrInvalidResource, never a panic.
func FuzzTranslate(f *testing.F) {
	f.Add("payments", uint8(1), uint64(3), "checkout-1", 2, uint8(1), "10.0.0.1", 8080, "a", 10)
	f.Add("payments", uint8(2), uint64(9), "checkout-7", 0, uint8(0), "::1", 1, "", 100)
	f.Add("a.b-c_d", uint8(0), uint64(0), "", 5, uint8(1), "127.0.0.1", 65535, "zone/x", 1)
	f.Add("x", uint8(3), uint64(1<<63), "checkout-1", -1, uint8(7), "not-an-ip", 0, "z", 0)
	f.Fuzz(func(t *testing.T, callee string, state uint8, gen uint64, holder string, permits int, proto uint8, addr string, port int, zone string, share int) {
		rec := &breaker.PairRecord{Caller: "checkout", Callee: callee,
			Record: breaker.Record{State: breaker.State(state % 4), Generation: gen, Probes: map[string]int{holder: permits}}}
		st := State{Caller: "checkout", Instance: "checkout-1", Callees: []Callee{{
			Name: callee, Protocol: Protocol(proto % 3), Breaker: rec,
			Endpoints: []Endpoint{{Instance: "p1", Address: addr, Port: port, Zone: zone}, {Instance: "p2", Address: "10.9.9.9", Port: 80}},
		}}}
		if share != 0 {
			st.ProbeGate = "127.0.0.1:" + strconv.Itoa(share)
		}
		res, err := Translate(Config{}, st)
		switch {
		case err == nil:
			if err := res.validate(); err != nil {
				t.Fatalf("Translate accepted %+v and emitted invalid resources: %v", st, err)
			}
		case errors.Is(err, ErrInvalidResource):
			t.Fatalf("Translate built an invalid resource from %+v: %v", st, err)
		case errors.Is(err, ErrInvalidState), errors.Is(err, ErrInvalidConfig):
			// rejected with a message naming the field
			if err.Error() == "" {
				t.Fatal("empty error")
			}
		default:
			t.Fatalf("Translate(%+v): unexpected error kind: %v", st, fmt.Errorf("%w", err))
		}
	})
}
