//go:build unix

package robustness

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The checkers must catch what they are for: these tests feed them
// histories with known answers.

func TestRegisterModel(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	k := "/rb/k0"
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"create then read", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(1, 20, 30, kvInput{Kind: opGet, Key: k}, kvOutput{Exists: true, Value: "a", Version: 0}),
		}, porcupine.Ok},
		{"stale read after an acknowledged set", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(0, 11, 20, kvInput{Kind: opSet, Key: k, Value: "b"}, kvOutput{Version: 1}),
			op(1, 30, 40, kvInput{Kind: opGet, Key: k}, kvOutput{Exists: true, Value: "a", Version: 0}),
		}, porcupine.Illegal},
		{"lost acknowledged create", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(1, 30, 40, kvInput{Kind: opGet, Key: k}, kvOutput{}),
		}, porcupine.Illegal},
		{"cas at the right version", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(0, 11, 20, kvInput{Kind: opCAS, Key: k, Value: "b", Version: 0}, kvOutput{Version: 1}),
			op(1, 12, 19, kvInput{Kind: opCAS, Key: k, Value: "c", Version: 0}, kvOutput{Err: errBadVersion}),
		}, porcupine.Ok},
		{"two cas at one version both succeed", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(0, 11, 20, kvInput{Kind: opCAS, Key: k, Value: "b", Version: 0}, kvOutput{Version: 1}),
			op(1, 12, 19, kvInput{Kind: opCAS, Key: k, Value: "c", Version: 0}, kvOutput{Version: 1}),
		}, porcupine.Illegal},
		{"unknown write seen later", []porcupine.Operation{
			op(0, 0, 100, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Unknown: true}),
			op(1, 30, 40, kvInput{Kind: opGet, Key: k}, kvOutput{}),
			op(1, 50, 60, kvInput{Kind: opGet, Key: k}, kvOutput{Exists: true, Value: "a", Version: 0}),
		}, porcupine.Ok},
		{"unknown write never applied", []porcupine.Operation{
			op(0, 0, 100, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Unknown: true}),
			op(1, 50, 60, kvInput{Kind: opGet, Key: k}, kvOutput{}),
		}, porcupine.Ok},
		{"unknown write seen, then unseen", []porcupine.Operation{
			op(0, 0, 100, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Unknown: true}),
			op(1, 30, 40, kvInput{Kind: opGet, Key: k}, kvOutput{Exists: true, Value: "a", Version: 0}),
			op(1, 50, 60, kvInput{Kind: opGet, Key: k}, kvOutput{}),
		}, porcupine.Illegal},
		{"delete at a wrong version", []porcupine.Operation{
			op(0, 0, 10, kvInput{Kind: opCreate, Key: k, Value: "a"}, kvOutput{Version: 0}),
			op(0, 11, 20, kvInput{Kind: opDelete, Key: k, Version: 3}, kvOutput{Err: errBadVersion}),
			op(0, 21, 30, kvInput{Kind: opDelete, Key: k, Version: -1}, kvOutput{}),
			op(1, 40, 50, kvInput{Kind: opSet, Key: k, Value: "b"}, kvOutput{Err: errNoNode}),
		}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{ops: tt.ops}
			if got := porcupine.CheckOperationsTimeout(registerModel, h.operations(), 10*time.Second); got != tt.want {
				t.Errorf("check = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckWatchesFindsGapsAndDuplicates(t *testing.T) {
	ev := func(z uint64, typ colonyv1.EventType, p, data string, v int64) *colonyv1.Event {
		return &colonyv1.Event{Zxid: z, Type: typ, Path: p, Data: []byte(data), Stat: &colonyv1.Stat{Version: v, Mzxid: z}}
	}
	created, changed := colonyv1.EventType_EVENT_TYPE_CREATED, colonyv1.EventType_EVENT_TYPE_DATA_CHANGED
	full := []*colonyv1.Event{ev(11, created, "/rb/k0", "a", 0), ev(12, changed, "/rb/k0", "b", 1), ev(13, changed, "/rb/k0", "c", 2)}
	rec := func(name string, evs ...*colonyv1.Event) *watchRecorder {
		return &watchRecorder{name: name, segments: []*watchSegment{{Start: 10, Events: evs}}}
	}
	final := map[string]regState{"/rb/k0": {Exists: true, Value: "c", Version: 2}}
	acked := map[uint64]string{12: "set"}
	if errs := checkWatches([]*watchRecorder{rec("a", full...), rec("b", full...)}, acked, final); len(errs) != 0 {
		t.Errorf("clean streams: %v", errs)
	}
	if errs := checkWatches([]*watchRecorder{rec("a", full...), rec("b", full[0], full[2])}, acked, final); len(errs) == 0 {
		t.Error("a gap went unnoticed")
	}
	if errs := checkWatches([]*watchRecorder{rec("a", full[0], full[1], full[1], full[2])}, acked, final); len(errs) == 0 {
		t.Error("a duplicate went unnoticed")
	}
	if errs := checkWatches([]*watchRecorder{rec("a", full[0], full[2], full[1])}, acked, final); len(errs) == 0 {
		t.Error("events out of order went unnoticed")
	}
}

// echoServer echoes every connection until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func TestProxy(t *testing.T) {
	p, err := newProxy("test", echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	roundTrip := func(c net.Conn, msg string) error {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echoed %q, sent %q", buf, msg)
		}
		return nil
	}
	connect := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("pass keeps order under jitter", func(t *testing.T) {
		p.SetLatency(time.Millisecond, 5*time.Millisecond)
		defer p.SetLatency(0, 0)
		c := connect(t)
		var want bytes.Buffer
		go func() {
			for i := range 300 {
				fmt.Fprintf(c, "%d\n", i)
			}
		}()
		for i := range 300 {
			fmt.Fprintf(&want, "%d\n", i)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, want.Len())
		if _, err := io.ReadFull(bufio.NewReader(c), got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Error("bytes reordered or lost")
		}
	})
	t.Run("latency", func(t *testing.T) {
		p.SetLatency(50*time.Millisecond, 0)
		defer p.SetLatency(0, 0)
		c := connect(t)
		start := time.Now()
		if err := roundTrip(c, "x"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 100*time.Millisecond { // both directions
			t.Errorf("round trip took %v with 50ms each way", d)
		}
	})
	t.Run("blackhole cuts old connections and stalls new ones", func(t *testing.T) {
		old := connect(t)
		if err := roundTrip(old, "before"); err != nil {
			t.Fatal(err)
		}
		p.SetMode(modeBlackhole)
		if err := roundTrip(old, "after"); err == nil {
			t.Error("a connection survived the blackhole")
		}
		c := connect(t)
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		c.Write([]byte("x"))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a blackholed connection got an answer")
		}
		p.SetMode(modePass)
		if err := roundTrip(connect(t), "healed"); err != nil {
			t.Errorf("after healing: %v", err)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		p.SetMode(modeRefuse)
		// The reset may even reach the dialler before Dial returns.
		if c, err := net.Dial("tcp", p.Addr()); err == nil {
			if err := roundTrip(c, "x"); err == nil {
				t.Error("a refused connection got an answer")
			}
			c.Close()
		}
		p.SetMode(modePass)
		if err := roundTrip(connect(t), "healed"); err != nil {
			t.Errorf("after healing: %v", err)
		}
	})
}

// TestCheckEphemeralsFindsLeftovers feeds the ephemeral check a clean
// history and broken ones: the check must be able to fail.
func TestCheckEphemeralsFindsLeftovers(t *testing.T) {
	const sid = 100
	a, b := ephRoot+"/h0-0-0", ephRoot+"/h0-0-1"
	ev := func(z uint64, typ colonyv1.EventType, p string) *colonyv1.Event {
		return &colonyv1.Event{Zxid: z, Type: typ, Path: p, Stat: &colonyv1.Stat{Czxid: z, EphemeralOwner: sid}}
	}
	created, deleted := colonyv1.EventType_EVENT_TYPE_CREATED, colonyv1.EventType_EVENT_TYPE_DELETED
	session := ephSession{ID: sid, End: "closed", CloseZxid: 131, Ephemerals: []ephNode{{Path: a, Czxid: 101}, {Path: b, Czxid: 105}}}
	stream := func(evs ...*colonyv1.Event) [][]watchSegment {
		return [][]watchSegment{{{Start: 90, Events: evs}}}
	}
	clean := stream(ev(101, created, a), ev(105, created, b), ev(130, deleted, a), ev(130, deleted, b))
	list := func(z uint64, open bool, n int32) ephObservation {
		o := ephObservation{Kind: "sessions", Zxid: z, Node: "n1", Lin: true, Sessions: map[uint64]int32{}}
		if open {
			o.Sessions[sid] = n
		}
		return o
	}
	children := func(z uint64, names ...string) ephObservation {
		return ephObservation{Kind: "children", Zxid: z, Node: "n2", Names: names}
	}
	get := func(z uint64, p string) ephObservation {
		return ephObservation{Kind: "get", Zxid: z, Node: "n3", Path: p, Exists: true, Owner: sid}
	}
	cleanObs := []ephObservation{
		list(99, false, 0), list(102, true, 1), list(106, true, 2), list(129, true, 2), list(130, false, 0),
		children(104, "h0-0-0"), children(129, "h0-0-0", "h0-0-1"), children(130), get(129, b),
		{Kind: "children", Zxid: 140, Node: "n1", Lin: true, Final: true},
	}
	tests := []struct {
		name    string
		streams [][]watchSegment
		obs     []ephObservation
		want    string // a failure must mention this; empty: no failure
	}{
		{"clean", clean, cleanObs, ""},
		{"deleted in two entries", stream(ev(101, created, a), ev(105, created, b), ev(120, deleted, a), ev(130, deleted, b)), cleanObs, "different entries"},
		{"deleted after the close was acknowledged", stream(ev(101, created, a), ev(105, created, b), ev(135, deleted, a), ev(135, deleted, b)), nil, "after its Close was acknowledged"},
		{"listed after the end", clean, append(slices.Clone(cleanObs), children(133, "h0-0-1")), "which ended at zxid 130"},
		{"read after the end", clean, append(slices.Clone(cleanObs), get(130, a)), "exists, but the session ended"},
		{"session open after its ephemerals went", clean, append(slices.Clone(cleanObs), list(131, true, 0)), "is open in the"},
		{"session gone before its ephemerals", clean, append(slices.Clone(cleanObs), list(120, false, 0)), "is not open in the"},
		{"ephemeral gone before its session", clean, append(slices.Clone(cleanObs), children(110, "h0-0-1")), "does not list"},
		{"wrong ephemeral count", clean, append(slices.Clone(cleanObs), list(110, true, 1)), "has 1 ephemerals"},
		{"created after the end", stream(ev(101, created, a), ev(105, created, b), ev(130, deleted, a), ev(130, deleted, b), ev(132, created, ephRoot+"/h0-0-2")), nil, "did not create"},
		{"left over at the end", clean, append(slices.Clone(cleanObs), ephObservation{Kind: "children", Zxid: 141, Node: "n1", Lin: true, Final: true, Names: []string{"h0-0-1"}}), "ended at zxid 130"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, _ := checkEphemerals([]ephSession{session}, tt.streams, tt.obs)
			if tt.want == "" {
				if len(errs) != 0 {
					t.Errorf("clean history failed: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("want a failure mentioning %q, got %v", tt.want, errs)
			}
		})
	}
	// A session list that lacks the session before its TTL ran out after
	// its last acknowledged keep-alive: expired early.
	acked := time.Now()
	early := session
	early.TTL, early.LastAck = 2*time.Second, acked
	early.CloseZxid = 0
	gone := list(131, false, 0)
	gone.At = acked.Add(1500 * time.Millisecond)
	if errs, _ := checkEphemerals([]ephSession{early}, clean, append(slices.Clone(cleanObs), gone)); !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "expired early") }) {
		t.Errorf("an early expiry went unnoticed: %v", errs)
	}
	gone.At = acked.Add(2500 * time.Millisecond)
	if errs, _ := checkEphemerals([]ephSession{early}, clean, append(slices.Clone(cleanObs), gone)); len(errs) != 0 {
		t.Errorf("an expiry after the TTL failed: %v", errs)
	}
	early.CloseCalled = acked.Add(time.Second)
	gone.At = acked.Add(1500 * time.Millisecond)
	if errs, _ := checkEphemerals([]ephSession{early}, clean, append(slices.Clone(cleanObs), gone)); len(errs) != 0 {
		t.Errorf("a session gone after its Close was called failed: %v", errs)
	}

	// A create of the session's that lands after its end, on a path the
	// workload asked for.
	late := session
	late.Ephemerals = append(slices.Clone(session.Ephemerals), ephNode{Path: ephRoot + "/h0-0-2"})
	errs, _ := checkEphemerals([]ephSession{late}, stream(ev(101, created, a), ev(105, created, b), ev(130, deleted, a), ev(130, deleted, b), ev(132, created, ephRoot+"/h0-0-2")), nil)
	if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, "after its session 100 ended") }) {
		t.Errorf("a create after the session's end went unnoticed: %v", errs)
	}
}

