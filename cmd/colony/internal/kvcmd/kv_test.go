package kvcmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
)

func TestReadData(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, []byte("from file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &cli.Env{In: strings.NewReader("from stdin")}
	tests := []struct {
		name      string
		args      []string
		file      string
		want      string
		wantGiven bool
		wantErr   bool
	}{
		{"argument", []string{"/p", "arg"}, "", "arg", true, false},
		{"stdin", []string{"/p", "-"}, "", "from stdin", true, false},
		{"file", []string{"/p"}, file, "from file", true, false},
		{"none", []string{"/p"}, "", "", false, false},
		{"both", []string{"/p", "arg"}, file, "", false, true},
		{"missing file", []string{"/p"}, file + ".nope", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, given, err := readData(s, tt.args, 1, tt.file)
			if (err != nil) != tt.wantErr || given != tt.wantGiven || string(data) != tt.want {
				t.Errorf("readData = %q, %v, %v; want %q, %v, error %v", data, given, err, tt.want, tt.wantGiven, tt.wantErr)
			}
		})
	}
}

func TestKVCommands(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := colony(ctx, t, stdin, append(args, "--endpoints", addr)...)
		if err != nil {
			t.Fatalf("colony %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	if out := run("", "kv", "create", "/app", "v1"); out != "/app\n" {
		t.Errorf("create printed %q", out)
	}
	if out := run("", "kv", "create", "/app/job-", "--sequential"); out != "/app/job-0000000000\n" {
		t.Errorf("sequential create printed %q", out)
	}
	run("from stdin", "kv", "set", "/app", "-", "--version", "0")
	if out := run("", "kv", "get", "/app"); out != "from stdin" {
		t.Errorf("get printed %q", out)
	}
	if out := run("", "kv", "ls", "/app"); out != "job-0000000000\n" {
		t.Errorf("ls printed %q", out)
	}
	if out := run("", "kv", "stat", "/app"); !strings.Contains(out, "version:") || !strings.Contains(out, "numChildren:  1") {
		t.Errorf("stat printed %q", out)
	}

	var got struct {
		Data string `json:"data"`
		Stat struct {
			Version int64 `json:"version"` // a number, not protojson's string
		} `json:"stat"`
	}
	if err := json.Unmarshal([]byte(run("", "kv", "get", "/app", "-o", "json")), &got); err != nil {
		t.Fatalf("get -o json: %v", err)
	}
	if got.Data != "ZnJvbSBzdGRpbg==" || got.Stat.Version != 1 {
		t.Errorf("get -o json = %+v", got)
	}

	_, err := colony(ctx, t, "", "kv", "set", "/app", "x", "--version", "0", "--endpoints", addr)
	if !errors.Is(err, client.ErrBadVersion) || !strings.Contains(err.Error(), "current 1") {
		t.Errorf("stale set: %v, want the server's version mismatch", err)
	}
	_, err = colony(ctx, t, "", "kv", "rm", "/app", "--endpoints", addr)
	if !errors.Is(err, client.ErrNotEmpty) {
		t.Errorf("rm of a parent: %v, want ErrNotEmpty", err)
	}
	run("", "kv", "rm", "/app/job-0000000000")
	run("", "kv", "rm", "/app")

	// $COLONY_ENDPOINTS stands in for --endpoints.
	t.Setenv(cli.EndpointsEnv, addr)
	if _, err := colony(ctx, t, "", "kv", "get", "/app"); !errors.Is(err, client.ErrNoNode) {
		t.Errorf("get after rm (endpoints from env): %v, want ErrNoNode", err)
	}
}

func TestKVWatchCommand(t *testing.T) {
	addr := startTestCoordinator(t)
	ctx := t.Context()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, st, err := c.Create(ctx, "/w", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/w", []byte("v2"), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
	// A data watch after the create sees the set, prints it and exits.
	after := strconv.FormatUint(st.GetMzxid(), 10)
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	out, err := colony(dctx, t, "", "kv", "watch", "/w", "--kind", "data", "--after", after, "-o", "json", "--endpoints", addr)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Type != "EVENT_TYPE_DATA_CHANGED" || ev.Path != "/w" {
		t.Errorf("watch printed %q (%v)", out, err)
	}

	// A persistent watch prints events until its context ends.
	wctx, cancel := context.WithCancel(ctx)
	var wout, werr syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(wctx, &wout, &werr, "", "kv", "watch", "/w", "--endpoints", addr)
		done <- err
	}()
	waitFor(t, "the watch to start", func() bool { return strings.Contains(werr.String(), "watching /w") }, done, &werr)
	if _, err := c.Set(ctx, "/w", []byte("v3"), client.AnyVersion); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event", func() bool { return strings.Contains(wout.String(), `DATA_CHANGED     /w "v3"`) }, done, &werr)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch ended with %v, want nil on Ctrl-C", err)
	}
}
