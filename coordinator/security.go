package coordinator

// Transport security: the credentials of the node's gRPC server and of its
// connections to peers, and the gate that keeps the Peer service to nodes.
// Everything comes from Config.TLS (package trust); without it the node is
// insecure and says so at start.

import (
	"context"
	"crypto/tls"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
)

// peerServicePrefix starts the full method name of every Peer RPC.
var peerServicePrefix = "/" + peerv1.Peer_ServiceDesc.ServiceName + "/"

// serverCredentials secure the gRPC listener: TLS with a verified client
// certificate required, whoever the client is (the API authorizes by
// identity, the Peer service only nodes).
func (s *Server) serverCredentials() credentials.TransportCredentials {
	if s.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(s.cfg.TLS.ServerConfig(tls.RequireAndVerifyClientCert, "h2"))
}

// peerCredentials secure this node's connections to other nodes' gRPC
// servers (forwarding, membership): it presents its node certificate and
// accepts only a node certificate of the cluster, whatever address it
// dialled.
func (s *Server) peerCredentials() credentials.TransportCredentials {
	if s.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(s.cfg.TLS.PeerClientConfig("h2"))
}

// logSecurity says how the node is secured, loudly when it is not.
func (s *Server) logSecurity() {
	if s.cfg.TLS == nil {
		s.log.Warn("INSECURE: TLS is off; anyone who can reach this node's ports can read and change every breaker, lock and the raft log itself")
		return
	}
	id := s.cfg.TLS.Identity()
	s.log.Info("TLS on: client certificates required; raft and the Peer service only accept node certificates",
		"identity", id.ID, "trust_domain", s.cfg.TLS.TrustDomain(), "cert_expires", s.cfg.TLS.NotAfter())
	if id.Role != trust.RoleNode {
		s.log.Warn("this node's certificate is not a node certificate; its peers will refuse it", "identity", id.ID, "role", id.Role)
	}
}

// requireNode refuses a Peer RPC from anything but a node of the cluster.
func (s *Server) requireNode(ctx context.Context, method string) error {
	if s.cfg.TLS == nil || !strings.HasPrefix(method, peerServicePrefix) {
		return nil
	}
	id, ok := trust.FromContext(ctx, s.cfg.TLS.TrustDomain())
	if !ok {
		return status.Errorf(codes.Unauthenticated, "%s: a node certificate is required", method)
	}
	if id.Role != trust.RoleNode {
		return status.Errorf(codes.PermissionDenied, "%s is for coordinator nodes only; %s is a %s identity", method, id.ID, id.Role)
	}
	return nil
}

func (s *Server) peerOnlyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.requireNode(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) peerOnlyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.requireNode(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
