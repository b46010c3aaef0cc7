package main

import (
	"strings"
	"testing"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
)

// TestDemoHintsReachDev: every command the demo suggests reaches the dev
// coordinator as printed: with --endpoints when dev is not on the default
// address, and with the certificates' directory when client commands
// would not find it.
func TestDemoHintsReachDev(t *testing.T) {
	for _, tc := range []struct {
		name, addr, certs string
		want, wantNot     []string
	}{
		{"defaults", client.DefaultEndpoint, cli.DevTLSDir(), nil, []string{"--endpoints", cli.CertsDirEnv}},
		{"other port", "127.0.0.1:17400", "", []string{" --endpoints 127.0.0.1:17400"}, []string{cli.CertsDirEnv}},
		{"other data dir", "127.0.0.1:17400", "/tmp/d/tls", []string{" --endpoints 127.0.0.1:17400", cli.CertsDirEnv + "=/tmp/d/tls go run"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			writeDemoHints(&b, tc.addr, tc.certs)
			n := 0
			for _, line := range strings.Split(b.String(), "\n") {
				if !strings.Contains(line, "go run ./cmd/colony ") {
					continue
				}
				n++
				for _, w := range tc.want {
					if !strings.Contains(line, w) {
						t.Errorf("%q lacks %q", line, w)
					}
				}
				for _, w := range tc.wantNot {
					if strings.Contains(line, w) {
						t.Errorf("%q has %q", line, w)
					}
				}
			}
			if n < 5 {
				t.Fatalf("%d commands in the hints, want the demo's story:\n%s", n, b.String())
			}
		})
	}
}
