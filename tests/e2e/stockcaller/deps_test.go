package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyGRPCAndStandardLibrary keeps stockcaller honest: it stands
// for a client written by someone who never heard of Colony, so neither it
// nor anything it links may come from this module, and what it imports
// directly is gRPC and the standard library only.
func TestImportsOnlyGRPCAndStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	self := strings.TrimSpace(string(out))
	const module = "github.com/colonymesh/colony"

	out, err = exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var grpcSeen bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, _, _ := strings.Cut(line, " ")
		if path != self && (path == module || strings.HasPrefix(path, module+"/")) {
			t.Errorf("stockcaller links %s, from this module", path)
		}
		grpcSeen = grpcSeen || path == "google.golang.org/grpc/xds"
	}
	if !grpcSeen {
		t.Errorf("stockcaller does not link google.golang.org/grpc/xds: go list -deps printed\n%s", out)
	}

	out, err = exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	std := map[string]bool{}
	if out, err := exec.Command("go", "list", "std").Output(); err != nil {
		t.Fatalf("go list std: %v", err)
	} else {
		for _, p := range strings.Fields(string(out)) {
			std[p] = true
		}
	}
	for _, imp := range strings.Fields(string(out)) {
		if !std[imp] && imp != "google.golang.org/grpc" && !strings.HasPrefix(imp, "google.golang.org/grpc/") {
			t.Errorf("stockcaller imports %s: only gRPC and the standard library are allowed", imp)
		}
	}
}
