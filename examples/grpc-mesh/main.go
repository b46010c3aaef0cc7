// Command grpc-mesh is a small demo of Colony with proxyless gRPC: a callee
// that can be made to fail, and callers that call it through xds:///<callee>
// with their sidecar's xDS server and Colony's client library (guard),
// printing what happens to their calls every second.
//
//	go run ./examples/grpc-mesh callee --listen 127.0.0.1:9001 --admin 127.0.0.1:9091
//	curl -X POST 127.0.0.1:9091/fail    # every call fails with UNAVAILABLE
//	curl -X POST 127.0.0.1:9091/heal
//
//	go run ./examples/grpc-mesh caller --sidecar 127.0.0.1:7511 --service checkout --instance c1 --target payments
//
// See the README's "Watch all callers trip together" for the whole scenario;
// main_test.go runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/colonymesh/colony/sidecar/guard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpc-mesh callee|caller [flags]")
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

// health is the callee's service: the standard gRPC health check, failing on
// demand.
type health struct {
	healthpb.UnimplementedHealthServer
	failing atomic.Bool
	calls   atomic.Int64 // calls that reached the service
}

func (h *health) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	if h.failing.Load() {
		return nil, status.Error(codes.Unavailable, "the callee is failing (demo)")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// admin serves POST /fail and POST /heal. It listens apart from the gRPC
// service, so that switching the callee is never itself a call the breaker
// counts.
func (h *health) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) { h.failing.Store(true); fmt.Fprintln(w, "failing") })
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, _ *http.Request) { h.failing.Store(false); fmt.Fprintln(w, "healthy") })
	return mux
}

func calleeCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("callee", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9001", "gRPC address (register it with the sidecar's --address)")
	admin := fs.String("admin", "127.0.0.1:9091", "HTTP address of POST /fail and POST /heal")
	fs.Parse(args)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	adm, err := net.Listen("tcp", *admin)
	if err != nil {
		lis.Close()
		return err
	}
	logger.Printf("callee: gRPC on %s, admin on %s", lis.Addr(), adm.Addr())
	return runCallee(ctx, &health{}, lis, adm, time.Second, logger)
}

// runCallee serves h over gRPC on lis and its switch on adm until ctx ends,
// printing the calls it got every report interval.
func runCallee(ctx context.Context, h *health, lis, adm net.Listener, report time.Duration, logger *log.Logger) error {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, h)
	hs := &http.Server{Handler: h.admin()}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gs.Serve(lis); err != nil {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := hs.Serve(adm); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	})
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
			n := h.calls.Load()
			logger.Printf("callee: %d calls in the last %v (failing=%v)", n-last, report, h.failing.Load())
			last = n
		}
	}
	// Stop taking calls and let those in flight finish, then wait for both
	// Serve loops.
	gs.GracefulStop()
	hs.Close()
	wg.Wait()
	return err
}

// outcome is what happened to one call.
type outcome int

const (
	ok       outcome = iota
	failed           // the callee failed it, or could not be reached
	rejected         // the breaker rejected it: the callee never saw it
)

func (o outcome) String() string { return [...]string{"ok", "failed", "rejected"}[o] }

// callerConfig configures a caller; the fields are the caller's flags.
type callerConfig struct {
	// Sidecar is the local sidecar's --listen address: its xDS server, for
	// the gRPC channel, and its API, for the guard.
	Sidecar string
	// Service and Instance are this caller's, as its sidecar registered them
	// (--service, --instance): the xDS node, and the guard's instance for
	// probe permits.
	Service, Instance string
	// Target is the callee service: xds:///<Target>.
	Target string
	// Logger is the guard's; nil means slog.Default().
	Logger *slog.Logger
}

