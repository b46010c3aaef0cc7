package api

// Authorization: one interceptor asks one authorizer whether the verified
// identity of a request's client may make it. Without TLS material the node
// is insecure and authorizes everyone.
//
// The authorizer looks a method up in one table (methods): a call anyone
// may make (their own sessions; the sessions service checks ownership), a
// call that needs a role (membership, snapshots, session listings), or a
// call on paths, whose request names them (Tree, Watch, Breakers). The
// paths a request touches, each with the permission it needs, are read
// from the request (needsOf); each is allowed by a built-in right of one of
// the identity's roles (builtinAllows) or by an ACL rule (acl.go).

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/trust"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// identity returns the verified identity of the request's client; ok is
// false when the node is insecure or the client presented no certificate.
func (s *Service) identity(ctx context.Context) (trust.Identity, bool) {
	if s.cfg.Trust == nil {
		return trust.Identity{}, false
	}
	if id, ok := ctx.Value(identityKey{}).(trust.Identity); ok {
		return id, true
	}
	return trust.FromContext(ctx, s.cfg.Trust.TrustDomain())
}

// identityKey keys the verified identity the interceptors put in a
// request's context, for the handlers (request scopes, the audit trail).
type identityKey struct{}

// verifiedIdentity is the identity the interceptors put in ctx: ok is false
// on an insecure node.
func verifiedIdentity(ctx context.Context) (trust.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(trust.Identity)
	return id, ok
}

// withIdentity returns ctx carrying the verified identity of its client,
// when there is one.
func (s *Service) withIdentity(ctx context.Context) context.Context {
	if id, ok := s.identity(ctx); ok {
		return context.WithValue(ctx, identityKey{}, id)
	}
	return ctx
}

// UnaryInterceptor authorizes every unary call to the public services.
func (s *Service) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return h(s.withIdentity(ctx), req)
}

// StreamInterceptor authorizes every streaming call to the public
// services: the call when it starts, and each request it receives (a
// Watch's request, every keep-alive of KeepAliveStream) as the handler
// reads it.
func (s *Service) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.authorize(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return h(srv, &authorizedStream{ServerStream: ss, ctx: s.withIdentity(ss.Context()), s: s, method: info.FullMethod})
}

// authorizedStream authorizes each message its handler receives.
type authorizedStream struct {
	grpc.ServerStream
	ctx    context.Context
	s      *Service
	method string
}

func (w *authorizedStream) Context() context.Context { return w.ctx }

func (w *authorizedStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := w.s.authorize(w.ctx, w.method, m); err != nil {
		return &deniedMessage{status: err}
	}
	return nil
}

// deniedMessage is a stream message its client may not send, received
// whole. A handler returning it ends the stream with the status; one whose
// messages are independent (ReportStream) may refuse the message alone.
type deniedMessage struct{ status error }

func (d *deniedMessage) Error() string              { return d.status.Error() }
func (d *deniedMessage) Unwrap() error              { return d.status }
func (d *deniedMessage) GRPCStatus() *status.Status { return status.Convert(d.status) }

// methodKind is how the authorizer decides a method.
type methodKind int

const (
	// byPaths: the request names the paths it touches (needsOf).
	byPaths methodKind = iota + 1
	// anyone: every verified identity; the handler checks that a session
	// is the caller's own.
	anyone
	// byRole: the identity needs the method's role (or admin, or node).
	byRole
)

// methodRule is what a method needs.
type methodRule struct {
	kind methodKind
	role trust.Role // for byRole: RoleOperator or RoleAdmin
}

