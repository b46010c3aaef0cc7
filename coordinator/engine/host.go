package engine

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/colonymesh/colony/internal/telemetry"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Viewer gives the engine a read view of the tree the host has applied.
type Viewer interface {
	// View returns a point-in-time view of the host's applied tree.
	View() *ztree.View
}

// Committer commits the engine's writes.
type Committer interface {
	// Commit commits ops as one transaction (a Txn command with a request
	// id of the host's) through the log, and returns its result once the
	// host applied it. It fails once the host no longer leads.
	Commit(ctx context.Context, ops []*colonyv1.Op) (*peerv1.CommandResult, error)
}

// Host is the interface expected by the engine from the node that runs it:
// the coordinator's leader, for one term. Leadership is the context's
// business: the host cancels the context it passes to Run when its term
// ends, and Commit fails once it no longer leads.
type Host interface {
	Viewer
	Committer
}

// Config is the engine's configuration. The zero value of each field is
// useful.
type Config struct {
	// MaxPairs bounds the pairs reports create; overrides may create
	// max(10, 1%) more. Zero means 10,000. Errors name it and
	// MaxPairsPerCaller as the coordinator's flags do (MaxBreakerPairs,
	// MaxBreakerPairsPerCaller).
	MaxPairs int
	// MaxPairsPerCaller bounds the pairs one caller service's reports
	// create. Zero means max(100, MaxPairs/10).
	MaxPairsPerCaller int
	// IdleExpiry: a pair that is CLOSED, has no override and got no
	// report for this long is deleted. Zero means 24h.
	IdleExpiry time.Duration
	// Limits are the tree's limits every write is checked against (the
	// history is deleted in transactions of at most MaxOps). Zero fields
	// mean ztree's defaults.
	Limits ztree.Limits
	// Logger receives the engine's logs. Nil means discard.
	Logger *slog.Logger
	// Metrics counts the engine's events; one set per node, shared by the
	// engines of its terms. Nil means not counted.
	Metrics *Metrics
	// Tracer traces reports' ingestion, decisions and writes. Nil means
	// no tracing.
	Tracer trace.Tracer
}

func (c Config) withDefaults() Config {
	if c.MaxPairs == 0 {
		c.MaxPairs = 10000
	}
	if c.MaxPairsPerCaller == 0 {
		c.MaxPairsPerCaller = max(100, c.MaxPairs/10)
	}
	if c.IdleExpiry == 0 {
		c.IdleExpiry = 24 * time.Hour
	}
	d := ztree.DefaultLimits()
	if c.Limits.MaxDataBytes == 0 {
		c.Limits.MaxDataBytes = d.MaxDataBytes
	}
	if c.Limits.MaxOps == 0 {
		c.Limits.MaxOps = d.MaxOps
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Tracer == nil {
		c.Tracer = telemetry.Tracer(nil)
	}
	return c
}
