package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and raft's package-level background goroutines.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
	)
}

// secureNode is one in-process coordinator that requires client
// certificates, and the CA that issues them.
type secureNode struct {
	t    *testing.T
	srv  *coordinator.Server
	ca   *trust.CA
	dir  string
	addr string
}

func startSecureNode(t *testing.T) *secureNode {
	t.Helper()
	dir := t.TempDir()
	ca, err := trust.NewCA(dir, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.Issue(dir, trust.Leaf{Role: trust.RoleNode, Name: "n1", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.Load(files, ca.TrustDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.DefaultConfig()
	cfg.NodeID = "n1"
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Bootstrap = true
	cfg.TLS = m
	srv, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the node: %v", err)
		}
	})
	if err := srv.WaitLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return &secureNode{t: t, srv: srv, ca: ca, dir: dir, addr: srv.Addr()}
}

// dial connects with a certificate the test CA issued for role and name.
func (n *secureNode) dial(role trust.Role, name string) *grpc.ClientConn {
	n.t.Helper()
	files, err := n.ca.Issue(n.dir, trust.Leaf{Role: role, Name: name})
	if err != nil {
		n.t.Fatal(err)
	}
	return n.dialFiles(files)
}

// dialCN connects with a certificate that names its holder only by its
// common name, as a CA that writes no SPIFFE IDs issues them.
func (n *secureNode) dialCN(cn string) *grpc.ClientConn {
	n.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		n.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, n.ca.Cert, &key.PublicKey, n.ca.Key)
	if err != nil {
		n.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		n.t.Fatal(err)
	}
	files := trust.Files{CA: filepath.Join(n.dir, trust.CACertFile), Cert: filepath.Join(n.dir, "cn-"+cn+".crt"), Key: filepath.Join(n.dir, "cn-"+cn+".key")}
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{{files.Cert, "CERTIFICATE", der}, {files.Key, "EC PRIVATE KEY", kder}} {
		if err := os.WriteFile(f.name, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			n.t.Fatal(err)
		}
	}
	return n.dialFiles(files)
}

func (n *secureNode) dialFiles(files trust.Files) *grpc.ClientConn {
	n.t.Helper()
	m, err := trust.Load(files, n.ca.TrustDomain, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(credentials.NewTLS(m.ClientConfig("127.0.0.1", "h2"))))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err has code want; for a refusal the
// message must name every one of mention.
func wantCode(t *testing.T, err error, want codes.Code, mention ...string) {
	t.Helper()
	t.Logf("%v", err)
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
	for _, m := range mention {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("the error %q does not name %q", status.Convert(err).Message(), m)
		}
	}
}

// authzFixture is a secure node with a client of each kind and the tree
// the tests need: /app/x, the registered instance i1 of checkout and p1 of
// payments (so payments is a known callee).
type authzFixture struct {
	n                                 *secureNode
	admin, operator, client, checkout colonyv1.TreeClient
	conns                             map[string]*grpc.ClientConn
}

