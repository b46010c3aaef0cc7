// Package raftnet is how a coordinator node's raft reaches its peers: the
// network transport it gives raft (NewTransport), raft's network transport
// with a fixed pool and timeout over plain TCP or, given TLS material, over
// mutual TLS that only nodes of the cluster get through; it can dial, for
// the peers a node lists, an address of the node's own instead of the one
// in the raft configuration (coordinator.Config's RaftPeerAddrs), which
// fault-injection tests use to put a proxy between every ordered pair of
// nodes; and the voter configuration a new cluster starts with (Voters).
package raftnet

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/internal/trust"
)

// peerAddrProvider makes the raft transport dial, for the peers it lists, an
// address of this node's own instead of the address in the raft
// configuration (coordinator.Config.RaftPeerAddrs). The configuration, which every node
// shares, keeps the peers' real addresses; only this node's outgoing
// connections change. Fault-injection tests use it to send the raft traffic
// of every ordered pair of nodes through a proxy of its own.
type peerAddrProvider struct {
	self     raft.ServerID
	selfAddr raft.ServerAddress // set once, before raft starts
	peers    map[string]string
}

var _ raft.ServerAddressProvider = (*peerAddrProvider)(nil)

// ServerAddr returns the override for id. raft also looks up this node's
// own address through it (to put it in every request it sends), which is
// the transport's own. For a peer it does not list it returns an error, on
// which raft dials the configured address (and logs a warning).
func (p *peerAddrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if id == p.self && p.selfAddr != "" {
		return p.selfAddr, nil
	}
	if a, ok := p.peers[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("no raft address override for %q", id)
}

// Config configures a node's raft transport.
type Config struct {
	// Bind is the address to listen on ("127.0.0.1:0" picks a free port).
	Bind string
	// Advertise is the address other nodes dial; nil means the bound
	// address, which must then not be unspecified.
	Advertise net.Addr
	// Self is this node's raft server ID.
	Self string
	// PeerAddrs maps peers' server IDs to the address this node dials
	// instead of the configured one; nil means none (see peerAddrProvider).
	PeerAddrs map[string]string
	// TLS, when set, runs raft over mutual TLS: both sides must hold a node
	// certificate of the cluster (trust.Material's PeerServerConfig and
	// PeerClientConfig). Nil means plain TCP, which anyone who can reach
	// the port can use to rewrite the log.
	TLS *trust.Material
	// Logger receives the transport's logs; nil means raft's default.
	Logger hclog.Logger
}

// Pool and timeout of every raft transport: 5 pooled connections per
// peer, 5 s I/O timeout (which also bounds a TLS handshake).
const (
	maxPool = 5
	timeout = 5 * time.Second
)

// NewTransport is raft's network transport (5 pooled connections per peer,
// 5 s I/O timeout) over TCP, or over mutual TLS when cfg.TLS is set,
// dialling the overrides in cfg.PeerAddrs where there are any.
func NewTransport(cfg Config) (*raft.NetworkTransport, error) {
	ncfg := &raft.NetworkTransportConfig{MaxPool: maxPool, Timeout: timeout, Logger: cfg.Logger}
	var p *peerAddrProvider
	if len(cfg.PeerAddrs) > 0 {
		p = &peerAddrProvider{self: raft.ServerID(cfg.Self), peers: maps.Clone(cfg.PeerAddrs)}
		ncfg.ServerAddressProvider = p
	}
	var t *raft.NetworkTransport
	if cfg.TLS == nil {
		var err error
		t, err = raft.NewTCPTransportWithConfig(cfg.Bind, cfg.Advertise, ncfg)
		if err != nil {
			return nil, err
		}
	} else {
		stream, err := listenTLS(cfg.Bind, cfg.Advertise, cfg.TLS, timeout)
		if err != nil {
			return nil, err
		}
		ncfg.Stream = stream
		t = raft.NewNetworkTransportWithConfig(ncfg)
	}
	if p != nil {
		p.selfAddr = t.LocalAddr()
	}
	return t, nil
}

// Voters is the raft configuration of a new cluster whose voters are peers
// (id -> raft address), in id order, so that every member that bootstraps
// (or restores a snapshot) with the same peers gets the same one.
func Voters(peers map[string]string) raft.Configuration {
	var conf raft.Configuration
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(peers[id]),
		})
	}
	return conf
}
