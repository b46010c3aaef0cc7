package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding the Go runtime and process
// collectors; components register their own collectors with it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// HandlerOptions configures Handler.
type HandlerOptions struct {
	// Pprof also serves net/http/pprof under /debug/pprof/. Off by default:
	// profiles reveal internals and cost CPU while they run.
	Pprof bool
}

// Handler serves g in the Prometheus text format on /metrics (and pprof
// when asked).
func Handler(g prometheus.Gatherer, opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// MetricsServer serves a Handler on its own listener.
type MetricsServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// ListenMetrics listens on addr and serves h there until Close.
func ListenMetrics(addr string, h http.Handler) (*MetricsServer, error) {
	return ListenMetricsTLS(addr, h, nil)
}

// ListenMetricsTLS is ListenMetrics over TLS with tlsCfg (a scraper then
// presents a client certificate when tlsCfg requires one, as Colony's
// secure nodes do); nil tlsCfg serves plain HTTP.
func ListenMetricsTLS(addr string, h http.Handler, tlsCfg *tls.Config) (*MetricsServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry: listening for metrics on %s: %w", addr, err)
	}
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
	}
	m := &MetricsServer{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		m.srv.Serve(lis) // returns ErrServerClosed after Close
	}()
	return m, nil
}

// Addr is the address the server listens on.
func (m *MetricsServer) Addr() string { return m.lis.Addr().String() }

// Close stops the server, letting scrapes in progress finish until ctx ends,
// and waits for its goroutine.
func (m *MetricsServer) Close(ctx context.Context) error {
	err := m.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, m.srv.Close())
	}
	<-m.done
	return err
}
