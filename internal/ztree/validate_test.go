package ztree

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestValidatePath(t *testing.T) {
	tests := []struct {
		path string
		msg  string // "" = valid
	}{
		{"/", ""},
		{"/a", ""},
		{"/a/b/c", ""},
		{"/a.b/..c/...", ""},
		{"/with space/ünïcödé/日本", ""},
		{"/" + strings.Repeat("x", MaxPathBytes-1), ""},
		{"", `path "": must start with "/"`},
		{"a/b", `path "a/b": must start with "/"`},
		{"/a/", `path "/a/": must not end with "/"`},
		{"//", `path "//": must not end with "/"`},
		{"/a//b", `path "/a//b": empty segment`},
		{"/a/./b", `path "/a/./b": "." segments are not allowed`},
		{"/a/..", `path "/a/..": ".." segments are not allowed`},
		{"/a\x00b", `path "/a\x00b": control character U+0000 at byte 2`},
		{"/a\nb", `path "/a\nb": control character U+000A at byte 2`},
		{"/a\u0085", `control character U+0085`},
		{"/a\x7f", `control character U+007F`},
		{"/\xff", `path "/\xff": not valid UTF-8`},
		{"/" + strings.Repeat("x", MaxPathBytes), "path: 1025 bytes exceeds the limit of 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := ValidatePath(tt.path)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("ValidatePath(%q) = %v, want nil", tt.path, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ValidatePath(%q) = %v, want %q", tt.path, err, tt.msg)
			}
			if !errors.Is(err, ErrInvalidArgument) || Code(err) != codes.InvalidArgument {
				t.Errorf("error %v does not map to InvalidArgument", err)
			}
		})
	}
}

func TestValidateOps(t *testing.T) {
	big := make([]byte, 2_000_000)
	many := make([]*colonyv1.Op, 1025)
	for i := range many {
		many[i] = check("/", -1)
	}
	tests := []struct {
		name string
		ops  []*colonyv1.Op
		lim  Limits
		msg  string // "" = valid
	}{
		{"single create", []*colonyv1.Op{create("/a", "x")}, DefaultLimits(), ""},
		{"every op kind", []*colonyv1.Op{create("/a", ""), setV("/a", "", -1), delV("/a", 0), check("/", -1), createTTL("/t", 5), createEphemeral("/e", 3), createSeq("/s")}, DefaultLimits(), ""},
		{"no ops", nil, DefaultLimits(), ""},
		{"data too large", []*colonyv1.Op{createReq(&colonyv1.CreateRequest{Path: "/a", Data: big})}, DefaultLimits(), "data: 2000000 bytes exceeds the limit of 1048576"},
		{"set data too large", []*colonyv1.Op{{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: "/a", Data: []byte("12345")}}}}, Limits{MaxDataBytes: 4}, "data: 5 bytes exceeds the limit of 4"},
		{"zero limits mean defaults", []*colonyv1.Op{createReq(&colonyv1.CreateRequest{Path: "/a", Data: big})}, Limits{}, "exceeds the limit of 1048576"},
		{"too many ops", many, DefaultLimits(), "ops: 1025 ops exceed the limit of 1024"},
		{"multi data within the total", []*colonyv1.Op{create("/a", "1234"), create("/b", "1234")}, Limits{MaxDataBytes: 4}, ""},
		{"multi data over the total", []*colonyv1.Op{create("/a", "1234"), create("/b", "1234"), create("/c", "1")}, Limits{MaxDataBytes: 4}, "ops: 9 bytes of data in one multi exceed the limit of 8"},
		{"op index named in a multi", []*colonyv1.Op{create("/a", ""), create("bad", "")}, DefaultLimits(), `ops[1]: path "bad": must start with "/"`},
		{"no index for a single op", []*colonyv1.Op{create("bad", "")}, DefaultLimits(), `path "bad": must start with "/"`},
		{"ttl", []*colonyv1.Op{createTTL("/t", 0)}, DefaultLimits(), "ttl_ms: must be > 0 for TTL nodes"},
		{"ephemeral", []*colonyv1.Op{createEphemeral("/e", 0)}, DefaultLimits(), "session_id: required for EPHEMERAL nodes"},
		{"sequential too long", []*colonyv1.Op{createSeq("/" + strings.Repeat("x", 1020))}, DefaultLimits(), "path: 1021 bytes plus the 10-digit sequence suffix exceeds the limit of 1024"},
		{"delete root", []*colonyv1.Op{del("/")}, DefaultLimits(), "the root cannot be deleted"},
		{"empty op", []*colonyv1.Op{{}}, DefaultLimits(), "op: must be one of check, create, set or delete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateOps(tt.ops, tt.lim)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("ValidateOps = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ValidateOps = %v, want %q", err, tt.msg)
			}
			if Code(err) != codes.InvalidArgument {
				t.Errorf("code %v", Code(err))
			}
		})
	}
}

func TestDataSizeNotCheckedByFSM(t *testing.T) {
	// Size limits are node configuration: an entry in the log applies
	// whatever the local limits.
	h := newHarness(t)
	h.must(createReq(&colonyv1.CreateRequest{Path: "/big", Data: make([]byte, 2<<20)}))
	if _, st, _ := h.tree.View().Get("/big"); st.GetDataLength() != 2<<20 {
		t.Errorf("data_length %d", st.GetDataLength())
	}
}
