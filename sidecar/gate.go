package sidecar

// The probe gate: the exact HALF_OPEN probe budget for clients that run no
// Colony code (stock gRPC over xDS in any language, Envoy).
//
// xDS can express a share of calls, not a count. So while a callee is
// HALF_OPEN and this instance holds r probe permits, the routes those
// clients get (package xds: State.ProbeGate) send every call, unfaulted,
// to a cluster whose one endpoint is this gate: a cleartext reverse proxy
// on the sidecar that speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge, as
// gRPC and Envoy send it) on one port. The gate admits at most r calls of
// the generation, counted under one lock, and forwards each to an instance
// of the callee from the sidecar's registry mirror; it answers every other
// call at once, without forwarding it: gRPC UNAVAILABLE in a trailers-only
// response (HTTP 503 with the breaker header for HTTP callers), with a
// message naming the pair, its state and the spent permits. A call for a
// callee that is CLOSED is forwarded (a client whose routes lag a closing
// pair); one for a callee that is OPEN, or HALF_OPEN with this instance
// holding no permits of the generation, is rejected.
//
// Outcomes. Each forwarded call's outcome is exact: its grpc-status (from
// the trailers, or the headers of a trailers-only response), or its HTTP
// status for an HTTP call, and its latency from the gate's point of view.
// It is classified with the pair's policy like an access log entry, so the
// policy's code classification and slow-call rate apply to these probes,
// and added to the instance's outcomes. The clients' load reports name the
// gate's cluster, not the callee's, and the gate's cluster names no LRS
// server: the gate's calls are counted once, by the gate.
//
// Permits spent elsewhere on this instance (calls a guard client or the
// access logs report for the callee in the same generation) count against
// the gate's budget too. A guard client admits its permits by itself: its
// probes made after the gate's can still exceed the instance's permits.
//
// A probe's time is bounded by the policy's probe timeout, less two report
// intervals: its outcome reaches the coordinator before the coordinator
// would take the permit back as unused and hand it to another instance.
//
// Known limits: the gate talks cleartext to the callee (a callee that
// requires TLS from its callers cannot be probed through it; the gate's
// upstream would need the caller's certificate), and any local process
// that can reach the gate's address can spend this instance's permits,
// which it could as well by calling the callee directly.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/xds"
)

// Limits of the probe gate.
const (
	// DefaultProbeGateMaxCalls is Config.ProbeGateMaxCalls' default.
	DefaultProbeGateMaxCalls = 1024
	// MaxProbeGateMaxCalls bounds Config.ProbeGateMaxCalls.
	MaxProbeGateMaxCalls = 1 << 20
	// probeGateMaxCallDuration bounds a forwarded call: a gRPC call's
	// grpc-timeout, when shorter, a call without one this long.
	probeGateMaxCallDuration = time.Minute
	// maxGateCallees bounds the callees whose spent permits the gate
	// remembers (one entry per callee held in HALF_OPEN).
	maxGateCallees = 10000
)

// gateTarget is what the gate knows of a callee for one call.
type gateTarget struct {
	caller, callee string
	grpc           bool // the callee speaks gRPC (else HTTP/1.1)
	state          breaker.State
	generation     uint64
	permits        int      // this instance's, in HALF_OPEN
	endpoints      []string // host:port of the callee's instances
	// maxCall, when positive, bounds a call: a probe must end, and its
	// outcome reach the coordinator, before the coordinator takes back a
	// holder's unreported permits (the policy's probe timeout) and hands
	// them to another instance, which would make it a probe too many.
	maxCall time.Duration
}

// pair names the breaker for messages.
func (t gateTarget) pair() string { return t.caller + "->" + t.callee }

// gateConfig configures a gate.
type gateConfig struct {
	// Listener is where the gate serves; the gate closes it.
	Listener net.Listener
	// MaxCalls bounds the calls in the gate at once, rejected beyond.
	MaxCalls int
	// MaxCallDuration bounds a forwarded call. Zero:
	// probeGateMaxCallDuration.
	MaxCallDuration time.Duration
	// Lookup resolves a call's authority (host[:port]) to its callee; false
	// for a name the sidecar does not serve.
	Lookup func(authority string) (gateTarget, bool)
	// Record receives the outcome of every forwarded call.
	Record func(callee string, call breaker.Call)
	Log    *slog.Logger
}