// methods is every public method the node serves and what it needs. A
// method not listed is refused, except the Peer service's (nodes only).
var methods = map[string]methodRule{
	colonyv1.Tree_Create_FullMethodName:   {kind: byPaths},
	colonyv1.Tree_Get_FullMethodName:      {kind: byPaths},
	colonyv1.Tree_Set_FullMethodName:      {kind: byPaths},
	colonyv1.Tree_Delete_FullMethodName:   {kind: byPaths},
	colonyv1.Tree_Exists_FullMethodName:   {kind: byPaths},
	colonyv1.Tree_Children_FullMethodName: {kind: byPaths},
	colonyv1.Tree_Multi_FullMethodName:    {kind: byPaths},
	colonyv1.Watch_Watch_FullMethodName:   {kind: byPaths},

	colonyv1.Breakers_Report_FullMethodName:        {kind: byPaths},
	colonyv1.Breakers_ReportStream_FullMethodName:  {kind: byPaths},
	colonyv1.Breakers_ListBreakers_FullMethodName:  {kind: byPaths},
	colonyv1.Breakers_GetBreaker_FullMethodName:    {kind: byPaths},
	colonyv1.Breakers_SetOverride_FullMethodName:   {kind: byPaths},
	colonyv1.Breakers_ClearOverride_FullMethodName: {kind: byPaths},
	colonyv1.Breakers_DeleteBreaker_FullMethodName: {kind: byPaths},
	colonyv1.Breakers_ApplyPolicies_FullMethodName: {kind: byPaths},
	colonyv1.Breakers_GetPolicy_FullMethodName:     {kind: byPaths},
	colonyv1.Breakers_DeletePolicy_FullMethodName:  {kind: byPaths},

	colonyv1.Sessions_Open_FullMethodName:            {kind: anyone},
	colonyv1.Sessions_KeepAlive_FullMethodName:       {kind: anyone},
	colonyv1.Sessions_KeepAliveStream_FullMethodName: {kind: anyone},
	colonyv1.Sessions_Close_FullMethodName:           {kind: anyone},
	colonyv1.Sessions_List_FullMethodName:            {kind: byRole, role: trust.RoleOperator},

	colonyv1.Cluster_Status_FullMethodName:             {kind: byRole, role: trust.RoleOperator},
	colonyv1.Cluster_AddMember_FullMethodName:          {kind: byRole, role: trust.RoleAdmin},
	colonyv1.Cluster_RemoveMember_FullMethodName:       {kind: byRole, role: trust.RoleAdmin},
	colonyv1.Cluster_TransferLeadership_FullMethodName: {kind: byRole, role: trust.RoleAdmin},

	colonyv1.Maintenance_Snapshot_FullMethodName: {kind: byRole, role: trust.RoleOperator},
}

// peerMethodPrefix starts the Peer service's methods: nodes only.
var peerMethodPrefix = "/" + peerv1.Peer_ServiceDesc.ServiceName + "/"

// needKind says which built-in rights a need is checked against.
type needKind int

const (
	treeNeed    needKind = iota + 1 // a Tree op or a Watch
	breakerNeed                     // a Breakers call on a breaker or policy path
	reportNeed                      // one outcome of a Report
)

// need is one path a request touches and the permission it needs there.
type need struct {
	kind  needKind
	perm  string // contract.Perm*
	path  string
	field string // the request field that names the path, for errors
	// sequential: a sequential create, whose node is a sibling of path
	// with a counter appended: a rule must cover path's parent.
	sequential bool
	// recursive: a recursive watch, which sees everything under path.
	recursive bool
	// caller and instance of an outcome (reportNeed).
	caller, instance string
}

