package contract

import (
	"strings"
	"testing"
)

// TestParseACL checks that a valid document parses and that each kind of
// mistake is refused naming its field.
func TestParseACL(t *testing.T) {
	for _, tc := range []struct {
		name, data, wantErr string
	}{
		{"Empty", ``, ""},
		{"Valid", `{"rules":[{"identities":["cn:alice","spiffe://colony.local/client/app"],"roles":["client"],"prefix":"/app/","permissions":["read","watch"]}],
			"bindings":[{"identity":"cn:bob","role":"operator"}]}`, ""},
		{"UnknownField", `{"rulez":[]}`, "rulez"},
		{"NoGrantee", `{"rules":[{"prefix":"/a","permissions":["read"]}]}`, "rules[0]: names neither"},
		{"BadIdentity", `{"rules":[{"identities":["alice"],"prefix":"/a","permissions":["read"]}]}`, "rules[0].identities[0]"},
		{"BadRole", `{"rules":[{"roles":["admin"],"prefix":"/a","permissions":["read"]}]}`, "rules[0].roles[0]"},
		{"RelativePrefix", `{"rules":[{"roles":["client"],"prefix":"a","permissions":["read"]}]}`, "rules[0].prefix"},
		{"DotDotPrefix", `{"rules":[{"roles":["client"],"prefix":"/a/../colony","permissions":["read"]}]}`, "rules[0].prefix"},
		{"NoPermissions", `{"rules":[{"roles":["client"],"prefix":"/a"}]}`, "rules[0].permissions: empty"},
		{"UnknownPermission", `{"rules":[{"roles":["client"],"prefix":"/a","permissions":["read","fly"]}]}`, "rules[0].permissions[1]"},
		{"BindToNode", `{"bindings":[{"identity":"cn:x","role":"node"}]}`, "bindings[0].role"},
		{"Trailing", `{} {}`, "after the document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseACL([]byte(tc.data))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

// TestACLRuleCovers checks that a prefix covers its subtree, with or
// without a trailing slash, and nothing beside it.
func TestACLRuleCovers(t *testing.T) {
	for _, tc := range []struct {
		prefix, path string
		want         bool
	}{
		{"/app/", "/app/x", true},
		{"/app/", "/app", true},
		{"/app", "/app/x/y", true},
		{"/app/", "/apple", false},
		{"/app/", "/colony/acl", false},
		{"/", "/anything", true},
	} {
		if got := (ACLRule{Prefix: tc.prefix}).Covers(tc.path); got != tc.want {
			t.Errorf("prefix %s covers %s: got %v, want %v", tc.prefix, tc.path, got, tc.want)
		}
	}
}
