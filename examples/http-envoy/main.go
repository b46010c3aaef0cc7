// Command http-envoy is a demo service pair over HTTP, protected by Colony's
// shared breakers: a callee that can be made to fail, and a caller that calls
// it and prints what happens to its calls every second.
//
// The caller reaches the callee one of two ways:
//
//   - In-process (the default): through guard.RoundTripper, Colony's client
//     library. The guard follows the breakers of the local sidecar (--sidecar)
//     and rejects a call to an OPEN callee before it leaves the process; it
//     reports every call's outcome to the sidecar.
//   - Through Envoy (--via-envoy): to the egress listener of an Envoy whose
//     bootstrap is envoy.yaml beside this file. Envoy takes its listener,
//     routes, clusters and endpoints from the sidecar over ADS; the breaker
//     lives in the routes (a 503 with the x-colony-breaker header when OPEN)
//     and Envoy reports every call through its access logs. The caller then
//     uses a plain HTTP client, as an app in any language would: with the
//     guard as well, every call would be counted twice (once by the guard,
//     once by Envoy's access log).
//
// Run:
//
//	go run ./examples/http-envoy callee --listen 127.0.0.1:9201 --admin 127.0.0.1:9291
//	curl -X POST 127.0.0.1:9291/fail    # every request gets 503
//	curl -X POST 127.0.0.1:9291/heal
//
//	go run ./examples/http-envoy caller --sidecar 127.0.0.1:7521 --instance s1 --target catalog --addr 127.0.0.1:9201
//	go run ./examples/http-envoy caller --target catalog --via-envoy 127.0.0.1:15001
//
// README.md beside this file walks through the whole scenario.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/colonymesh/colony/sidecar/guard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: http-envoy callee|caller [flags]")
		os.Exit(2)
	}
	// SIGINT or SIGTERM cancels ctx; each command then stops what it started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", log.LstdFlags)
	var err error
	switch os.Args[1] {
	case "callee":
		err = calleeCmd(ctx, os.Args[2:], logger)
	case "caller":
		err = callerCmd(ctx, os.Args[2:], logger)
	default:
		err = fmt.Errorf("unknown command %q (want callee or caller)", os.Args[1])
	}
	if err != nil {
		logger.Fatal(err)
	}
}

// callee is the demo service: every request succeeds, or, once failing is
// set (POST /fail on the admin address), gets 503.
type callee struct {
	failing  atomic.Bool
	requests atomic.Int64 // requests that reached the service
}

func (c *callee) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.requests.Add(1)
	if c.failing.Load() {
		http.Error(w, "catalog is failing (demo: POST /heal on the admin address)", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "catalog: ok")
}

// admin serves POST /fail and POST /heal. It listens apart from the service,
// so that switching the callee is never itself a call the breaker counts.
func (c *callee) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) {
		c.failing.Store(true)
		fmt.Fprintln(w, "failing")
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, _ *http.Request) {
		c.failing.Store(false)
		fmt.Fprintln(w, "healthy")
	})
	return mux
}

func calleeCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("callee", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9201", "HTTP address of the service (register it with the sidecar's --address, --protocol http)")
	adminAddr := fs.String("admin", "127.0.0.1:9291", "HTTP address of POST /fail and POST /heal")
	fs.Parse(args)
	svc, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	adm, err := net.Listen("tcp", *adminAddr)
	if err != nil {
		svc.Close()
		return err
	}
	logger.Printf("callee: service on http://%s/, admin on %s (POST /fail, POST /heal)", svc.Addr(), adm.Addr())
	return runCallee(ctx, &callee{}, svc, adm, time.Second, logger)
}

// runCallee serves c on svc and its switch on adm until ctx ends, printing
// the requests it got every report interval.
func runCallee(ctx context.Context, c *callee, svc, adm net.Listener, report time.Duration, logger *log.Logger) error {
	servers := []*http.Server{{Handler: c}, {Handler: c.admin()}}
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, lis := range []net.Listener{svc, adm} {
		wg.Go(func() {
			if err := servers[i].Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	tick := time.NewTicker(report)
	defer tick.Stop()
	var last int64
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc: // a listener failed
			break loop
		case <-tick.C:
			n := c.requests.Load()
			logger.Printf("callee: %d requests in the last %v (failing=%v)", n-last, report, c.failing.Load())
			last = n
		}
	}
	// Stop taking requests, give those in flight a moment to finish, then
	// wait for both Serve loops.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	wg.Wait()
	return err
}

// outcome is what happened to one call.
type outcome int

const (
	ok       outcome = iota
	failed           // the callee answered 5xx, or could not be reached
	rejected         // the breaker rejected it: the callee never saw it
)

func (o outcome) String() string { return [...]string{"ok", "failed", "rejected"}[o] }

// callerConfig configures a caller.
type callerConfig struct {
	// Target is the callee service. It is the breaker's callee and the Host
	// header of every request, which is how Envoy's egress routes pick the
	// callee (a virtual host per callee, with domains "catalog" and
	// "catalog:*").
	Target string
	// Addr is the host:port requests are sent to: the callee itself, or
	// Envoy's egress listener when ViaEnvoy is set.
	Addr string
	// ViaEnvoy: Addr is Envoy's egress listener, which enforces the breaker
	// and reports outcomes; no guard then.
	ViaEnvoy bool
	// Sidecar and Instance are the local sidecar's --listen and --instance,
	// for the guard (without ViaEnvoy).
	Sidecar, Instance string
	// Timeout bounds each call.
	Timeout time.Duration
	Logger  *slog.Logger
}

// caller calls one callee over HTTP.
type caller struct {
	cfg   callerConfig
	guard *guard.Guard // nil via Envoy
	http  *http.Client
}

func newCaller(cfg callerConfig) (*caller, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	c := &caller{cfg: cfg, http: &http.Client{Transport: transport}}
	if !cfg.ViaEnvoy {
		g, err := guard.New(guard.Config{Sidecar: cfg.Sidecar, Instance: cfg.Instance, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		c.guard = g
		// The guard checks every request against the breaker of this
		// service -> Target and reports its outcome; a rejected request
		// fails with a *guard.RejectedError and never reaches the network.
		c.http.Transport = g.RoundTripper(cfg.Target, transport)
	}
	return c, nil
}

// Ready is closed once the caller enforces the sidecar's current breakers
// (at once via Envoy, which enforces them itself).
func (c *caller) Ready() <-chan struct{} {
	if c.guard == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return c.guard.Ready()
}

// Close sends the guard's last outcomes to the sidecar and closes the
// connections.
func (c *caller) Close() error {
	c.http.CloseIdleConnections()
	if c.guard != nil {
		return c.guard.Close()
	}
	return nil
}

// call makes one request and says what happened to it: nil error only for
// an ok call. The guard's rejection is a *guard.RejectedError (wrapped in a
// *url.Error); Envoy's names the breaker from its x-colony-breaker header.
func (c *caller) call(ctx context.Context) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.cfg.Addr+"/", nil)
	if err != nil {
		return failed, err
	}
	req.Host = c.cfg.Target
	resp, err := c.http.Do(req)
	if err != nil {
		return classify(nil, err), err
	}
	// Read the body so the connection is reused.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	o := classify(resp, nil)
	switch {
	case o == rejected:
		// Envoy's route aborted it; the header names the breaker, its
		// state and generation.
		return o, fmt.Errorf("rejected by Envoy: %s, breaker %s", resp.Status, resp.Header.Get(guard.BreakerHeader))
	case resp.StatusCode != http.StatusOK:
		return o, fmt.Errorf("%s: %s", resp.Status, firstLine(body))
	}
	return o, nil
}

// classify sorts a call's result. The guard's rejections are errors matching
// guard.ErrOpen; Envoy's are 503 responses carrying guard.BreakerHeader (the
// sidecar's routes put it on the replies of their fault abort).
func classify(resp *http.Response, err error) outcome {
	switch {
	case errors.Is(err, guard.ErrOpen):
		return rejected
	case resp == nil:
		return failed // not reached: refused, timed out
	case resp.Header.Get(guard.BreakerHeader) != "":
		return rejected
	case resp.StatusCode >= 500:
		return failed
	}
	return ok
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

func callerCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("caller", flag.ExitOnError)
	var cfg callerConfig
	fs.StringVar(&cfg.Sidecar, "sidecar", "127.0.0.1:7500", "the local sidecar's --listen address (for the guard)")
	fs.StringVar(&cfg.Instance, "instance", "s1", "this caller's instance id, the sidecar's --instance (the guard needs it for probe permits)")
	fs.StringVar(&cfg.Target, "target", "catalog", "the callee service (sent as the Host header)")
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:9201", "the callee's host:port (without --via-envoy)")
	viaEnvoy := fs.String("via-envoy", "", "send every call to this Envoy egress listener instead (the sidecar's --egress-addr, default 127.0.0.1:15001), with no guard")
	every := fs.Duration("every", 20*time.Millisecond, "time between calls")
	fs.Parse(args)
	if *viaEnvoy != "" {
		cfg.Addr, cfg.ViaEnvoy = *viaEnvoy, true
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := newCaller(cfg)
	if err != nil {
		return err
	}
	// Close last: the guard sends the outcomes of the last calls on Close.
	defer c.Close()
	how := "in-process breaker (guard), sidecar " + cfg.Sidecar
	if cfg.ViaEnvoy {
		how = "Envoy's egress listener (Envoy enforces the breaker)"
	}
	logger.Printf("caller: calling %s at http://%s/ through %s", cfg.Target, cfg.Addr, how)
	runCaller(ctx, c, *every, time.Second, logger)
	return nil
}

// runCaller calls the callee every interval until ctx ends, printing the
// outcomes of each report period and the last error.
func runCaller(ctx context.Context, c *caller, every, report time.Duration, logger *log.Logger) {
	var counts [3]int
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
			logger.Printf("-> %s: %4d ok %4d failed %4d rejected by the breaker  %s", c.cfg.Target, counts[ok], counts[failed], counts[rejected], last)
			counts, last = [3]int{}, ""
		case <-call.C:
			o, err := c.call(ctx)
			if ctx.Err() != nil {
				return // cancelled mid-call: not an outcome
			}
			counts[o]++
			if err != nil {
				last = err.Error()
			}
		}
	}
}
