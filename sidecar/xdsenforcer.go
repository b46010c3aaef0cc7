package sidecar

import (
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/xds"
)

// XDS enforces Views through an xDS server (package xds): the local Envoy and
// proxyless gRPC clients. It serves on the sidecar's gRPC server.
type XDS struct {
	srv *xds.Server

	mu    sync.Mutex
	last  []xds.Enforcement // newest last, at most 1000
	nacks []xds.NACK        // newest last, at most 100
	// The sidecar's hooks (metrics, spans), set by observe.
	onEnforced func(xds.Enforcement)
	onNACK     func(xds.NACK)
	onLoad     func(xds.Load)
}

// observe sets the sidecar's hooks for enforcements, NACKs and load
// reports.
func (x *XDS) observe(enforced func(xds.Enforcement), nack func(xds.NACK), load func(xds.Load)) {
	x.mu.Lock()
	x.onEnforced, x.onNACK, x.onLoad = enforced, nack, load
	x.mu.Unlock()
}

// NewXDS returns an XDS enforcer; cfg's OnEnforced, OnNACK and OnLoad are
// chained. The clients' load reports become the sidecar's outcomes (see
// lrs.go for which clients count).
func NewXDS(cfg xds.Config) (*XDS, error) {
	x := &XDS{}
	onEnforced, onNACK, onLoad := cfg.OnEnforced, cfg.OnNACK, cfg.OnLoad
	cfg.OnLoad = func(l xds.Load) {
		x.mu.Lock()
		hook := x.onLoad
		x.mu.Unlock()
		if hook != nil {
			hook(l)
		}
		if onLoad != nil {
			onLoad(l)
		}
	}
	cfg.OnEnforced = func(e xds.Enforcement) {
		x.mu.Lock()
		x.last = append(x.last, e)
		if len(x.last) > 1000 {
			x.last = x.last[len(x.last)-1000:]
		}
		hook := x.onEnforced
		x.mu.Unlock()
		if hook != nil {
			hook(e)
		}
		if onEnforced != nil {
			onEnforced(e)
		}
	}
	cfg.OnNACK = func(n xds.NACK) {
		x.mu.Lock()
		x.nacks = append(x.nacks, n)
		if len(x.nacks) > 100 {
			x.nacks = x.nacks[len(x.nacks)-100:]
		}
		hook := x.onNACK
		x.mu.Unlock()
		if hook != nil {
			hook(n)
		}
		if onNACK != nil {
			onNACK(n)
		}
	}
	srv, err := xds.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	x.srv = srv
	return x, nil
}

// Server returns the xDS server.
func (x *XDS) Server() *xds.Server { return x.srv }

// Register puts ADS on the sidecar's gRPC server.
func (x *XDS) Register(r grpc.ServiceRegistrar) { x.srv.Register(r) }

// Close stops the xDS server.
func (x *XDS) Close() { x.srv.Close() }

// Update translates the view into xDS state and pushes it.
func (x *XDS) Update(v View) error {
	st := xds.State{Caller: v.Service, Instance: v.Instance, ProbeGate: v.ProbeGate}
	for _, c := range v.Callees {
		xc := xds.Callee{Name: c.Name, Protocol: xds.GRPC, Breaker: c.Record, BreakerSeen: c.Seen, ProbeSecret: c.ProbeSecret}
		if c.Protocol == "http" {
			xc.Protocol = xds.HTTP
		}
		seen := map[string]bool{}
		for _, ep := range c.Endpoints {
			// EDS takes IP addresses only, and gRPC rejects a cluster that
			// lists one address twice (two instances registered the same
			// address by mistake): one bad registration must not keep the
			// whole view from the data plane.
			hostPort := net.JoinHostPort(ep.Address, fmt.Sprint(ep.Port))
			if net.ParseIP(ep.Address) == nil || seen[hostPort] {
				continue
			}
			seen[hostPort] = true
			xc.Endpoints = append(xc.Endpoints, xds.Endpoint{Instance: ep.Instance, Address: ep.Address, Port: ep.Port, Zone: ep.Zone})
		}
		st.Callees = append(st.Callees, xc)
	}
	return x.srv.Update(st)
}

// Enforcements returns the latest trip-to-enforce measurements, oldest
// first: one per client and breaker transition.
func (x *XDS) Enforcements() []xds.Enforcement {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]xds.Enforcement(nil), x.last...)
}

// Describe summarises the xDS clients for the sidecar's status.
func (x *XDS) Describe() []string {
	st := x.srv.Status()
	var out []string
	for _, c := range st.Clients {
		line := fmt.Sprintf("xds client %s (%s, since %s):", c.NodeID, c.UserAgent, c.Connected.Format(time.RFC3339))
		types := make([]string, 0, len(c.Types))
		for t := range c.Types {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			ts := c.Types[t]
			line += fmt.Sprintf(" %s acked %s", t, ts.LastAcked)
		}
		if c.LastNACK != nil {
			line += fmt.Sprintf("; last NACK of %s %v: %s", c.LastNACK.Type, c.LastNACK.Resources, c.LastNACK.Reason)
		}
		out = append(out, line)
	}
	x.mu.Lock()
	if n := len(x.last); n > 0 {
		e := x.last[n-1]
		out = append(out, fmt.Sprintf("last enforcement: %s->%s generation %d %v by %s, %v after the leader's decision, %v after the sidecar saw it",
			e.Caller, e.Callee, e.Generation, e.State, e.NodeID, e.FromLeader.Round(time.Microsecond), e.FromSeen.Round(time.Microsecond)))
	}
	x.mu.Unlock()
	return out
}
