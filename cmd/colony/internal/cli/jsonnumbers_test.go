package cli

import (
	"encoding/json"
	"strings"
	"testing"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// TestJSONNumbersAndSessionIDs: 64-bit integers print as numbers, session
// ids in the CLI's hex, and fields keep protojson's order.
func TestJSONNumbersAndSessionIDs(t *testing.T) {
	m := &colonyv1.StatusResponse{LeaderId: "n1", Term: 2, Members: []*colonyv1.Member{{Id: "n1", State: "Leader"}}}
	for _, opts := range []struct {
		name string
		fn   func() ([]byte, error)
	}{
		{"multiline", func() ([]byte, error) { return marshalJSON(jsonOut, m) }},
		{"line", func() ([]byte, error) { return marshalJSON(jsonLine, m) }},
	} {
		b, err := opts.fn()
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v in %s", opts.name, err, b)
		}
		if term, ok := v["term"].(float64); !ok || term != 2 {
			t.Errorf("%s: term = %#v in %s; want the number 2", opts.name, v["term"], b)
		}
		if i, j := strings.Index(string(b), `"leaderId"`), strings.Index(string(b), `"term"`); i < 0 || j < 0 || i > j {
			t.Errorf("%s: field order lost: %s", opts.name, b)
		}
	}

	stat := &colonyv1.Stat{EphemeralOwner: 42, Czxid: 7}
	b, err := marshalJSON(jsonLine, stat)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"ephemeralOwner":"0x2a"`) || !strings.Contains(string(b), `"czxid":7`) {
		t.Errorf("stat = %s; want ephemeralOwner 0x2a and czxid 7", b)
	}
}
