package recipe

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/colonymesh/colony/contract"
)

// Where the recipes keep their nodes. /colony and its children here are
// persistent; each lock or election directory is a container, which the
// coordinator deletes once its last node goes.
const (
	rootDir      = contract.Root
	locksDir     = rootDir + "/locks"
	electionsDir = rootDir + "/elections"
)

// maxNameLen is the longest lock or election name, in bytes.
const maxNameLen = 128

// ValidateName reports whether name can name a lock or an election: 1 to 128
// letters, digits, '.', '_' or '-', and not "." or "..". The error matches
// ErrInvalidName and says what is wrong. NewMutex and NewElection check it.
func ValidateName(name string) error { return validateName("lock or election", name) }

// validateName checks a lock or election name: what (e.g. "lock") names the
// kind in the error.
func validateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s name is empty", ErrInvalidName, what)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: %s name: %d bytes exceeds the limit of %d", ErrInvalidName, what, len(name), maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %s name %q is not allowed", ErrInvalidName, what, name)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-') {
			return fmt.Errorf("%w: %s name %q: byte %d (%q) is not allowed; use letters, digits, '.', '_' and '-'",
				ErrInvalidName, what, name, i, b)
		}
	}
	return nil
}

// Node name kinds: a node's name is <kind><id>-<sequence>.
const (
	kindExclusive = "lock-" // an exclusive lock holder (Mutex)
	kindShared    = "read-" // a shared lock holder (NewSharedMutex)
	kindCandidate = "cand-" // an election candidate
)

// idLen is the length of the random id in a node's name, in hex digits.
const idLen = 16

// newID returns a random id for one acquire attempt.
func newID() string {
	var b [idLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// member is one node of a recipe directory, parsed from its name.
type member struct {
	name string
	kind string // kindExclusive, kindShared or kindCandidate
	id   string
	seq  uint64
}

// parseMember parses <kind><id>-<sequence>; ok is false for any other name,
// which the recipes ignore (a stray node cannot block a lock).
func parseMember(name string) (m member, ok bool) {
	for _, k := range []string{kindExclusive, kindShared, kindCandidate} {
		if rest, found := strings.CutPrefix(name, k); found {
			id, seq, found := strings.Cut(rest, "-")
			if !found || len(id) != idLen || len(seq) < 10 {
				return member{}, false
			}
			n, err := strconv.ParseUint(seq, 10, 64)
			if err != nil {
				return member{}, false
			}
			return member{name: name, kind: k, id: id, seq: n}, true
		}
	}
	return member{}, false
}

// parseMembers returns the recipe nodes among names, in any order.
func parseMembers(names []string) []member {
	out := make([]member, 0, len(names))
	for _, n := range names {
		if m, ok := parseMember(n); ok {
			out = append(out, m)
		}
	}
	return out
}
