package trust

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func TestFromCertificate(t *testing.T) {
	const td = "colony.local"
	uri := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	tests := []struct {
		name string
		cn   string
		uris []*url.URL
		want Identity
	}{
		{"node", "n1", uri("spiffe://colony.local/node/n1"),
			Identity{ID: "spiffe://colony.local/node/n1", Role: RoleNode, Name: "n1"}},
		{"sidecar names its service", "x", uri("spiffe://colony.local/sidecar/checkout"),
			Identity{ID: "spiffe://colony.local/sidecar/checkout", Role: RoleSidecar, Name: "checkout"}},
		{"operator", "", uri("spiffe://colony.local/operator/ops"),
			Identity{ID: "spiffe://colony.local/operator/ops", Role: RoleOperator, Name: "ops"}},
		{"admin", "", uri("spiffe://colony.local/admin/root"),
			Identity{ID: "spiffe://colony.local/admin/root", Role: RoleAdmin, Name: "root"}},
		{"client", "", uri("spiffe://colony.local/client/billing"),
			Identity{ID: "spiffe://colony.local/client/billing", Role: RoleClient, Name: "billing"}},
		// Another trust domain's roles mean nothing here: a client named by
		// its whole URI, never the CN.
		{"other trust domain", "n1", uri("spiffe://evil.example/node/n1"),
			Identity{ID: "spiffe://evil.example/node/n1", Role: RoleClient, Name: "spiffe://evil.example/node/n1"}},
		{"no name", "n1", uri("spiffe://colony.local/node"),
			Identity{ID: "spiffe://colony.local/node", Role: RoleClient, Name: "spiffe://colony.local/node"}},
		{"empty name", "n1", uri("spiffe://colony.local/node/"),
			Identity{ID: "spiffe://colony.local/node/", Role: RoleClient, Name: "spiffe://colony.local/node/"}},
		{"nested name", "n1", uri("spiffe://colony.local/node/a/b"),
			Identity{ID: "spiffe://colony.local/node/a/b", Role: RoleClient, Name: "spiffe://colony.local/node/a/b"}},
		{"unknown role", "n1", uri("spiffe://colony.local/root/n1"),
			Identity{ID: "spiffe://colony.local/root/n1", Role: RoleClient, Name: "spiffe://colony.local/root/n1"}},
		{"trust domain only", "n1", uri("spiffe://colony.local"),
			Identity{ID: "spiffe://colony.local", Role: RoleClient, Name: "spiffe://colony.local"}},
		// Not SPIFFE: the common name, and never a role.
		{"CN fallback", "alice", nil,
			Identity{ID: "cn:alice", Role: RoleClient, Name: "alice"}},
		{"CN that looks like a role", "node", nil,
			Identity{ID: "cn:node", Role: RoleClient, Name: "node"}},
		{"other URI scheme", "alice", uri("https://colony.local/node/n1"),
			Identity{ID: "cn:alice", Role: RoleClient, Name: "alice"}},
		{"SPIFFE after another URI", "alice", append(uri("https://example.com/x"), uri("spiffe://colony.local/admin/root")...),
			Identity{ID: "spiffe://colony.local/admin/root", Role: RoleAdmin, Name: "root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromCertificate(&x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}, URIs: tt.uris}, td)
			if got != tt.want {
				t.Errorf("FromCertificate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Without a verified chain there is no identity: a certificate the peer
// only presented proves nothing.
func TestFromConnectionStateNeedsVerifiedChain(t *testing.T) {
	leaf := &x509.Certificate{URIs: []*url.URL{SPIFFEID(DefaultTrustDomain, RoleAdmin, "root")}}
	for name, cs := range map[string]*tls.ConnectionState{
		"nil":                  nil,
		"no certificate":       {},
		"presented unverified": {PeerCertificates: []*x509.Certificate{leaf}},
	} {
		if id, ok := FromConnectionState(cs, DefaultTrustDomain); ok {
			t.Errorf("%s: identity %v", name, id)
		}
	}
	id, ok := FromConnectionState(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}, DefaultTrustDomain)
	if !ok || id.Role != RoleAdmin {
		t.Errorf("verified admin chain: %v, %v", id, ok)
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Node", "root", "nodes"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}
