// Package dashboard is Colony's web UI: an http.Handler that serves a
// single page (plain HTML, CSS and JavaScript embedded with go:embed, no
// build step, nothing fetched from elsewhere) and the JSON API under /api/
// the page uses, all backed by the coordinator's Go client.
//
// The page shows each pair's traffic (calls/s, error, slow and rejected
// shares, with two minutes of sparklines) and the breaker matrix (callers
// x callees) live, most trouble first; each pair's policy, evidence, audit
// trail and probe holders; lets an operator set and clear overrides (with
// a reason and a confirmation); and shows the cluster's health and the
// sidecars' staleness and degraded modes.
//
// Live updates come from one persistent recursive watch on /colony/breakers
// per Dashboard, shared by every browser through server-sent events, plus a
// periodic ListBreakers (only while a browser is connected) for the
// leader's live failure ratios.
//
// Anyone who passes the Host check may read (or, with Read authenticated,
// anyone with a credential); only operators act: a verified client
// certificate with role operator or admin, a bearer token (or a login with
// one), or a user named by a trusted authenticating proxy. The audit trail
// records the identity the dashboard verified. See DESIGN.md beside this
// file.
//
// Usage:
//
//	m, _ := trust.Load(files, "", log) // the dashboard's certificate
//	c, _ := client.New(client.Config{Endpoints: []string{"127.0.0.1:7400"}, TLS: m.ClientConfig("")})
//	toks, _ := dashboard.LoadTokens("/etc/colony/ui-tokens")
//	d, _ := dashboard.New(dashboard.Config{Coordinator: c, TLS: m, Tokens: toks})
//	defer d.Close()
//	lis, _ := tls.Listen("tcp", "127.0.0.1:7403", d.TLSConfig())
//	http.Serve(lis, d)
package dashboard

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

//go:embed ui
var uiFiles embed.FS

// Coordinator is what the dashboard needs of the coordinator:
// *client.Client implements it.
type Coordinator interface {
	ListBreakers(ctx context.Context, caller, callee string) ([]*colonyv1.BreakerSummary, error)
	GetBreaker(ctx context.Context, caller, callee string, historyLimit int) (*client.BreakerInfo, error)
	SetOverride(ctx context.Context, caller, callee string, mode breaker.OverrideMode, reason, by string, ttl time.Duration) (*breaker.PairRecord, error)
	ClearOverride(ctx context.Context, caller, callee, reason, by string) (*breaker.PairRecord, error)
	Status(ctx context.Context) (*colonyv1.StatusResponse, error)
	Children(ctx context.Context, path string, opts ...client.ReadOption) ([]string, *colonyv1.Stat, error)
	Get(ctx context.Context, path string, opts ...client.ReadOption) ([]byte, *colonyv1.Stat, error)
	Watch(ctx context.Context, path string, kind colonyv1.WatchKind, opts ...client.WatchOption) (*client.Watcher, error)
}

var _ Coordinator = (*client.Client)(nil)