func newAuthzFixture(t *testing.T) *authzFixture {
	n := startSecureNode(t)
	f := &authzFixture{n: n, conns: map[string]*grpc.ClientConn{
		"admin":    n.dial(trust.RoleAdmin, "root"),
		"operator": n.dial(trust.RoleOperator, "ops"),
		"client":   n.dial(trust.RoleClient, "app1"),
		"checkout": n.dial(trust.RoleSidecar, "checkout"),
		"payments": n.dial(trust.RoleSidecar, "payments"),
	}}
	f.admin = colonyv1.NewTreeClient(f.conns["admin"])
	f.operator = colonyv1.NewTreeClient(f.conns["operator"])
	f.client = colonyv1.NewTreeClient(f.conns["client"])
	f.checkout = colonyv1.NewTreeClient(f.conns["checkout"])
	ctx := ctxT(t)
	// The engine creates /colony/services once it runs on the leader.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := f.admin.Exists(ctx, &colonyv1.ExistsRequest{Path: contract.ServicesRoot})
		if err == nil && r.Exists {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared: %v", contract.ServicesRoot, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.create(t, f.admin, "/app", "")
	f.create(t, f.admin, "/app/x", "x")
	// Each sidecar registers its own instance.
	f.create(t, f.checkout, contract.ServiceDir("checkout"), "")
	f.create(t, f.checkout, contract.RegistrationPath("checkout", "i1"), "{}")
	pay := colonyv1.NewTreeClient(f.conns["payments"])
	f.create(t, pay, contract.ServiceDir("payments"), "")
	f.create(t, pay, contract.RegistrationPath("payments", "p1"), "{}")
	f.create(t, f.admin, contract.ACLRoot, "")
	return f
}

func (f *authzFixture) create(t *testing.T, c colonyv1.TreeClient, p, data string) {
	t.Helper()
	if _, err := c.Create(ctxT(t), &colonyv1.CreateRequest{Path: p, Data: []byte(data)}); err != nil {
		t.Fatalf("creating %s: %v", p, err)
	}
}

// wantAbsent fails unless p does not exist: a refused write left nothing.
func (f *authzFixture) wantAbsent(t *testing.T, p string) {
	t.Helper()
	r, err := f.admin.Exists(ctxT(t), &colonyv1.ExistsRequest{Path: p})
	if err != nil || r.Exists {
		t.Fatalf("%s exists after a refused write (err %v)", p, err)
	}
}

func (f *authzFixture) breakers(who string) colonyv1.BreakersClient {
	return colonyv1.NewBreakersClient(f.conns[who])
}

func report(caller, instance string) *colonyv1.OutcomeReport {
	return &colonyv1.OutcomeReport{Caller: caller, Callee: "payments", Instance: instance, Counts: &colonyv1.OutcomeCounts{Successes: 1}}
}

// TestAuthzDefaults checks, for each built-in right, that the identity
// without it is refused with PermissionDenied naming what was refused,
// that nothing was written, and that the identity with it succeeds.
func TestAuthzDefaults(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := ctxT(t)

	t.Run("SidecarReportsAsAnotherCaller", func(t *testing.T) {
		_, err := f.breakers("checkout").Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{report("billing", "i1")}})
		wantCode(t, err, codes.PermissionDenied, "sidecar/checkout", `"billing"`, "reports[0]")
	})
	t.Run("SidecarReportsForUnregisteredInstances", func(t *testing.T) {
		// One client posing as three instances to make up a quorum.
		_, err := f.breakers("checkout").Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{
			report("checkout", "i1"), report("checkout", "fake-2"), report("checkout", "fake-3"),
		}})
		wantCode(t, err, codes.PermissionDenied, `"fake-2"`, contract.RegistrationPath("checkout", "fake-2"))
		_, err = f.breakers("checkout").Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{report("checkout", "../payments/p1")}})
		wantCode(t, err, codes.PermissionDenied, "../payments/p1")
	})
	t.Run("SidecarReportsForItsRegisteredInstance", func(t *testing.T) {
		if _, err := f.breakers("checkout").Report(ctx, &colonyv1.ReportRequest{Reports: []*colonyv1.OutcomeReport{report("checkout", "i1")}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SidecarRegistersUnderAnotherService", func(t *testing.T) {
		p := contract.RegistrationPath("payments", "evil")
		_, err := f.checkout.Create(ctx, &colonyv1.CreateRequest{Path: p, Data: []byte("{}")})
		wantCode(t, err, codes.PermissionDenied, "sidecar/checkout", p, "create")
		f.wantAbsent(t, p)
		// The same inside a Multi, after an op it may do.
		_, err = f.checkout.Multi(ctx, &colonyv1.MultiRequest{Ops: []*colonyv1.Op{
			{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: contract.RegistrationPath("checkout", "i2")}}},
			{Op: &colonyv1.Op_Create{Create: &colonyv1.CreateRequest{Path: p}}},
		}})
		wantCode(t, err, codes.PermissionDenied, "ops[1].path")
		f.wantAbsent(t, contract.RegistrationPath("checkout", "i2"))
		f.wantAbsent(t, p)
	})
	t.Run("SidecarReadsOnlyWhatItNeeds", func(t *testing.T) {
		if _, err := f.checkout.Children(ctx, &colonyv1.ChildrenRequest{Path: contract.ServicesRoot}); err != nil {
			t.Fatal(err)
		}
		_, err := f.checkout.Get(ctx, &colonyv1.GetRequest{Path: "/app/x"})
		wantCode(t, err, codes.PermissionDenied, "/app/x")
		_, err = f.breakers("checkout").ListBreakers(ctx, &colonyv1.ListBreakersRequest{})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := f.breakers("checkout").ListBreakers(ctx, &colonyv1.ListBreakersRequest{Caller: "checkout"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OverridesByClientAndSidecar", func(t *testing.T) {
		for _, who := range []string{"client", "checkout"} {
			_, err := f.breakers(who).SetOverride(ctx, &colonyv1.SetOverrideRequest{
				Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "test", By: "ops",
			})
			wantCode(t, err, codes.PermissionDenied, "control")
		}
		list, err := f.breakers("operator").ListBreakers(ctx, &colonyv1.ListBreakersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list.Breakers {
			if b.Override != "" {
				t.Fatalf("a refused override is in force: %v", b)
			}
		}
	})
	t.Run("OperatorOverrideRecordsItsIdentity", func(t *testing.T) {
		resp, err := f.breakers("operator").SetOverride(ctx, &colonyv1.SetOverrideRequest{
			Caller: "checkout", Callee: "payments", Mode: colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN, Reason: "test", By: "mallory",
		})
		if err != nil {
			t.Fatal(err)
		}
		want := `"spiffe://colony.local/operator/ops (for mallory)"`
		if !strings.Contains(string(resp.Record), want) {
			t.Fatalf("the override record %s does not name %s", resp.Record, want)
		}
	})
	t.Run("OperatorClearsOverrideAsItself", func(t *testing.T) {
		resp, err := f.breakers("operator").ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: "checkout", Callee: "payments", Reason: "done"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(resp.Record), "mallory") {
			t.Fatalf("the cleared record %s still carries the declared name", resp.Record)
		}
	})
	t.Run("SidecarUsesTheSharedLockSpace", func(t *testing.T) {
		for _, p := range []string{"/colony/locks", "/colony/locks/deploy"} {
			_, err := f.checkout.Create(ctx, &colonyv1.CreateRequest{Path: p})
			if err != nil && status.Code(err) != codes.AlreadyExists {
				t.Fatalf("creating %s: %v", p, err)
			}
		}
		if _, err := f.checkout.Create(ctx, &colonyv1.CreateRequest{Path: "/colony/locks/deploy/lock-", Sequential: true}); err != nil {
			t.Fatal(err)
		}
		// ... but not a sibling of it beside /colony/locks.
		_, err := f.checkout.Create(ctx, &colonyv1.CreateRequest{Path: "/colony/locks", Sequential: true})
		wantCode(t, err, codes.PermissionDenied, "/colony/locks")
	})
	t.Run("OperatorWatchesEverything", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w, err := colonyv1.NewWatchClient(f.conns["operator"]).Watch(wctx, &colonyv1.WatchRequest{Path: "/", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := w.Recv(); err != nil || !m.Created {
			t.Fatalf("watching /: %v, %v", m, err)
		}
	})
	t.Run("ACLWrites", func(t *testing.T) {
		rules := []byte(`{"rules":[{"roles":["client"],"prefix":"/public/","permissions":["read"]}]}`)
		for _, who := range []colonyv1.TreeClient{f.checkout, f.operator, f.client} {
			_, err := who.Create(ctx, &colonyv1.CreateRequest{Path: contract.ACLRulesPath, Data: rules})
			wantCode(t, err, codes.PermissionDenied, contract.ACLRulesPath)
			f.wantAbsent(t, contract.ACLRulesPath)
		}
		_, err := f.admin.Create(ctx, &colonyv1.CreateRequest{Path: contract.ACLRulesPath, Data: []byte(`{"rules":[{"roles":["client"],"prefix":"/x","permissions":["fly"]}]}`)})
		wantCode(t, err, codes.InvalidArgument, "rules[0].permissions[0]")
		f.wantAbsent(t, contract.ACLRulesPath)
		f.create(t, f.admin, contract.ACLRulesPath, string(rules))
		// Operators read the rules; clients and sidecars do not.
		if _, err := f.operator.Get(ctx, &colonyv1.GetRequest{Path: contract.ACLRulesPath}); err != nil {
			t.Fatal(err)
		}
		_, err = f.client.Get(ctx, &colonyv1.GetRequest{Path: contract.ACLRulesPath})
		wantCode(t, err, codes.PermissionDenied)
		// The admin's change refused, nothing else.
		_, err = f.admin.Set(ctx, &colonyv1.SetRequest{Path: contract.ACLRulesPath, Data: []byte(`{"bindings":[{"identity":"cn:x","role":"node"}]}`)})
		wantCode(t, err, codes.InvalidArgument, "bindings[0].role")
		if _, err := f.admin.Delete(ctx, &colonyv1.DeleteRequest{Path: contract.ACLRulesPath}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SessionListing", func(t *testing.T) {
		_, err := colonyv1.NewSessionsClient(f.conns["client"]).List(ctx, &colonyv1.ListSessionsRequest{})
		wantCode(t, err, codes.PermissionDenied, "client/app1", "operator")
		if _, err := colonyv1.NewSessionsClient(f.conns["operator"]).List(ctx, &colonyv1.ListSessionsRequest{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Snapshot", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := colonyv1.NewMaintenanceClient(f.conns["checkout"]).Snapshot(sctx, &colonyv1.SnapshotRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		wantCode(t, err, codes.PermissionDenied, "sidecar/checkout")
		st, err = colonyv1.NewMaintenanceClient(f.conns["operator"]).Snapshot(sctx, &colonyv1.SnapshotRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Membership", func(t *testing.T) {
		for _, who := range []string{"client", "operator"} {
			_, err := colonyv1.NewClusterClient(f.conns[who]).AddMember(ctx, &colonyv1.AddMemberRequest{Id: "n9", RaftAddress: "127.0.0.1:1", GrpcAddress: "127.0.0.1:2"})
			wantCode(t, err, codes.PermissionDenied, "admin")
		}
		st, err := colonyv1.NewClusterClient(f.conns["operator"]).Status(ctx, &colonyv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Members) != 1 {
			t.Fatalf("members after refused adds: %v", st.Members)
		}
	})
}

// TestAuthzACLRules checks that rules in /colony/acl/rules grant what they
// name and nothing more, and that a binding gives a common-name
// certificate a role.
func TestAuthzACLRules(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := ctxT(t)
	alice := f.n.dialCN("alice")
	aliceSessions := colonyv1.NewSessionsClient(alice)

	_, err := f.client.Get(ctx, &colonyv1.GetRequest{Path: "/app/x"})
	wantCode(t, err, codes.PermissionDenied, "/app/x", contract.ACLRulesPath)
	_, err = aliceSessions.List(ctx, &colonyv1.ListSessionsRequest{})
	wantCode(t, err, codes.PermissionDenied, "cn:alice")

	f.create(t, f.admin, contract.ACLRulesPath, `{
		"rules": [{"identities": ["spiffe://colony.local/client/app1"], "prefix": "/app/", "permissions": ["read", "watch"]}],
		"bindings": [{"identity": "cn:alice", "role": "operator"}]
	}`)

	if r, err := f.client.Get(ctx, &colonyv1.GetRequest{Path: "/app/x"}); err != nil || string(r.Data) != "x" {
		t.Fatalf("reading /app/x with a rule granting it: %v, %v", r, err)
	}
	_, err = f.client.Get(ctx, &colonyv1.GetRequest{Path: contract.ServicesRoot})
	wantCode(t, err, codes.PermissionDenied, contract.ServicesRoot)
	_, err = f.client.Get(ctx, &colonyv1.GetRequest{Path: "/apple"})
	wantCode(t, err, codes.PermissionDenied, "/apple")
	_, err = f.client.Set(ctx, &colonyv1.SetRequest{Path: "/app/x", Data: []byte("y"), ExpectedVersion: nil})
	wantCode(t, err, codes.PermissionDenied, "write")
	if r, err := f.admin.Get(ctx, &colonyv1.GetRequest{Path: "/app/x"}); err != nil || string(r.Data) != "x" {
		t.Fatalf("/app/x after a refused set: %v, %v", r, err)
	}

	// A watch is authorized when its request arrives.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := colonyv1.NewWatchClient(f.conns["client"]).Watch(wctx, &colonyv1.WatchRequest{Path: "/app/x"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || !m.Created {
		t.Fatalf("watching /app/x: %v, %v", m, err)
	}
	w, err = colonyv1.NewWatchClient(f.conns["client"]).Watch(wctx, &colonyv1.WatchRequest{Path: "/colony", Kind: colonyv1.WatchKind_WATCH_KIND_PERSISTENT, Recursive: true})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, err, codes.PermissionDenied, "/colony")

	if _, err := aliceSessions.List(ctx, &colonyv1.ListSessionsRequest{}); err != nil {
		t.Fatalf("cn:alice bound to operator: %v", err)
	}
	// An operator, not an admin.
	_, err = colonyv1.NewTreeClient(alice).Set(ctx, &colonyv1.SetRequest{Path: contract.ACLRulesPath, Data: []byte(`{}`)})
	wantCode(t, err, codes.PermissionDenied, "cn:alice")
}
