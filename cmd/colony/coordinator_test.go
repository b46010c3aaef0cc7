package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/colonymesh/colony/coordinator"
)

// TestCoordinatorWithoutFlags: the error names the flags, not the
// library's fields, and points to colony dev.
func TestCoordinatorWithoutFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--id and --data-dir are required"},
		{[]string{"--id", "n1"}, "--data-dir is required"},
		{[]string{"--data-dir", t.TempDir()}, "--id is required"},
	}
	for _, tt := range tests {
		_, err := colony(t.Context(), t, "", append([]string{"coordinator"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "colony dev") ||
			strings.Contains(err.Error(), "NodeID") || strings.Contains(err.Error(), "DataDir") {
			t.Errorf("colony coordinator %v: %v; want %q and a pointer to colony dev", tt.args, err, tt.want)
		}
	}
}

// TestCoordinatorOnADataDirInUse: a second node on a running node's data
// dir says the directory is in use.
func TestCoordinatorOnADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	cfg := coordinator.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Bootstrap = "n1", dir, true
	cfg.GRPCAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	first, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = colony(t.Context(), t, "", "coordinator", "--id", "n2", "--data-dir", dir, "--insecure",
		"--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--ui-addr", "off")
	if !errors.Is(err, coordinator.ErrDataDirInUse) || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second node on %s: %v; want the dir in use", dir, err)
	}
}

// TestDevHelp: dev's help shows the flags that matter for one node on one
// machine, none marked required, and no value name made of a backquoted
// phrase.
func TestDevHelp(t *testing.T) {
	out, err := colony(t.Context(), t, "", "dev", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, hidden := range []string{"--dev ", "--bootstrap", "--peers", "--join", "--raft-peer-addr", "required"} {
		if strings.Contains(out, hidden) {
			t.Errorf("dev --help shows %q:\n%s", hidden, out)
		}
	}
	for _, shown := range []string{"--id string", "--data-dir string", "--demo  ", "--grpc-addr"} {
		if !strings.Contains(out, shown) {
			t.Errorf("dev --help lacks %q:\n%s", shown, out)
		}
	}
}

// TestNoBackquotedValueNames: pflag makes a backquoted word in a flag's
// usage its value name ("--demo colony demo"); no flag of any command may
// get a value name with a space in it.
func TestNoBackquotedValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " ") {
				t.Errorf("%s --%s: value name %q", c.CommandPath(), f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}
