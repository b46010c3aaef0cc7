package cli

import (
	"strings"
	"testing"
	"time"
)

func TestStatusLine(t *testing.T) {
	now := time.Unix(0, 0)
	newLine := func(tty, ttyOnly bool) (*StatusLine, *strings.Builder) {
		var b strings.Builder
		return &StatusLine{w: &b, tty: tty, ttyOnly: ttyOnly, now: func() time.Time { return now }}, &b
	}

	// On a terminal: redrawn in place, throttled unless forced, cleared.
	l, b := newLine(true, true)
	l.Show("saving: 10 B", false)
	l.Show("saving: 20 B", false) // within 100 ms: skipped
	now = now.Add(150 * time.Millisecond)
	l.Show("saving: 3 B", false) // shorter: padded over the old text
	l.Show("saving: 4 B", true)  // forced
	l.Clear()
	if want := "\rsaving: 10 B\rsaving: 3 B \rsaving: 4 B\r           \r"; b.String() != want {
		t.Errorf("terminal got %q, want %q", b.String(), want)
	}

	// Elsewhere: each change on its own line, or nothing if only for terminals.
	l, b = newLine(false, false)
	for _, s := range []string{"no leader yet", "no leader yet", "1 of 3 voters answering"} {
		l.Show(s, false)
	}
	l.Clear()
	if want := "no leader yet\n1 of 3 voters answering\n"; b.String() != want {
		t.Errorf("log got %q, want %q", b.String(), want)
	}
	l, b = newLine(false, true)
	l.Show("saving: 10 B", true)
	if b.Len() != 0 {
		t.Errorf("ttyOnly line wrote %q to a non-terminal", b.String())
	}
}

func TestBytesProgress(t *testing.T) {
	tests := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{512, 0, 0, "saving: 512 B"},
		{3 << 20, 12 << 20, 2 * time.Second, "saving: 3.0 MiB of 12.0 MiB (25%), 1.5 MiB/s"},
		{1536, 1536, time.Second, "saving: 1.5 KiB of 1.5 KiB (100%), 1.5 KiB/s"},
	}
	for _, tt := range tests {
		if got := BytesProgress("saving", tt.done, tt.total, tt.elapsed); got != tt.want {
			t.Errorf("BytesProgress(%d, %d, %v) = %q, want %q", tt.done, tt.total, tt.elapsed, got, tt.want)
		}
	}
}