// authorize decides whether the request's client may call method with req
// (nil for a stream, before its first message). Writes of the ACL are
// validated here, on an insecure node too: a rule that does not parse is
// never stored.
func (s *Service) authorize(ctx context.Context, method string, req any) error {
	if s.cfg.Trust == nil {
		return validateACLWrites(req)
	}
	id, ok := s.identity(ctx)
	if !ok {
		return status.Errorf(codes.Unauthenticated, "%s: a verified client certificate is required", method)
	}
	if id.Role == trust.RoleNode {
		// A cluster member: forwarded calls, membership, the Peer service.
		return validateACLWrites(req)
	}
	rule, known := methods[method]
	if !known {
		if strings.HasPrefix(method, peerMethodPrefix) {
			return status.Errorf(codes.PermissionDenied, "%s is for coordinator nodes only; %s is a %s identity", method, id.ID, id.Role)
		}
		return status.Errorf(codes.PermissionDenied, "%s: %s may not call an unknown method", method, id.ID)
	}
	if rule.kind == anyone {
		return nil // before reading the ACL: every keep-alive of a stream comes here
	}
	v := s.node.LocalView()
	acl := s.acl.get(v)
	roles := rolesOf(id, acl)
	if roles.has(trust.RoleAdmin) {
		return validateACLWrites(req)
	}
	if rule.kind == byRole {
		if rule.role == trust.RoleOperator && roles.has(trust.RoleOperator) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%s: %s (%s) may not call it: it needs the %s role; an admin can bind the identity to %s in %s (colony acl apply)",
			method, id.ID, roles, rule.role, rule.role, contract.ACLRulesPath)
	}
	if req == nil {
		return nil // a stream: each message is authorized as it arrives
	}
	needs, err := needsOf(req)
	if err != nil {
		return err
	}
	for _, n := range needs {
		if ok, why := s.allows(v, id, roles, acl, n); !ok {
			return status.Errorf(codes.PermissionDenied, "%s: %s (%s) may not %s %s %s: %s", method, id.ID, roles, n.verb(), n.field, n.target(), why)
		}
	}
	return validateACLWrites(req)
}

// verb names what a need does, for errors.
func (n need) verb() string {
	if n.kind == reportNeed {
		return "report"
	}
	if n.kind == breakerNeed && n.perm == contract.PermAdmin {
		return "control"
	}
	return n.perm
}

// target is the path or outcome a need names, for errors.
func (n need) target() string {
	if n.kind == reportNeed {
		return fmt.Sprintf("(caller %q, instance %q)", n.caller, n.instance)
	}
	return n.path
}

// allows decides one need: built-in rights of the identity's roles first,
// then the ACL's rules. why is the reason of a refusal, naming the right
// or rule that would allow it.
func (s *Service) allows(v *ztree.View, id trust.Identity, roles roleSet, acl *contract.ACL, n need) (ok bool, why string) {
	if contract.UnderPrefix(n.path, contract.ACLRoot) && n.kind == treeNeed {
		if (n.perm == contract.PermRead || n.perm == contract.PermWatch) && roles.has(trust.RoleOperator) {
			return true, ""
		}
		return false, fmt.Sprintf("operators and admins read %s, only admins write it", contract.ACLRoot)
	}
	if n.recursive && contract.UnderPrefix(contract.ACLRoot, n.path) && !roles.has(trust.RoleOperator) {
		return false, fmt.Sprintf("a recursive watch on %s would see %s, which only operators and admins read", n.path, contract.ACLRoot)
	}
	why = "no built-in right of its role allows it"
	for r := range roles {
		ok, reason := builtinAllows(v, r, id.Name, n)
		if ok {
			return true, ""
		}
		if reason != "" {
			why = reason
		}
	}
	if aclAllows(acl, id.ID, roles, n) {
		return true, ""
	}
	return false, fmt.Sprintf("%s, and no rule in %s grants %s on %s (an admin can add one with colony acl apply)", why, contract.ACLRulesPath, n.perm, n.path)
}

// Coordination space every sidecar shares: lock and election nodes, each an
// ephemeral of its owner's session.
var sharedRoots = []string{contract.Root + "/locks", contract.Root + "/elections"}

// builtinAllows is the built-in rights of role (name: the identity's name,
// the service of a sidecar) as model.md lists them. Admin and node are
// allowed before this is asked. reason explains a refusal when the role
// has a rule about the need.
func builtinAllows(v *ztree.View, role trust.Role, name string, n need) (ok bool, reason string) {
	switch role {
	case trust.RoleOperator:
		// Everything but reporting outcomes: reading and watching, tree
		// writes (not of the ACL, refused before), breaker control.
		if n.kind == reportNeed {
			return false, "operators do not report outcomes"
		}
		return true, ""
	case trust.RoleSidecar:
		return sidecarAllows(v, name, n)
	}
	return false, ""
}

