// Command gobreaker is a program that already uses sony/gobreaker's
// DistributedCircuitBreaker, pointed at Colony: its shared state lives in the
// coordinator's znode tree through adapters/gobreakerstore. Every process that
// builds a breaker with the same --name on the same coordinator shares one
// breaker: failures seen by one process open it for all of them.
//
// It calls --url every --every and prints, each second, what happened to its
// calls and the breaker's state.
//
//	go run ./examples/http-envoy callee --listen 127.0.0.1:9201 --admin 127.0.0.1:9291   # a target that can fail
//	go run ./examples/gobreaker --id p1 --url http://127.0.0.1:9201/
//	go run ./examples/gobreaker --id p2 --url http://127.0.0.1:9201/ --every 1s
//	curl -X POST 127.0.0.1:9291/fail
//
// The bridge puts the coordinator on the path of every call (gobreaker reads
// the state, takes a distributed lock, runs the call and writes the state
// back): it is for moving a gobreaker deployment onto Colony unchanged, not
// for speed. Colony's own shared breakers (see examples/http-envoy) keep the
// coordinator off the request path. adapters/gobreakerstore/doc.go has the
// cost model.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/colonymesh/colony/adapters/gobreakerstore"
	"github.com/colonymesh/colony/coordinator/client"
)

// config is the breaker and the call.
type config struct {
	Name        string        // the breaker's name: the same in every process that shares it
	URL         string        // what each call GETs; 5xx and transport errors are failures
	Failures    uint32        // consecutive failures, fleet-wide, that open the breaker
	OpenTimeout time.Duration // how long it stays open before half-open
	MaxRequests uint32        // half-open: calls let through, and successes that close it
}

// app is one process's breaker and HTTP client.
type app struct {
	cfg  config
	cb   *gobreaker.DistributedCircuitBreaker[int]
	http *http.Client
}

// newApp builds the breaker on store, exactly as a gobreaker program does
// with any other SharedDataStore.
func newApp(store gobreaker.SharedDataStore, cfg config, logger *log.Logger) (*app, error) {
	cb, err := gobreaker.NewDistributedCircuitBreaker[int](store, gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: cfg.MaxRequests,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		// Called only in the process whose call made the transition; the
		// others adopt the shared state silently.
		OnStateChange: func(name string, from, to gobreaker.State) {
			logger.Printf("breaker %s: %s -> %s (this process's call changed it)", name, from, to)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("gobreaker: %w", err)
	}
	return &app{cfg: cfg, cb: cb, http: &http.Client{Timeout: time.Second}}, nil
}

// outcome is what happened to one call.
type outcome int

const (
	ok       outcome = iota
	failed           // the target answered 5xx or could not be reached
	rejected         // the breaker rejected it: the target never saw it
	noStore          // the shared state could not be read or written (coordinator unreachable)
)

func (o outcome) String() string { return [...]string{"ok", "failed", "rejected", "no store"}[o] }

// call makes one call through the breaker.
func (a *app) call() (outcome, error) {
	var callErr error // the call's own error, if it ran
	ran := false
	_, err := a.cb.Execute(func() (int, error) {
		ran = true
		resp, err := a.http.Get(a.cfg.URL)
		if err != nil {
			callErr = err
			return 0, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			callErr = fmt.Errorf("%s: %s", a.cfg.URL, resp.Status)
		}
		return resp.StatusCode, callErr
	})
	switch {
	case err == nil:
		return ok, nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return rejected, err
	case ran && callErr != nil:
		return failed, err
	}
	// The store failed: before the call (gobreaker then runs none), or
	// after it, when the outcome could not be written back.
	return noStore, err
}

// run calls every interval until ctx ends, printing the outcomes and the
// shared state every report interval.
func (a *app) run(ctx context.Context, id string, every, report time.Duration, logger *log.Logger) {
	var counts [4]int
	var last string
	tick := time.NewTicker(report)
	defer tick.Stop()
	call := time.NewTicker(every)
	defer call.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// State() takes the lock and writes the state back too: one
			// more round of coordinator calls.
			st, err := a.cb.State()
			state := st.String()
			if err != nil {
				state = "unknown (" + err.Error() + ")"
			}
			logger.Printf("%s: %-9s %3d ok %3d failed %3d rejected %3d no store  %s", id, state,
				counts[ok], counts[failed], counts[rejected], counts[noStore], last)
			counts, last = [4]int{}, ""
		case <-call.C:
			o, err := a.call()
			counts[o]++
			if err != nil {
				last = err.Error()
			}
		}
	}
}

func main() {
	var cfg config
	id := flag.String("id", fmt.Sprintf("p%d", os.Getpid()), "this process's name, for the logs and its coordinator session")
	coordinators := flag.String("coordinators", client.DefaultEndpoint, "coordinator gRPC addresses, comma-separated")
	flag.StringVar(&cfg.Name, "name", "catalog", "the breaker's name (shared by every process that uses it)")
	flag.StringVar(&cfg.URL, "url", "http://127.0.0.1:9201/", "what each call GETs")
	every := flag.Duration("every", 100*time.Millisecond, "time between calls")
	failures := flag.Uint("failures", 5, "consecutive failures that open the breaker")
	flag.DurationVar(&cfg.OpenTimeout, "open-timeout", 10*time.Second, "how long the breaker stays open")
	maxRequests := flag.Uint("max-requests", 3, "half-open: calls let through, and successes that close it")
	flag.Parse()
	cfg.Failures, cfg.MaxRequests = uint32(*failures), uint32(*maxRequests)
	logger := log.New(os.Stderr, "", log.LstdFlags)
	if err := run(*id, strings.Split(*coordinators, ","), cfg, *every, logger); err != nil {
		logger.Fatal(err)
	}
}

func run(id string, coordinators []string, cfg config, every time.Duration, logger *log.Logger) error {
	// SIGINT or SIGTERM ends the calls; then the store's session is closed
	// (releasing its lock at once, rather than after the session's TTL) and
	// the client.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.New(client.Config{Endpoints: coordinators})
	if err != nil {
		return err
	}
	defer c.Close()
	store, err := gobreakerstore.New(c, gobreakerstore.Config{SessionName: id + "/gobreaker"})
	if err != nil {
		return err
	}
	defer store.Close()
	a, err := newApp(store, cfg, logger)
	if err != nil {
		return err
	}
	logger.Printf("%s: calling %s every %v through breaker %q (shared in the coordinator at %s)", id, cfg.URL, every, cfg.Name, strings.Join(coordinators, ","))
	a.run(ctx, id, every, time.Second, logger)
	return nil
}
