package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	flags       []string // --platform=...
	body        []instruction
}

// parseDockerfile splits a Dockerfile into stages (no Docker needed: the
// engine cannot run here, so the file is checked as text).
func parseDockerfile(t *testing.T, data []byte) []stage {
	t.Helper()
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var st stage
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				st.flags, f = append(st.flags, f[0]), f[1:]
			}
			if len(f) == 0 {
				t.Fatalf("Dockerfile:%d: FROM without an image", in.line)
			}
			st.image = f[0]
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			return
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	continued := false
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && continued) {
			continue // comments (and parser directives); blank lines inside a continuation
		}
		if !continued {
			flush()
			start = n
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continued = true
			continue
		}
		cur.WriteString(line)
		continued = false
	}
	flush()
	return stages
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, data)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build (builder and runtime), got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	t.Run("builder", func(t *testing.T) {
		// The builder's Go is the go.mod's language version.
		gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatal("go.mod: no go directive")
		}
		if want := "golang:" + string(m[1]); build.image != want && !strings.HasPrefix(build.image, want+"-") && !strings.HasPrefix(build.image, want+".") {
			t.Errorf("builder image %q, want %s (go.mod says go %s)", build.image, want, m[1])
		}
		if build.name == "" {
			t.Error("the builder stage has no name (FROM ... AS build) for COPY --from")
		}
		var goBuild string
		for _, in := range build.body {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				goBuild = in.args
			}
		}
		if goBuild == "" {
			t.Fatal("no RUN ... go build in the builder stage")
		}
		// A static binary: no cgo, no absolute paths, no symbol tables.
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/colony"} {
			if !strings.Contains(goBuild, want) {
				t.Errorf("go build: missing %s in %q", want, goBuild)
			}
		}
		ld := regexp.MustCompile(`-ldflags[= ]['"]([^'"]*)['"]`).FindStringSubmatch(goBuild)
		if ld == nil || !strings.Contains(" "+ld[1]+" ", " -s ") || !strings.Contains(" "+ld[1]+" ", " -w ") {
			t.Errorf("go build: want -ldflags '-s -w', got %q", goBuild)
		}
		out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(goBuild)
		if out == nil {
			t.Fatalf("go build: no -o in %q", goBuild)
		}
		// The runtime stage copies that binary to /colony.
		found := false
		for _, in := range final.body {
			if in.cmd != "COPY" || !strings.Contains(in.args, "--from="+build.name+" ") {
				continue
			}
			f := strings.Fields(in.args)
			if f[len(f)-2] == out[1] && f[len(f)-1] == "/colony" {
				found = true
			}
		}
		if !found {
			t.Errorf("the final stage does not COPY --from=%s %s /colony", build.name, out[1])
		}
	})

	t.Run("runtime", func(t *testing.T) {
		if img := final.image; img != "scratch" && !(strings.HasPrefix(img, "gcr.io/distroless/static") && strings.HasSuffix(img, ":nonroot")) {
			t.Errorf("final image %q: want scratch or gcr.io/distroless/static*:nonroot (small, no shell, no libc)", img)
		}
		var user, entrypoint string
		for _, in := range final.body {
			switch in.cmd {
			case "USER":
				user = in.args
			case "ENTRYPOINT":
				entrypoint = in.args
			case "RUN":
				t.Errorf("Dockerfile:%d: RUN in the final stage (it has no shell)", in.line)
			}
		}
		uid, _, _ := strings.Cut(user, ":")
		if uid == "" || uid == "0" || uid == "root" || !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
			// Numeric, so that Kubernetes' runAsNonRoot can verify it.
			t.Errorf("USER %q: want a numeric non-root user", user)
		}
		var ep []string
		if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || ep[0] != "/colony" {
			t.Errorf(`ENTRYPOINT %s: want the exec form ["/colony"]`, entrypoint)
		}
	})
}

// TestDockerignore checks that the build context leaves out .git and keeps
// every file the build reads: the Go and embedded files of every package
// of the module that cmd/colony imports, and go.mod and go.sum.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	if !dockerignored(patterns, ".git") {
		t.Error(".dockerignore: .git is sent to the builder")
	}

	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{with .Module}}{{if .Main}}{{$.Dir}}|{{join $.GoFiles ","}}|{{join $.EmbedFiles ","}}{{end}}{{end}}`, "./cmd/colony")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(l, "|")
		rel, err := filepath.Rel(repoRoot, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.FieldsFunc(files, func(r rune) bool { return r == ',' || r == '|' }) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, f := range needed {
		if dockerignored(patterns, f) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
}

// dockerignored reports whether the build context leaves rel out: the last
// pattern matching rel or one of its parent directories decides ("!" keeps).
func dockerignored(patterns []string, rel string) bool {
	parts := strings.Split(rel, "/")
	out := false
	for _, p := range patterns {
		keep := strings.HasPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		for i := 1; i <= len(parts); i++ {
			if globMatch(strings.Split(p, "/"), parts[:i]) {
				out = !keep
				break
			}
		}
	}
	return out
}

// globMatch matches path segments against pattern segments, "**" matching
// any number of segments.
func globMatch(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if globMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], name[0])
	return err == nil && ok && globMatch(pat[1:], name[1:])
}

func TestDockerignored(t *testing.T) {
	p := []string{".git", "bin", "**/testdata", "**/*.test", "deploy", "!deploy/keep"}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{".git/HEAD", true},
		{"bin/colony", true},
		{"cmd/colony/main.go", false},
		{"coordinator/testdata/x", true},
		{"testdata/x", true},
		{"a/b.test", true},
		{"deploy/k8s/base/x.yaml", true},
		{"deploy/keep", false},
		{"go.mod", false},
	} {
		if got := dockerignored(p, tc.path); got != tc.want {
			t.Errorf("dockerignored(%s) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
