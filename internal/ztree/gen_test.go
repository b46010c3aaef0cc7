package ztree

import (
	"fmt"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// gen turns a byte string into a plausible but often invalid command
// sequence, for the fuzz target and the determinism test. It draws from a
// small set of paths, ids and versions so that commands collide often.
type gen struct {
	b      []byte
	i      int
	timeMs int64
}

var (
	genPaths   = []string{"/", "/a", "/a/b", "/a/b/c", "/a/c", "/b", "/b/x", "/c", "/c/d", "/c/d/e"}
	genInvalid = []string{"bad", "/a/", "/a//b", "/./x", "/n\x00", ""}
)

func newGen(b []byte) *gen { return &gen{b: b, timeMs: 1_000_000} }

func (g *gen) more() bool { return g.i < len(g.b) }

func (g *gen) byte() byte {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return g.b[g.i-1]
}

func (g *gen) pick(n int) int { return int(g.byte()) % n }

// path picks a path, invalid one time in sixteen.
func (g *gen) path() string {
	if g.pick(16) == 0 {
		return genInvalid[g.pick(len(genInvalid))]
	}
	return genPaths[g.pick(len(genPaths))]
}

func (g *gen) version() *int64 {
	if g.pick(3) == 0 {
		return nil
	}
	v := int64(g.pick(7)) - 2 // -2 .. 4
	return &v
}

// next returns the next command; v is the tree the command will apply to,
// consulted for reap targets.
func (g *gen) next(v *View) *peerv1.Command {
	// Time mostly moves forward, by up to ~42 minutes, sometimes back.
	d := int64(g.byte()) * 10_000
	if g.pick(8) == 0 {
		d = -d
	}
	g.timeMs += d
	// Mostly one identity, so that sessions are used by their owner;
	// sometimes another or none, which the owner check refuses.
	c := &peerv1.Command{TimeMs: g.timeMs, Owner: []string{"a", "a", "b", ""}[g.pick(4)]}
	if g.pick(4) == 0 {
		c.RequestId = fmt.Sprint("r", g.pick(12))
		c.ClientId = []string{"", "c1", "c2"}[g.pick(3)]
	}
	switch g.pick(16) {
	case 0, 1, 2, 3, 4, 5, 6, 7, 8:
		n := 1
		if g.pick(4) == 0 {
			n += g.pick(4)
		}
		ops := make([]*colonyv1.Op, n)
		for i := range ops {
			ops[i] = g.op(v)
		}
		c.Op = &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}
	case 9:
		c.Op = &peerv1.Command_OpenSession{OpenSession: &peerv1.OpenSession{TtlMs: int64(g.pick(3)) * 1000, Name: "s"}}
	case 10:
		c.Op = &peerv1.Command_CloseSession{CloseSession: &peerv1.CloseSession{SessionId: g.session(v)}}
	case 11:
		c.Op = &peerv1.Command_ExpireSessions{ExpireSessions: &peerv1.ExpireSessions{SessionIds: []uint64{g.session(v), g.session(v)}}}
	case 12:
		targets := v.ReapCandidates(g.timeMs, 0)
		if g.pick(2) == 0 { // a stale or malformed target
			targets = append(targets, &peerv1.ReapTarget{Path: g.path(), Mzxid: uint64(g.pick(20)), Pzxid: uint64(g.pick(20))})
		}
		c.Op = &peerv1.Command_Reap{Reap: &peerv1.Reap{Targets: targets}}
	case 13:
		c.Op = &peerv1.Command_RegisterMember{RegisterMember: &peerv1.RegisterMember{Id: fmt.Sprint("n", g.pick(3)), GrpcAddress: fmt.Sprint("a", g.byte())}}
	case 14:
		c.Op = &peerv1.Command_ForgetMember{ForgetMember: &peerv1.ForgetMember{Id: fmt.Sprint("n", g.pick(4))}}
	default:
		c.Op = &peerv1.Command_Noop{Noop: &peerv1.Noop{}}
	}
	if c.RequestId != "" {
		c.Fingerprint = Fingerprint(c) // as the leader stamps it
	}
	return c
}

// session picks a session id: mostly an open one, sometimes a made-up one.
func (g *gen) session(v *View) uint64 {
	ss := v.Sessions()
	if len(ss) == 0 || g.pick(4) == 0 {
		return uint64(g.pick(40))
	}
	return ss[g.pick(len(ss))].GetSessionId()
}

// existing picks a node of v (up to the first 64 in key order), or a
// random path.
func (g *gen) existing(v *View) string {
	var paths []string
	v.s.nodes.Root().Walk(func(k []byte, _ *node) bool {
		paths = append(paths, pathOfKey(k))
		return len(paths) >= 64
	})
	if g.pick(4) == 0 {
		return g.path()
	}
	return paths[g.pick(len(paths))]
}

// child picks a path to create: mostly a child of an existing node.
func (g *gen) child(v *View) string {
	if g.pick(4) == 0 {
		return g.path()
	}
	parent := g.existing(v)
	if parent == "/" || depth(parent) >= 4 {
		parent = ""
	}
	return parent + "/" + string(rune('a'+g.pick(4)))
}

func (g *gen) op(v *View) *colonyv1.Op {
	switch g.pick(20) {
	case 0, 1, 2, 3, 4, 5, 6, 7:
		c := &colonyv1.CreateRequest{
			Path:       g.child(v),
			Data:       []byte{g.byte()},
			Kind:       colonyv1.NodeKind(g.pick(4)),
			Sequential: g.pick(4) == 0,
		}
		if g.pick(10) == 0 {
			c.Kind = 4 // invalid
		}
		switch g.pick(4) {
		case 0:
			c.SessionId = uint64(g.pick(30))
		case 1:
			c.TtlMs = int64(g.pick(4)-1) * 100_000
		}
		// Usually make the kind-specific fields right.
		if g.pick(4) != 0 {
			switch c.Kind {
			case colonyv1.NodeKind_NODE_KIND_EPHEMERAL:
				c.TtlMs = 0
				c.SessionId = g.session(v)
			case colonyv1.NodeKind_NODE_KIND_TTL:
				c.SessionId = 0
				c.TtlMs = 1 + int64(g.pick(10))*100_000
			default:
				c.SessionId, c.TtlMs = 0, 0
			}
		}
		return &colonyv1.Op{Op: &colonyv1.Op_Create{Create: c}}
	case 8, 9, 10, 11:
		return &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: g.existing(v), Data: []byte{g.byte(), g.byte()}, ExpectedVersion: g.version()}}}
	case 12, 13, 14, 15, 16:
		return &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{Path: g.existing(v), ExpectedVersion: g.version()}}}
	case 17, 18:
		return &colonyv1.Op{Op: &colonyv1.Op_Check{Check: &colonyv1.CheckOp{Path: g.existing(v), Version: int64(g.pick(4)) - 2}}}
	default:
		return &colonyv1.Op{}
	}
}
