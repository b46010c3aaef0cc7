package sidecar

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
)

// bareSidecar is a Sidecar with state and no connections: enough for the
// appliers, which only change state and publish the view.
func bareSidecar() *Sidecar {
	return &Sidecar{
		cfg:     Config{Service: "checkout", Instance: "c1", DegradedMode: LastKnown},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		records: map[string]*coordRecord{}, services: map[string]map[string]Registration{},
		policies: map[string]breaker.PolicySet{}, local: map[string]*localBreaker{},
		classifiers: map[string]*breaker.Classifier{}, subs: map[chan struct{}]struct{}{},
		secrets: map[string]probeSecret{}, alsNodes: map[string]int{},
		agg: map[string]*breaker.Counts{},
	}
}

func recordJSON(t *testing.T, callee string, st breaker.State, gen uint64) []byte {
	t.Helper()
	data, err := json.Marshal(breaker.PairRecord{Caller: "checkout", Callee: callee, Record: breaker.Record{State: st, Generation: gen}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestApplyRecord: a full read replaces the records, keeping when the
// sidecar first saw a record whose generation and state did not change;
// an event replaces or removes one record; an unreadable record is skipped.
func TestApplyRecord(t *testing.T) {
	s := bareSidecar()
	root := contract.CallerBreakers("checkout")
	s.applyRecord(mirrorUpdate{full: map[string][]byte{
		root + "/payments": recordJSON(t, "payments", breaker.Open, 1),
		root + "/orders":   recordJSON(t, "orders", breaker.Closed, 2),
		root + "/garbled":  []byte("{"),
	}})
	if got := slices.Sorted(maps.Keys(s.records)); !slices.Equal(got, []string{"orders", "payments"}) {
		t.Fatalf("records after a full read: %v", got)
	}
	seenPayments, seenOrders := s.records["payments"].seen, s.records["orders"].seen
	time.Sleep(2 * time.Millisecond) // so a new sighting has a later time

	s.applyRecord(mirrorUpdate{full: map[string][]byte{
		root + "/payments": recordJSON(t, "payments", breaker.Open, 1),  // unchanged
		root + "/orders":   recordJSON(t, "orders", breaker.Open, 3),    // changed
		root + "/users":    recordJSON(t, "users", breaker.HalfOpen, 1), // new
	}})
	if got := s.records["payments"].seen; !got.Equal(seenPayments) {
		t.Errorf("an unchanged record's sighting moved from %v to %v on a resync", seenPayments, got)
	}
	if got := s.records["orders"].seen; !got.After(seenOrders) {
		t.Errorf("a changed record's sighting stayed at %v", got)
	}
	if len(s.records) != 3 || s.records["orders"].rec.Generation != 3 || s.records["users"] == nil {
		t.Fatalf("records after a second full read: %v", slices.Sorted(maps.Keys(s.records)))
	}

	s.applyRecord(mirrorUpdate{path: root + "/payments", data: recordJSON(t, "payments", breaker.HalfOpen, 2)})
	s.applyRecord(mirrorUpdate{path: root + "/users", deleted: true})
	s.applyRecord(mirrorUpdate{path: root + "/orders", data: []byte("not json")})
	if r := s.records["payments"].rec; r.State != breaker.HalfOpen || r.Generation != 2 {
		t.Errorf("payments after an event: %v gen %d", r.State, r.Generation)
	}
	if _, ok := s.records["users"]; ok {
		t.Error("users is still there after its deletion")
	}
	if r := s.records["orders"].rec; r.Generation != 3 {
		t.Errorf("an unreadable event replaced orders' record: gen %d", r.Generation)
	}
	// The view carries the records.
	if v := s.View(); len(v.Callees) != 2 || v.Callees[0].Name != "orders" || v.Callees[1].Record.State != breaker.HalfOpen {
		t.Errorf("view %+v", v)
	}
}

// TestRegistryApplier: a full read of one service's mirror replaces that
// service only; one of the whole registry replaces every service; events
// add and remove instances; registrations without a port, or at the wrong
// depth, are left out.
func TestRegistryApplier(t *testing.T) {
	reg := func(svc, inst string, port int) []byte {
		data, _ := json.Marshal(Registration{Service: svc, Instance: inst, Address: "127.0.0.1", Port: port})
		return data
	}
	instances := func(s *Sidecar) map[string][]string {
		out := map[string][]string{}
		for svc, insts := range s.services {
			out[svc] = slices.Sorted(maps.Keys(insts))
		}
		return out
	}
	p := contract.RegistrationPath
	s := bareSidecar()
	all := s.registryApplier("")
	all(mirrorUpdate{full: map[string][]byte{
		p("payments", "p1"):           reg("payments", "p1", 9001),
		p("orders", "o1"):             reg("orders", "o1", 9501),
		p("orders", "bad"):            reg("orders", "bad", 0),
		contract.ServiceDir("orders"): nil, // a service directory, not a registration
	}})
	if got := instances(s); !slices.Equal(got["payments"], []string{"p1"}) || !slices.Equal(got["orders"], []string{"o1"}) || len(got) != 2 {
		t.Fatalf("after the registry's full read: %v", got)
	}

	payments := s.registryApplier("payments")
	payments(mirrorUpdate{full: map[string][]byte{p("payments", "p2"): reg("payments", "p2", 9002)}})
	if got := instances(s); !slices.Equal(got["payments"], []string{"p2"}) || !slices.Equal(got["orders"], []string{"o1"}) {
		t.Fatalf("after payments' full read: %v (orders must be untouched)", got)
	}

	all(mirrorUpdate{path: p("users", "u1"), data: reg("users", "u1", 9601)})
	all(mirrorUpdate{path: p("orders", "o1"), deleted: true})
	all(mirrorUpdate{path: p("orders", "o2"), data: []byte("{")})
	if got := instances(s); !slices.Equal(got["users"], []string{"u1"}) || len(got["orders"]) != 0 {
		t.Fatalf("after events: %v", got)
	}

	all(mirrorUpdate{full: map[string][]byte{p("orders", "o3"): reg("orders", "o3", 9503)}})
	if got := instances(s); len(got) != 1 || !slices.Equal(got["orders"], []string{"o3"}) {
		t.Fatalf("after a second full read of the registry: %v, want orders/o3 only", got)
	}
}

// TestApplyPolicy: policies are replaced by a full read and changed by
// events; an invalid policy is left out; the cached classifiers are
// dropped on every change.
func TestApplyPolicy(t *testing.T) {
	policy := func(callee string, mode string) []byte {
		p := breaker.DefaultPolicy()
		p.DegradedMode = mode
		data, _ := json.Marshal(breaker.PolicySet{Callee: callee, Policy: p})
		return data
	}
	root := contract.PoliciesRoot
	s := bareSidecar()
	s.applyPolicy(mirrorUpdate{full: map[string][]byte{
		root + "/payments": policy("payments", "local"),
		root + "/orders":   policy("orders", "no-such-mode"),
	}})
	if got := slices.Sorted(maps.Keys(s.policies)); !slices.Equal(got, []string{"payments"}) {
		t.Fatalf("policies after a full read: %v, want the valid one", got)
	}
	s.mu.Lock()
	if m := s.modeFor("payments"); m != Local {
		t.Errorf("payments' degraded mode %s, want its policy's", m)
	}
	s.mu.Unlock()
	s.classifiers["payments"] = &breaker.Classifier{}
	s.applyPolicy(mirrorUpdate{path: root + "/orders", data: policy("orders", "fail-closed")})
	if len(s.classifiers) != 0 {
		t.Error("classifiers kept across a policy change")
	}
	s.applyPolicy(mirrorUpdate{path: root + "/payments", deleted: true})
	if got := slices.Sorted(maps.Keys(s.policies)); !slices.Equal(got, []string{"orders"}) {
		t.Fatalf("policies after events: %v", got)
	}
}
