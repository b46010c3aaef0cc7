//go:build unix

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/framework"
)

// The attacks of this file run against a secure cluster of processes, as
// NewCluster starts it: every node holds a node certificate of the
// cluster's CA and accepts only verified client certificates.

// dialWith opens a connection to addr with creds, closed at cleanup.
func dialWith(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// requireAbsent fails t unless path does not exist, read linearizably
// with the harness's admin certificate.
func requireAbsent(t *testing.T, ctx context.Context, c *Cluster, path string) {
	t.Helper()
	got := mustRetry(t, ctx, "exists "+path, func(ctx context.Context) (*colonyv1.ExistsResponse, error) {
		return c.Nodes[0].Tree().Exists(ctx, &colonyv1.ExistsRequest{Path: path})
	})
	if got.Exists {
		t.Errorf("%s exists: a refused caller wrote it", path)
	}
}

// refusedAtTransport reports whether err is how gRPC reports a connection
// whose TLS handshake the server refused: no RPC ran.
func refusedAtTransport(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Unauthenticated:
		return true
	}
	return false
}

// TestSecureClusterRefusesAttacks runs the attacks of an outsider and of
// certificate holders without the right role against one secure cluster
// of processes (one cluster for all: each costs CI seconds).
func TestSecureClusterRefusesAttacks(t *testing.T) {
	c := NewCluster(t, 3)
	ctx := testContext(t, 240*time.Second)
	c.WaitLeader(t, ctx)
	t.Run("unverified clients", func(t *testing.T) { refusesUnverifiedClients(t, ctx, c) })
	t.Run("Peer service from non-nodes", func(t *testing.T) { peerServiceRefusesNonNodes(t, ctx, c) })
	t.Run("rogue joins", func(t *testing.T) { rogueNodeCannotJoin(t, ctx, c) })
}

// refusesUnverifiedClients: a plaintext client, and a client whose
// certificate another CA signed (naming itself the harness's own admin),
// reach no RPC of a secure cluster and write nothing.
func refusesUnverifiedClients(t *testing.T, ctx context.Context, c *Cluster) {
	leader := c.WaitLeader(t, ctx)

	rogueCADir, rogueDir := t.TempDir(), t.TempDir()
	rogueCA, err := trust.NewCA(rogueCADir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := rogueCA.Issue(rogueDir, trust.Leaf{Role: trust.RoleAdmin, Name: framework.AdminName})
	if err != nil {
		t.Fatal(err)
	}
	// It trusts the cluster's CA too, so the refusal is the server's.
	bundle(t, files.CA, rogueCADir, c.PKI.Dir)
	rogue, err := trust.Load(files, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"plaintext", insecure.NewCredentials()},
		{"certificate of another CA", credentials.NewTLS(rogue.ClientConfig("", "h2"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/attack-" + strings.ReplaceAll(tc.name, " ", "-")
			conn := dialWith(t, leader.GRPCAddr, tc.creds)
			rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			_, err := colonyv1.NewTreeClient(conn).Create(rctx, &colonyv1.CreateRequest{Path: path, Data: []byte("x")})
			if !refusedAtTransport(err) {
				t.Errorf("Create %s = %v, want the connection refused (Unavailable or Unauthenticated)", path, err)
			}
			_, err = colonyv1.NewClusterClient(conn).Status(rctx, &colonyv1.StatusRequest{})
			if !refusedAtTransport(err) {
				t.Errorf("Cluster.Status = %v, want the connection refused", err)
			}
			requireAbsent(t, ctx, c, path)
		})
	}
}

// bundle writes the CA certificates of the given directories' ca.crt into
// one file.
func bundle(t *testing.T, out string, dirs ...string) {
	t.Helper()
	var all []byte
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, trust.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(out, all, 0o644); err != nil {
		t.Fatal(err)
	}
}

// peerServiceRefusesNonNodes: the Peer service, which appends to the
// raft log directly, answers only node certificates. A verified client
// of any other role, admin included, gets PermissionDenied from
// ProposeBatch, and nothing is written.
func peerServiceRefusesNonNodes(t *testing.T, ctx context.Context, c *Cluster) {
	leader := c.WaitLeader(t, ctx)

	for _, role := range []trust.Role{trust.RoleClient, trust.RoleSidecar, trust.RoleOperator, trust.RoleAdmin} {
		t.Run(string(role), func(t *testing.T) {
			m, err := c.PKI.IssueIn(t.TempDir(), role, "intruder")
			if err != nil {
				t.Fatal(err)
			}
			conn := dialWith(t, leader.GRPCAddr, credentials.NewTLS(m.ClientConfig("", "h2")))
			path := "/peer-attack-" + string(role)
			rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			_, err = peerv1.NewPeerClient(conn).ProposeBatch(rctx, &peerv1.ProposeBatchRequest{
				Commands: []*peerv1.Command{{
					RequestId: "peer-attack-" + string(role),
					Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: []*colonyv1.Op{{
						Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: path, Data: []byte("x")}},
					}}}},
				}},
			})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("ProposeBatch with a %s certificate = %v, want PermissionDenied", role, err)
			}
			requireAbsent(t, ctx, c, path)
		})
	}
}

