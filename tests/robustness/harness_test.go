//go:build unix

package robustness

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
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