// caller calls the callee's health check over proxyless gRPC: the channel
// takes its listener, routes, clusters and endpoints from the sidecar's xDS
// server, and the guard's interceptor checks every call against the breaker
// of this service -> Target and reports its outcome to the sidecar.
type caller struct {
	cfg    callerConfig
	guard  *guard.Guard
	cc     *grpc.ClientConn
	health healthpb.HealthClient
}

func newCaller(cfg callerConfig) (*caller, error) {
	g, err := guard.New(guard.Config{Sidecar: cfg.Sidecar, Instance: cfg.Instance, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	// What a process would usually read from GRPC_XDS_BOOTSTRAP: the sidecar
	// is the xDS server, and the node names this instance; its metadata
	// says the guard reports this process's calls, so the sidecar does not
	// count gRPC's load reports of them again (guard.XDSNodeMetadataKey).
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q, "metadata": {"colony.guard": true}}}`, cfg.Sidecar, cfg.Service+"/"+cfg.Instance, cfg.Service)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		g.Close()
		return nil, err
	}
	cc, err := grpc.NewClient("xds:///"+cfg.Target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb),
		grpc.WithUnaryInterceptor(g.UnaryClientInterceptor(cfg.Target)))
	if err != nil {
		g.Close()
		return nil, err
	}
	return &caller{cfg: cfg, guard: g, cc: cc, health: healthpb.NewHealthClient(cc)}, nil
}

// Ready is closed once the guard enforces the sidecar's current breakers.
func (c *caller) Ready() <-chan struct{} { return c.guard.Ready() }

// Close closes the channel, then the guard, which sends the outcomes of the
// last calls to the sidecar.
func (c *caller) Close() error {
	c.cc.Close()
	return c.guard.Close()
}

// call makes one call and says what happened to it.
func (c *caller) call(ctx context.Context) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	return classify(err), err
}

// classify sorts a call's result. Both rejections are UNAVAILABLE without a
// network round trip: the guard's names the breaker ("colony: breaker
// checkout->payments is OPEN ..."), and the route's fault abort, which the
// sidecar's xDS server sets for an OPEN breaker, says "fault injection".
func classify(err error) outcome {
	msg := status.Convert(err).Message()
	switch {
	case err == nil:
		return ok
	case strings.Contains(msg, "colony: breaker"), strings.Contains(msg, "fault injection"):
		return rejected
	}
	return failed
}

func callerCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("caller", flag.ExitOnError)
	var cfg callerConfig
	fs.StringVar(&cfg.Sidecar, "sidecar", "127.0.0.1:7500", "the local sidecar's --listen address")
	fs.StringVar(&cfg.Service, "service", "checkout", "this caller's service (the sidecar's --service)")
	fs.StringVar(&cfg.Instance, "instance", "c1", "this caller's instance (the sidecar's --instance)")
	fs.StringVar(&cfg.Target, "target", "payments", "the callee service")
	every := fs.Duration("every", 20*time.Millisecond, "time between calls")
	fs.Parse(args)
	c, err := newCaller(cfg)
	if err != nil {
		return err
	}
	// Close last: the guard sends the outcomes of the last calls on Close.
	defer c.Close()
	runCaller(ctx, c, *every, time.Second, logger)
	return nil
}

// runCaller calls the callee every interval until ctx ends, printing the
// outcomes of each report period and the last error.
func runCaller(ctx context.Context, c *caller, every, report time.Duration, logger *log.Logger) {
	var counts [3]int
	var lastErr string
	tick := time.NewTicker(report)
	defer tick.Stop()
	call := time.NewTicker(every)
	defer call.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			logger.Printf("%s/%s -> %s: %4d ok %4d failed %4d rejected by the breaker  %s",
				c.cfg.Service, c.cfg.Instance, c.cfg.Target, counts[ok], counts[failed], counts[rejected], lastErr)
			counts, lastErr = [3]int{}, ""
		case <-call.C:
			o, err := c.call(ctx)
			counts[o]++
			if err != nil {
				lastErr = status.Convert(err).Message()
			}
		}
	}
}
