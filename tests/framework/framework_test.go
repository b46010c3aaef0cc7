//go:build unix

package framework

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/colonymesh/colony/internal/trust"
)

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 8)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ports)
	if len(slices.Compact(ports)) != 8 {
		t.Fatalf("FreePorts(8) = %v, want 8 distinct ports", ports)
	}
}

func TestLogTailAndExcerpt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{n: 2, want: "c\nd"},
		{n: 10, want: "a\nb\nc\nd"},
	} {
		if got := LogTail(path, tc.n); got != tc.want {
			t.Errorf("LogTail(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := LogTail(filepath.Join(t.TempDir(), "missing.log"), 3); !strings.HasPrefix(got, "(reading ") {
		t.Errorf("LogTail of a missing file = %q, want a note that it could not be read", got)
	}
	if got, want := Excerpt([]byte("x\ny\nz\n"), 2, 2), "y\nz"; got != want {
		t.Errorf("Excerpt = %q, want %q", got, want)
	}
}

func TestEventually(t *testing.T) {
	calls := 0
	err := Eventually(context.Background(), time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Eventually = %v after %d calls, want nil after 3", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = Eventually(ctx, time.Millisecond, func() error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Eventually past its deadline = %v, want the deadline and the last error", err)
	}
}

// A killed process is reported as exited, with its log's marker lines.
func TestProcessKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary:", err)
	}
	logPath := filepath.Join(t.TempDir(), "sleep.log")
	p, err := StartProcess(context.Background(), "framework", sleep, []string{"60"}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("the process exited at once")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.WaitExit(ExitTimeout) {
		t.Fatalf("the process did not exit within %v of SIGKILL", ExitTimeout)
	}
	if got := p.Describe(); !strings.Contains(got, "killed") {
		t.Errorf("Describe() = %q, want it to say the process was killed", got)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("a second Kill = %v, want nil", err)
	}
	log := LogTail(logPath, 10)
	if !strings.Contains(log, "=== framework") || !strings.Contains(log, "process exited") {
		t.Errorf("log = %q, want the start and exit markers", log)
	}
}

// A PKI's directory holds what `--certs-dir` expects, and its admin
// client certificate passes a node's TLS listener, which verifies it.
func TestPKIAdminReachesNode(t *testing.T) {
	p, err := NewPKI(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Issue(trust.RoleNode, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{files.CA, files.Cert, files.Key, filepath.Join(p.Dir, "admin-"+AdminName+".crt")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("PKI dir lacks %s: %v", f, err)
		}
	}
	if got, want := p.ServerArgs(), []string{"--certs-dir", p.Dir}; !slices.Equal(got, want) {
		t.Errorf("ServerArgs() = %v, want %v", got, want)
	}
	node, err := trust.Load(files, p.CA.TrustDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", node.ServerConfig(tls.RequireAndVerifyClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- err.Error()
			return
		}
		cs := tc.ConnectionState()
		id, _ := trust.FromConnectionState(&cs, node.TrustDomain())
		got <- id.ID
	}()
	cfg := p.AdminTLS()
	cfg.ServerName = "127.0.0.1" // what gRPC sets from the address dialled
	conn, err := tls.Dial("tcp", lis.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("dialling the node with the admin certificate: %v", err)
	}
	conn.Close()
	if id, want := <-got, "spiffe://colony.local/admin/"+AdminName; id != want {
		t.Errorf("the node saw %q, want %q", id, want)
	}
}

// A nil PKI is an insecure cluster: --insecure for servers and the CLI,
// plaintext for the harness.
func TestNilPKIIsInsecure(t *testing.T) {
	var p *PKI
	if got := p.ServerArgs(); !slices.Equal(got, []string{"--insecure"}) {
		t.Errorf("ServerArgs() = %v, want [--insecure]", got)
	}
	if got := p.ClientArgs(); !slices.Equal(got, []string{"--insecure"}) {
		t.Errorf("ClientArgs() = %v, want [--insecure]", got)
	}
	if p.AdminTLS() != nil {
		t.Error("AdminTLS() is not nil")
	}
	if got := p.Creds().Info().SecurityProtocol; got != "insecure" {
		t.Errorf("Creds() speak %q, want insecure", got)
	}
}
