package sidecar

// Configuration: the Config a Sidecar starts from, its defaults and its
// validation, and the degraded modes a configuration names.

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/trust"
)

// Mode is how the sidecar decides what to enforce.
type Mode string

const (
	// ModeCoordinator: the coordinator's records, fresh.
	ModeCoordinator Mode = "coordinator"
	// LastKnown keeps enforcing the last records received (fail-static).
	LastKnown Mode = "last-known"
	// Local runs a breaker per pair on this instance's own outcomes
	// (gobreaker's semantics, from the pair's policy).
	Local Mode = "local"
	// FailOpen lets every call through.
	FailOpen Mode = "fail-open"
	// FailClosed rejects every call.
	FailClosed Mode = "fail-closed"
)

// ParseMode parses a degraded mode name.
func ParseMode(s string) (Mode, error) {
	if breaker.IsDegradedMode(s) { // one list: what policies accept
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown degraded mode %q (want one of %v)", s, breaker.DegradedModes())
}

// Registration is what a sidecar writes at contract.RegistrationPath (an
// ephemeral node of its session): how to reach the instance.
type Registration = contract.Registration

// Config configures a Sidecar. A zero field that has a default in
// DefaultConfig takes it.
type Config struct {
	// Service and Instance name this instance; Instance must be unique in
	// the service (a pod name, host:port...).
	Service, Instance string
	// Coordinators are the coordinator nodes' gRPC addresses.
	Coordinators []string
	// TLS is this sidecar's certificate (a sidecar certificate for Service),
	// key and CA: the sidecar presents it to the coordinators, which a
	// secure cluster requires, and verifies theirs. Nil: plaintext to an
	// insecure cluster.
	TLS *trust.Material
	// ListenTLS serves the local API (and xDS, access logs) with TLS,
	// requiring a client certificate of TLS's CA; it needs TLS. False:
	// plaintext, which Validate allows only on a loopback APIAddr (traffic
	// inside the pod, like Envoy's admin on localhost) unless Insecure.
	ListenTLS bool
	// Insecure allows a plaintext local API on an address other hosts can
	// reach. False: such an APIAddr is refused.
	Insecure bool
	// Address is the service's own host:port, registered for callers.
	Address string
	Zone    string
	// Protocol is "grpc" or "http". Zero: DefaultConfig's (grpc).
	Protocol string
	// APIAddr is where the sidecar serves its local API (and, when an
	// enforcer registers on the same server, xDS). Zero: DefaultConfig's
	// (loopback).
	APIAddr string
	// ProbeGateAddr is the IP:port of the probe gate (gate.go), a
	// cleartext HTTP/1.1 and HTTP/2 listener that clients without Colony's
	// library reach through their xDS routes while a callee is HALF_OPEN
	// and this instance holds probe permits. Port 0 picks a free port (the
	// clients learn it over xDS). It must be a specific IP, loopback unless
	// Insecure. Zero: DefaultConfig's (loopback, any port).
	ProbeGateAddr string
	// ProbeGateMaxCalls bounds the calls in the probe gate at once (1 ..
	// MaxProbeGateMaxCalls); beyond it calls are rejected at once. Zero:
	// DefaultProbeGateMaxCalls.
	ProbeGateMaxCalls int
	// ReportInterval is how often summed outcomes go to the coordinator.
	// Zero: DefaultConfig's.
	ReportInterval time.Duration
	// SessionTTL is the coordinator session's TTL: the instance's
	// registration disappears this long after the sidecar dies. Zero:
	// DefaultConfig's.
	SessionTTL time.Duration
	// DegradedAfter is how long the coordinator may stay silent before
	// DegradedMode applies. Zero: DefaultConfig's.
	DegradedAfter time.Duration
	// DegradedMode applies when the coordinator is unreachable (zero:
	// DefaultConfig's, LastKnown); DegradedModes overrides it per callee.
	DegradedMode  Mode
	DegradedModes map[string]Mode
	// Callees, when set, limits the data plane's resources to these services
	// (and any with a breaker record for this service). Empty: every
	// registered service, which in a large mesh makes every sidecar carry
	// every service (Istio's Sidecar resource solves the same problem).
	Callees []string
	// Logger receives the sidecar's logs. Nil: slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, traces the sidecar's part of a transition's
	// path (watch delivery, xDS ACKs), linked to the coordinator's spans
	// through the records' traceparent. Nil: no spans.
	TracerProvider trace.TracerProvider
	// Metrics, when set, receives the sidecar's Prometheus collector.
	Metrics prometheus.Registerer
}

// DefaultConfig returns a Config with every default filled in: the one
// place the sidecar's defaults are written (colony sidecar's flags read
// theirs from it). Service, Instance, Coordinators and Address are left
// empty; they have no default.
func DefaultConfig() Config {
	return Config{
		Protocol:          "grpc",
		APIAddr:           "127.0.0.1:7500",
		ProbeGateAddr:     "127.0.0.1:0",
		ProbeGateMaxCalls: DefaultProbeGateMaxCalls,
		ReportInterval:    250 * time.Millisecond,
		SessionTTL:        6 * time.Second,
		DegradedAfter:     5 * time.Second,
		DegradedMode:      LastKnown,
	}
}

// withDefaults fills the zero fields of cfg from DefaultConfig.
func (cfg *Config) withDefaults() {
	def := DefaultConfig()
	if cfg.Protocol == "" {
		cfg.Protocol = def.Protocol
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = def.APIAddr
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = def.ReportInterval
	}
	if cfg.ProbeGateAddr == "" {
		cfg.ProbeGateAddr = def.ProbeGateAddr
	}
	if cfg.ProbeGateMaxCalls == 0 {
		cfg.ProbeGateMaxCalls = def.ProbeGateMaxCalls
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = def.SessionTTL
	}
	if cfg.DegradedAfter == 0 {
		cfg.DegradedAfter = def.DegradedAfter
	}
	if cfg.DegradedMode == "" {
		cfg.DegradedMode = def.DegradedMode
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// Validate reports every problem with cfg, naming the field.
func (cfg Config) Validate() error {
	var errs []error
	if err := breaker.ValidateServiceName(cfg.Service); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if err := breaker.ValidateInstanceID(cfg.Instance); err != nil {
		errs = append(errs, fmt.Errorf("instance: %w", err))
	}
	if len(cfg.Coordinators) == 0 {
		errs = append(errs, errors.New("coordinators: at least one address is required"))
	}
	if _, port, err := net.SplitHostPort(cfg.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: want host:port of the service, got %q", cfg.Address))
	} else if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("address: port %q is not 1..65535", port))
	}
	if cfg.Protocol != "grpc" && cfg.Protocol != "http" {
		errs = append(errs, fmt.Errorf("protocol: want grpc or http, got %q", cfg.Protocol))
	}
	if cfg.ReportInterval < 10*time.Millisecond || cfg.ReportInterval > time.Minute {
		errs = append(errs, fmt.Errorf("report interval: %v is outside 10ms..1m", cfg.ReportInterval))
	}
	if cfg.DegradedAfter <= 0 {
		errs = append(errs, errors.New("degraded after: must be positive"))
	}
	if _, err := ParseMode(string(cfg.DegradedMode)); err != nil {
		errs = append(errs, fmt.Errorf("degraded mode: %w", err))
	}
	if err := cfg.validateListener(); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.validateProbeGate(); err != nil {
		errs = append(errs, err)
	}
	for i, callee := range cfg.Callees {
		if err := breaker.ValidateServiceName(callee); err != nil {
			errs = append(errs, fmt.Errorf("callees[%d]: %w", i, err))
		}
	}
	for callee, m := range cfg.DegradedModes {
		if _, err := ParseMode(string(m)); err != nil {
			errs = append(errs, fmt.Errorf("degraded mode for %s: %w", callee, err))
		}
	}
	return errors.Join(errs...)
}

// validateListener refuses a local API that would be plaintext where other
// hosts can reach it: apps' reports, lock grants and the probe secrets go
// over it.
func (cfg Config) validateListener() error {
	if cfg.ListenTLS {
		if cfg.TLS == nil {
			return errors.New("listen TLS: needs the sidecar's certificate (TLS)")
		}
		return nil
	}
	addr := cfg.APIAddr
	if addr == "" {
		addr = DefaultConfig().APIAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api addr: want host:port, got %q", addr)
	}
	if cfg.Insecure || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("api addr: %q is not a loopback address: serve it with TLS (listen TLS) or allow plaintext explicitly (insecure)", addr)
}

// validateProbeGate checks the probe gate's address and bound. The address
// goes to clients as an EDS endpoint, so it must be a specific IP; the gate
// is plaintext, so loopback unless Insecure.
func (cfg Config) validateProbeGate() error {
	var errs []error
	addr := cmp.Or(cfg.ProbeGateAddr, DefaultConfig().ProbeGateAddr)
	ap, err := netip.ParseAddrPort(addr)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("probe gate addr: want IP:port, got %q", addr))
	case ap.Addr().IsUnspecified():
		errs = append(errs, fmt.Errorf("probe gate addr: %q: want a specific IP, which clients are sent as the gate's endpoint", addr))
	case !ap.Addr().IsLoopback() && !cfg.Insecure:
		errs = append(errs, fmt.Errorf("probe gate addr: %q is not a loopback address and the gate is plaintext: allow it explicitly (insecure)", addr))
	}
	if n := cfg.ProbeGateMaxCalls; n < 0 || n > MaxProbeGateMaxCalls {
		errs = append(errs, fmt.Errorf("probe gate max calls: %d, want 1..%d (0: %d)", n, MaxProbeGateMaxCalls, DefaultProbeGateMaxCalls))
	}
	return errors.Join(errs...)
}

// isLoopback reports whether host names only the loopback interface. An
// empty host (every interface) is not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkIdentity warns when the sidecar's certificate is not a sidecar
// certificate of its service: the coordinators would then deny its reports
// and registrations.
func (cfg Config) checkIdentity(log *slog.Logger) {
	if cfg.TLS == nil {
		return
	}
	if id := cfg.TLS.Identity(); id.Role != trust.RoleSidecar || id.Name != cfg.Service {
		log.Warn("the sidecar's certificate is not a sidecar certificate of its service; a secure cluster will deny its registration and reports",
			"identity", id.ID, "role", id.Role, "want", trust.SPIFFEID(cfg.TLS.TrustDomain(), trust.RoleSidecar, cfg.Service).String())
	}
}
