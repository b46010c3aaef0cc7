package coordinatortest

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// PKI is a throwaway certificate authority for tests of secure nodes: it
// issues certificates of any role into a temp dir.
type PKI struct {
	tb testing.TB
	// CA signs every certificate the PKI issues.
	CA *trust.CA
	// Dir holds ca.crt and every issued <role>-<name>.crt and .key.
	Dir string
}

// NewPKI creates a CA, valid for an hour, in a temp dir.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &PKI{tb: tb, CA: ca, Dir: dir}
}

// Issue writes a certificate for role and name, valid for 127.0.0.1, and
// returns its files. Issuing the same role and name again replaces them.
func (p *PKI) Issue(role trust.Role, name string) trust.Files {
	p.tb.Helper()
	files, err := p.CA.Issue(p.Dir, trust.Leaf{Role: role, Name: name, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		p.tb.Fatal(err)
	}
	return files
}

// Material issues a certificate for role and name and loads it.
func (p *PKI) Material(role trust.Role, name string) *trust.Material {
	p.tb.Helper()
	m, err := trust.Load(p.Issue(role, name), p.CA.TrustDomain, nil)
	if err != nil {
		p.tb.Fatal(err)
	}
	return m
}

// ClientTLS is the TLS configuration of a client (client.Config.TLS, a
// gRPC dial) holding a certificate for role and name, which verifies the
// nodes' certificates for the address it dials.
func (p *PKI) ClientTLS(role trust.Role, name string) *tls.Config {
	p.tb.Helper()
	return p.Material(role, name).ClientConfig("", "h2")
}

// StartSecureNode is StartNode with TLS: the node holds a node certificate
// of p for its id, so it requires a certificate of p's CA from every
// client. opts run before the certificate is issued (they may change the
// node id) and may set Config.TLS themselves.
func StartSecureNode(tb testing.TB, p *PKI, opts ...func(*coordinator.Config)) *coordinator.Server {
	tb.Helper()
	return StartNode(tb, append(slices.Clip(opts), p.nodeTLS)...)
}

func (p *PKI) nodeTLS(cfg *coordinator.Config) {
	if cfg.TLS == nil {
		cfg.TLS = p.Material(trust.RoleNode, cfg.NodeID)
	}
}

// StartSecureCluster starts n secure nodes (n1..nN) on 127.0.0.1, each
// with a node certificate of p: n1 bootstraps, the others join through it.
// It returns once all n are voters that registered their addresses, and
// closes them at cleanup. opts adjust each node's config before start.
// Under -short the test is skipped.
func StartSecureCluster(tb testing.TB, p *PKI, n int, opts ...func(*coordinator.Config)) []*coordinator.Server {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts coordinator nodes")
	}
	var nodes []*coordinator.Server
	for i := 1; i <= n; i++ {
		cfg := coordinator.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i)
		cfg.DataDir = tb.TempDir()
		cfg.RaftAddr = "127.0.0.1:0"
		cfg.GRPCAddr = "127.0.0.1:0"
		cfg.MinSessionTTL = 300 * time.Millisecond
		if i == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{nodes[0].Addr()}
		}
		for _, o := range opts {
			o(&cfg)
		}
		p.nodeTLS(&cfg)
		srv, err := coordinator.New(cfg)
		if err != nil {
			tb.Fatalf("starting %s: %v", cfg.NodeID, err)
		}
		tb.Cleanup(func() { srv.Close() })
		nodes = append(nodes, srv)
	}
	waitVoters(tb, nodes[0].Addr(), p.ClientTLS(trust.RoleAdmin, "coordinatortest"), n)
	return nodes
}

// waitVoters waits until the cluster reached through addr has n voters
// with registered addresses.
func waitVoters(tb testing.TB, addr string, cfg *tls.Config, n int) {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	cluster := colonyv1.NewClusterClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last error
	for {
		st, err := cluster.Status(ctx, &colonyv1.StatusRequest{})
		if err == nil {
			voters := 0
			for _, m := range st.Members {
				if m.Suffrage == colonyv1.Suffrage_SUFFRAGE_VOTER && m.GrpcAddress != "" {
					voters++
				}
			}
			if voters == n {
				return
			}
			last = fmt.Errorf("%d of %d voters registered", voters, n)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("the cluster did not reach %d registered voters: %v", n, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