// gate is the probe gate (see above). Close ends it and every call in it.
type gate struct {
	cfg   gateConfig
	srv   *http.Server
	proxy *httputil.ReverseProxy
	h1    *http.Transport // upstream HTTP/1.1, for HTTP callees
	h2c   *http.Transport // upstream cleartext HTTP/2, for gRPC callees
	slots chan struct{}   // one per call in the gate
	next  atomic.Uint64   // round robin over endpoints

	mu    sync.Mutex
	spent map[string]gateSpend // callee -> permits spent in its generation

	// wg counts the serve goroutine and the handlers; once closed is set
	// no handler adds to it.
	wgMu   sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// gateSpend is the permits spent in one HALF_OPEN generation of a callee.
type gateSpend struct {
	generation uint64
	n          int64
}

// newGate starts a gate serving on cfg.Listener.
func newGate(cfg gateConfig) *gate {
	if cfg.MaxCallDuration <= 0 {
		cfg.MaxCallDuration = probeGateMaxCallDuration
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	var h1p, h2p http.Protocols
	h1p.SetHTTP1(true)
	h2p.SetUnencryptedHTTP2(true)
	g := &gate{
		cfg:   cfg,
		slots: make(chan struct{}, cfg.MaxCalls),
		spent: map[string]gateSpend{},
		h1: &http.Transport{Protocols: &h1p, DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16,
			IdleConnTimeout: 90 * time.Second},
		h2c: &http.Transport{Protocols: &h2p, DialContext: dialer.DialContext, IdleConnTimeout: 90 * time.Second},
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			c := gateCallOf(pr.In.Context())
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", c.endpoint
			pr.Out.Host = pr.In.Host // the callee sees the authority the caller used
		},
		Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			if gateCallOf(r.Context()).target.grpc {
				return g.h2c.RoundTrip(r)
			}
			return g.h1.RoundTrip(r)
		}),
		// gRPC streams and needs its trailers: nothing is held back.
		FlushInterval: -1,
		// The proxy sends the headers as soon as it has them, so a
		// trailers-only response (grpc-status in the headers, as gRPC
		// answers an error before any message) would reach the caller as
		// headers, then an end without trailers. Its status goes in the
		// trailers instead.
		ModifyResponse: func(res *http.Response) error {
			if res.Header.Get("Grpc-Status") == "" || !gateCallOf(res.Request.Context()).target.grpc {
				return nil
			}
			if res.Trailer == nil {
				res.Trailer = http.Header{}
			}
			for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
				if v, ok := res.Header[k]; ok {
					res.Trailer[k] = v
					delete(res.Header, k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c := gateCallOf(r.Context())
			c.err = err
			msg := fmt.Sprintf("colony: probe gate: calling %s at %s: %v", c.target.callee, c.endpoint, err)
			// Not the breaker's rejection: no breaker header.
			writeReject(w, gateTarget{}, msg, c.target.grpc, err)
		},
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	g.srv = &http.Server{
		Handler:           g,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(cfg.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("probe gate stopped", "err", err)
		}
	}()
	return g
}

// Addr is the gate's address; "" for no gate.
func (g *gate) Addr() string {
	if g == nil {
		return ""
	}
	return g.cfg.Listener.Addr().String()
}

// Close stops the gate: it closes the listener and every connection, and
// waits for the calls in it to end (their contexts end with their
// connections).
func (g *gate) Close() {
	g.wgMu.Lock()
	if g.closed {
		g.wgMu.Unlock()
		return
	}
	g.closed = true
	g.wgMu.Unlock()
	g.srv.Close()
	g.wg.Wait()
	g.h1.CloseIdleConnections()
	g.h2c.CloseIdleConnections()
}

// enter counts a handler in wg, unless the gate is closing.
func (g *gate) enter() bool {
	g.wgMu.Lock()
	defer g.wgMu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// admit spends one of t's permits, if any is left: it reports the permits
// spent before the call, and whether it may go.
func (g *gate) admit(t gateTarget) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sp, ok := g.spent[t.callee]
	if !ok && len(g.spent) >= maxGateCallees {
		g.dropOldLocked()
	}
	if sp.generation != t.generation {
		sp = gateSpend{generation: t.generation}
	}
	if sp.n >= int64(t.permits) {
		g.spent[t.callee] = sp
		return sp.n, false
	}
	sp.n++
	g.spent[t.callee] = sp
	return sp.n - 1, true
}

// spend counts n permits of callee's generation spent by calls the gate
// did not see (guard clients, access logs).
func (g *gate) spend(callee string, generation uint64, n int64) {
	if g == nil || n <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	sp, ok := g.spent[callee]
	if !ok && len(g.spent) >= maxGateCallees {
		g.dropOldLocked()
	}
	if sp.generation != generation {
		sp = gateSpend{generation: generation}
	}
	sp.n = min(sp.n+n, breaker.MaxCount)
	g.spent[callee] = sp
}

// dropOldLocked makes room for one callee: any entry will do, as the
// callees held in HALF_OPEN at once are far fewer than the limit.
func (g *gate) dropOldLocked() {
	for k := range g.spent {
		delete(g.spent, k)
		return
	}
}

// gateCall is one call's state, shared with the proxy's hooks.
type gateCall struct {
	target   gateTarget
	endpoint string
	err      error // the proxy's, when the call got no response
}

type gateCallKey struct{}

func gateCallOf(ctx context.Context) *gateCall { return ctx.Value(gateCallKey{}).(*gateCall) }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ServeHTTP admits, forwards and records one call, or rejects it.
func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.enter() {
		return
	}
	defer g.wg.Done()
	start := time.Now()
	isGRPC := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		writeReject(w, gateTarget{}, fmt.Sprintf("colony: probe gate: %d calls in flight, its limit", cap(g.slots)), isGRPC, nil)
		return
	}
	t, ok := g.cfg.Lookup(r.Host)
	if !ok {
		writeReject(w, gateTarget{}, fmt.Sprintf("colony: probe gate: no callee named %q", r.Host), isGRPC, nil)
		return
	}
	switch t.state {
	case breaker.Closed:
	case breaker.HalfOpen:
		if t.permits <= 0 {
			writeReject(w, t, fmt.Sprintf("colony: %s is HALF_OPEN (generation %d) and this instance holds no probe permits", t.pair(), t.generation), isGRPC, nil)
			return
		}
		if spent, ok := g.admit(t); !ok {
			writeReject(w, t, fmt.Sprintf("colony: %s is HALF_OPEN (generation %d) and this instance has spent %d of its %d probe permits", t.pair(), t.generation, spent, t.permits), isGRPC, nil)
			return
		}
	default:
		writeReject(w, t, fmt.Sprintf("colony: %s is %v (generation %d)", t.pair(), t.state, t.generation), isGRPC, nil)
		return
	}
	if len(t.endpoints) == 0 {
		msg := fmt.Sprintf("colony: probe gate: %s has no registered instance", t.callee)
		writeReject(w, t, msg, isGRPC, nil)
		g.cfg.Record(t.callee, breaker.Call{Kind: breaker.CallConnectionError, Duration: time.Since(start)})
		return
	}
	c := &gateCall{target: t, endpoint: t.endpoints[g.next.Add(1)%uint64(len(t.endpoints))]}
	timeout := g.cfg.MaxCallDuration
	if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
		timeout = min(timeout, d)
	}
	if t.maxCall > 0 {
		timeout = min(timeout, t.maxCall)
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), gateCallKey{}, c), timeout)
	defer cancel()
	sw := &statusWriter{ResponseWriter: w}
	// The proxy aborts the handler (panics with http.ErrAbortHandler) when
	// the response breaks off midway: the outcome is recorded all the same.
	done := false
	defer func() {
		if !done && c.err == nil {
			c.err = errResponseAborted
		}
		g.cfg.Record(t.callee, outcomeOf(c, sw, r.Context(), ctx, time.Since(start)))
	}()
	g.proxy.ServeHTTP(sw, r.WithContext(ctx))
	done = true
}

