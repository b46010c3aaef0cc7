package ztree

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Errors returned by the tree. Their messages reach users (as gRPC status
// messages and OpError messages), so they are plain English. The errors the
// tree returns are more specific (they name the path, the versions, the field
// and the limit) and match these sentinels with errors.Is.
//
// Kinds that share a gRPC code are told apart on the wire by their reason
// (contract.Reason*, in an OpError and in the status's ErrorInfo). Every
// message of a given kind also starts with the first word of its sentinel's
// message ("node", "session", "version", "ephemeral"), which is how errors
// from nodes older than reasons are still told apart.
var (
	// ErrNoNode: the node (or the parent of a node being created) does not exist.
	ErrNoNode = errors.New("node does not exist")
	// ErrNodeExists: create of a node that already exists.
	ErrNodeExists = errors.New("node already exists")
	// ErrBadVersion: a set, delete or check named a version the node does not have.
	ErrBadVersion = errors.New("version mismatch")
	// ErrNotEmpty: delete of a node that has children.
	ErrNotEmpty = errors.New("node is not empty")
	// ErrEphemeralParent: create of a child of an ephemeral node.
	ErrEphemeralParent = errors.New("ephemeral nodes cannot have children")
	// ErrSessionNotFound: the session is unknown, closed or expired.
	ErrSessionNotFound = errors.New("session not found or expired")
	// ErrSessionNotOwned: a close of, or an ephemeral create in, a session
	// another identity opened.
	ErrSessionNotOwned = errors.New("session belongs to another identity")
	// ErrInvalidArgument: malformed input (bad path, bad field, limit exceeded).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAborted: an op of a multi that was not applied because another op failed.
	ErrAborted = errors.New("not applied")
	// ErrBadSnapshot: Restore was given a snapshot it cannot read or that is inconsistent.
	ErrBadSnapshot = errors.New("invalid snapshot")
)

// errorCodes is the one table mapping the package's errors to gRPC codes
// and to the reasons clients tell kinds apart by (contract.Reason*). Order
// matters. Code returns the first entry the error matches (a snapshot error
// wrapping an invalid path is DataLoss). FromOpError maps an OpError's
// reason back to its entry; an OpError without one (from a node older than
// reasons) is matched, among the entries of its code, by the first whose
// prefix starts the message, falling back to the code's first entry.
var errorCodes = []struct {
	err    error
	code   codes.Code
	reason string
	prefix string // first word of every message of this kind
}{
	{ErrBadSnapshot, codes.DataLoss, contract.ReasonBadSnapshot, ""},
	{ErrNoNode, codes.NotFound, contract.ReasonNoNode, "node "},
	{ErrSessionNotFound, codes.NotFound, contract.ReasonSessionNotFound, "session "},
	{ErrSessionNotOwned, codes.PermissionDenied, contract.ReasonSessionNotOwned, "session "},
	{ErrNodeExists, codes.AlreadyExists, contract.ReasonNodeExists, ""},
	{ErrBadVersion, codes.FailedPrecondition, contract.ReasonBadVersion, "version "},
	{ErrNotEmpty, codes.FailedPrecondition, contract.ReasonNotEmpty, "node "},
	{ErrEphemeralParent, codes.FailedPrecondition, contract.ReasonEphemeralParent, "ephemeral "},
	{ErrInvalidArgument, codes.InvalidArgument, contract.ReasonInvalidArgument, ""},
	{ErrAborted, codes.Aborted, contract.ReasonAborted, ""},
}

// Code maps an error of this package (wrapped or not) to its gRPC code:
// codes.OK for nil, codes.Unknown for errors it does not know.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	// An error rebuilt by FromOpError from a code we have no sentinel for.
	var ze *zerr
	if errors.As(err, &ze) && ze.code != codes.OK {
		return ze.code
	}
	return codes.Unknown
}

// Reason is the contract.Reason* of an error of this package (wrapped or
// not), "" for nil or errors it does not know.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.reason
		}
	}
	return ""
}

// ToOpError converts err to the OpError carried in results: its code and its
// full message. It returns nil for a nil error.
func ToOpError(err error) *colonyv1.OpError {
	if err == nil {
		return nil
	}
	return &colonyv1.OpError{Code: int32(Code(err)), Message: err.Error(), Reason: Reason(err)}
}

