//go:build unix

package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
)

// sessionTTL is the TTL the session workload asks for: short, so pauses and
// partitions of a few seconds outlast it.
const sessionTTL = 2 * time.Second

// sessionWorkload keeps a few sessions, each owning an ephemeral node, alive
// with the Go client through the client proxies. When a session ends it
// records how: a session the coordinator expired (keep-alive answered
// NotFound) must not have expired before TTL after the send time of its last
// acknowledged keep-alive, and its ephemeral node must be gone.
type sessionWorkload struct {
	eps    []string
	rng    *rand.Rand
	events *eventLog

	mu         sync.Mutex
	opened     int
	expired    int
	lost       int // given up by the client (no keep-alive acknowledged in TTL)
	violations []string
	errs       []string
}

func newSessionWorkload(eps []string, seed uint64, events *eventLog) *sessionWorkload {
	return &sessionWorkload{eps: eps, rng: rand.New(rand.NewPCG(seed, 3)), events: events}
}

func (w *sessionWorkload) close() {}

// run keeps two session holders going until ctx ends; checks may use
// watchCtx, which ends later.
func (w *sessionWorkload) run(ctx, _ context.Context) {
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.holder(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *sessionWorkload) holder(ctx context.Context, i int) {
	cl, err := client.New(client.Config{Endpoints: w.eps, RequestTimeout: 1500 * time.Millisecond, DialTimeout: time.Second})
	if err != nil {
		w.record(&w.errs, "session holder %d: %v", i, err)
		return
	}
	defer cl.Close()
	for n := 0; ctx.Err() == nil; n++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := cl.OpenSession(octx, sessionTTL, fmt.Sprintf("rb-holder-%d", i))
		cancel()
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.opened++
		w.mu.Unlock()
		eph := fmt.Sprintf("/rb-eph/h%d-%d", i, n)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err = cl.Create(cctx, eph, []byte("x"), client.Ephemeral(s.ID()))
		cancel()
		if err != nil && !errors.Is(err, client.ErrNodeExists) {
			eph = "" // unknown whether it exists; not checked
		}
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.Close(cctx)
			cancel()
			return
		case <-s.Done():
		}
		w.ended(ctx, cl, s, eph)
	}
}

// ended checks a session that ended while the workload ran.
func (w *sessionWorkload) ended(ctx context.Context, cl *client.Client, s *client.Session, eph string) {
	now := time.Now()
	err := s.Err()
	since := now.Sub(s.LastAck())
	if status.Code(err) != codes.NotFound {
		w.mu.Lock()
		w.lost++
		w.mu.Unlock()
		w.events.note("session", "session %d lost by the client %v after its last acknowledged keep-alive: %v", s.ID(), since.Round(time.Millisecond), err)
		s.Close(ctx)
		return
	}
	w.mu.Lock()
	w.expired++
	w.mu.Unlock()
	w.events.note("session", "session %d expired; last acknowledged keep-alive sent %v earlier (TTL %v)", s.ID(), since.Round(time.Millisecond), s.TTL())
	if since < s.TTL() {
		w.record(&w.violations, "session %d was expired by the coordinator %v after the send time of its last acknowledged keep-alive, before its TTL %v", s.ID(), since, s.TTL())
	}
	if eph == "" {
		return
	}
	// Its ephemeral node goes with the expiry's entry, which may still be in
	// flight when a keep-alive is answered NotFound.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ectx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ok, _, err := cl.Exists(ectx, eph)
		cancel()
		if err == nil && !ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.record(&w.violations, "ephemeral %s of expired session %d still exists 10s after the expiry was reported", eph, s.ID())
}

func (w *sessionWorkload) record(list *[]string, format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*list = append(*list, fmt.Sprintf(format, args...))
}

func (w *sessionWorkload) check(r *run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		r.fail("sessions: %s", v)
	}
	for _, e := range w.errs {
		r.fail("sessions: %s", e)
	}
	r.t.Logf("sessions: %d opened, %d expired by the coordinator, %d given up by the client", w.opened, w.expired, w.lost)
}