// Config configures a Dashboard.
type Config struct {
	// Coordinator is the coordinator's client (required). The Dashboard
	// does not close it.
	Coordinator Coordinator
	// By names the dashboard itself in the override's "by" it passes to
	// the coordinator: "<operator> (asserted by <By>)". The coordinator
	// records the identity of the dashboard's own certificate. Empty:
	// "dashboard".
	By string

	// TLS is the dashboard's certificate and CA. With it the listener
	// should serve HTTPS with TLSConfig (client certificates verified when
	// given), client certificates with role operator or admin make their
	// holders operators, and sidecars are dialled with TLS (ClientConfig
	// for the sidecar's host). The caller dials the coordinator with it
	// (client.Config.TLS). Nil: no certificates.
	TLS *trust.Material
	// Tokens make their holders operators, by Authorization: Bearer or
	// by a login (POST /api/login) that sets a session cookie. Nil: none.
	Tokens []Token
	// SessionTTL is how long a login lasts. Zero: 12h.
	SessionTTL time.Duration
	// TrustedProxyHeader names the header in which an authenticating
	// proxy names its user (X-Forwarded-User); it is believed only from a
	// TCP peer in TrustedProxies, and ignored (and logged) from anyone
	// else. The user is an operator, recorded as
	// "proxy:<user> via <proxy ip>". Empty: no proxy is trusted.
	TrustedProxyHeader string
	// TrustedProxies are the addresses of the authenticating proxies.
	TrustedProxies []netip.Prefix
	// AnonymousOperators makes everyone an operator, recorded as
	// "anonymous@<ip>": for development on loopback only, and only as an
	// explicit choice. False: without a credential, read only.
	AnonymousOperators bool
	// Read says who may read. Empty: ReadAnyone.
	Read ReadMode
	// AllowedHosts are the names (host, without port) a request's Host may
	// name; anything else is refused (421), which defeats DNS rebinding.
	// Empty: localhost, 127.0.0.1 and ::1 (the caller adds the listen
	// address's host).
	AllowedHosts []string
	// AllowedOrigins are further origins (scheme://host[:port]) that may
	// send requests that act, besides the dashboard's own (the Origin whose
	// host and port are the request's Host). Nil: only its own.
	AllowedOrigins []string

	// MaxClients bounds the browsers following live updates at once; more
	// get 503. Zero: 64.
	MaxClients int
	// MaxClientsPerIdentity bounds the live streams of one identity (of
	// one remote IP for anonymous readers), so that one cannot lock the
	// others out. Zero: 8.
	MaxClientsPerIdentity int
	// PollInterval is how often the leader's live windows (failure ratios)
	// are read while a browser is connected. Zero: 2s.
	PollInterval time.Duration
	// RequestTimeout bounds each coordinator call an API request makes.
	// Zero: 5s.
	RequestTimeout time.Duration
	// SidecarTimeout bounds each sidecar's Status call. Zero: 1s.
	SidecarTimeout time.Duration
	// MaxSidecars bounds the registered instances listed (and asked for
	// their status) by one request. Zero: 200.
	MaxSidecars int
	// HistoryLimit is how many audit-trail entries a pair's detail shows.
	// Zero: 50.
	HistoryLimit int
	// Logger receives the dashboard's records. Nil: discard.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in (and no
// Coordinator).
func DefaultConfig() Config {
	return Config{
		By:                    "dashboard",
		SessionTTL:            12 * time.Hour,
		Read:                  ReadAnyone,
		AllowedHosts:          []string{"localhost", "127.0.0.1", "::1"},
		MaxClients:            64,
		MaxClientsPerIdentity: 8,
		PollInterval:          2 * time.Second,
		RequestTimeout:        5 * time.Second,
		SidecarTimeout:        time.Second,
		MaxSidecars:           200,
		HistoryLimit:          50,
	}
}

func (cfg Config) withDefaults() Config {
	def := DefaultConfig()
	if cfg.By == "" {
		cfg.By = def.By
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = def.SessionTTL
	}
	if cfg.Read == "" {
		cfg.Read = def.Read
	}
	if len(cfg.AllowedHosts) == 0 {
		cfg.AllowedHosts = def.AllowedHosts
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = def.MaxClients
	}
	if cfg.MaxClientsPerIdentity == 0 {
		cfg.MaxClientsPerIdentity = def.MaxClientsPerIdentity
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = def.PollInterval
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = def.RequestTimeout
	}
	if cfg.SidecarTimeout == 0 {
		cfg.SidecarTimeout = def.SidecarTimeout
	}
	if cfg.MaxSidecars == 0 {
		cfg.MaxSidecars = def.MaxSidecars
	}
	if cfg.HistoryLimit == 0 {
		cfg.HistoryLimit = def.HistoryLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Validate reports whether the configuration can be used (after defaults).
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Coordinator == nil {
		errs = append(errs, errors.New("dashboard: Coordinator: required"))
	}
	if len(cfg.By) > breaker.MaxByLen {
		errs = append(errs, errors.New("dashboard: By: longer than an override's by may be"))
	}
	if cfg.MaxClients < 0 {
		errs = append(errs, errors.New("dashboard: MaxClients: must not be negative"))
	}
	if cfg.MaxClientsPerIdentity < 0 {
		errs = append(errs, errors.New("dashboard: MaxClientsPerIdentity: must not be negative"))
	}
	if cfg.Read != ReadAnyone && cfg.Read != ReadAuthenticated {
		errs = append(errs, fmt.Errorf("dashboard: Read: %q, want %q or %q", cfg.Read, ReadAnyone, ReadAuthenticated))
	}
	names := map[string]bool{}
	for i, t := range cfg.Tokens {
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("dashboard: Tokens[%d]: %w", i, err))
		} else if names[t.Name] {
			errs = append(errs, fmt.Errorf("dashboard: Tokens[%d]: name %s used twice", i, t.Name))
		}
		names[t.Name] = true
	}
	if cfg.TrustedProxyHeader != "" && len(cfg.TrustedProxies) == 0 {
		errs = append(errs, errors.New("dashboard: TrustedProxyHeader: set, but TrustedProxies names no proxy to believe it from"))
	}
	if cfg.TrustedProxyHeader != "" && http.CanonicalHeaderKey(cfg.TrustedProxyHeader) == "Authorization" {
		errs = append(errs, errors.New("dashboard: TrustedProxyHeader: must not be Authorization"))
	}
	for i, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("dashboard: TrustedProxies[%d]: not a valid prefix", i))
		}
	}
	for i, h := range cfg.AllowedHosts {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, "/ *") {
			errs = append(errs, fmt.Errorf("dashboard: AllowedHosts[%d]: %q is not a host name or address", i, h))
		}
	}
	for i, o := range cfg.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("dashboard: AllowedOrigins[%d]: %q, want scheme://host[:port]", i, o))
		}
	}
	if cfg.MaxSidecars < 0 {
		errs = append(errs, errors.New("dashboard: MaxSidecars: must not be negative"))
	}
	if cfg.HistoryLimit < 0 || cfg.HistoryLimit > 200 {
		errs = append(errs, errors.New("dashboard: HistoryLimit: want 0..200 (the coordinator keeps 200 per pair)"))
	}
	for name, d := range map[string]time.Duration{"SessionTTL": cfg.SessionTTL, "PollInterval": cfg.PollInterval, "RequestTimeout": cfg.RequestTimeout, "SidecarTimeout": cfg.SidecarTimeout} {
		if d < 0 {
			errs = append(errs, errors.New("dashboard: "+name+": must not be negative"))
		}
	}
	return errors.Join(errs...)
}

