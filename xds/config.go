package xds

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Names of the resources that do not belong to one callee. They contain a
// ':', which a service name cannot (breaker.ValidateServiceName), so they
// never collide with a callee's resources, which are named after the callee.
const (
	// EgressListenerName is Envoy's egress listener.
	EgressListenerName = "colony:egress"
	// EgressRouteName is the route configuration of Envoy's egress listener:
	// one virtual host per callee.
	EgressRouteName = "colony:egress"
	// DefaultAccessLogCluster is the cluster Envoy streams access logs to
	// when Config.AccessLogCluster is empty.
	DefaultAccessLogCluster = "colony:sidecar"
	// ProbeGateCluster is the cluster, and its load assignment, whose one
	// endpoint is the sidecar's probe gate (State.ProbeGate).
	ProbeGateCluster = "colony:probe-gate"
)

// Defaults for the zero values of Config.
const (
	DefaultEgressAddr    = "127.0.0.1:15001"
	DefaultBreakerHeader = "x-colony-breaker"
	DefaultAccessLogName = "colony"
)

// Config configures Translate and a Server. The zero value is usable: every
// field's comment says what its zero value means.
type Config struct {
	// EgressAddr is the IP:port Envoy's egress listener binds, where apps
	// send their outbound HTTP and gRPC calls. Empty: DefaultEgressAddr.
	EgressAddr string

	// AccessLogCluster names the cluster Envoy streams its access logs to
	// (Envoy's gRPC access log service on the sidecar). Empty:
	// DefaultAccessLogCluster.
	AccessLogCluster string
	// AccessLogAddr, when set, is the sidecar's gRPC IP:port: the server
	// then serves AccessLogCluster itself over CDS, as a static HTTP/2
	// cluster. Empty: Envoy's bootstrap must define AccessLogCluster among
	// its static clusters (the cluster it already has for ADS to the sidecar
	// does, if named so). Envoy rejects a CDS cluster whose name a static one
	// has, so use one way or the other.
	AccessLogAddr string
	// AccessLogName is the log_name of Envoy's access log stream, which the
	// sidecar's access log service sees first on each stream. Empty:
	// DefaultAccessLogName.
	AccessLogName string

	// BreakerHeader is the response header Envoy adds to the calls an
	// HTTP breaker rejects, naming the breaker, its state and generation.
	// Empty: DefaultBreakerHeader.
	BreakerHeader string

	// VersionPrefix starts every version the server sends, so that versions
	// are never reused across restarts of the sidecar. Empty: made up at
	// NewServer from the start time and random bits.
	VersionPrefix string

	// Logger receives NACKs (warnings) and go-control-plane's logs (debug).
	// Nil: discard.
	Logger *slog.Logger

	// Now is the clock used to stamp updates and ACKs. Nil: time.Now.
	Now func() time.Time

	// OnEnforced, if set, is called once for each client and breaker
	// transition when the client ACKs the first route resource carrying
	// it. It runs on the client's xDS stream goroutine: it must not block.
	OnEnforced func(Enforcement)
	// OnNACK, if set, is called for every NACK, on the client's xDS stream
	// goroutine: it must not block.
	OnNACK func(NACK)

	// LoadReportInterval is the interval the load reporting service asks
	// clients to report at, MinLoadReportInterval..MaxLoadReportInterval.
	// Zero: DefaultLoadReportInterval.
	LoadReportInterval time.Duration
	// OnLoad, if set, is called for each cluster of each load report a
	// client sends (see Load), on the client's LRS stream goroutine: it
	// must not block.
	OnLoad func(Load)
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.EgressAddr == "" {
		c.EgressAddr = DefaultEgressAddr
	}
	if c.AccessLogCluster == "" {
		c.AccessLogCluster = DefaultAccessLogCluster
	}
	if c.AccessLogName == "" {
		c.AccessLogName = DefaultAccessLogName
	}
	if c.BreakerHeader == "" {
		c.BreakerHeader = DefaultBreakerHeader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LoadReportInterval == 0 {
		c.LoadReportInterval = DefaultLoadReportInterval
	}
	return c
}

// ErrInvalidConfig is returned by Validate, NewServer and Translate for a
// Config they cannot use.
var ErrInvalidConfig = errors.New("xds: invalid config")

// Validate checks the fields, naming each one at fault. Zero values are
// valid (they mean the defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := netip.ParseAddrPort(c.EgressAddr); err != nil {
		errs = append(errs, fmt.Errorf("EgressAddr: %q is not an IP:port: %w", c.EgressAddr, err))
	}
	if c.AccessLogAddr != "" {
		if _, err := netip.ParseAddrPort(c.AccessLogAddr); err != nil {
			errs = append(errs, fmt.Errorf("AccessLogAddr: %q is not an IP:port: %w", c.AccessLogAddr, err))
		}
	}
	if c.LoadReportInterval < MinLoadReportInterval || c.LoadReportInterval > MaxLoadReportInterval {
		errs = append(errs, fmt.Errorf("LoadReportInterval: %v, want %v..%v", c.LoadReportInterval, MinLoadReportInterval, MaxLoadReportInterval))
	}
	if !validHeaderName(c.BreakerHeader) {
		errs = append(errs, fmt.Errorf("BreakerHeader: %q is not a lowercase HTTP header name", c.BreakerHeader))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// validHeaderName accepts lowercase RFC 9110 tokens (HTTP/2 wants lowercase)
// that are not pseudo-headers.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' ||
			c == '&' || c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
