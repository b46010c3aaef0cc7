package cli

import (
	"fmt"
	"io"
	"time"
)

// StatusLine shows the progress of a long operation on one line of w
// (stderr): redrawn in place, at most 10 times a second, on a terminal;
// elsewhere each new text on its own line, or nothing if ttyOnly (a log
// needs no byte counts, only the summary the command prints at the end).
type StatusLine struct {
	w       io.Writer
	tty     bool
	ttyOnly bool
	now     func() time.Time

	last     string
	lastDraw time.Time
	width    int // of the text drawn on the terminal
}

// NewStatusLine returns a status line on w; see StatusLine for ttyOnly.
func NewStatusLine(w io.Writer, ttyOnly bool) *StatusLine {
	return &StatusLine{w: w, tty: IsTerminal(w), ttyOnly: ttyOnly, now: time.Now}
}

// Show makes text the status. Unchanged text is not shown again; on a
// terminal, a change within 100 ms of the last draw waits for the next call
// unless force.
func (l *StatusLine) Show(text string, force bool) {
	if text == l.last {
		return
	}
	if !l.tty {
		if !l.ttyOnly {
			fmt.Fprintln(l.w, text)
		}
		l.last = text
		return
	}
	now := l.now()
	if !force && now.Sub(l.lastDraw) < 100*time.Millisecond {
		return
	}
	pad := max(l.width-len(text), 0)
	fmt.Fprintf(l.w, "\r%s%*s", text, pad, "")
	l.last, l.lastDraw, l.width = text, now, len(text)
}

// Clear removes the status from a terminal, before a final line.
func (l *StatusLine) Clear() {
	if l.tty && l.width > 0 {
		fmt.Fprintf(l.w, "\r%*s\r", l.width, "")
		l.width = 0
	}
	l.last = ""
}

// BytesProgress is the status text of a transfer: done of total (if known),
// and the rate since start.
func BytesProgress(what string, done, total int64, elapsed time.Duration) string {
	s := what + ": " + SizeText(done)
	if total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", SizeText(total), done*100/total)
	}
	if elapsed > 0 && done > 0 {
		s += ", " + RateText(done, elapsed)
	}
	return s
}

// SizeText writes a byte count in binary units ("3.2 MiB").
func SizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// RateText writes n bytes over d as a rate ("12.5 MiB/s").
func RateText(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return SizeText(int64(float64(n)/d.Seconds())) + "/s"
}
