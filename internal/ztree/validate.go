package ztree

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// MaxPathBytes is the longest valid path, in bytes (sequence suffix included).
const MaxPathBytes = 1024

// seqDigits is the minimum width of a sequential node's suffix ("%010d").
const seqDigits = 10

// Limits are the size limits checked at the API edge by ValidateOps. They are
// node configuration, so the state machine never checks them: an entry that
// was accepted by one leader must apply the same way on every node.
type Limits struct {
	// MaxDataBytes is the largest data of a create or set. Zero or negative
	// means the default (1 MiB).
	MaxDataBytes int
	// MaxOps is the largest number of ops in one multi. Zero or negative means
	// the default (1024).
	MaxOps int
	// MaxTxnBytes is the most data all ops of one multi may carry together,
	// which bounds the size of a raft entry. Zero or negative means twice
	// MaxDataBytes.
	MaxTxnBytes int
}

// DefaultLimits returns the default limits: 1 MiB of data, 1024 ops.
func DefaultLimits() Limits {
	return Limits{MaxDataBytes: 1 << 20, MaxOps: 1024}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxDataBytes <= 0 {
		l.MaxDataBytes = d.MaxDataBytes
	}
	if l.MaxTxnBytes <= 0 {
		l.MaxTxnBytes = 2 * l.MaxDataBytes
	}
	if l.MaxOps <= 0 {
		l.MaxOps = d.MaxOps
	}
	return l
}

// ValidatePath checks that path is a valid znode path: it starts with "/",
// does not end with "/" (except the root "/"), has no empty, "." or ".."
// segments, is valid UTF-8 without control characters, and is at most
// MaxPathBytes long. The error matches ErrInvalidArgument.
func ValidatePath(path string) error {
	if len(path) > MaxPathBytes {
		return errInvalid("path: %d bytes exceeds the limit of %d", len(path), MaxPathBytes)
	}
	if !strings.HasPrefix(path, "/") {
		return errInvalid("path %q: must start with \"/\"", path)
	}
	if !utf8.ValidString(path) {
		return errInvalid("path %q: not valid UTF-8", path)
	}
	for i, r := range path {
		if unicode.IsControl(r) {
			return errInvalid("path %q: control character %U at byte %d", path, r, i)
		}
	}
	if path == "/" {
		return nil
	}
	if strings.HasSuffix(path, "/") {
		return errInvalid("path %q: must not end with \"/\"", path)
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return errInvalid("path %q: empty segment", path)
		case ".", "..":
			return errInvalid("path %q: %q segments are not allowed", path, seg)
		}
	}
	return nil
}

// ValidateOps checks ops before they are proposed: everything the state
// machine would reject without looking at the tree (paths, kinds, fields),
// plus the size limits of lim, which only the edge checks. When there is more
// than one op, the message names the op ("ops[3]: ..."). The error matches
// ErrInvalidArgument.
func ValidateOps(ops []*colonyv1.Op, lim Limits) error {
	lim = lim.withDefaults()
	if len(ops) > lim.MaxOps {
		return errInvalid("ops: %d ops exceed the limit of %d", len(ops), lim.MaxOps)
	}
	total := 0
	for i, op := range ops {
		err := validateOp(op)
		if err == nil {
			err = checkDataSize(op, lim.MaxDataBytes)
		}
		total += dataSize(op)
		if err != nil {
			if len(ops) > 1 {
				return fmt.Errorf("ops[%d]: %w", i, err)
			}
			return err
		}
	}
	if total > lim.MaxTxnBytes {
		return errInvalid("ops: %d bytes of data in one multi exceed the limit of %d", total, lim.MaxTxnBytes)
	}
	return nil
}

func dataSize(op *colonyv1.Op) int {
	switch o := op.GetOp().(type) {
	case *colonyv1.Op_Create:
		return len(o.Create.GetData())
	case *colonyv1.Op_Set:
		return len(o.Set.GetData())
	}
	return 0
}

func checkDataSize(op *colonyv1.Op, max int) error {
	if n := dataSize(op); n > max {
		return errInvalid("data: %d bytes exceeds the limit of %d", n, max)
	}
	return nil
}

// validateOp is the stateless validation shared by the edge and the state
// machine. It must stay deterministic: the state machine runs it on every op.
func validateOp(op *colonyv1.Op) error {
	switch o := op.GetOp().(type) {
	case *colonyv1.Op_Create:
		return validateCreate(o.Create)
	case *colonyv1.Op_Set:
		if err := ValidatePath(o.Set.GetPath()); err != nil {
			return err
		}
		return validateVersion("expected_version", o.Set.GetExpectedVersion())
	case *colonyv1.Op_Delete:
		if err := validateNotRoot(o.Delete.GetPath(), "deleted"); err != nil {
			return err
		}
		return validateVersion("expected_version", o.Delete.GetExpectedVersion())
	case *colonyv1.Op_Check:
		if err := ValidatePath(o.Check.GetPath()); err != nil {
			return err
		}
		return validateVersion("version", o.Check.GetVersion())
	default:
		return errInvalid("op: must be one of check, create, set or delete")
	}
}

func validateCreate(c *colonyv1.CreateRequest) error {
	path := c.GetPath()
	if err := validateNotRoot(path, "created"); err != nil {
		return err
	}
	if c.GetSequential() && len(path)+seqDigits > MaxPathBytes {
		return errInvalid("path: %d bytes plus the %d-digit sequence suffix exceeds the limit of %d",
			len(path), seqDigits, MaxPathBytes)
	}
	kind := c.GetKind()
	switch kind {
	case colonyv1.NodeKind_NODE_KIND_PERSISTENT, colonyv1.NodeKind_NODE_KIND_EPHEMERAL,
		colonyv1.NodeKind_NODE_KIND_CONTAINER, colonyv1.NodeKind_NODE_KIND_TTL:
	default:
		return errInvalid("kind: unknown node kind %d", int32(kind))
	}
	if kind == colonyv1.NodeKind_NODE_KIND_EPHEMERAL {
		if c.GetSessionId() == 0 {
			return errInvalid("session_id: required for EPHEMERAL nodes")
		}
	} else if c.GetSessionId() != 0 {
		return errInvalid("session_id: only allowed for EPHEMERAL nodes")
	}
	if kind == colonyv1.NodeKind_NODE_KIND_TTL {
		if c.GetTtlMs() <= 0 {
			return errInvalid("ttl_ms: must be > 0 for TTL nodes, got %d", c.GetTtlMs())
		}
	} else if c.GetTtlMs() != 0 {
		return errInvalid("ttl_ms: only allowed for TTL nodes")
	}
	if kind == colonyv1.NodeKind_NODE_KIND_CONTAINER && c.GetSequential() {
		return errInvalid("sequential: CONTAINER nodes cannot be sequential")
	}
	return nil
}

func validateNotRoot(path, verb string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	if path == "/" {
		return errInvalid("path \"/\": the root cannot be %s", verb)
	}
	return nil
}

// validateVersion accepts -1 (any version) and versions >= 0.
func validateVersion(field string, v int64) error {
	if v < -1 {
		return errInvalid("%s: must be -1 (any) or >= 0, got %d", field, v)
	}
	return nil
}