// errResponseAborted marks a call whose response broke off after it began.
var errResponseAborted = errors.New("probe gate: the response broke off")

// outcomeOf is the outcome of a forwarded call: the proxy's error, or the
// response's gRPC status (trailers, or a trailers-only response's
// headers), or its HTTP status.
func outcomeOf(c *gateCall, sw *statusWriter, caller, call context.Context, d time.Duration) breaker.Call {
	out := breaker.Call{Duration: d}
	switch {
	case c.err != nil && caller.Err() != nil:
		// The caller gave up (cancelled, or its own deadline).
		out.Kind = breaker.CallGRPC
		out.Code = 1 // CANCELLED
		if !c.target.grpc {
			out.Kind = breaker.CallTimeout
		}
	case c.err != nil && call.Err() != nil:
		out.Kind = breaker.CallTimeout
	case c.err != nil:
		out.Kind = breaker.CallConnectionError
	case c.target.grpc:
		h := sw.Header()
		gs := h.Get("Grpc-Status")
		if gs == "" {
			gs = h.Get(http.TrailerPrefix + "Grpc-Status")
		}
		if code, err := strconv.Atoi(gs); err == nil {
			out.Kind, out.Code = breaker.CallGRPC, code
		} else {
			out.Kind, out.Code = breaker.CallHTTP, sw.status()
		}
	default:
		out.Kind, out.Code = breaker.CallHTTP, sw.status()
	}
	return out
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// writeReject answers a call the gate does not forward, or could not
// (err): for gRPC a trailers-only response with UNAVAILABLE
// (DEADLINE_EXCEEDED when the call's time ran out), for HTTP 503 with the
// breaker header naming t (none for an empty t), 502 or 504 for err.
func writeReject(w http.ResponseWriter, t gateTarget, msg string, isGRPC bool, err error) {
	h := w.Header()
	if isGRPC {
		code := "14" // UNAVAILABLE
		if errors.Is(err, context.DeadlineExceeded) {
			code = "4"
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", code)
		h.Set("Grpc-Message", encodeGRPCMessage(msg))
		w.WriteHeader(http.StatusOK)
		return
	}
	if t.callee != "" {
		h.Set(xds.DefaultBreakerHeader, fmt.Sprintf("%s; state=%s; generation=%d", t.pair(), t.state, t.generation))
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	case err != nil:
		status = http.StatusBadGateway
	}
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// encodeGRPCMessage percent-encodes a grpc-message value (gRPC's HTTP/2
// protocol: bytes outside printable ASCII, and '%').
func encodeGRPCMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// parseGRPCTimeout parses a grpc-timeout header: up to 8 digits and a unit
// (H, M, S, m, u, n). The result saturates at the largest Duration.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	const maxDuration = time.Duration(1<<63 - 1)
	if n > int64(maxDuration/unit) {
		return maxDuration, true
	}
	return time.Duration(n) * unit, true
}

// gateTarget resolves a call's authority to the callee the view holds
// under that name (xds.ResolveName's rules), for the gate.
func (s *Sidecar) gateTarget(authority string) (gateTarget, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := xds.ResolveName(authority, s.viewNames)
	if !ok {
		return gateTarget{}, false
	}
	i, ok := slices.BinarySearchFunc(s.lastView.Callees, name, func(c Callee, n string) int { return cmp.Compare(c.Name, n) })
	if !ok {
		return gateTarget{}, false
	}
	c := s.lastView.Callees[i]
	t := gateTarget{caller: s.cfg.Service, callee: c.Name, grpc: c.Protocol != "http", state: breaker.Closed}
	if r := c.Record; r != nil {
		t.state, t.generation, t.permits = r.State, r.Generation, r.Probes[s.cfg.Instance]
	}
	if t.state == breaker.HalfOpen {
		// The probe's outcome goes out within a report interval and is
		// applied within another: both must fit in the probe timeout.
		pt := s.policyLocked(c.Name).ProbeTimeout
		t.maxCall = pt - 2*s.cfg.ReportInterval
		if t.maxCall <= 0 {
			t.maxCall = pt / 2
		}
	}
	for _, ep := range c.Endpoints {
		t.endpoints = append(t.endpoints, net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port)))
	}
	return t, true
}

// gateOutcome adds the outcome of a call the gate forwarded to this
// instance's outcomes for callee, classified with the pair's policy like an
// access log entry. Its permit was spent when the gate admitted it.
func (s *Sidecar) gateOutcome(callee string, call breaker.Call) {
	var c breaker.Counts
	c.AddTimed(s.classify(callee, call), call.Duration)
	if err := s.report(callee, c, false); err != nil {
		s.log.Debug("probe gate outcome dropped", "callee", callee, "err", err)
	}
}
