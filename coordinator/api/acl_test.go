package api

import (
	"testing"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/trust"
)

// TestACLAllows checks rule matching: by identity and by role, on the
// prefix's subtree only, per permission (admin implying the rest), and a
// sequential create only where its counter-suffixed sibling is covered too.
func TestACLAllows(t *testing.T) {
	acl := &contract.ACL{Rules: []contract.ACLRule{
		{Identities: []string{"cn:alice"}, Prefix: "/app/", Permissions: []string{contract.PermRead, contract.PermCreate}},
		{Roles: []string{"client"}, Prefix: "/shared", Permissions: []string{contract.PermWatch}},
		{Identities: []string{"cn:bob"}, Prefix: "/bob", Permissions: []string{contract.PermAdmin}},
	}}
	alice := trust.Identity{ID: "cn:alice", Role: trust.RoleClient, Name: "alice"}
	carol := trust.Identity{ID: "cn:carol", Role: trust.RoleClient, Name: "carol"}
	bob := trust.Identity{ID: "cn:bob", Role: trust.RoleClient, Name: "bob"}
	sc := trust.Identity{ID: "spiffe://colony.local/sidecar/s", Role: trust.RoleSidecar, Name: "s"}
	for _, tc := range []struct {
		name string
		id   trust.Identity
		n    need
		want bool
	}{
		{"IdentityReadsUnder", alice, need{perm: contract.PermRead, path: "/app/x"}, true},
		{"IdentityReadsPrefix", alice, need{perm: contract.PermRead, path: "/app"}, true},
		{"NotBeside", alice, need{perm: contract.PermRead, path: "/apple"}, false},
		{"NotOtherPerm", alice, need{perm: contract.PermWrite, path: "/app/x"}, false},
		{"NotOtherIdentity", carol, need{perm: contract.PermRead, path: "/app/x"}, false},
		{"SequentialUnder", alice, need{perm: contract.PermCreate, path: "/app/q/n-", sequential: true}, true},
		{"SequentialAtPrefixMakesASibling", alice, need{perm: contract.PermCreate, path: "/app", sequential: true}, false},
		{"RoleGrant", carol, need{perm: contract.PermWatch, path: "/shared/y"}, true},
		{"RoleGrantNotOtherRole", sc, need{perm: contract.PermWatch, path: "/shared/y"}, false},
		{"AdminImpliesAll", bob, need{perm: contract.PermDelete, path: "/bob/z"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aclAllows(acl, tc.id.ID, rolesOf(tc.id, acl), tc.n); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
