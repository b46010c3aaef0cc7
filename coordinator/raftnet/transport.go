// Package raftnet is how a coordinator node's raft reaches its peers: the
// network transport it gives raft, raft's TCP transport with a fixed pool
// and timeout (NewTransport) that can dial, for the peers a node lists, an
// address of the node's own instead of the one in the raft configuration
// (coordinator.Config's RaftPeerAddrs), which fault-injection tests use to
// put a proxy between every ordered pair of nodes; and the voter
// configuration a new cluster starts with (Voters).
package raftnet

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
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

// NewTransport is raft's TCP transport (5 pooled connections per peer,
// 5 s I/O timeout), dialling the overrides in peerAddrs where there are any.
func NewTransport(bind string, advertise net.Addr, self string, peerAddrs map[string]string, logger hclog.Logger) (*raft.NetworkTransport, error) {
	cfg := &raft.NetworkTransportConfig{MaxPool: 5, Timeout: 5 * time.Second, Logger: logger}
	var p *peerAddrProvider
	if len(peerAddrs) > 0 {
		p = &peerAddrProvider{self: raft.ServerID(self), peers: maps.Clone(peerAddrs)}
		cfg.ServerAddressProvider = p
	}
	t, err := raft.NewTCPTransportWithConfig(bind, advertise, cfg)
	if err != nil {
		return nil, err
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
