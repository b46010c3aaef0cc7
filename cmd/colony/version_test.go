package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: modified},
		}}
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name                string
		ldVersion, ldCommit string
		bi                  *debug.BuildInfo
		want                versionInfo
		text                string
	}{
		{
			name: "ldflags win", ldVersion: "v0.3.0", ldCommit: "1a2b3c4d5e6f7a8b", bi: vcs("1a2b3c4d5e6f7a8b", "false"),
			want: versionInfo{Version: "v0.3.0", Commit: "1a2b3c4d5e6f7a8b", CommitTime: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8", Platform: platform},
			text: "v0.3.0 (commit 1a2b3c4d5e6f, go1.26.8 " + platform + ")",
		},
		{
			name: "a checkout with changes", bi: vcs("9f8e7d6c5b4a", "true"),
			want: versionInfo{Version: "devel", Commit: "9f8e7d6c5b4a", CommitTime: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8", Platform: platform},
			text: "devel (commit 9f8e7d6c5b4a, modified, go1.26.8 " + platform + ")",
		},
		{
			name: "go install of a tagged module", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.1"}},
			want: versionInfo{Version: "v0.2.1", GoVersion: "go1.26.8", Platform: platform},
			text: "v0.2.1 (go1.26.8 " + platform + ")",
		},
		{
			name: "ldflags commit, build info of another", ldCommit: "aaaa", bi: vcs("bbbb", "true"),
			want: versionInfo{Version: "devel", Commit: "aaaa", GoVersion: "go1.26.8", Platform: platform},
		},
		{
			name: "no build info",
			want: versionInfo{Version: "devel", GoVersion: runtime.Version(), Platform: platform},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildVersion(tt.ldVersion, tt.ldCommit, tt.bi)
			if got != tt.want {
				t.Errorf("buildVersion = %+v, want %+v", got, tt.want)
			}
			if tt.text != "" && got.String() != tt.text {
				t.Errorf("String() = %q, want %q", got.String(), tt.text)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	ctx := t.Context()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := colony(ctx, t, "", args...)
		if err != nil || !strings.HasPrefix(out, "colony ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("colony %v = %q, %v", args, out, err)
		}
	}
	out, err := colony(ctx, t, "", "version", "-o", "json")
	var v versionInfo
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || v.GoVersion != runtime.Version() {
		t.Errorf("version -o json = %q, %v", out, err)
	}
}
