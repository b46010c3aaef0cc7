package coordinator

import (
	"fmt"
	"maps"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// peerAddrProvider makes the raft transport dial, for the peers it lists, an
// address of this node's own instead of the address in the raft
// configuration (Config.RaftPeerAddrs). The configuration, which every node
// shares, keeps the peers' real addresses; only this node's outgoing
// connections change. Fault-injection tests use it to send the raft traffic
// of every ordered pair of nodes through a proxy of its own.
type peerAddrProvider map[string]string

var _ raft.ServerAddressProvider = peerAddrProvider(nil)

// ServerAddr returns the override for id. For a peer it does not list it
// returns an error, on which raft dials the configured address (and logs a
// warning).
func (p peerAddrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := p[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("no raft address override for %q", id)
}

// newRaftTransport is raft's TCP transport (5 pooled connections per peer,
// 5 s I/O timeout), dialling the overrides in peerAddrs where there are any.
func newRaftTransport(bind string, advertise net.Addr, peerAddrs map[string]string, logger hclog.Logger) (*raft.NetworkTransport, error) {
	cfg := &raft.NetworkTransportConfig{MaxPool: 5, Timeout: 5 * time.Second, Logger: logger}
	if len(peerAddrs) > 0 {
		cfg.ServerAddressProvider = peerAddrProvider(maps.Clone(peerAddrs))
	}
	return raft.NewTCPTransportWithConfig(bind, advertise, cfg)
}
