package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/dashboard"
	"github.com/colonymesh/colony/internal/trust"
)

// devUIAddr is where `colony dev` serves the dashboard unless told otherwise.
const devUIAddr = "127.0.0.1:7403"

// addUIFlag adds --ui-addr to `colony coordinator` (and so to `colony dev`).
// addUIFlags adds it with the dashboard's security flags.
func addUIFlag(fl *pflag.FlagSet, addr *string) {
	fl.StringVar(addr, "ui-addr", "", `serve the web dashboard at http(s)://ADDR/, e.g. `+devUIAddr+` ("" or "off": no dashboard)`)
}

// uiFlags are the dashboard's flags.
type uiFlags struct {
	prefix             string // of the flag names: "ui-" on colony coordinator, "" on colony ui
	addr               string
	tokenFile          string
	trustedProxyHeader string
	trustedProxies     []string
	allowedHosts       []string
	allowedOrigins     []string
	read               string
	maxPerIdentity     int
	anonymousOperators bool
}

// flag names one of f's flags for an error message.
func (f uiFlags) flag(name string) string { return "--" + f.prefix + name }

// addUIFlags adds the dashboard's security flags, their names prefixed
// with prefix ("ui-" beside --ui-addr on colony coordinator), and
// --ui-addr when prefix is "ui-".
func addUIFlags(fl *pflag.FlagSet, f *uiFlags, prefix string) {
	f.prefix = prefix
	if prefix == "ui-" {
		addUIFlag(fl, &f.addr)
	}
	fl.StringVar(&f.tokenFile, prefix+"token-file", "", "dashboard operators' bearer tokens, one a line as NAME:TOKEN (recorded as token:NAME); browsers log in with one")
	fl.StringVar(&f.trustedProxyHeader, prefix+"trusted-proxy-header", "", "header in which an authenticating proxy names the dashboard user, e.g. X-Forwarded-User (believed only from --"+prefix+"trusted-proxies)")
	fl.StringSliceVar(&f.trustedProxies, prefix+"trusted-proxies", nil, "addresses or CIDRs of the authenticating proxies whose --"+prefix+"trusted-proxy-header is believed")
	fl.StringSliceVar(&f.allowedHosts, prefix+"allowed-hosts", nil, "host names the dashboard answers to (Host header; defeats DNS rebinding) (default: the listen host, localhost, 127.0.0.1, ::1)")
	fl.StringSliceVar(&f.allowedOrigins, prefix+"allowed-origins", nil, "further origins (scheme://host[:port]) allowed to act through the dashboard, e.g. a proxy's public URL")
	fl.StringVar(&f.read, prefix+"read", string(dashboard.ReadAnyone), "who may read the dashboard: anyone (operators act) or authenticated")
	fl.IntVar(&f.maxPerIdentity, prefix+"max-streams-per-identity", 0, "live-update streams one identity (one IP for anonymous readers) may hold (default 8)")
	fl.BoolVar(&f.anonymousOperators, prefix+"insecure-anonymous-operators", false, "let anyone who reaches the dashboard act as an operator, recorded by IP (development on loopback only)")
}

// defaultDevUI makes `colony dev` serve the dashboard on devUIAddr.
func defaultDevUI(cmd *cobra.Command) {
	cmd.Flags().Set("ui-addr", devUIAddr)
	cmd.Flags().Lookup("ui-addr").DefValue = devUIAddr
}

// uiOptions is what startUIWith needs besides the flags.
type uiOptions struct {
	// grpcAddr is the local node's gRPC API; endpoints, when set, are
	// the coordinators to use instead (colony ui).
	grpcAddr  string
	endpoints []string
	// tls is the process's certificate (the node's): the dashboard
	// dials the coordinator and sidecars with it and, unless plainHTTP,
	// serves HTTPS with it. Nil: plaintext (an insecure cluster).
	tls *trust.Material
	// plainHTTP serves HTTP even with tls (`colony dev` on loopback, where
	// browsers do not trust the dev CA).
	plainHTTP bool
	// devTokenFile, when set and --ui-token-file is not, is where a
	// token is made (once) and read, and the login URL is printed
	// (`colony dev`).
	devTokenFile string
	// out receives the URL. Nil: stderr.
	out io.Writer
}

// uiServer is the dashboard's HTTP listener and its client of the local node.
type uiServer struct {
	addr string // where it listens
	url  string // what to open in a browser
	c    *client.Client
	dash *dashboard.Dashboard
	hs   *http.Server
	log  *slog.Logger
	wg   sync.WaitGroup
	once sync.Once
}

// startUI serves the dashboard on addr without TLS or credentials (read
// only), talking to the node whose gRPC API listens on grpcAddr. See
// startUIWith.
func startUI(addr, grpcAddr string, log *slog.Logger) (*uiServer, error) {
	return startUIWith(uiFlags{prefix: "ui-", addr: addr}, uiOptions{grpcAddr: grpcAddr}, log)
}

