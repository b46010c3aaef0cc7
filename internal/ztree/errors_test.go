package ztree

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/colonymesh/colony/contract"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   error
		code codes.Code
		msg  string
	}{
		{"no node", errNoNode("/a"), ErrNoNode, codes.NotFound, "node /a does not exist"},
		{"no parent", errNoParent("/a", "/a/b"), ErrNoNode, codes.NotFound, "node /a does not exist (parent of /a/b)"},
		{"exists", errNodeExists("/a"), ErrNodeExists, codes.AlreadyExists, "node /a already exists"},
		{"bad version", errBadVersion("/a", 3, 5), ErrBadVersion, codes.FailedPrecondition, "version mismatch on /a: expected 3, current 5"},
		{"not empty", errNotEmpty("/a", 2), ErrNotEmpty, codes.FailedPrecondition, "node /a is not empty: it has 2 children"},
		{"ephemeral parent", errEphemeralParent("/e", "/e/x"), ErrEphemeralParent, codes.FailedPrecondition, "ephemeral node /e cannot have children (creating /e/x)"},
		{"session", errSessionNotFound(0xabc), ErrSessionNotFound, codes.NotFound, "session 0xabc not found or expired"},
		{"not owned", SessionNotOwned(0xabc, "cn:bob", "close it"), ErrSessionNotOwned, codes.PermissionDenied, "session 0xabc belongs to another identity: cn:bob may not close it (only the identity that opened a session may keep it alive, close it or create ephemeral nodes in it)"},
		{"invalid", errInvalid("data: %d bytes exceeds the limit of %d", 2000000, 1048576), ErrInvalidArgument, codes.InvalidArgument, "data: 2000000 bytes exceeds the limit of 1048576"},
		{"aborted", errAborted(2), ErrAborted, codes.Aborted, "not applied: op 2 failed"},
		{"bad snapshot", errBadSnapshot("no root node"), ErrBadSnapshot, codes.DataLoss, "invalid snapshot: no root node"},
		{"wrapped", fmt.Errorf("ops[1]: %w", errNoNode("/a")), ErrNoNode, codes.NotFound, "ops[1]: node /a does not exist"},
		{"bare sentinel", ErrNotEmpty, ErrNotEmpty, codes.FailedPrecondition, "node is not empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.is) || Code(tt.err) != tt.code || tt.err.Error() != tt.msg {
				t.Fatalf("%v: Is %v = %v, code %v, want %v %q", tt.err, tt.is, errors.Is(tt.err, tt.is), Code(tt.err), tt.code, tt.msg)
			}
			oe := ToOpError(tt.err)
			if codes.Code(oe.GetCode()) != tt.code || oe.GetMessage() != tt.msg || oe.GetReason() == "" {
				t.Errorf("ToOpError = %v", oe)
			}
			back := FromOpError(oe)
			if !errors.Is(back, tt.is) || Code(back) != tt.code || back.Error() != tt.msg {
				t.Errorf("FromOpError = %v (Is %v: %v, code %v)", back, tt.is, errors.Is(back, tt.is), Code(back))
			}
		})
	}

	// The reason, not the message's wording, tells kinds of one code apart:
	// a message that starts like another kind's still maps by its reason.
	t.Run("reason decides", func(t *testing.T) {
		for _, tt := range []struct {
			err  error
			want string
		}{
			{errNotEmpty("/a", 1), contract.ReasonNotEmpty},
			{errSessionNotFound(7), contract.ReasonSessionNotFound},
			{fmt.Errorf("ops[0]: %w", errBadVersion("/a", 1, 2)), contract.ReasonBadVersion},
			{errors.New("boom"), ""},
		} {
			if got := Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
			if oe := ToOpError(tt.err); oe.GetReason() != tt.want {
				t.Errorf("ToOpError(%v).Reason = %q, want %q", tt.err, oe.GetReason(), tt.want)
			}
		}
		back := FromOpError(&colonyv1.OpError{Code: int32(codes.FailedPrecondition), Message: "version of something", Reason: contract.ReasonNotEmpty})
		if !errors.Is(back, ErrNotEmpty) {
			t.Errorf("OpError with reason NOT_EMPTY and a message starting \"version\": %v is not ErrNotEmpty", back)
		}
		// Without a reason (a node older than reasons) the prefix still works.
		back = FromOpError(&colonyv1.OpError{Code: int32(codes.FailedPrecondition), Message: "version mismatch on /a"})
		if !errors.Is(back, ErrBadVersion) {
			t.Errorf("OpError without a reason: %v is not ErrBadVersion", back)
		}
	})

	t.Run("nil", func(t *testing.T) {
		if Code(nil) != codes.OK || ToOpError(nil) != nil || FromOpError(nil) != nil || FromOpError(&colonyv1.OpError{}) != nil {
			t.Error("nil handling")
		}
	})
	t.Run("unknown error", func(t *testing.T) {
		if c := Code(errors.New("boom")); c != codes.Unknown {
			t.Errorf("code %v", c)
		}
	})
	t.Run("unmapped code round trips", func(t *testing.T) {
		err := FromOpError(&colonyv1.OpError{Code: int32(codes.Unavailable), Message: "try later"})
		if Code(err) != codes.Unavailable || err.Error() != "try later" {
			t.Errorf("%v: code %v", err, Code(err))
		}
	})
}
