package robustness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// newRun starts a run of scenario sc: its clock, event log and history.
// The caller then starts the cluster (r.c).
func newRun(t *testing.T, sc scenario) *run {
	start := time.Now()
	return &run{t: t, sc: sc, start: start, events: newEventLog(start), h: newHistory(start), files: map[string]string{}}
}

// workload owns a run's goroutines: the key-value clients and any other
// load run under ctx; the watches run under watchCtx, which outlives ctx so
// that they can catch up with the last writes before they are checked.
type workload struct {
	ctx, watchCtx context.Context
	// stopLoad ends the clients and every other goroutine under ctx.
	stopLoad    context.CancelFunc
	stopWatches context.CancelFunc
	wg          sync.WaitGroup
	clients     []*kvClient
	closers     []func()
	stopOnce    sync.Once
}

// startWorkload starts a watch through every node (waiting until each is
// registered, so that it sees every write of the load) and then the
// scenario's key-value clients. configure, if not nil, adjusts each client
// before it starts. Whatever happens, the goroutines end and the clients
// close when the test ends; stop does it sooner.
func (r *run) startWorkload(configure func(*kvClient)) *workload {
	t := r.t
	w := &workload{}
	w.ctx, w.stopLoad = context.WithCancel(context.Background())
	w.watchCtx, w.stopWatches = context.WithCancel(context.Background())
	t.Cleanup(w.stop)
	eps, tlsCfg := r.c.ClientEndpoints(), r.c.ClientTLS()
	for i := range r.c.Nodes {
		wr, err := newWatchRecorder(fmt.Sprintf("w%d", i), strings.TrimSuffix(keyPrefix, "/"), eps, tlsCfg, i)
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		w.closers = append(w.closers, wr.close)
		r.watchers = append(r.watchers, wr)
		w.goRun(func() { wr.run(w.watchCtx) })
	}
	for _, wr := range r.watchers {
		select {
		case <-wr.started:
		case <-time.After(20 * time.Second):
			t.Fatalf("watch %s was not registered within 20s", wr.name)
		}
	}
	for i := range r.sc.Clients {
		c, err := newKVClient(i, eps, tlsCfg, r.sc.Seed, r.h, r.keys)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		if configure != nil {
			configure(c)
		}
		w.closers = append(w.closers, c.close)
		w.clients = append(w.clients, c)
		w.goRun(func() { c.run(w.ctx) })
	}
	return w
}

// goRun runs f in a goroutine the workload waits for.
func (w *workload) goRun(f func()) {
	w.wg.Add(1)
	go func() { defer w.wg.Done(); f() }()
}

// stop ends the load and the watches, waits for every goroutine and closes
// the clients. It may be called more than once.
func (w *workload) stop() {
	w.stopOnce.Do(func() {
		w.stopLoad()
		w.stopWatches()
		w.wg.Wait()
		for _, c := range w.closers {
			c()
		}
	})
}

// finishKV ends the load, then checks the cluster converged and reads every
// key through every node, lets the watches catch up, runs finish (the other
// workloads' last steps, if any), stops everything and checks what the
// key-value clients and the watches saw: no unexpected error, a
// linearizable history, complete and ordered watches.
func (r *run) finishKV(w *workload, finish func()) {
	w.stopLoad()
	r.events.note("workload", "stopped")
	r.checkConvergence()
	r.finalReads()
	r.waitWatchesCatchUp()
	if finish != nil {
		finish()
	}
	w.stop()
	for _, c := range w.clients {
		for _, u := range c.unexpected {
			r.fail("client %d: unexpected error: %s", c.id, u)
		}
	}
	r.checkLinearizable()
	r.checkWatches()
}
