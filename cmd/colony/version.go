package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/colonymesh/colony/cmd/colony/internal/cli"
	"github.com/spf13/cobra"
)

// Set at build time, e.g. by `make build`:
//
//	go build -ldflags "-X main.version=v0.3.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/colony
//
// Empty: what the Go toolchain recorded in the binary (the module version
// for `go install ...@v0.3.0`, the VCS revision for a build in a checkout).
var (
	version string
	commit  string
)

// versionInfo is what `colony version` prints.
type versionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commitTime,omitempty"`
	// Modified: built from a checkout with uncommitted changes.
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// currentVersion is this binary's version.
func currentVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(version, commit, bi)
}

// buildVersion prefers what -ldflags set and falls back to the build info.
func buildVersion(ldVersion, ldCommit string, bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		if v.Version == "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		var revision string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		if v.Commit == "" {
			v.Commit = revision
		} else if revision != "" && !strings.HasPrefix(revision, v.Commit) && !strings.HasPrefix(v.Commit, revision) {
			v.CommitTime, v.Modified = "", false // they describe another commit
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}

// String is the one-line form: "v0.3.0 (commit 1a2b3c4d5e6f, modified, go1.26.8 linux/amd64)".
func (v versionInfo) String() string {
	var parts []string
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		parts = append(parts, "commit "+c)
	}
	if v.Modified {
		parts = append(parts, "modified")
	}
	parts = append(parts, v.GoVersion+" "+v.Platform)
	return fmt.Sprintf("%s (%s)", v.Version, strings.Join(parts, ", "))
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print colony's version, commit and Go version",
		Example: `  colony version
  colony version -o json
  colony --version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := cli.ParseOutput(output)
			if err != nil {
				return err
			}
			v := currentVersion()
			if asJSON {
				return cli.WriteIndentedJSON(cmd.OutOrStdout(), v)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "colony %s\n", v)
			return err
		},
	}
	cli.AddOutputFlag(cmd, cmd.Flags(), &output)
	return cmd
}
