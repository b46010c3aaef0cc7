// Package certcmd is `colony cert`, which makes a cluster's CA and the
// certificates of its nodes, sidecars and users (over internal/trust's
// PKI), and ServerFlags, the TLS flags of colony's servers (coordinator,
// sidecar, ui): --certs-dir or --cacert/--cert/--key, --trust-domain and
// --insecure, turned into a trust.Material.
//
// A certificate directory holds ca.crt (and, where certificates are made,
// ca.key) and <role>-<name>.crt/.key for each leaf: node-<id>,
// sidecar-<service>, admin-<user>, operator-<user>, client-<user>.
package certcmd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/internal/trust"
)

// Default validities of what colony cert makes.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// DefaultCertsDir is where colony cert writes without --certs-dir.
const DefaultCertsDir = "certs"

// NewCertCmd returns `colony cert` and its subcommands.
func NewCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make a cluster's CA and the certificates of its nodes, sidecars and users",
		Long: `Make the certificates a secure cluster runs on, in one directory (--certs-dir):
a CA (ca.crt, ca.key), then one certificate and key per node, sidecar and user,
named <role>-<name>.crt and .key. Each certificate carries a SPIFFE ID,
spiffe://<trust-domain>/<role>/<name>, which decides what its holder may do.

Keep ca.key safe: whoever holds it can make an admin certificate. Nodes,
sidecars and users need only ca.crt and their own pair. Issuing a certificate
again replaces its files; running processes pick the new ones up by themselves.`,
		Example: `  colony cert ca --certs-dir certs
  colony cert node --certs-dir certs --name n1 --host 10.0.0.1,coord1.internal
  colony cert sidecar --certs-dir certs --name checkout --host 127.0.0.1
  colony cert client --certs-dir certs --name alice --role operator
  colony kv ls / --certs-dir certs    # the one admin-, operator- or client- pair in certs`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCACmd(), newLeafCmd(trust.RoleNode), newLeafCmd(trust.RoleSidecar), newLeafCmd(trust.RoleClient))
	return cmd
}

func newCACmd() *cobra.Command {
	var dir, td string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Make a new CA (ca.crt, ca.key) in --certs-dir",
		Long: `Make a new certificate authority for the cluster: ca.crt (give it to every node,
sidecar and user) and ca.key (keep it where certificates are made). It refuses
to replace an existing CA: every certificate it signed would stop working.`,
		Example: `  colony cert ca --certs-dir prod-certs --trust-domain prod.example.com`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validity <= 0 {
				return fmt.Errorf("--validity: must be positive, got %v", validity)
			}
			ca, err := trust.NewCA(dir, td, validity)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CA for trust domain %s, valid until %s:\n", ca.TrustDomain, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "  %s\n  %s (secret: whoever holds it can make any certificate)\n",
				filepath.Join(dir, trust.CACertFile), filepath.Join(dir, trust.CAKeyFile))
			fmt.Fprintf(out, "Next: colony cert node --certs-dir %s --name ID --host ADDRESS\n", dir)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "certs-dir", DefaultCertsDir, "directory to write ca.crt and ca.key into")
	fl.StringVar(&td, "trust-domain", trust.DefaultTrustDomain, "SPIFFE trust domain of the cluster's identities")
	fl.DurationVar(&validity, "validity", DefaultCAValidity, "how long the CA is valid")
	return cmd
}

