package hclogslog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func newTestLogger() (hclog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	return New(slog.New(h)), &buf
}

// TestFormatArgumentsAreExpanded: raft logs its initial configuration with
// hclog.Fmt("%+v", servers); the line must show the servers, not the verb.
func TestFormatArgumentsAreExpanded(t *testing.T) {
	l, buf := newTestLogger()
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []struct{ ID string }{{"n1"}}), "n", hclog.Hex(255))
	got := buf.String()
	if strings.Contains(got, "%+v") || !strings.Contains(got, "{ID:n1}") || !strings.Contains(got, "n=0xff") {
		t.Errorf("line = %q; want the formatted servers and 0xff", got)
	}
}

func TestElectionWarningOnlyWhenALeaderWasKnown(t *testing.T) {
	tests := []struct {
		name      string
		args      []any
		wantLevel string
	}{
		{"first election after start", []any{"last-leader-addr", "", "last-leader-id", ""}, "level=INFO"},
		{"leader went silent", []any{"last-leader-addr", "127.0.0.1:7411", "last-leader-id", "n2"}, "level=WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, buf := newTestLogger()
			l.Warn("heartbeat timeout reached, starting election", tt.args...)
			if !strings.Contains(buf.String(), tt.wantLevel) {
				t.Errorf("line = %q; want %s", buf.String(), tt.wantLevel)
			}
		})
	}
	l, buf := newTestLogger()
	l.Warn("something else", "last-leader-id", "")
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Errorf("other warnings must keep their level: %q", buf.String())
	}
}
