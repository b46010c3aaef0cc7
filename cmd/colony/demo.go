package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/cmd/colony/internal/demo"
	"github.com/colonymesh/colony/coordinator/client"
)

// startDevDemo starts `colony dev`'s demo mesh and says what to try.
// With dev's certificates (nil when dev runs --insecure or on given
// certificates) its sidecars and client present them; tp (nil: none)
// traces the sidecars' part of each transition.
func startDevDemo(addr string, certs *devCerts, tracing func(service, instance string) trace.TracerProvider, log *slog.Logger) (*demo.Mesh, error) {
	cfg := demo.Config{Coordinator: addr, Logger: log, Tracing: tracing}
	if certs != nil {
		cfg.Certs = certs
	}
	m, err := demo.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("demo mesh: %w", err)
	}
	certsDir := ""
	if certs != nil {
		certsDir = certs.dir
	}
	writeDemoHints(os.Stderr, addr, certsDir)
	return m, nil
}

// writeDemoHints prints the demo's story and the commands that tell it,
// each able to reach this dev coordinator as printed: --endpoints when it
// is not on the default address, and the certificates' directory when it
// is not the one client commands look in.
func writeDemoHints(w io.Writer, addr, certsDir string) {
	var env, flags string
	if addr != client.DefaultEndpoint {
		flags = " --endpoints " + addr
	}
	if certsDir != "" && certsDir != cli.DevTLSDir() {
		env = cli.CertsDirEnv + "=" + certsDir + " "
	}
	cmd := func(args string) string {
		return env + "go run ./cmd/colony " + args + flags
	}
	steps := []struct{ why, cmd string }{
		{"every breaker change, as it is committed", cmd("breaker watch")},
		{"payments hangs, then fails: checkout->payments trips within ~10s, checkout's\n" +
			"fallback answers at once and frontend->checkout stays CLOSED (contained)", cmd("demo fail payments")},
		{"state, error share and calls per pair; why it tripped, and its history", cmd("breaker ls")},
		{"", cmd("breaker get checkout payments")},
		{"payments recovers: after the open duration (10s, doubling on each re-open)\n" +
			"the probes close the breaker", cmd("demo heal payments")},
		{"no breaker on checkout->payments, then fail payments again: every checkout\n" +
			"waits on payments past frontend's deadline and frontend->checkout trips\n" +
			"too within ~20s (the cascade)", cmd(`breaker disable checkout payments --reason "demo: no breaker"`)},
		{"", cmd("demo fail payments")},
		{"", cmd(`breaker clear checkout payments --reason "demo done"`)},
	}
	var b strings.Builder
	b.WriteString(`Demo mesh: frontend -> checkout -> payments, checkout -> inventory, frontend -> search -> inventory;
every instance has its own sidecar, every caller a proxyless gRPC client per callee (xds:///<callee>),
and frontend's users call with a 500ms deadline. The dashboard shows it live.
Try, in another terminal:
`)
	for _, st := range steps {
		if st.why != "" {
			b.WriteString("  # " + strings.ReplaceAll(st.why, "\n", "\n  # ") + "\n")
		}
		b.WriteString("  " + st.cmd + "\n")
	}
	b.WriteString("(--demo=false runs the coordinator alone; with the demo running, checkout->payments carries 4 calls/s.)\n\n")
	io.WriteString(w, b.String())
}
