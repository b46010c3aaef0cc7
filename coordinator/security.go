package coordinator

// Transport security: the credentials of the node's gRPC server and of its
// connections to peers. Everything comes from Config.TLS (package trust);
// without it the node is insecure and says so at start. Who may call what,
// the Peer service included (nodes only), is decided in one place: the
// public API's authorizer (coordinator/api/authz.go), whose interceptors
// serve every method of the node's gRPC server.

import (
	"crypto/tls"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/internal/trust"
)

// serverCredentials secure the gRPC listener: TLS with a verified client
// certificate required, whoever the client is (the API authorizes by
// identity, the Peer service only nodes), and when MaxConcurrentHandshakes
// is set at most that many handshakes at once (admission.go).
func (s *Server) serverCredentials() credentials.TransportCredentials {
	if s.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	creds := credentials.NewTLS(s.cfg.TLS.ServerConfig(tls.RequireAndVerifyClientCert, "h2"))
	if s.cfg.MaxConcurrentHandshakes > 0 {
		creds = admitHandshakes(creds, s.cfg.MaxConcurrentHandshakes)
	}
	return creds
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
