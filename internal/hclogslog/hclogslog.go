// Package hclogslog adapts a *slog.Logger to hashicorp/go-hclog's Logger, so
// that hashicorp/raft logs through the same structured logger as the rest of
// Colony instead of writing to stderr on its own.
package hclogslog

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// New returns an hclog.Logger that writes to l. A nil l discards everything.
func New(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &logger{l: l}
}

type logger struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*logger)(nil)

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (g *logger) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	ctx := context.Background()
	if !g.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(g.args)+len(args))
	all = append(all, g.args...)
	all = append(all, args...)
	g.l.Log(ctx, lv, msg, all...)
}

func (g *logger) Trace(msg string, args ...any) { g.Log(hclog.Trace, msg, args...) }
func (g *logger) Debug(msg string, args ...any) { g.Log(hclog.Debug, msg, args...) }
func (g *logger) Info(msg string, args ...any)  { g.Log(hclog.Info, msg, args...) }
func (g *logger) Warn(msg string, args ...any)  { g.Log(hclog.Warn, msg, args...) }
func (g *logger) Error(msg string, args ...any) { g.Log(hclog.Error, msg, args...) }

func (g *logger) enabled(level hclog.Level) bool {
	return g.l.Enabled(context.Background(), toSlog(level))
}

func (g *logger) IsTrace() bool { return g.enabled(hclog.Trace) }
func (g *logger) IsDebug() bool { return g.enabled(hclog.Debug) }
func (g *logger) IsInfo() bool  { return g.enabled(hclog.Info) }
func (g *logger) IsWarn() bool  { return g.enabled(hclog.Warn) }
func (g *logger) IsError() bool { return g.enabled(hclog.Error) }

func (g *logger) ImpliedArgs() []any { return g.args }

func (g *logger) With(args ...any) hclog.Logger {
	c := *g
	c.args = append(append([]any(nil), g.args...), args...)
	return &c
}

func (g *logger) Name() string { return g.name }

func (g *logger) Named(name string) hclog.Logger {
	if g.name != "" {
		name = g.name + "." + name
	}
	return g.ResetNamed(name)
}

func (g *logger) ResetNamed(name string) hclog.Logger {
	c := *g
	c.name = name
	c.l = g.l.With("logger", name)
	return &c
}

// SetLevel is a no-op: the level belongs to the slog handler.
func (g *logger) SetLevel(hclog.Level) {}

func (g *logger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if g.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (g *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(g.StandardWriter(opts), "", 0)
}

func (g *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return slog.NewLogLogger(g.l.Handler(), slog.LevelInfo).Writer()
}
