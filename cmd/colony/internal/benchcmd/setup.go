package benchcmd

// Setting up and cleaning up after a fleet run.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// by names the run in the audit trail of what it changes.
const by = "colony bench fleet"

// setup gives the trip callee a policy (the default: an empty overlay), so
// that reports may create breakers for it, as a callee outside the mesh
// needs; and deletes its pairs left OPEN by an earlier run kept with
// --keep, so that this run's trip is a change every sidecar sees.
func setup(ctx context.Context, c *client.Client, prefix string) error {
	trip := tripCallee(prefix)
	if _, err := c.ApplyPolicies(ctx, []*colonyv1.PolicySpec{{Callee: trip, Policy: []byte("{}")}}, by, false); err != nil {
		return fmt.Errorf("applying a policy for %s: %w", trip, err)
	}
	left, err := c.ListBreakers(ctx, "", trip)
	if err != nil {
		return fmt.Errorf("listing the breakers of %s: %w", trip, err)
	}
	for _, b := range left {
		_, err := c.DeleteBreaker(ctx, b.GetCaller(), trip, true, "a fleet benchmark starts", by)
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("deleting the breaker %s -> %s of an earlier run: %w", b.GetCaller(), trip, err)
		}
	}
	return nil
}

// cleanup deletes the breaker pairs, service directories and policy a
// fleet run created. The sessions are closed by then, so the directories
// are empty.
func cleanup(ctx context.Context, c *client.Client, prefix string, services int) error {
	type job struct{ caller, callee string }
	jobs := make(chan job)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	note := func(err error) {
		mu.Lock()
		if len(errs) < 5 {
			errs = append(errs, err)
		}
		mu.Unlock()
	}
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				_, err := c.DeleteBreaker(ctx, j.caller, j.callee, true, "fleet benchmark done", by)
				if err != nil && !errors.Is(err, client.ErrNotFound) {
					note(fmt.Errorf("breaker %s -> %s: %w", j.caller, j.callee, err))
				}
			}
		})
	}
	all, err := c.ListBreakers(ctx, "", "")
	if err != nil {
		note(fmt.Errorf("listing the breakers: %w", err))
	}
	for _, b := range all {
		if isSimulated(prefix, b.GetCaller()) {
			jobs <- job{b.GetCaller(), b.GetCallee()}
		}
	}
	close(jobs)
	wg.Wait()
	for i := range services {
		dir := contract.ServiceDir(serviceName(prefix, i))
		for {
			err := c.Delete(ctx, dir, client.AnyVersion)
			// A registration outlives a session that was lost rather than
			// closed, until the session expires.
			if errors.Is(err, client.ErrNotEmpty) && sleepCtx(ctx, 500*time.Millisecond) {
				continue
			}
			if err != nil && !errors.Is(err, client.ErrNoNode) {
				note(fmt.Errorf("%s: %w", dir, err))
			}
			break
		}
	}
	if err := c.DeletePolicy(ctx, tripCallee(prefix), by); err != nil && !errors.Is(err, client.ErrNotFound) {
		note(fmt.Errorf("policy %s: %w", tripCallee(prefix), err))
	}
	return errors.Join(errs...)
}

// isSimulated reports whether service is one of a run's with prefix.
func isSimulated(prefix, service string) bool {
	n, ok := strings.CutPrefix(service, prefix+"-")
	if !ok || len(n) < 4 {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}
