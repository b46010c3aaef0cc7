// Command stockcaller is a gRPC service's client written with nothing but
// gRPC-Go and the standard library: no import of Colony. It calls the
// standard health service of xds:///<callee> at a steady pace, taking its
// xDS configuration from the bootstrap gRPC reads itself
// (GRPC_XDS_BOOTSTRAP_CONFIG or GRPC_XDS_BOOTSTRAP), and prints its running
// totals on stdout. It is what a team that never heard of Colony would
// write; the e2e tests run it to prove that such a client trips, probes and
// recovers with the shared breaker.
//
// Usage:
//
//	GRPC_XDS_BOOTSTRAP_CONFIG='{"xds_servers":[...],"node":{...}}' \
//	    stockcaller -target xds:///payments -tag checkout/s1
//
// Every -report it prints one line of running totals:
//
//	totals ok=120 failed=4 rejected=37 last="Unavailable: RPC terminated due to fault injection"
//
// where rejected counts calls the breaker turned away (the xDS fault
// filter's abort, what a Colony sidecar's OPEN breaker configures, or its
// probe gate's UNAVAILABLE in HALF_OPEN) and failed every other error.
// It stops after -max-calls calls, after -max-duration, or on SIGINT or
// SIGTERM, printing its totals one last time.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver, its balancers and HTTP filters
)

// faultText is how gRPC-Go words a call failed by the fault injection
// filter (gRFC A33).
const faultText = "RPC terminated due to fault injection"

// gateText starts the message of a call the sidecar's probe gate turned
// away in HALF_OPEN (permits spent, or none held).
const gateText = "colony: "

func main() {
	var (
		target      = flag.String("target", "xds:///payments", "the channel's target")
		tag         = flag.String("tag", "", "value of the x-test-caller metadata sent with every call, so the callee can count this client's calls (empty: none)")
		interval    = flag.Duration("interval", 20*time.Millisecond, "pause between calls (one call in flight at a time)")
		timeout     = flag.Duration("timeout", time.Second, "deadline of each call")
		report      = flag.Duration("report", 100*time.Millisecond, "how often the totals are printed")
		maxCalls    = flag.Int("max-calls", 100_000, "stop after this many calls")
		maxDuration = flag.Duration("max-duration", 5*time.Minute, "stop after this long")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("stockcaller: ")
	for name, d := range map[string]time.Duration{"-interval": *interval, "-timeout": *timeout, "-report": *report, "-max-duration": *maxDuration} {
		if d <= 0 {
			log.Fatalf("%s %v: must be positive", name, d)
		}
	}
	if *maxCalls <= 0 {
		log.Fatalf("-max-calls %d: must be positive", *maxCalls)
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" && os.Getenv("GRPC_XDS_BOOTSTRAP") == "" && strings.HasPrefix(*target, "xds:") {
		log.Fatal("neither GRPC_XDS_BOOTSTRAP_CONFIG nor GRPC_XDS_BOOTSTRAP is set: an xds:/// target needs a bootstrap")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxDuration)
	defer cancel()

	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("channel to %s: %v", *target, err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)

	var t totals
	lastPrint := time.Now()
	for n := 0; n < *maxCalls && ctx.Err() == nil; n++ {
		callCtx, callCancel := context.WithTimeout(ctx, *timeout)
		if *tag != "" {
			callCtx = metadata.AppendToOutgoingContext(callCtx, "x-test-caller", *tag)
		}
		_, err := health.Check(callCtx, &healthpb.HealthCheckRequest{})
		callCancel()
		if ctx.Err() != nil {
			break // cut short by shutdown: neither a success nor a failure
		}
		t.count(err)
		if time.Since(lastPrint) >= *report {
			t.print()
			lastPrint = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(*interval):
		}
	}
	t.print()
}

// totals counts the calls' outcomes.
type totals struct {
	ok, failed, rejected int
	last                 string // the last error, code and message
}

func (t *totals) count(err error) {
	if err == nil {
		t.ok++
		return
	}
	st := status.Convert(err)
	if st.Code() == codes.Unavailable && (strings.Contains(st.Message(), faultText) || strings.HasPrefix(st.Message(), gateText)) {
		t.rejected++
	} else {
		t.failed++
	}
	t.last = st.Code().String() + ": " + st.Message()
}

func (t *totals) print() {
	fmt.Printf("totals ok=%d failed=%d rejected=%d last=%q\n", t.ok, t.failed, t.rejected, t.last)
}