// sidecarAllows is the built-in rights of the sidecar of service svc.
func sidecarAllows(v *ztree.View, svc string, n need) (ok bool, reason string) {
	under := func(roots ...string) bool {
		for _, r := range roots {
			if n.sequential && n.path == r {
				continue
			}
			if contract.UnderPrefix(n.path, r) {
				return true
			}
		}
		return false
	}
	switch n.kind {
	case reportNeed:
		if n.caller != svc {
			return false, fmt.Sprintf("the sidecar of %s reports only as caller %q, not %q", svc, svc, n.caller)
		}
		if !validInstance(n.instance) {
			return false, fmt.Sprintf("instance %q is not an instance name", n.instance)
		}
		p := contract.RegistrationPath(svc, n.instance)
		if _, _, err := v.Get(p); err != nil {
			return false, fmt.Sprintf("instance %q of %s has no registration at %s", n.instance, svc, p)
		}
		return true, ""
	case breakerNeed:
		if n.perm == contract.PermRead && under(contract.CallerBreakers(svc), contract.PoliciesRoot) {
			return true, ""
		}
		return false, fmt.Sprintf("the sidecar of %s reads only its own breakers (%s) and the policies", svc, contract.CallerBreakers(svc))
	case treeNeed:
		switch n.perm {
		case contract.PermRead, contract.PermWatch:
			if under(append([]string{contract.CallerBreakers(svc), contract.ServicesRoot, contract.PoliciesRoot}, sharedRoots...)...) {
				return true, ""
			}
			return false, fmt.Sprintf("the sidecar of %s reads only %s, %s, %s and %s", svc, contract.CallerBreakers(svc), contract.ServicesRoot, contract.PoliciesRoot, strings.Join(sharedRoots, ", "))
		case contract.PermCreate, contract.PermWrite, contract.PermDelete:
			if under(append([]string{contract.ServiceDir(svc)}, sharedRoots...)...) {
				return true, ""
			}
			return false, fmt.Sprintf("the sidecar of %s writes only under %s and %s", svc, contract.ServiceDir(svc), strings.Join(sharedRoots, ", "))
		}
	}
	return false, ""
}

// validInstance reports whether an outcome's instance names one node under
// a service's directory.
func validInstance(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.Contains(s, "/")
}

