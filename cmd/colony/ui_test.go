package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

// TestUIServesAndStops serves the dashboard against a real node and checks
// that an open live-update stream does not hold shutdown up.
func TestUIServesAndStops(t *testing.T) {
	srv := coordinatortest.StartNode(t)
	u, err := startUI("127.0.0.1:0", srv.Addr(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	addr := u.addr
	for _, p := range []string{"/", "/api/cluster"} {
		res, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", p, res.StatusCode, body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: snapshot") {
	}

	start := time.Now()
	u.close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("close took %v with a browser connected", d)
	}
	for sc.Scan() { // the stream ends
	}
	u.close() // again: a no-op
	var none *uiServer
	none.close()
}

func TestStartUIOff(t *testing.T) {
	for _, addr := range []string{"", "off"} {
		u, err := startUI(addr, "127.0.0.1:1", slog.New(slog.DiscardHandler))
		if u != nil || err != nil {
			t.Fatalf("startUI(%q) = %v, %v; want nothing", addr, u, err)
		}
	}
	if _, err := startUI("127.0.0.1:notaport", "127.0.0.1:1", slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--ui-addr") {
		t.Fatalf("bad --ui-addr: %v", err)
	}
}

func TestLoopbackIfUnspecified(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7400":   "127.0.0.1:7400",
		"[::]:7400":      "127.0.0.1:7400",
		":7400":          "127.0.0.1:7400",
		"10.0.0.5:7400":  "10.0.0.5:7400",
		"127.0.0.1:7403": "127.0.0.1:7403",
		"not-an-addr":    "not-an-addr",
	} {
		if got := loopbackIfUnspecified(in); got != want {
			t.Errorf("loopbackIfUnspecified(%q) = %q, want %q", in, got, want)
		}
	}
}
