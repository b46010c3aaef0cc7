package client

import (
	"context"
	"errors"
	"strings"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/errinfo"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors returned by the client. Errors that come from the coordinator match
// one of these with errors.Is, keep the server's message as their text and
// carry the original gRPC status (status.Code and status.FromError work).
var (
	// ErrNoNode: the znode (or, for a create, its parent) does not exist.
	ErrNoNode = errors.New("client: node does not exist")
	// ErrNodeExists: a create found the znode already there.
	ErrNodeExists = errors.New("client: node already exists")
	// ErrBadVersion: a compare-and-set (set, delete or check with a version)
	// found another version; the server's message names the current one.
	ErrBadVersion = errors.New("client: version mismatch")
	// ErrNotEmpty: a delete found children under the znode.
	ErrNotEmpty = errors.New("client: node has children")
	// ErrEphemeralParent: a create under an ephemeral znode, which cannot
	// have children.
	ErrEphemeralParent = errors.New("client: ephemeral nodes cannot have children")
	// ErrSessionExpired: the session does not exist any more (expired or
	// closed), or a Session lost it (no keep-alive acknowledged within its TTL).
	ErrSessionExpired = errors.New("client: session expired")
	// ErrInvalidArgument: the server rejected the request; its message names
	// the field and the limit.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrUnavailable: no endpoint could serve the request (no leader known,
	// or none reachable) before the caller's context ended.
	ErrUnavailable = errors.New("client: coordinator unavailable")
	// ErrResync: a watch may have missed events. Reread the state and watch
	// again from the read's zxid. The watcher is finished.
	ErrResync = errors.New("client: watch must resync")
	// ErrClosed: the Client, Session or Watcher was closed.
	ErrClosed = errors.New("client: closed")
	// ErrNotFound: a breaker, policy or callee the request named does not
	// exist (the Breakers API's NotFound; a znode's is ErrNoNode).
	ErrNotFound = errors.New("client: not found")
	// ErrPermissionDenied: the coordinator knows who the client is (its
	// certificate) and that identity may not do what it asked; the error's
	// message names the identity, the operation and the path. Nothing was
	// changed. A session of another identity gives it too.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrUnauthenticated: a secure coordinator did not get a verified
	// client certificate (configure Config.TLS).
	ErrUnauthenticated = errors.New("client: unauthenticated")
)

// errHint tells the mapping what a bare NotFound means for the call that got it.
type errHint uint8

const (
	hintNode    errHint = iota // NotFound: the znode is missing
	hintSession                // NotFound: the session is gone
	hintBreaker                // NotFound: a breaker, policy or callee is unknown
)

// statusError is a coordinator error: it matches kind (if any) with
// errors.Is, reads as the server's message and carries the gRPC status.
type statusError struct {
	st   *status.Status
	kind error
}

func (e *statusError) Error() string {
	switch {
	case e.st.Message() != "":
		return e.st.Message()
	case e.kind != nil:
		return e.kind.Error()
	}
	return "client: " + e.st.Code().String()
}

func (e *statusError) Unwrap() error { return e.kind }

// GRPCStatus lets status.Code, status.FromError and status.Convert see the
// original status.
func (e *statusError) GRPCStatus() *status.Status { return e.st }

// toError maps an error from a gRPC call to the package's errors: it reads
// as the server's message, matches a sentinel where the code has one, and
// keeps the status. Errors that carry no gRPC status are returned unchanged.
func toError(err error, hint errHint) error {
	if err == nil {
		return nil
	}
	var se *statusError
	if errors.As(err, &se) {
		return err // already mapped
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &statusError{st: st, kind: kindOf(st, hint)}
}

// reasonKinds maps the coordinator's error reasons (contract.Reason*, in the
// status's ErrorInfo or a Multi's OpError) to the package's sentinels.
var reasonKinds = map[string]error{
	contract.ReasonNoNode:          ErrNoNode,
	contract.ReasonSessionNotFound: ErrSessionExpired,
	contract.ReasonNotFound:        ErrNotFound,
	contract.ReasonNodeExists:      ErrNodeExists,
	contract.ReasonBadVersion:      ErrBadVersion,
	contract.ReasonNotEmpty:        ErrNotEmpty,
	contract.ReasonEphemeralParent: ErrEphemeralParent,
	contract.ReasonInvalidArgument: ErrInvalidArgument,
	contract.ReasonSessionNotOwned: ErrPermissionDenied,
}

// kindOf picks the sentinel for st: by the reason the coordinator attached
// where one code covers several kinds, else by its code. A coordinator older
// than reasons is told apart by the message's first word, as it starts every
// message of a kind with the same word ("node ...", "session ...",
// "version ...", "ephemeral ...").
func kindOf(st *status.Status, hint errHint) error {
	if kind, ok := reasonKinds[errinfo.Reason(st)]; ok {
		return kind
	}
	msg := st.Message()
	switch st.Code() {
	case codes.NotFound:
		if hint == hintSession || strings.HasPrefix(msg, "session ") {
			return ErrSessionExpired
		}
		if hint == hintBreaker {
			return ErrNotFound
		}
		return ErrNoNode
	case codes.AlreadyExists:
		return ErrNodeExists
	case codes.FailedPrecondition:
		switch {
		case strings.HasPrefix(msg, "version "):
			return ErrBadVersion
		case strings.HasPrefix(msg, "node "):
			return ErrNotEmpty
		case strings.HasPrefix(msg, "ephemeral "):
			return ErrEphemeralParent
		}
		return nil
	case codes.InvalidArgument, codes.OutOfRange:
		return ErrInvalidArgument
	case codes.PermissionDenied:
		return ErrPermissionDenied
	case codes.Unauthenticated:
		return ErrUnauthenticated
	case codes.Unavailable:
		return ErrUnavailable
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

// opStatus is the status of a failed Multi op, with the op's reason as the
// ErrorInfo a failed call would carry.
func opStatus(e *colonyv1.OpError) *status.Status { return errinfo.FromOpError(e) }
