package coordinator

import (
	"errors"
	"testing"
)

// After a transfer failed in a term, the same target (or raft's own pick,
// which may be it) is refused in that term: a second transfer to it is
// what wedges hashicorp/raft (#696). Another named target, and any target
// in the next term, are allowed.
func TestTransferGuard(t *testing.T) {
	var g transferGuard
	if err := g.allow(5, "n2"); err != nil {
		t.Fatalf("first transfer refused: %v", err)
	}
	g.done(5, "n2", nil) // a success refuses nothing
	if err := g.allow(5, "n2"); err != nil {
		t.Fatalf("after a successful transfer: %v", err)
	}
	g.done(5, "n2", errors.New("leadership transfer timeout"))
	for _, target := range []string{"n2", ""} {
		if err := g.allow(5, target); err == nil {
			t.Errorf("transfer to %q in the term a transfer to n2 failed: allowed", target)
		}
	}
	if err := g.allow(5, "n3"); err != nil {
		t.Errorf("transfer to another member: %v", err)
	}
	if err := g.allow(6, "n2"); err != nil {
		t.Errorf("transfer in the next term: %v", err)
	}
	// raft's own pick failed: every target is refused in that term.
	g.done(7, "", errors.New("leadership transfer timeout"))
	for _, target := range []string{"", "n2", "n3"} {
		if err := g.allow(7, target); err == nil {
			t.Errorf("transfer to %q after raft's pick failed in term 7: allowed", target)
		}
	}
}
