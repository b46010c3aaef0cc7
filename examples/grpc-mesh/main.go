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
// See the README's "Watch all callers trip together" for the whole scenario.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "callee":
		err = callee(ctx, os.Args[2:])
	case "caller":
		err = caller(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want callee or caller)", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// health is the callee's service: the standard gRPC health check, failing on
// demand.
type health struct {
	healthpb.UnimplementedHealthServer
	failing atomic.Bool
	calls   atomic.Int64
}

func (h *health) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	if h.failing.Load() {
		return nil, status.Error(codes.Unavailable, "the callee is failing (demo)")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func callee(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("callee", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9001", "gRPC address (register it with the sidecar's --address)")
	admin := fs.String("admin", "127.0.0.1:9091", "HTTP address of POST /fail and POST /heal")
	fs.Parse(args)
	h := &health{}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, h)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) { h.failing.Store(true); fmt.Fprintln(w, "failing") })
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, _ *http.Request) { h.failing.Store(false); fmt.Fprintln(w, "healthy") })
	hs := &http.Server{Addr: *admin, Handler: mux}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(lis) }()
	go func() { errc <- hs.ListenAndServe() }()
	log.Printf("callee: gRPC on %s, admin on %s", *listen, *admin)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			gs.GracefulStop()
			hs.Close()
			return nil
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		case <-tick.C:
			n := h.calls.Load()
			log.Printf("callee: %d calls in the last second (failing=%v)", n-last, h.failing.Load())
			last = n
		}
	}
}

func caller(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("caller", flag.ExitOnError)
	sidecarAddr := fs.String("sidecar", "127.0.0.1:7500", "the local sidecar's --listen address")
	service := fs.String("service", "checkout", "this caller's service (the sidecar's --service)")
	instance := fs.String("instance", "c1", "this caller's instance (the sidecar's --instance)")
	target := fs.String("target", "payments", "the callee service")
	every := fs.Duration("every", 20*time.Millisecond, "time between calls")
	fs.Parse(args)

	g, err := guard.New(guard.Config{Sidecar: *sidecarAddr, Instance: *instance})
	if err != nil {
		return err
	}
	defer g.Close()
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q}}`, *sidecarAddr, *service+"/"+*instance, *service)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient("xds:///"+*target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb),
		grpc.WithUnaryInterceptor(g.UnaryClientInterceptor(*target)))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	var ok, failed, rejected int
	var lastErr string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	call := time.NewTicker(*every)
	defer call.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			log.Printf("%s/%s -> %s: %4d ok %4d failed %4d rejected by the breaker  %s", *service, *instance, *target, ok, failed, rejected, lastErr)
			ok, failed, rejected, lastErr = 0, 0, 0, ""
		case <-call.C:
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			cancel()
			switch st := status.Convert(err); {
			case err == nil:
				ok++
			case strings.Contains(st.Message(), "colony: breaker"), strings.Contains(st.Message(), "fault injection"):
				rejected++
				lastErr = st.Message()
			default:
				failed++
				lastErr = st.Message()
			}
		}
	}
}
