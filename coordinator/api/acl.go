package api

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/ztree"
)

// aclCache holds the ACL parsed from the node's view, parsed again only
// when the document at contract.ACLRulesPath changes (its mzxid: every
// write, a delete and re-create included, gives it a new one).
type aclCache struct {
	mu    sync.Mutex
	mzxid uint64 // of the document parsed; 0: none
	acl   *contract.ACL
}

// emptyACL grants nothing.
var emptyACL = &contract.ACL{}

// get returns the ACL in v. A document that does not parse (one stored
// before writes were validated) grants nothing.
func (c *aclCache) get(v *ztree.View) *contract.ACL {
	data, st, err := v.Get(contract.ACLRulesPath)
	if err != nil {
		return emptyACL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acl != nil && c.mzxid == st.GetMzxid() {
		return c.acl
	}
	acl, err := contract.ParseACL(data)
	if err != nil {
		acl = emptyACL
	}
	c.mzxid, c.acl = st.GetMzxid(), acl
	return acl
}

// roleSet is the roles of an identity: its certificate's and those the
// ACL binds it to.
type roleSet map[trust.Role]bool

// rolesOf returns id's roles under acl.
func rolesOf(id trust.Identity, acl *contract.ACL) roleSet {
	rs := roleSet{id.Role: true}
	for _, b := range acl.Bindings {
		if b.Identity == id.ID {
			rs[trust.Role(b.Role)] = true
		}
	}
	return rs
}

// has reports whether the roles include r's rights: admin and node include
// every role's, operator is included by admin's.
func (rs roleSet) has(r trust.Role) bool {
	if rs[trust.RoleAdmin] || rs[trust.RoleNode] {
		return true
	}
	return rs[r]
}

// String lists the roles, for errors.
func (rs roleSet) String() string {
	names := make([]string, 0, len(rs))
	for r := range rs {
		names = append(names, string(r))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// aclAllows reports whether a rule of acl grants n to the identity id with
// roles. A sequential create's node is a sibling of the path named, so the
// rule must cover the path's parent.
func aclAllows(acl *contract.ACL, id string, roles roleSet, n need) bool {
	for _, r := range acl.Rules {
		if !slices.Contains(r.Identities, id) && !slices.ContainsFunc(r.Roles, func(role string) bool { return roles[trust.Role(role)] }) {
			continue
		}
		if !r.Grants(n.perm) || !r.Covers(n.path) {
			continue
		}
		if n.sequential && n.path == strings.TrimSuffix(r.Prefix, "/") {
			continue
		}
		return true
	}
	return false
}
