package ztree

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidatePath checks that ValidatePath never panics, that its errors
// match ErrInvalidArgument, and that every path it accepts has the shape the
// tree relies on (and so does its parent).
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{
		"/", "/a", "/a/b", "/colony/breakers/a/b", "", "a", "/a/", "//", "/a//b", "/.", "/a/..",
		"/a\x00b", "/\xff", "/é/ü", "/a/b-0000000001", strings.Repeat("/a", MaxPathBytes/2+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := ValidatePath(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ValidatePath(%q) = %v, not ErrInvalidArgument", p, err)
			}
			return
		}
		switch {
		case len(p) > MaxPathBytes:
			t.Fatalf("accepted %d bytes", len(p))
		case !strings.HasPrefix(p, "/"):
			t.Fatalf("accepted %q without a leading slash", p)
		case !utf8.ValidString(p):
			t.Fatalf("accepted invalid UTF-8 %q", p)
		case strings.IndexFunc(p, unicode.IsControl) >= 0:
			t.Fatalf("accepted a control character in %q", p)
		}
		if p == "/" {
			return
		}
		if strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
			t.Fatalf("accepted %q with an empty segment", p)
		}
		for seg := range strings.SplitSeq(p[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted %q with a %q segment", p, seg)
			}
		}
		parent, name := parentOf(p)
		if name == "" || strings.Contains(name, "/") {
			t.Fatalf("parentOf(%q) = %q, %q", p, parent, name)
		}
		if err := ValidatePath(parent); err != nil {
			t.Fatalf("the parent %q of accepted %q is invalid: %v", parent, p, err)
		}
		if got := pathOfKey(nodeKey(p)); got != p {
			t.Fatalf("key round trip of %q gives %q", p, got)
		}
		if depth(p) != strings.Count(p, "/") {
			t.Fatalf("depth(%q) = %d", p, depth(p))
		}
	})
}