// TestCheckSidecarsFindsRegressions feeds the sidecar checks histories and
// states with known answers.
func TestCheckSidecarsFindsRegressions(t *testing.T) {
	up := func(inc int, gen uint64, st breaker.State, mode string) sidecarUpdate {
		return sidecarUpdate{Incarnation: inc, Callee: rbCallee, State: st, Generation: gen, Mode: mode}
	}
	committed := map[string]map[uint64]breaker.State{rbCallee: {1: breaker.Open, 2: breaker.Closed, 3: breaker.Open}}
	history := []struct {
		name    string
		updates []sidecarUpdate
		want    string
	}{
		{"clean", []sidecarUpdate{up(1, 1, breaker.Open, "coordinator"), up(1, 2, breaker.Closed, "fail-closed"), up(1, 3, breaker.Open, "coordinator"), up(2, 2, breaker.Closed, "coordinator")}, ""},
		{"generation goes back", []sidecarUpdate{up(1, 3, breaker.Open, "coordinator"), up(1, 2, breaker.Closed, "coordinator")}, "went back"},
		{"generation goes back in a degraded mode", []sidecarUpdate{up(1, 3, breaker.Open, "coordinator"), up(1, 1, breaker.Open, "last-known")}, "went back"},
		{"never committed", []sidecarUpdate{up(1, 4, breaker.Open, "coordinator")}, "never committed"},
		{"wrong state", []sidecarUpdate{up(1, 2, breaker.Open, "coordinator")}, "committed as"},
	}
	for _, tt := range history {
		t.Run(tt.name, func(t *testing.T) {
			errs := checkSidecarHistory("sc1", tt.updates, committed)
			if tt.want == "" {
				if len(errs) != 0 {
					t.Errorf("clean history failed: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("want a failure mentioning %q, got %v", tt.want, errs)
			}
		})
	}

	latest := map[string]breaker.PairRecord{rbCallee: {Callee: rbCallee, Record: breaker.Record{State: breaker.Open, Generation: 3}}}
	status := func(mode string, degraded bool, st string, gen uint64, source string) *colonyv1.SidecarStatusResponse {
		return &colonyv1.SidecarStatusResponse{Mode: mode, Degraded: degraded, Pairs: []*colonyv1.PairStatus{{Callee: rbCallee, State: st, Generation: gen, Source: source}}}
	}
	watched := map[string]sidecarUpdate{rbCallee: up(1, 3, breaker.Open, "coordinator")}
	final := []struct {
		name    string
		st      *colonyv1.SidecarStatusResponse
		watched map[string]sidecarUpdate
		want    string
	}{
		{"converged", status("coordinator", false, "OPEN", 3, "coordinator"), watched, ""},
		{"stale generation", status("coordinator", false, "CLOSED", 2, "coordinator"), watched, "Status enforces CLOSED generation 2"},
		{"degraded", status("last-known", true, "OPEN", 3, "last-known"), watched, "in mode"},
		{"watch behind", status("coordinator", false, "OPEN", 3, "coordinator"), map[string]sidecarUpdate{rbCallee: up(1, 2, breaker.Closed, "coordinator")}, "WatchBreakers last gave"},
		{"pair missing", &colonyv1.SidecarStatusResponse{Mode: "coordinator"}, watched, "no pair in Status"},
	}
	for _, tt := range final {
		t.Run(tt.name, func(t *testing.T) {
			errs := checkSidecarConverged(tt.st, tt.watched, latest)
			if tt.want == "" {
				if len(errs) != 0 {
					t.Errorf("a converged sidecar failed: %v", errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("want a failure mentioning %q, got %v", tt.want, errs)
			}
		})
	}
}

// TestNemesisOverlapDraws: overlap draws a second fault (never a solo one)
// only when it is on, and a seed without overlap keeps its schedule.
func TestNemesisOverlapDraws(t *testing.T) {
	faults := []faultKind{faultKill, faultMembership, faultPartition}
	draw := func(overlap float64) (firsts []faultKind, pairs int) {
		nm := newNemesis(nil, 42, faults, newEventLog(time.Now()))
		nm.overlap = overlap
		for range 200 {
			f := nm.faults[nm.rng.IntN(len(nm.faults))]
			firsts = append(firsts, f)
			if g, ok := nm.second(f); ok {
				pairs++
				if slices.Contains(soloFaults, f) || slices.Contains(soloFaults, g) {
					t.Fatalf("%s overlapped with %s: a solo fault", f, g)
				}
			}
		}
		return firsts, pairs
	}
	off, pairs := draw(0)
	if pairs != 0 {
		t.Errorf("overlap off drew %d pairs", pairs)
	}
	fresh := newNemesis(nil, 42, faults, newEventLog(time.Now()))
	for i, f := range off {
		if g := fresh.faults[fresh.rng.IntN(len(fresh.faults))]; g != f {
			t.Fatalf("round %d: %s without overlap, %s from the same seed", i, f, g)
		}
	}
	if _, pairs := draw(1); pairs < 100 {
		t.Errorf("overlap 1 drew only %d pairs in 200 rounds", pairs)
	}
}

// A stream that went silent is put beside the faults on its node: a paused
// node explains it, a fault on another node (or on "n21") does not.
func TestExplainSilences(t *testing.T) {
	start := time.Now()
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	w := &watchRecorder{name: "eph1", silences: []silentStream{
		{Node: "n2", At: at(20), For: 3 * time.Second},
		{Node: "n3", At: at(40), For: 3 * time.Second},
	}}
	timeline := []timelineEvent{
		{Start: 16 * time.Second, End: 19 * time.Second, Kind: "pause", What: "n2 stopped (SIGSTOP) for 3s"},
		{Start: 37 * time.Second, End: 40 * time.Second, Kind: "kill", What: "n21 killed"},
		{Start: 37 * time.Second, End: 40 * time.Second, Kind: "isolate", What: "follower n1 cut off from its peers"},
	}
	got := explainSilences([]*watchRecorder{w}, start, timeline)
	if len(got) != 2 {
		t.Fatalf("got %d lines, want 2: %q", len(got), got)
	}
	if !strings.Contains(got[0], "eph1 on n2") || !strings.Contains(got[0], "pause") || strings.Contains(got[0], "UNEXPLAINED") {
		t.Errorf("silence on a paused node: %q", got[0])
	}
	if !strings.Contains(got[1], "UNEXPLAINED") {
		t.Errorf("silence on n3 with faults only on n21 and n1: %q", got[1])
	}
}