// dashboardConfig turns the flags into a dashboard.Config (without the
// Coordinator).
func dashboardConfig(f uiFlags, o uiOptions, listenAddr string, log *slog.Logger) (dashboard.Config, error) {
	cfg := dashboard.Config{
		TLS:                   o.tls,
		TrustedProxyHeader:    f.trustedProxyHeader,
		AllowedOrigins:        f.allowedOrigins,
		Read:                  dashboard.ReadMode(f.read),
		MaxClientsPerIdentity: f.maxPerIdentity,
		AnonymousOperators:    f.anonymousOperators,
		Logger:                log.With("component", "dashboard"),
	}
	tokenFile := f.tokenFile
	if tokenFile == "" && o.devTokenFile != "" {
		if err := ensureDevToken(o.devTokenFile); err != nil {
			return cfg, err
		}
		tokenFile = o.devTokenFile
	}
	if tokenFile != "" {
		toks, err := dashboard.LoadTokens(tokenFile)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", f.flag("token-file"), err)
		}
		cfg.Tokens = toks
	}
	for _, p := range f.trustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			ip, ierr := netip.ParseAddr(p)
			if ierr != nil {
				return cfg, fmt.Errorf("%s: %q is not an address or CIDR", f.flag("trusted-proxies"), p)
			}
			pfx = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx.Masked())
	}
	if len(f.allowedHosts) > 0 {
		cfg.AllowedHosts = f.allowedHosts
	} else {
		cfg.AllowedHosts = dashboard.DefaultConfig().AllowedHosts
		if host, _, err := net.SplitHostPort(listenAddr); err == nil && host != "" {
			if ip, err := netip.ParseAddr(host); err != nil || !ip.IsUnspecified() {
				cfg.AllowedHosts = append(cfg.AllowedHosts, host)
			}
		}
	}
	return cfg, nil
}

// ensureDevToken writes a random dev token to path unless it exists.
func ensureDevToken(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("# colony dev: the dashboard's operator token\ndev:"+dashboard.NewTokenSecret()+"\n"), 0o600)
}

// startUIWith serves the dashboard on f.addr, talking to the node whose
// gRPC API listens on o.grpcAddr, and prints its URL. With addr "" or
// "off" it does nothing and returns nil (whose close does nothing).
func startUIWith(f uiFlags, o uiOptions, log *slog.Logger) (*uiServer, error) {
	if f.addr == "" || f.addr == "off" {
		return nil, nil
	}
	cfg, err := dashboardConfig(f, o, f.addr, log)
	if err != nil {
		return nil, err
	}
	eps := o.endpoints
	if len(eps) == 0 {
		eps = []string{loopbackIfUnspecified(o.grpcAddr)}
	}
	ccfg := client.Config{Endpoints: eps, Logger: log.With("component", "dashboard-client")}
	if o.tls != nil {
		ccfg.TLS = o.tls.ClientConfig("")
	}
	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.flag("addr"), err)
	}
	c, err := client.New(ccfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	cfg.Coordinator = c
	d, err := dashboard.New(cfg)
	if err != nil {
		c.Close()
		lis.Close()
		return nil, err
	}
	scheme := "http"
	if tc := d.TLSConfig(); tc != nil && !o.plainHTTP {
		lis, scheme = tls.NewListener(lis, tc), "https"
	}
	u := &uiServer{addr: lis.Addr().String(), c: c, dash: d, log: log, hs: &http.Server{
		Handler:           d,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: the live updates are one long response.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	// Shutdown does not end long-lived responses: closing the dashboard
	// ends its event streams.
	u.hs.RegisterOnShutdown(func() { d.Close() })
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		if err := u.hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("dashboard server stopped", "err", err)
		}
	}()
	u.url = scheme + "://" + loopbackIfUnspecified(u.addr) + "/"
	log.Info("serving the dashboard", "url", u.url, "tokens", len(cfg.Tokens), "tls", o.tls != nil, "read", cfg.Read)
	out := o.out
	if out == nil {
		out = os.Stderr
	}
	fmt.Fprintf(out, "Colony dashboard: %s\n", u.url)
	if f.tokenFile == "" && o.devTokenFile != "" && len(cfg.Tokens) > 0 {
		// The fragment never leaves the browser; the page trades it for a
		// session cookie and forgets it.
		fmt.Fprintf(out, "Log in as operator: %s#token=%s (token in %s)\n", u.url, cfg.Tokens[0].Secret, o.devTokenFile)
	}
	fmt.Fprintln(out)
	return u, nil
}

// close stops the listener, ends the browsers' event streams and closes
// the client, giving requests in flight at most 5s. It may be called more
// than once, and on nil.
func (u *uiServer) close() {
	if u == nil {
		return
	}
	u.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := u.hs.Shutdown(ctx); err != nil {
			u.log.Warn("dashboard shutdown", "err", err)
		}
		u.wg.Wait()
		u.dash.Close()
		u.c.Close()
	})
}

