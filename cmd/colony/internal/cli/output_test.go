package cli

import (
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in       string
		wantJSON bool
		wantErr  bool
	}{
		{"table", false, false},
		{"text", false, false}, // the old name
		{"json", true, false},
		{"JSON", true, false},
		{"yaml", false, true},
		{"", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOutput(tt.in)
			if got != tt.wantJSON || (err != nil) != tt.wantErr {
				t.Errorf("ParseOutput(%q) = %v, %v", tt.in, got, err)
			}
			if err != nil && (!strings.Contains(err.Error(), "--output") || !strings.Contains(err.Error(), "table or json")) {
				t.Errorf("error %q should name the flag and the allowed values", err)
			}
		})
	}
}