// needsOf reads the paths a request touches and the permission each needs.
func needsOf(req any) ([]need, error) {
	tree := func(perm, field, p string) need { return need{kind: treeNeed, perm: perm, path: p, field: field} }
	brk := func(perm, field, p string) need { return need{kind: breakerNeed, perm: perm, path: p, field: field} }
	var needs []need
	switch r := req.(type) {
	case *colonyv1.CreateRequest:
		n := tree(contract.PermCreate, "path", r.GetPath())
		n.sequential = r.GetSequential()
		needs = append(needs, n)
	case *colonyv1.SetRequest:
		needs = append(needs, tree(contract.PermWrite, "path", r.GetPath()))
	case *colonyv1.DeleteRequest:
		needs = append(needs, tree(contract.PermDelete, "path", r.GetPath()))
	case *colonyv1.GetRequest:
		needs = append(needs, tree(contract.PermRead, "path", r.GetPath()))
	case *colonyv1.ExistsRequest:
		needs = append(needs, tree(contract.PermRead, "path", r.GetPath()))
	case *colonyv1.ChildrenRequest:
		needs = append(needs, tree(contract.PermRead, "path", r.GetPath()))
	case *colonyv1.MultiRequest:
		for i, op := range r.GetOps() {
			f := fmt.Sprintf("ops[%d].path", i)
			switch o := op.GetOp().(type) {
			case *colonyv1.Op_Check:
				needs = append(needs, tree(contract.PermRead, f, o.Check.GetPath()))
			case *colonyv1.Op_Create:
				n := tree(contract.PermCreate, f, o.Create.GetPath())
				n.sequential = o.Create.GetSequential()
				needs = append(needs, n)
			case *colonyv1.Op_Set:
				needs = append(needs, tree(contract.PermWrite, f, o.Set.GetPath()))
			case *colonyv1.Op_Delete:
				needs = append(needs, tree(contract.PermDelete, f, o.Delete.GetPath()))
			default:
				return nil, status.Errorf(codes.InvalidArgument, "ops[%d]: no op set", i)
			}
		}
	case *colonyv1.WatchRequest:
		n := tree(contract.PermWatch, "path", r.GetPath())
		n.recursive = r.GetRecursive()
		needs = append(needs, n)
	case *colonyv1.ReportRequest:
		needs = reportNeeds(needs, r.GetReports())
	case *colonyv1.ReportStreamRequest:
		needs = reportNeeds(needs, r.GetReports())
	case *colonyv1.ListBreakersRequest:
		p := contract.BreakersRoot
		if r.GetCaller() != "" {
			p = contract.CallerBreakers(r.GetCaller())
		}
		needs = append(needs, brk(contract.PermRead, "breakers", p))
	case *colonyv1.GetBreakerRequest:
		needs = append(needs, brk(contract.PermRead, "breaker", contract.BreakerPath(r.GetCaller(), r.GetCallee())))
	case *colonyv1.SetOverrideRequest:
		needs = append(needs, brk(contract.PermAdmin, "breaker", contract.BreakerPath(r.GetCaller(), r.GetCallee())))
	case *colonyv1.ClearOverrideRequest:
		needs = append(needs, brk(contract.PermAdmin, "breaker", contract.BreakerPath(r.GetCaller(), r.GetCallee())))
	case *colonyv1.DeleteBreakerRequest:
		needs = append(needs, brk(contract.PermAdmin, "breaker", contract.BreakerPath(r.GetCaller(), r.GetCallee())))
	case *colonyv1.ApplyPoliciesRequest:
		for i, p := range r.GetPolicies() {
			needs = append(needs, brk(contract.PermAdmin, fmt.Sprintf("policies[%d]", i), contract.PolicyPath(p.GetCallee())))
		}
	case *colonyv1.GetPolicyRequest:
		needs = append(needs, brk(contract.PermRead, "policy", contract.PolicyPath(r.GetCallee())))
	case *colonyv1.DeletePolicyRequest:
		needs = append(needs, brk(contract.PermAdmin, "policy", contract.PolicyPath(r.GetCallee())))
	default:
		return nil, status.Errorf(codes.PermissionDenied, "a %T is not authorized by path", req)
	}
	for _, n := range needs {
		if n.kind != treeNeed {
			continue
		}
		if err := ztree.ValidatePath(n.path); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", n.field, err)
		}
	}
	return needs, nil
}

// validateACLWrites refuses a write of the ACL document that does not
// parse, naming the field.
func validateACLWrites(req any) error {
	check := func(field, p string, data []byte) error {
		if p != contract.ACLRulesPath {
			return nil
		}
		if _, err := contract.ParseACL(data); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s: %s must be a valid ACL: %v", field, p, err)
		}
		return nil
	}
	switch r := req.(type) {
	case *colonyv1.CreateRequest:
		return check("data", r.GetPath(), r.GetData())
	case *colonyv1.SetRequest:
		return check("data", r.GetPath(), r.GetData())
	case *colonyv1.MultiRequest:
		for i, op := range r.GetOps() {
			f := fmt.Sprintf("ops[%d].data", i)
			var err error
			switch o := op.GetOp().(type) {
			case *colonyv1.Op_Create:
				err = check(f, o.Create.GetPath(), o.Create.GetData())
			case *colonyv1.Op_Set:
				err = check(f, o.Set.GetPath(), o.Set.GetData())
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// reportNeeds appends what each outcome of a Report (or of a ReportStream
// message) needs: the right to report as its caller and instance.
func reportNeeds(needs []need, reports []*colonyv1.OutcomeReport) []need {
	for i, o := range reports {
		needs = append(needs, need{
			kind: reportNeed, perm: contract.PermWrite, path: contract.BreakerPath(o.GetCaller(), o.GetCallee()),
			field: fmt.Sprintf("reports[%d]", i), caller: o.GetCaller(), instance: o.GetInstance(),
		})
	}
	return needs
}
