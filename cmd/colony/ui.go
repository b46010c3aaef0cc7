package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/dashboard"
)

// devUIAddr is where `colony dev` serves the dashboard unless told otherwise.
const devUIAddr = "127.0.0.1:7403"

// addUIFlag adds --ui-addr to `colony coordinator` (and so to `colony dev`).
func addUIFlag(fl *pflag.FlagSet, addr *string) {
	fl.StringVar(addr, "ui-addr", "", `serve the web dashboard at http://ADDR/, e.g. `+devUIAddr+` ("" or "off": no dashboard)`)
}

// defaultDevUI makes `colony dev` serve the dashboard on devUIAddr.
func defaultDevUI(cmd *cobra.Command) {
	cmd.Flags().Set("ui-addr", devUIAddr)
	cmd.Flags().Lookup("ui-addr").DefValue = devUIAddr
}

// uiServer is the dashboard's HTTP listener and its client of the local node.
type uiServer struct {
	addr string // where it listens
	c    *client.Client
	dash *dashboard.Dashboard
	hs   *http.Server
	log  *slog.Logger
	wg   sync.WaitGroup
	once sync.Once
}

// startUI serves the dashboard on addr, talking to the node whose gRPC API
// listens on grpcAddr, and prints its URL. With addr "" or "off" it does
// nothing and returns nil (whose close does nothing).
func startUI(addr, grpcAddr string, log *slog.Logger) (*uiServer, error) {
	if addr == "" || addr == "off" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--ui-addr: %w", err)
	}
	c, err := client.New(client.Config{Endpoints: []string{loopbackIfUnspecified(grpcAddr)}, Logger: log.With("component", "dashboard-client")})
	if err != nil {
		lis.Close()
		return nil, err
	}
	d, err := dashboard.New(dashboard.Config{Coordinator: c, Logger: log.With("component", "dashboard")})
	if err != nil {
		c.Close()
		lis.Close()
		return nil, err
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
	url := "http://" + loopbackIfUnspecified(u.addr) + "/"
	log.Info("serving the dashboard", "url", url)
	fmt.Fprintf(os.Stderr, "Colony dashboard: %s\n\n", url)
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