// newLeafCmd returns `colony cert node|sidecar|client`.
func newLeafCmd(role trust.Role) *cobra.Command {
	var (
		dir, name, roleName string
		hosts               []string
		validity            time.Duration
	)
	cmd := &cobra.Command{Args: cobra.NoArgs}
	switch role {
	case trust.RoleNode:
		cmd.Use = "node --name ID --host ADDRESS"
		cmd.Short = "Make a coordinator node's certificate (node-<id>.crt/.key)"
		cmd.Long = `Make the certificate of coordinator node --name (its --id): a server certificate
for the addresses clients dial (--host), which is also what the node presents to
its peers. Without --host it is valid for 127.0.0.1, ::1 and localhost.`
		cmd.Example = `  colony cert node --certs-dir certs --name n1 --host 10.0.0.1,coord1.internal`
	case trust.RoleSidecar:
		cmd.Use = "sidecar --name SERVICE"
		cmd.Short = "Make a service's sidecar certificate (sidecar-<service>.crt/.key)"
		cmd.Long = `Make the certificate the sidecars of service --name present to the coordinators:
it lets them register that service's instances, report its calls and read its
breakers, nothing else. --host adds the addresses the sidecar's own API serves
on (default 127.0.0.1, ::1 and localhost).`
		cmd.Example = `  colony cert sidecar --certs-dir certs --name checkout`
	default:
		cmd.Use = "client --name USER [--role operator|admin|client]"
		cmd.Short = "Make a user's or an application's certificate (<role>-<name>.crt/.key)"
		cmd.Long = `Make a certificate for a user or an application. --role sets its built-in rights:
admin may do anything, operator runs the fleet (overrides, policies, snapshots,
reads), client has only what authorization rules grant its identity.`
		cmd.Example = `  colony cert client --certs-dir certs --name alice --role operator
  colony breaker ls --certs-dir certs`
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		leafRole := role
		if role == trust.RoleClient {
			r, err := trust.ParseRole(roleName)
			if err != nil || (r != trust.RoleOperator && r != trust.RoleAdmin && r != trust.RoleClient) {
				return fmt.Errorf("--role: want operator, admin or client, got %q", roleName)
			}
			leafRole = r
		}
		if name == "" {
			return errors.New("--name: required")
		}
		if validity <= 0 {
			return fmt.Errorf("--validity: must be positive, got %v", validity)
		}
		hs := SplitList(hosts)
		if len(hs) == 0 && (role == trust.RoleNode || role == trust.RoleSidecar) {
			hs = LoopbackHosts
		}
		ca, err := trust.LoadCA(dir)
		if err != nil {
			return fmt.Errorf("%w (make one with `colony cert ca --certs-dir %s`)", err, dir)
		}
		files, err := ca.Issue(dir, trust.Leaf{Role: leafRole, Name: name, Hosts: hs, Validity: validity})
		if err != nil {
			return err
		}
		return printLeaf(cmd.OutOrStdout(), dir, ca.TrustDomain, leafRole, name, hs, files)
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "certs-dir", DefaultCertsDir, "directory holding the CA (ca.crt, ca.key); the certificate is written there too")
	fl.StringVar(&name, "name", "", map[trust.Role]string{
		trust.RoleNode:    "the node's id (its --id)",
		trust.RoleSidecar: "the service (the sidecar's --service)",
		trust.RoleClient:  "the user or application",
	}[role]+" (required)")
	fl.StringVar(&name, "id", "", "the same as --name")
	_ = fl.MarkHidden("id")
	if role == trust.RoleClient {
		fl.StringVar(&roleName, "role", string(trust.RoleClient), "operator, admin or client")
	} else {
		fl.StringSliceVar(&hosts, "host", nil, "DNS names and IP addresses the certificate is valid for (repeatable, comma-separated)")
	}
	fl.DurationVar(&validity, "validity", DefaultLeafValidity, "how long the certificate is valid")
	return cmd
}

// LoopbackHosts are the names of this machine a local server certificate
// is valid for.
var LoopbackHosts = []string{"127.0.0.1", "::1", "localhost"}

// SplitList flattens repeated and comma-separated flag values, dropping
// empty ones.
func SplitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// printLeaf says what was written and how to use it.
func printLeaf(out io.Writer, dir, td string, role trust.Role, name string, hosts []string, files trust.Files) error {
	fmt.Fprintf(out, "%s\n", trust.SPIFFEID(td, role, name))
	if len(hosts) > 0 {
		fmt.Fprintf(out, "  valid for: %s\n", strings.Join(hosts, ", "))
	}
	fmt.Fprintf(out, "  %s\n  %s (secret)\n", files.Cert, files.Key)
	switch role {
	case trust.RoleNode:
		addr := "127.0.0.1:7400"
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil && ip.To4() != nil {
				addr = net.JoinHostPort(h, "7400")
				break
			}
		}
		fmt.Fprintf(out, "Start the node with:\n  colony coordinator --id %s --certs-dir %s --grpc-addr %s ...\n", name, dir, addr)
	case trust.RoleSidecar:
		fmt.Fprintf(out, "Start its sidecars with:\n  colony sidecar --service %s --certs-dir %s ...\n", name, dir)
	default:
		fmt.Fprintf(out, "Use it with:\n  colony <command> --cacert %s --cert %s --key %s\n", files.CA, files.Cert, files.Key)
		fmt.Fprintf(out, "or, when it is the only user certificate in the directory:\n  colony <command> --certs-dir %s   (or COLONY_CERTS_DIR=%s)\n", dir, dir)
	}
	return nil
}

// TrustDomainOf reads the trust domain from the SPIFFE URI SAN of the
// first certificate in caFile, or returns "" when it has none.
func TrustDomainOf(caFile string) string {
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return ""
	}
	for _, c := range parseCerts(pemData) {
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && u.Host != "" {
				return u.Host
			}
		}
	}
	return ""
}