// FromOpError rebuilds an error from an OpError: the result has e's message
// and matches the sentinel of e's kind with errors.Is (and Code returns e's
// code). It returns nil for nil or an OK code.
func FromOpError(e *colonyv1.OpError) error {
	if e == nil || codes.Code(e.GetCode()) == codes.OK {
		return nil
	}
	c := codes.Code(e.GetCode())
	var kind error
	for _, ent := range errorCodes {
		if e.GetReason() != "" && ent.reason == e.GetReason() && ent.code == c {
			return &zerr{kind: ent.err, code: c, msg: e.GetMessage()}
		}
	}
	for _, ent := range errorCodes {
		if ent.code != c {
			continue
		}
		if kind == nil {
			kind = ent.err // fallback: the code's first sentinel
		}
		if ent.prefix != "" && strings.HasPrefix(e.GetMessage(), ent.prefix) {
			kind = ent.err
			break
		}
	}
	return &zerr{kind: kind, code: c, msg: e.GetMessage()}
}

// zerr is an error with a precise, user-facing message that matches the
// sentinel kind with errors.Is. It is how the tree builds its errors: unlike
// fmt.Errorf("...: %w", sentinel) it does not repeat the sentinel's text.
type zerr struct {
	kind error      // sentinel; nil only when rebuilt from an unmapped code
	code codes.Code // only set by FromOpError
	msg  string
}

func (e *zerr) Error() string { return e.msg }
func (e *zerr) Unwrap() error { return e.kind }

// newErr builds an error of the given kind with a formatted message.
func newErr(kind error, format string, args ...any) error {
	return &zerr{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Constructors for every error the tree returns, so that messages are uniform
// and keep the first-word convention above.

func errNoNode(path string) error { return newErr(ErrNoNode, "node %s does not exist", path) }

func errNoParent(parent, path string) error {
	return newErr(ErrNoNode, "node %s does not exist (parent of %s)", parent, path)
}

func errNodeExists(path string) error {
	return newErr(ErrNodeExists, "node %s already exists", path)
}

func errBadVersion(path string, expected, current int64) error {
	return newErr(ErrBadVersion, "version mismatch on %s: expected %d, current %d", path, expected, current)
}

func errNotEmpty(path string, children int32) error {
	noun := "children"
	if children == 1 {
		noun = "child"
	}
	return newErr(ErrNotEmpty, "node %s is not empty: it has %d %s", path, children, noun)
}

func errEphemeralParent(parent, path string) error {
	return newErr(ErrEphemeralParent, "ephemeral node %s cannot have children (creating %s)", parent, path)
}

// SessionNotFound returns the error for an unknown or expired session id.
func SessionNotFound(id uint64) error { return errSessionNotFound(id) }

func errSessionNotFound(id uint64) error {
	return newErr(ErrSessionNotFound, "session %#x not found or expired", id)
}

// SessionNotOwned returns the error for an identity that may not do what
// (e.g. "keep it alive") to session id, which another identity opened.
// identity is "" for a caller without a verified identity.
func SessionNotOwned(id uint64, identity, what string) error {
	if identity == "" {
		identity = "a caller without a verified identity"
	}
	return newErr(ErrSessionNotOwned, "session %#x belongs to another identity: %s may not %s (only the identity that opened a session may keep it alive, close it or create ephemeral nodes in it)", id, identity, what)
}

// errSessionEnded answers a retried OpenSession whose session has been
// closed or has expired since the first attempt opened it.
func errSessionEnded(id uint64) error {
	return newErr(ErrSessionNotFound, "session %#x opened by this request has ended", id)
}

// errRequestIDReused answers a command whose request id its client already
// used for a different command.
func errRequestIDReused(requestID string) error {
	return errInvalid("request_id %q: already used by this client for a different request (a request id is remembered for %d minutes)", requestID, DedupWindowMs/60_000)
}

// errInvalid is an InvalidArgument error; the message should name the field
// and, where there is one, the limit.
func errInvalid(format string, args ...any) error {
	return newErr(ErrInvalidArgument, format, args...)
}

func errAborted(failedOp int) error {
	return newErr(ErrAborted, "not applied: op %d failed", failedOp)
}

func errBadSnapshot(format string, args ...any) error {
	return newErr(ErrBadSnapshot, "invalid snapshot: "+format, args...)
}