// loopbackIfUnspecified turns a wildcard listen address (0.0.0.0:7400,
// [::]:7400) into one to dial or print (127.0.0.1:7400).
func loopbackIfUnspecified(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// uiCmdFlags are `colony ui`'s own flags besides the dashboard's.
type uiCmdFlags struct {
	ui          uiFlags
	certsDir    string
	caCert      string
	cert        string
	key         string
	trustDomain string
	insecure    bool
	plainHTTP   bool
	logLevel    string
}

// newUICmd is `colony ui`: the dashboard on its own, for a cluster that
// runs elsewhere.
func newUICmd() *cobra.Command {
	f := &uiCmdFlags{}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard for a coordinator cluster",
		Long: `Serve the web dashboard for the coordinators at --endpoints.

The dashboard dials the coordinators and the sidecars with its own certificate
(an operator certificate with the host names browsers use:
colony cert client --role operator --name dashboard --host dash.example.com)
and serves HTTPS with it. Anyone who passes the Host check reads (or, with
--read authenticated, anyone with a credential); operators act: browsers with
a client certificate of role operator or admin, holders of a --token-file
token, or users named by a trusted proxy (--trusted-proxy-header with
--trusted-proxies). The audit trail records who they are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUI(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ui.addr, "addr", devUIAddr, "listen address of the dashboard")
	fl.String("endpoints", client.DefaultEndpoint, "coordinator gRPC addresses, comma-separated; $"+cli.EndpointsEnv+" replaces the default")
	fl.StringVar(&f.certsDir, "certs-dir", "", "directory with ca.crt and exactly one operator-<name> or admin-<name> .crt/.key pair")
	fl.StringVar(&f.caCert, "cacert", "", "CA bundle file (instead of --certs-dir)")
	fl.StringVar(&f.cert, "cert", "", "the dashboard's certificate file (instead of --certs-dir)")
	fl.StringVar(&f.key, "key", "", "the dashboard's key file (instead of --certs-dir)")
	fl.StringVar(&f.trustDomain, "trust-domain", trust.DefaultTrustDomain, "SPIFFE trust domain of the cluster's certificates")
	fl.BoolVar(&f.insecure, "insecure", false, "no certificates: plaintext to the coordinators and the browsers (an insecure cluster only)")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "serve HTTP even with certificates (behind a TLS-terminating proxy on the same host)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	addUIFlags(fl, &f.ui, "")
	return cmd
}

// files picks the dashboard's certificate files from the flags: nil
// with --insecure.
func (f *uiCmdFlags) files() (*trust.Files, error) {
	explicit := f.caCert != "" || f.cert != "" || f.key != ""
	switch {
	case f.insecure && (explicit || f.certsDir != ""):
		return nil, errors.New("--insecure: refused together with --certs-dir, --cacert, --cert or --key")
	case f.insecure:
		return nil, nil
	case explicit && f.certsDir != "":
		return nil, errors.New("--certs-dir: give it or --cacert --cert --key, not both")
	case explicit:
		files := trust.Files{CA: f.caCert, Cert: f.cert, Key: f.key}
		if err := files.Validate(); err != nil {
			return nil, fmt.Errorf("--cacert, --cert, --key: %w", err)
		}
		return &files, nil
	case f.certsDir == "":
		return nil, errors.New("colony ui needs the dashboard's certificate: --certs-dir DIR (with ca.crt and an operator-NAME pair, made by " +
			"`colony cert client --role operator --name dashboard --host HOST`) or --cacert --cert --key; or --insecure for an insecure cluster")
	}
	var pairs []trust.Files
	for _, role := range []trust.Role{trust.RoleOperator, trust.RoleAdmin} {
		certs, err := filepath.Glob(filepath.Join(f.certsDir, string(role)+"-*.crt"))
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(c), string(role)+"-"), ".crt")
			pairs = append(pairs, trust.LeafFiles(f.certsDir, role, name))
		}
	}
	if len(pairs) != 1 {
		var names []string
		for _, p := range pairs {
			names = append(names, filepath.Base(p.Cert))
		}
		return nil, fmt.Errorf("--certs-dir %s: want exactly one operator-NAME or admin-NAME certificate, found %d %v (use --cacert --cert --key)", f.certsDir, len(pairs), names)
	}
	return &pairs[0], nil
}

func runUI(cmd *cobra.Command, f *uiCmdFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	files, err := f.files()
	if err != nil {
		return err
	}
	eps, err := cli.EndpointsOf(cmd)
	if err != nil {
		return err
	}
	o := uiOptions{endpoints: eps, plainHTTP: f.plainHTTP, out: cmd.ErrOrStderr()}
	if files != nil {
		if o.tls, err = trust.Load(*files, f.trustDomain, log); err != nil {
			return err
		}
	} else {
		log.Warn("colony ui --insecure: plaintext to the coordinators and the browsers")
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := startUIWith(f.ui, o, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	u.close()
	return nil
}
