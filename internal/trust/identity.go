package trust

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// DefaultTrustDomain is the trust domain of certificates made without one.
const DefaultTrustDomain = "colony.local"

// Role is what an identity is to Colony. The role comes from the SPIFFE ID
// in the certificate (spiffe://<trust-domain>/<role>/<name>) and is trusted
// only for the cluster's own trust domain.
type Role string

const (
	// RoleNode is a coordinator node: the only role that may use the raft
	// transport and the Peer service.
	RoleNode Role = "node"
	// RoleSidecar is the sidecar of one service (the identity's Name): it
	// registers that service's instances, reports as that service and reads
	// that service's breakers.
	RoleSidecar Role = "sidecar"
	// RoleOperator runs the fleet: overrides, policies, snapshots, session
	// listings, membership reads.
	RoleOperator Role = "operator"
	// RoleAdmin may do anything, authorization rules and membership
	// changes included.
	RoleAdmin Role = "admin"
	// RoleClient is any other verified certificate: an application or a
	// user with only the rights authorization rules grant it.
	RoleClient Role = "client"
)

// Roles lists the roles a certificate can name, for flags and errors.
var Roles = []Role{RoleNode, RoleSidecar, RoleOperator, RoleAdmin, RoleClient}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("trust: unknown role %q (want one of %v)", s, Roles)
}

// Identity is who the peer of a connection proved to be.
type Identity struct {
	// ID is the identity as rules and the audit trail name it: the SPIFFE
	// ID (spiffe://colony.local/sidecar/checkout), else "cn:" and the
	// certificate's common name.
	ID string
	// Role is the role the SPIFFE ID names in the cluster's trust domain;
	// RoleClient for any other certificate.
	Role Role
	// Name is the last part of the SPIFFE ID (a node id, a service, a user
	// name), else the common name.
	Name string
}

// String is the identity's ID.
func (id Identity) String() string { return id.ID }

// SPIFFEID is the URI SAN of an identity with role and name in trustDomain.
func SPIFFEID(trustDomain string, role Role, name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + string(role) + "/" + name}
}

// FromCertificate reads the identity of a verified leaf certificate.
// A SPIFFE ID outside trustDomain, or one whose path is not /<role>/<name>
// with a known role, is an ordinary client named by its URI.
func FromCertificate(leaf *x509.Certificate, trustDomain string) Identity {
	for _, u := range leaf.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id := Identity{ID: u.String(), Role: RoleClient, Name: u.String()}
		if u.Host != trustDomain {
			return id
		}
		role, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if !ok || name == "" || strings.Contains(name, "/") {
			return id
		}
		if r, err := ParseRole(role); err == nil {
			id.Role, id.Name = r, name
		}
		return id
	}
	return Identity{ID: "cn:" + leaf.Subject.CommonName, Role: RoleClient, Name: leaf.Subject.CommonName}
}

// FromConnectionState reads the identity of a TLS connection whose peer
// presented a verified certificate; ok is false when it presented none.
func FromConnectionState(cs *tls.ConnectionState, trustDomain string) (Identity, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	return FromCertificate(cs.VerifiedChains[0][0], trustDomain), true
}

// FromContext reads the identity of a gRPC request's peer: ok is false on a
// plaintext connection or one without a verified client certificate.
func FromContext(ctx context.Context, trustDomain string) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, false
	}
	return FromConnectionState(&info.State, trustDomain)
}
