// Package cli holds what every client command of colony shares: the
// connection flags and the client they make (Flags, Env, Flags.Run), the
// client certificate (TLSOf, ClientTLS), output
// as a table or JSON (--output), the explanation of the error that ends a
// command (Execute, Explain), progress on a terminal (StatusLine) and the
// dynamic shell completion of names from the cluster (AddCompletions).
//
// The command groups (kvcmd, clustercmd, breakercmd) build on it; main
// registers them on the root command and runs it with Execute.
package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/colonymesh/colony/coordinator/client"
)

// EndpointsEnv names the environment variable that replaces the default of
// --endpoints.
const EndpointsEnv = "COLONY_ENDPOINTS"

// Flags are the flags every client command shares. One Flags serves all the
// command groups of a root command: only the command that runs parses them.
type Flags struct {
	Endpoints string        // --endpoints, as given
	Output    string        // --output (-o): table or json
	Timeout   time.Duration // --timeout: the time limit of a command

	// The client certificate (see TLSOf): --cacert, --cert, --key, or
	// --certs-dir; --insecure for plaintext even where colony dev's
	// certificates exist.
	CACert, Cert, Key, CertsDir string
	Insecure                    bool
}

// Register adds the flags to fs, which belongs to cmd.
func (f *Flags) Register(cmd *cobra.Command, fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoints, "endpoints", client.DefaultEndpoint,
		"coordinator gRPC addresses, comma-separated; $"+EndpointsEnv+" replaces the default")
	AddOutputFlag(cmd, fs, &f.Output)
	fs.DurationVar(&f.Timeout, "timeout", 5*time.Second,
		"time limit of the command, failover included (watch, session open, snapshot save: of setting up)")
	fs.StringVar(&f.CACert, "cacert", "", "CA bundle the coordinators' certificates must chain to (with --cert and --key)")
	fs.StringVar(&f.Cert, "cert", "", "your client certificate, presented to the coordinators")
	fs.StringVar(&f.Key, "key", "", "the private key of --cert")
	fs.StringVar(&f.CertsDir, "certs-dir", "", "directory with ca.crt and exactly one admin-*, operator-* or client-* certificate and key; $"+CertsDirEnv+" stands in (default: colony dev's, when it runs on this machine)")
	fs.BoolVar(&f.Insecure, "insecure", false, "plaintext, no certificate (for a coordinator started with --insecure)")
}

// Env is what a client command works with: a client, the output format and
// the command's streams.
type Env struct {
	Client *client.Client
	JSON   bool      // --output json
	In     io.Reader // the command's stdin
	Out    io.Writer // the command's stdout
	ErrOut io.Writer // the command's stderr
	Flags  *Flags
	// TLS is the client's TLS configuration (nil: plaintext), for
	// commands that dial a coordinator themselves.
	TLS *tls.Config
}

// Connect validates the shared flags and makes a client. The caller closes it.
func (f *Flags) Connect(cmd *cobra.Command) (*Env, error) {
	asJSON, err := ParseOutput(f.Output)
	if err != nil {
		return nil, err
	}
	if f.Timeout <= 0 {
		return nil, fmt.Errorf("--timeout: must be positive, got %v", f.Timeout)
	}
	eps, err := EndpointsOf(cmd)
	if err != nil {
		return nil, err
	}
	tlsCfg, _, err := ClientTLS(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: eps, TLS: tlsCfg})
	if err != nil {
		return nil, err
	}
	return &Env{Client: c, JSON: asJSON, In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), ErrOut: cmd.ErrOrStderr(), Flags: f, TLS: tlsCfg}, nil
}

// EndpointsOf returns the coordinator addresses a client command uses:
// --endpoints, or $COLONY_ENDPOINTS when the flag is not given.
func EndpointsOf(cmd *cobra.Command) ([]string, error) {
	fl := cmd.Flags().Lookup("endpoints")
	if fl == nil {
		return []string{client.DefaultEndpoint}, nil
	}
	list := fl.Value.String()
	if env := os.Getenv(EndpointsEnv); env != "" && !fl.Changed {
		list = env
	}
	var eps []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		ep, err := endpoint(e)
		if err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("--endpoints: no address in %q", list)
	}
	return eps, nil
}

// endpoint checks one --endpoints address: host:port, or a gRPC target
// with a scheme of its own (dns:///host:port, unix:PATH). An http:// or
// https:// prefix, the habit of etcdctl's --endpoints, is dropped:
// coordinators speak gRPC, and whether it is over TLS follows from the
// certificate flags.
func endpoint(e string) (string, error) {
	for _, scheme := range []string{"http://", "https://"} {
		if len(e) >= len(scheme) && strings.EqualFold(e[:len(scheme)], scheme) {
			e = strings.TrimSuffix(e[len(scheme):], "/")
			if strings.Contains(e, "/") {
				return "", fmt.Errorf("--endpoints: %q: want host:port, with no path", e)
			}
			break
		}
	}
	if strings.Contains(e, "://") || strings.HasPrefix(e, "unix:") {
		return e, nil // a gRPC target; gRPC checks it
	}
	if _, port, err := net.SplitHostPort(e); err != nil || port == "" {
		return "", fmt.Errorf("--endpoints: %q: want host:port, like %s", e, client.DefaultEndpoint)
	}
	return e, nil
}

// Run adapts a client command body to cobra: it connects, bounds the work by
// --timeout (or, for long-running commands, by Ctrl-C) and closes the client.
func (f *Flags) Run(longRunning bool, body func(ctx context.Context, s *Env, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := f.Connect(cmd)
		if err != nil {
			return err
		}
		defer s.Client.Close()
		var cancel context.CancelFunc
		ctx := cmd.Context()
		if longRunning {
			ctx, cancel = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		} else {
			ctx, cancel = context.WithTimeout(ctx, f.Timeout)
		}
		defer cancel()
		if cmd.Annotations[waitsForServers] != "" {
			return body(ctx, s, args)
		}
		eps, _ := EndpointsOf(cmd) // checked by Connect
		return withProbe(ctx, eps, func(ctx context.Context) error { return body(ctx, s, args) })
	}
}
