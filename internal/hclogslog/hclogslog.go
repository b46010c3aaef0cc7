// Package hclogslog adapts a *slog.Logger to hashicorp/go-hclog's Logger, so
// that hashicorp/raft logs through the same structured logger as the rest of
// Colony instead of writing to stderr on its own.
package hclogslog

import (
	"context"
	"fmt"
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
	lv := toSlog(adjustLevel(level, msg, args))
	ctx := context.Background()
	if !g.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(g.args)+len(args))
	all = append(all, g.args...)
	for _, a := range args {
		all = append(all, expand(a))
	}
	g.l.Log(ctx, lv, msg, all...)
}

// expand renders the values hclog formats itself when it writes a line
// (hclog.Fmt, Hex, Octal, Binary, Quote): slog would print hclog.Fmt's
// format and operands as a list ("[%+v [...]]").
func expand(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	}
	return v
}

// electionTimeout is raft's line when a voter stops hearing from a leader.
const electionTimeout = "heartbeat timeout reached, starting election"

// adjustLevel lowers raft's election warning to INFO when no leader was
// ever known to this node: that is how every start elects its first leader
// (a single-node cluster on each start), not a leader gone silent. With a
// last leader named it stays a WARN.
func adjustLevel(level hclog.Level, msg string, args []any) hclog.Level {
	if level != hclog.Warn || msg != electionTimeout {
		return level
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "last-leader-id" || k == "last-leader-addr" {
			if fmt.Sprint(args[i+1]) != "" {
				return level
			}
		}
	}
	return hclog.Info
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