// rogueNodeCannotJoin: a `colony coordinator --join` process that does
// not hold a node certificate of the cluster's CA (a node certificate of
// its own CA, or a client certificate of the cluster's) does not become a
// member, whichever node it asks.
func rogueNodeCannotJoin(t *testing.T, ctx context.Context, c *Cluster) {
	var join []string
	for _, n := range c.Nodes {
		join = append(join, n.GRPCAddr)
	}

	for _, tc := range []struct {
		name string
		// certs returns the rogue's security flags.
		certs func(t *testing.T, dir string) []string
	}{
		{"node certificate of another CA", func(t *testing.T, dir string) []string {
			caDir := t.TempDir()
			ca, err := trust.NewCA(caDir, "", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			files, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleNode, Name: "rogue", Hosts: []string{"127.0.0.1"}})
			if err != nil {
				t.Fatal(err)
			}
			// It trusts the cluster's CA besides its own, so it gets as far
			// as the cluster's check of its certificate.
			bundle(t, files.CA, caDir, c.PKI.Dir)
			return []string{"--certs-dir", dir}
		}},
		{"client certificate of the cluster's CA", func(t *testing.T, dir string) []string {
			files, err := c.PKI.CA.Issue(dir, trust.Leaf{Role: trust.RoleClient, Name: "rogue", Hosts: []string{"127.0.0.1"}})
			if err != nil {
				t.Fatal(err)
			}
			return []string{"--cacert", filepath.Join(c.PKI.Dir, trust.CACertFile), "--cert", files.Cert, "--key", files.Key}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rogue := startRogue(t, dir, join, tc.certs(t, filepath.Join(dir, "tls")))
			// Wait until it has asked to join and been refused, or (the
			// failure this test is for) got in.
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err := framework.Eventually(wctx, 100*time.Millisecond, func() error {
				log := framework.LogTail(rogue.LogPath, 200)
				if strings.Contains(log, "join attempt failed") || strings.Contains(log, "joined cluster") {
					return nil
				}
				return fmt.Errorf("the rogue has not tried to join yet")
			})
			if err != nil {
				t.Fatalf("%v; rogue log:\n%s", err, framework.LogTail(rogue.LogPath, 40))
			}
			t.Logf("rogue log:\n%s", framework.LogTail(rogue.LogPath, 10))
			for _, n := range c.Running() {
				st := mustRetry(t, ctx, "status of "+n.ID, func(ctx context.Context) (*colonyv1.StatusResponse, error) {
					return n.Cluster().Status(ctx, &colonyv1.StatusRequest{})
				})
				for _, m := range st.Members {
					if m.Id == "rogue" {
						t.Errorf("%s lists the rogue as a member: %v", n.ID, m)
					}
				}
				if len(st.Members) != len(c.Nodes) {
					t.Errorf("%s lists %d members, want %d", n.ID, len(st.Members), len(c.Nodes))
				}
			}
		})
	}
}

// startRogue starts `colony coordinator --id rogue --join join` with the
// security flags sec, killed at cleanup. It does not wait for it to serve.
func startRogue(t *testing.T, dir string, join, sec []string) *framework.Node {
	t.Helper()
	ports, err := framework.FreePorts("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &framework.Launcher{Ctx: ctx, Suite: "e2e", Bin: colonyBin, Dial: func(addr string) (*grpc.ClientConn, error) {
		// The harness does not talk to the rogue; the connection only
		// satisfies Node.Start.
		return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
	}}
	n := framework.NewNode(l, "rogue",
		fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), dir)
	n.SetArgs(append([]string{
		"coordinator",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--grpc-addr", n.GRPCAddr,
		"--raft-addr", n.RaftAddr,
		"--join", strings.Join(join, ","),
		"--log-level", "info",
	}, sec...))
	t.Cleanup(func() {
		framework.KillAll(t, []*framework.Node{n}, false)
		stop()
	})
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInsecureCluster: the harness still runs a cluster with --insecure,
// in plaintext, for the suites that ask for one.
func TestInsecureCluster(t *testing.T) {
	c := NewClusterWith(t, ClusterOptions{Nodes: 1, Insecure: true})
	ctx := testContext(t, 60*time.Second)
	n := c.WaitLeader(t, ctx)
	if c.PKI != nil || c.ClientTLS() != nil {
		t.Fatal("an insecure cluster has a PKI")
	}
	mustRetry(t, ctx, "create /plain", func(ctx context.Context) (*colonyv1.CreateResponse, error) {
		return n.Tree().Create(ctx, &colonyv1.CreateRequest{Path: "/plain", RequestId: "plain-create"})
	})
	got := mustRetry(t, ctx, "exists /plain", func(ctx context.Context) (*colonyv1.ExistsResponse, error) {
		return n.Tree().Exists(ctx, &colonyv1.ExistsRequest{Path: "/plain"})
	})
	if !got.Exists {
		t.Error("/plain does not exist after its create was acknowledged")
	}
}