// Dashboard is the web UI's handler. It owns the shared breaker watch; Close
// stops it and ends the browsers' event streams.
type Dashboard struct {
	cfg     Config
	coord   Coordinator
	log     *slog.Logger
	handler http.Handler
	hub     *hub
	auth    *authenticator
	// hosts and origins are AllowedHosts and AllowedOrigins, normalized;
	// hostList is AllowedHosts for messages.
	hosts    map[string]struct{}
	origins  map[string]struct{}
	hostList []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ http.Handler = (*Dashboard)(nil)

// New returns a Dashboard and starts its shared watch of the breakers.
func New(cfg Config) (*Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dashboard{cfg: cfg, coord: cfg.Coordinator, log: cfg.Logger, ctx: ctx, cancel: cancel,
		hosts: map[string]struct{}{}, origins: map[string]struct{}{}}
	for _, h := range cfg.AllowedHosts {
		d.hosts[normHost(h)] = struct{}{}
		d.hostList = append(d.hostList, h)
	}
	for _, o := range cfg.AllowedOrigins {
		d.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = struct{}{}
	}
	d.auth = newAuthenticator(d, cfg)
	if cfg.AnonymousOperators {
		d.log.Warn("the dashboard lets anyone who reaches it act as an operator (AnonymousOperators): use it only on loopback for development")
	}
	d.hub = newHub(cfg.Coordinator, cfg.Logger, cfg.MaxClients, cfg.MaxClientsPerIdentity, cfg.PollInterval, cfg.RequestTimeout)
	d.handler = d.routes()
	d.goFunc(func() { d.hub.runWatch(ctx) })
	d.goFunc(func() { d.hub.runPoll(ctx) })
	return d, nil
}

func (d *Dashboard) goFunc(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// TLSConfig is the listener's TLS configuration when Config.TLS is set:
// client certificates are asked for and verified when given (a token or
// a trusted proxy may stand in), HTTP/2 and HTTP/1.1. Nil without TLS.
func (d *Dashboard) TLSConfig() *tls.Config {
	if d.cfg.TLS == nil {
		return nil
	}
	return d.cfg.TLS.ServerConfig(tls.VerifyClientCertIfGiven, "h2", "http/1.1")
}

// ServeHTTP serves the page, its assets and the API.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

// Close stops the shared watch, ends every event stream and waits for
// the dashboard's goroutines. Other requests in flight finish on their own.
func (d *Dashboard) Close() error {
	d.cancel()
	d.wg.Wait()
	return nil
}

func (d *Dashboard) routes() http.Handler {
	static, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	mux := http.NewServeMux()
	files := http.FileServerFS(static)
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /static/", files)
	mux.HandleFunc("GET /api/me", d.me)
	mux.HandleFunc("POST /api/login", d.login)
	mux.HandleFunc("POST /api/logout", d.logout)
	mux.HandleFunc("GET /api/breakers", d.listBreakers)
	mux.HandleFunc("GET /api/breakers/{caller}/{callee}", d.getBreaker)
	mux.HandleFunc("GET /api/breakers/{caller}/{callee}/enforcement", d.enforcement)
	mux.HandleFunc("POST /api/breakers/{caller}/{callee}/override", d.setOverride)
	mux.HandleFunc("POST /api/breakers/{caller}/{callee}/clear", d.clearOverride)
	mux.HandleFunc("GET /api/cluster", d.cluster)
	mux.HandleFunc("GET /api/sidecars", d.sidecars)
	mux.HandleFunc("GET /api/traffic", d.traffic)
	mux.HandleFunc("GET /api/events", d.events)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	// Browsers send Sec-Fetch-Site and Origin: a page elsewhere cannot
	// POST here. Requiring a JSON body also forces a CORS preflight that is
	// never granted.
	protect := http.NewCrossOriginProtection()
	for _, o := range d.cfg.AllowedOrigins {
		if err := protect.AddTrustedOrigin(strings.TrimSuffix(o, "/")); err != nil {
			d.log.Warn("AllowedOrigins: not trusted by the cross-origin protection", "origin", o, "err", err)
		}
	}
	return securityHeaders(d.guard(protect.Handler(mux)))
}

// securityHeaders keeps the page to its own origin's scripts and styles and
// out of other sites' frames.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}
