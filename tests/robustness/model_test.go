//go:build unix

package robustness

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// opKind is one kind of operation on a key.
type opKind int

const (
	opGet    opKind = iota // linearizable read
	opSet                  // unconditional set (expected version unset)
	opCAS                  // set at an expected version
	opCreate               // create a persistent node
	opDelete               // delete, at an expected version or any (-1)
)

func (k opKind) String() string {
	return [...]string{"get", "set", "cas", "create", "delete"}[k]
}

// kvInput is an operation's input.
type kvInput struct {
	Kind    opKind
	Key     string
	Value   string // set, cas, create
	Version int64  // cas; delete (-1: any)
}

// errKind is an operation's definite failure.
type errKind int

const (
	errNone errKind = iota
	errNoNode
	errNodeExists
	errBadVersion
)

func (e errKind) String() string {
	return [...]string{"ok", "no-node", "node-exists", "bad-version"}[e]
}

// kvOutput is an operation's output.
type kvOutput struct {
	// Unknown: the write's outcome is unknown (every attempt failed without
	// an answer); it may take effect at any time after its call, or never.
	Unknown bool
	Err     errKind
	Exists  bool   // get
	Value   string // get
	Version int64  // get; set, cas and create on success
	// Zxid is, for a successful set, cas or create, the zxid of the change
	// (stat.mzxid), used by the watch checks; for other ops the serving
	// node's zxid. The model ignores it.
	Zxid uint64
	// Node is the member that answered.
	Node string
	// headerZxid is the answering node's zxid (the response header's), for
	// the per-client monotonicity check.
	headerZxid uint64
}

// regState is one key's state in the model: a versioned register.
type regState struct {
	Exists  bool
	Value   string
	Version int64
}

// registerModel is a per-key versioned register with compare-and-set, the
// sequential specification of the znode tree restricted to data nodes
// without children: create starts at version 0, every set adds one, delete
// removes the node, and set, cas and delete at a wrong version or on a
// missing node fail without effect.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(regState), input.(kvInput), output.(kvOutput))
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		var arg string
		switch in.Kind {
		case opSet, opCreate:
			arg = fmt.Sprintf("%q", in.Value)
		case opCAS:
			arg = fmt.Sprintf("%q, v%d", in.Value, in.Version)
		case opDelete:
			if in.Version >= 0 {
				arg = fmt.Sprintf("v%d", in.Version)
			}
		}
		return fmt.Sprintf("%s(%s%s) -> %s", in.Kind, strings.TrimPrefix(in.Key, keyPrefix), prefixComma(arg), describeOutput(in, out))
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.Exists {
			return "(none)"
		}
		return fmt.Sprintf("%q v%d", s.Value, s.Version)
	},
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

func describeOutput(in kvInput, out kvOutput) string {
	switch {
	case out.Unknown:
		return "unknown"
	case out.Err != errNone:
		return out.Err.String()
	case in.Kind == opGet && !out.Exists:
		return "none"
	case in.Kind == opGet:
		return fmt.Sprintf("%q v%d @%s/%d", out.Value, out.Version, out.Node, out.Zxid)
	case in.Kind == opDelete:
		return "ok"
	}
	return fmt.Sprintf("v%d zxid %d", out.Version, out.Zxid)
}

// step is the model's transition: whether out is a possible output of in in
// state s, and the state after it.
func step(s regState, in kvInput, out kvOutput) (bool, regState) {
	// applies reports whether the write's precondition holds in s, and the
	// state after it, and the failure it gets otherwise.
	var next regState
	fail := errNone
	switch in.Kind {
	case opGet:
		if !s.Exists {
			return !out.Exists && out.Err == errNone || out.Err == errNoNode, s
		}
		return out.Err == errNone && out.Exists && out.Value == s.Value && out.Version == s.Version, s
	case opSet:
		if !s.Exists {
			fail = errNoNode
		}
		next = regState{Exists: true, Value: in.Value, Version: s.Version + 1}
	case opCAS:
		switch {
		case !s.Exists:
			fail = errNoNode
		case s.Version != in.Version:
			fail = errBadVersion
		}
		next = regState{Exists: true, Value: in.Value, Version: s.Version + 1}
	case opCreate:
		if s.Exists {
			fail = errNodeExists
		}
		next = regState{Exists: true, Value: in.Value, Version: 0}
	case opDelete:
		switch {
		case !s.Exists:
			fail = errNoNode
		case in.Version >= 0 && s.Version != in.Version:
			fail = errBadVersion
		}
		next = regState{}
	}
	if out.Unknown {
		// Taking effect here (if it can) is one possibility; its return time
		// at the end of the history leaves "never" open too.
		if fail != errNone {
			return true, s
		}
		return true, next
	}
	if fail != errNone {
		return out.Err == fail, s
	}
	if out.Err != errNone {
		return false, s
	}
	if in.Kind != opDelete && out.Version != next.Version {
		return false, s
	}
	return true, next
}
