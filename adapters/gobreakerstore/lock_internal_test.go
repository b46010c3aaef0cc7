package gobreakerstore

import "testing"

func TestPredecessor(t *testing.T) {
	tests := []struct {
		name     string
		names    []string
		mine     string
		wantPred string
		wantOK   bool
	}{
		{"alone", []string{"lock-a-0000000003"}, "lock-a-0000000003", "", true},
		{"lowest", []string{"lock-b-0000000004", "lock-a-0000000003"}, "lock-a-0000000003", "", true},
		// Sorted by name the tokens would put "lock-a-…05" first; the
		// sequence number decides.
		{"by sequence, not name", []string{"lock-a-0000000005", "lock-c-0000000002", "lock-b-0000000004"}, "lock-a-0000000005", "lock-b-0000000004", true},
		{"gap", []string{"lock-x-0000000001", "lock-y-0000000009"}, "lock-y-0000000009", "lock-x-0000000001", true},
		{"past ten digits", []string{"lock-x-9999999999", "lock-y-10000000000"}, "lock-y-10000000000", "lock-x-9999999999", true},
		{"foreign names ignored", []string{"state", "lock-x-0000000001", "lock-y-0000000002"}, "lock-x-0000000001", "", true},
		{"mine gone", []string{"lock-x-0000000001"}, "lock-y-0000000002", "lock-x-0000000001", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pred, ok := predecessor(tt.names, tt.mine)
			if ok != tt.wantOK || (ok && pred != tt.wantPred) {
				t.Errorf("predecessor(%v, %q) = %q, %v; want %q, %v", tt.names, tt.mine, pred, ok, tt.wantPred, tt.wantOK)
			}
		})
	}
}
