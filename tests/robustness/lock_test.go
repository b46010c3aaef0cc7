//go:build unix

package robustness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
)

// lockResource is the znode the lock holders write to, each write guarded
// by the holder's lock node (recipe.Grant.Multi).
const lockResource = "/rb-lock/resource"

// lockWorkload runs contenders for one recipe.Mutex. Each holder writes its
// token to lockResource with a guarded multi. Checks: tokens are unique and
// increase with acquisition order; the guarded writes that committed, in
// zxid order, carry non-decreasing tokens (a holder that lost the lock never
// writes after the next holder did), so there were never two holders with
// valid tokens.
type lockWorkload struct {
	eps  []string
	tls  *tls.Config // the clients' TLS; nil: plaintext
	seed uint64

	mu     sync.Mutex
	grants []lockGrant
	writes []guardedWrite
	errs   []string
}

type lockGrant struct {
	Contender  int
	Token      recipe.Token
	Call, Done time.Time // Lock called, Lock returned
}

type guardedWrite struct {
	Contender int
	Token     recipe.Token
	Zxid      uint64
}

func newLockWorkload(eps []string, tlsCfg *tls.Config, seed uint64) *lockWorkload {
	return &lockWorkload{eps: eps, tls: tlsCfg, seed: seed}
}

func (w *lockWorkload) close() {}

func (w *lockWorkload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.contender(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *lockWorkload) contender(ctx context.Context, i int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(100+i)))
	cl, err := client.New(client.Config{Endpoints: w.eps, TLS: w.tls, RequestTimeout: 1500 * time.Millisecond, DialTimeout: time.Second})
	if err != nil {
		w.record("contender %d: %v", i, err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := cl.OpenSession(octx, 3*time.Second, fmt.Sprintf("rb-lock-%d", i))
		cancel()
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		w.holdLoop(ctx, cl, s, i, rng)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Close(cctx)
		cancel()
	}
}

// holdLoop locks, writes and unlocks with one session until it is lost or
// ctx ends.
func (w *lockWorkload) holdLoop(ctx context.Context, cl *client.Client, s *client.Session, i int, rng *rand.Rand) {
	m, err := recipe.NewMutex(cl, s, "rb")
	if err != nil {
		w.record("contender %d: NewMutex: %v", i, err)
		return
	}
	for ctx.Err() == nil && s.Err() == nil {
		call := time.Now()
		lctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		g, err := m.Lock(lctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || s.Err() != nil {
				return
			}
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.grants = append(w.grants, lockGrant{Contender: i, Token: g.Token(), Call: call, Done: time.Now()})
		w.mu.Unlock()
		for range 1 + rng.IntN(3) {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := g.Multi(wctx, client.SetOp(lockResource, []byte(g.Token().String()), client.AnyVersion))
			cancel()
			if err == nil {
				res := resp.GetResults()
				w.mu.Lock()
				w.writes = append(w.writes, guardedWrite{Contender: i, Token: g.Token(), Zxid: res[len(res)-1].GetSet().GetStat().GetMzxid()})
				w.mu.Unlock()
			} else if errors.Is(err, recipe.ErrNotHeld) {
				break
			}
			sleepCtx(ctx, time.Duration(10+rng.IntN(60))*time.Millisecond)
		}
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.Unlock(uctx)
		cancel()
		sleepCtx(ctx, time.Duration(rng.IntN(30))*time.Millisecond)
	}
}

func (w *lockWorkload) record(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

func (w *lockWorkload) check(r *run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		r.fail("locks: %s", e)
	}
	seen := map[recipe.Token]int{}
	for _, g := range w.grants {
		if c, ok := seen[g.Token]; ok {
			r.fail("locks: token %v granted twice (contenders %d and %d)", g.Token, c, g.Contender)
		}
		seen[g.Token] = g.Contender
	}
	// A grant that returned before another's Lock was called has the lower
	// token.
	grants := append([]lockGrant(nil), w.grants...)
	sort.Slice(grants, func(i, j int) bool { return grants[i].Done.Before(grants[j].Done) })
	for i, a := range grants {
		for _, b := range grants[i+1:] {
			if a.Done.Before(b.Call) && a.Token >= b.Token {
				r.fail("locks: contender %d got token %v after contender %d had got token %v", b.Contender, b.Token, a.Contender, a.Token)
			}
		}
	}
	writes := append([]guardedWrite(nil), w.writes...)
	sort.Slice(writes, func(i, j int) bool { return writes[i].Zxid < writes[j].Zxid })
	for i := 1; i < len(writes); i++ {
		if writes[i].Token < writes[i-1].Token {
			r.fail("locks: guarded write with token %v (contender %d) committed at zxid %d, after a write with the newer token %v (contender %d) at zxid %d: two holders at once",
				writes[i].Token, writes[i].Contender, writes[i].Zxid, writes[i-1].Token, writes[i-1].Contender, writes[i-1].Zxid)
		}
	}
	r.t.Logf("locks: %d grants, %d guarded writes", len(w.grants), len(w.writes))
}
