package framework

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// LogTail returns the last n lines of the file at path.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Excerpt returns up to lines lines of b starting at offset i.
func Excerpt(b []byte, i, lines int) string {
	rest := strings.SplitN(string(b[i:]), "\n", lines+1)
	return strings.Join(rest[:min(len(rest), lines)], "\n")
}

// CopyFile copies the file at from to to.
func CopyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// CheckServerLog fails t if the log at path shows a data race or a panic of
// the server that wrote it, quoting the log from there.
func CheckServerLog(t testing.TB, name, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		t.Errorf("%s: the server reported a data race:\n%s", name, Excerpt(b, i, 60))
	}
	if i := bytes.Index(b, []byte("\npanic: ")); i >= 0 {
		t.Errorf("%s: the server panicked:\n%s", name, Excerpt(b, i, 60))
	}
}
