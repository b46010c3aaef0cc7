package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Authorization rules. In a secure cluster every request is authorized by
// the identity of its client certificate: each role has built-in rights,
// and the rules stored at ACLRulesPath grant more. Only an admin writes
// them; a coordinator refuses rules that do not parse with ParseACL.
const (
	// ACLRoot is the directory of the authorization rules. Operators and
	// admins read it; only admins write it.
	ACLRoot = Root + "/acl"
	// ACLRulesPath holds the cluster's ACL, as JSON.
	ACLRulesPath = ACLRoot + "/rules"
)

// The permissions a rule grants on a path prefix.
const (
	PermRead   = "read"   // Get, Exists, Children, a Multi's check; reading breakers and policies
	PermWrite  = "write"  // Set; reporting outcomes for the pairs under a breaker path
	PermCreate = "create" // Create
	PermDelete = "delete" // Delete
	PermWatch  = "watch"  // Watch
	// PermAdmin is every other permission on the prefix, and the control
	// of the breakers and policies under it: overrides, deleting a
	// breaker, applying and deleting policies.
	PermAdmin = "admin"
)

// Permissions lists every permission, for validation and errors.
var Permissions = []string{PermRead, PermWrite, PermCreate, PermDelete, PermWatch, PermAdmin}

// GrantRoles are the roles a rule may grant to (every identity of the
// role), and BindRoles the roles an identity may be bound to. Node is never
// bound: a cluster member proves it with a node certificate.
var (
	GrantRoles = []string{"sidecar", "operator", "client"}
	BindRoles  = []string{"sidecar", "operator", "admin"}
)

// ACL is the document at ACLRulesPath.
//
//	rules:
//	  - identities: ["spiffe://colony.local/client/billing"]
//	    prefix: /app/billing/
//	    permissions: [read, write, create, delete, watch]
//	  - roles: [client]
//	    prefix: /app/shared/
//	    permissions: [read, watch]
//	bindings:
//	  - identity: cn:alice
//	    role: operator
type ACL struct {
	// Rules grant permissions on path prefixes.
	Rules []ACLRule `json:"rules,omitempty"`
	// Bindings give identities a role their certificates do not name.
	Bindings []RoleBinding `json:"bindings,omitempty"`
}

// ACLRule grants its identities and the identities of its roles the
// permissions on the subtree at Prefix.
type ACLRule struct {
	// Identities are exact identity IDs: a SPIFFE ID or "cn:" and a
	// certificate's common name.
	Identities []string `json:"identities,omitempty"`
	// Roles grant to every identity of the role (GrantRoles).
	Roles []string `json:"roles,omitempty"`
	// Prefix is an absolute path; the rule covers it and every path under
	// it ("/app/" and "/app" both cover /app and /app/x, not /apple).
	Prefix string `json:"prefix"`
	// Permissions are some of Permissions.
	Permissions []string `json:"permissions"`
}

// RoleBinding gives Identity the rights of Role as well as its own.
type RoleBinding struct {
	Identity string `json:"identity"`
	Role     string `json:"role"`
}

// maxACLIdentityLen bounds identity IDs in rules.
const maxACLIdentityLen = 1024

// ParseACL reads and validates an ACL document. Empty data is an empty ACL.
// The error names the field at fault (rules[2].permissions[0]).
func ParseACL(data []byte) (*ACL, error) {
	acl := &ACL{}
	if len(bytes.TrimSpace(data)) == 0 {
		return acl, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(acl); err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("acl: data after the document")
	}
	return acl, acl.Validate()
}

// Validate checks every rule and binding.
func (a *ACL) Validate() error {
	for i, r := range a.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		if len(r.Identities) == 0 && len(r.Roles) == 0 {
			return fmt.Errorf("acl: %s: names neither identities nor roles", f)
		}
		for j, id := range r.Identities {
			if err := validIdentity(id); err != nil {
				return fmt.Errorf("acl: %s.identities[%d]: %w", f, j, err)
			}
		}
		for j, role := range r.Roles {
			if !slices.Contains(GrantRoles, role) {
				return fmt.Errorf("acl: %s.roles[%d]: %q is not a role a rule grants to (want one of %s)", f, j, role, strings.Join(GrantRoles, ", "))
			}
		}
		if err := validPrefix(r.Prefix); err != nil {
			return fmt.Errorf("acl: %s.prefix: %w", f, err)
		}
		if len(r.Permissions) == 0 {
			return fmt.Errorf("acl: %s.permissions: empty (want some of %s)", f, strings.Join(Permissions, ", "))
		}
		for j, p := range r.Permissions {
			if !slices.Contains(Permissions, p) {
				return fmt.Errorf("acl: %s.permissions[%d]: unknown permission %q (want one of %s)", f, j, p, strings.Join(Permissions, ", "))
			}
		}
	}
	for i, b := range a.Bindings {
		if err := validIdentity(b.Identity); err != nil {
			return fmt.Errorf("acl: bindings[%d].identity: %w", i, err)
		}
		if !slices.Contains(BindRoles, b.Role) {
			return fmt.Errorf("acl: bindings[%d].role: %q is not a role an identity can be bound to (want one of %s)", i, b.Role, strings.Join(BindRoles, ", "))
		}
	}
	return nil
}

func validIdentity(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty")
	case len(id) > maxACLIdentityLen:
		return fmt.Errorf("%d bytes, the limit is %d", len(id), maxACLIdentityLen)
	case !strings.HasPrefix(id, "spiffe://") && !strings.HasPrefix(id, "cn:"):
		return fmt.Errorf("%q is neither a SPIFFE ID (spiffe://...) nor a common name (cn:NAME)", id)
	}
	return nil
}

func validPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must be an absolute path", p)
	}
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if p != "/" && (part == "" || part == "." || part == "..") {
			return fmt.Errorf("%q has an empty, . or .. element", p)
		}
	}
	return nil
}

// Covers reports whether the rule's prefix covers path p: p is the prefix
// or under it.
func (r ACLRule) Covers(p string) bool { return UnderPrefix(p, r.Prefix) }

// UnderPrefix reports whether path p is prefix or in its subtree; a
// trailing slash on prefix changes nothing.
func UnderPrefix(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// Grants reports whether the rule gives perm (PermAdmin gives them all).
func (r ACLRule) Grants(perm string) bool {
	return slices.Contains(r.Permissions, perm) || slices.Contains(r.Permissions, PermAdmin)
}
