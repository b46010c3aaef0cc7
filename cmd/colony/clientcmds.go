package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// endpointsEnv names the environment variable that replaces the default of
// --endpoints.
const endpointsEnv = "COLONY_ENDPOINTS"

// addClientCommands adds the operator commands that talk to a coordinator
// cluster: kv, cluster, session, breaker, policy, lock, elect, demo and
// snapshot (whose save alone is a client).
func addClientCommands(root *cobra.Command) {
	f := &clientFlags{}
	for _, cmd := range []*cobra.Command{newKVCmd(f), newClusterCmd(f), newSessionCmd(f), newBreakerCmd(f), newPolicyCmd(f), newLockCmd(f), newElectCmd(f), newDemoCmd(f)} {
		f.register(cmd, cmd.PersistentFlags())
		root.AddCommand(cmd)
	}
	root.AddCommand(newSnapshotCmd(f))
	addCompletions(root, f)
}

// clientFlags are the flags every client command shares.
type clientFlags struct {
	endpoints string
	output    string
	timeout   time.Duration
}

// register adds the flags to fs, which belongs to cmd.
func (f *clientFlags) register(cmd *cobra.Command, fs *pflag.FlagSet) {
	fs.StringVar(&f.endpoints, "endpoints", client.DefaultEndpoint,
		"coordinator gRPC addresses, comma-separated; $"+endpointsEnv+" replaces the default")
	addOutputFlag(cmd, fs, &f.output)
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second,
		"time limit of the command, failover included (watch, session open, snapshot save: of setting up)")
}

// cli is what a client command works with: a client, the output format and
// the command's streams.
type cli struct {
	c    *client.Client
	json bool
	in   io.Reader
	out  io.Writer
	errw io.Writer
	f    *clientFlags
}

// connect validates the shared flags and makes a client. The caller closes it.
func (f *clientFlags) connect(cmd *cobra.Command) (*cli, error) {
	asJSON, err := parseOutput(f.output)
	if err != nil {
		return nil, err
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--timeout: must be positive, got %v", f.timeout)
	}
	eps, err := endpointsOf(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		return nil, err
	}
	return &cli{c: c, json: asJSON, in: cmd.InOrStdin(), out: cmd.OutOrStdout(), errw: cmd.ErrOrStderr(), f: f}, nil
}

// endpointsOf returns the coordinator addresses a client command uses:
// --endpoints, or $COLONY_ENDPOINTS when the flag is not given.
func endpointsOf(cmd *cobra.Command) ([]string, error) {
	fl := cmd.Flags().Lookup("endpoints")
	if fl == nil {
		return []string{client.DefaultEndpoint}, nil
	}
	list := fl.Value.String()
	if env := os.Getenv(endpointsEnv); env != "" && !fl.Changed {
		list = env
	}
	var eps []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("--endpoints: no address in %q", list)
	}
	return eps, nil
}

// Output formats of --output. "text" is the old name of "table", kept so
// that scripts written for it go on working.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// addOutputFlag registers --output (-o) on fs, which belongs to cmd, and
// completes its values.
func addOutputFlag(cmd *cobra.Command, fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "output", "o", outputTable,
		"output format: table (for people) or json (one JSON document; an array for lists, one object per line for streams)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]string{outputTable + "\tfor people", outputJSON + "\tfor programs"}, cobra.ShellCompDirectiveNoFileComp))
}

// parseOutput reports whether --output asks for JSON.
func parseOutput(v string) (asJSON bool, err error) {
	switch strings.ToLower(v) {
	case outputTable, "text":
		return false, nil
	case outputJSON:
		return true, nil
	}
	return false, fmt.Errorf("--output: want table or json, got %q", v)
}

// run adapts a client command body to cobra: it connects, bounds the work by
// --timeout (or, for long-running commands, by Ctrl-C) and closes the client.
func (f *clientFlags) run(longRunning bool, body func(ctx context.Context, s *cli, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := f.connect(cmd)
		if err != nil {
			return err
		}
		defer s.c.Close()
		var cancel context.CancelFunc
		ctx := cmd.Context()
		if longRunning {
			ctx, cancel = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		} else {
			ctx, cancel = context.WithTimeout(ctx, f.timeout)
		}
		defer cancel()
		return body(ctx, s, args)
	}
}

// Output.

var (
	jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitDefaultValues: true}
	// jsonLine is for streams: one object per line.
	jsonLine = protojson.MarshalOptions{EmitDefaultValues: true}
)

// printProto writes m as JSON.
func (s *cli) printProto(m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	_, err = fmt.Fprintf(s.out, "%s\n", b)
	return err
}

// printProtoLine writes m as one line of JSON.
func (s *cli) printProtoLine(m proto.Message) error {
	b, err := jsonLine.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	// protojson may add spaces; one line is all a stream reader needs.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	buf.WriteByte('\n')
	_, err = s.out.Write(buf.Bytes())
	return err
}

// protoJSON is m in JSON, for embedding in a larger document.
func protoJSON(m proto.Message) json.RawMessage {
	b, err := jsonLine.Marshal(m)
	if err != nil {
		return json.RawMessage("null") // protojson fails only on invalid UTF-8 in strings
	}
	return b
}

// printProtoList writes ms as a JSON array.
func printProtoList[M proto.Message](s *cli, ms []M) error {
	parts := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		b, err := jsonLine.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		parts[i] = b
	}
	b, err := json.MarshalIndent(parts, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	_, err = fmt.Fprintf(s.out, "%s\n", b)
	return err
}

// table returns a tabwriter for aligned columns; call Flush when done.
func (s *cli) table() *tabwriter.Writer { return newTable(s.out) }

// newTable returns a tabwriter on w for aligned columns; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// printStat writes a znode's stat as "key: value" lines.
func (s *cli) printStat(path string, st *colonyv1.Stat) error {
	tw := s.table()
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("path", path)
	row("kind", trimEnum(st.GetKind().String(), "NODE_KIND_"))
	row("czxid", st.GetCzxid())
	row("mzxid", st.GetMzxid())
	row("pzxid", st.GetPzxid())
	row("ctime", formatMillis(st.GetCtimeMs()))
	row("mtime", formatMillis(st.GetMtimeMs()))
	row("version", st.GetVersion())
	row("cversion", st.GetCversion())
	row("numChildren", st.GetNumChildren())
	row("dataLength", st.GetDataLength())
	if st.GetEphemeralOwner() != 0 {
		row("ephemeralOwner", formatSessionID(st.GetEphemeralOwner()))
	}
	if st.GetKind() == colonyv1.NodeKind_NODE_KIND_TTL {
		row("ttl", time.Duration(st.GetTtlMs())*time.Millisecond)
	}
	return tw.Flush()
}

// formatMillis formats leader time in unix milliseconds, in local time.
func formatMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("2006-01-02T15:04:05.000Z07:00")
}

// formatSessionID writes session ids as the coordinator's messages do.
func formatSessionID(id uint64) string { return fmt.Sprintf("%#x", id) }

// parseSessionID accepts a session id in decimal or 0x-prefixed hex.
func parseSessionID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 0, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("session id: want a number like 0x2a or 42, got %q", s)
	}
	return id, nil
}

func trimEnum(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

// isTerminal reports whether w is a character device (an interactive terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
