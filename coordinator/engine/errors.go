package engine

import (
	"errors"
	"fmt"

	"github.com/colonymesh/colony/contract"
	"google.golang.org/grpc/codes"
)

// Errors returned by the engine and by its input checks. The errors
// themselves are more specific: their messages name the field, the pair
// and the limit, reach users as gRPC status messages, and match these
// sentinels with errors.Is. Code maps them to gRPC codes.
var (
	// ErrInvalidArgument: malformed input (a bad name, count, duration,
	// mode or policy, or a field over its limit).
	ErrInvalidArgument = errors.New("engine: invalid argument")
	// ErrUnknownCallee: a report or override names a callee with no
	// policy, no registered instance and no breaker for the pair.
	ErrUnknownCallee = errors.New("engine: unknown callee")
	// ErrNoBreaker: the engine has no pair for this caller and callee.
	ErrNoBreaker = errors.New("engine: no breaker")
	// ErrNoPolicy: the callee has no policy node (it uses the default).
	ErrNoPolicy = errors.New("engine: no policy")
	// ErrLimit: the pair table, a caller's share of it, a pair's
	// reporting instances or the stored policies are at their limit.
	ErrLimit = errors.New("engine: limit reached")
	// ErrNoOverride: ClearOverride of a pair without an override.
	ErrNoOverride = errors.New("engine: no override to clear")
	// ErrProtected: DeleteBreaker without force of a pair that is not
	// CLOSED or has an override.
	ErrProtected = errors.New("engine: pair protected from deletion")
)

// errorCodes is the one table mapping the package's errors to gRPC codes,
// and to the reasons (contract.Reason*) clients tell apart kinds of one
// code by: a breaker's NotFound is not a znode's.
var errorCodes = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrInvalidArgument, codes.InvalidArgument, contract.ReasonInvalidArgument},
	{ErrUnknownCallee, codes.NotFound, contract.ReasonNotFound},
	{ErrNoBreaker, codes.NotFound, contract.ReasonNotFound},
	{ErrNoPolicy, codes.NotFound, contract.ReasonNotFound},
	{ErrLimit, codes.ResourceExhausted, ""},
	{ErrNoOverride, codes.FailedPrecondition, ""},
	{ErrProtected, codes.FailedPrecondition, ""},
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
	return codes.Unknown
}

// Reason is the contract.Reason* of an error of this package (wrapped or
// not), "" where its code alone says what it is.
func Reason(err error) string {
	for _, e := range errorCodes {
		if err != nil && errors.Is(err, e.err) {
			return e.reason
		}
	}
	return ""
}

// engineError is an error with a precise, user-facing message that matches
// its sentinel kind with errors.Is, without repeating the sentinel's text.
type engineError struct {
	kind error
	msg  string
}

func (e *engineError) Error() string { return e.msg }
func (e *engineError) Unwrap() error { return e.kind }

// newErr builds an error of the given kind with a formatted message.
func newErr(kind error, format string, args ...any) error {
	return &engineError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// invalid is an ErrInvalidArgument error; the message names the field and,
// where there is one, the limit.
func invalid(format string, args ...any) error {
	return newErr(ErrInvalidArgument, format, args...)
}
