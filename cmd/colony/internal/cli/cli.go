// Package cli holds what every client command of colony shares: the
// connection flags and the client they make (Flags, Env, Flags.Run), output
// as a table or JSON (--output), the explanation of the error that ends a
// command (Execute, Explain), progress on a terminal (StatusLine) and the
// dynamic shell completion of names from the cluster (AddCompletions).
//
// The command groups (kvcmd, clustercmd, breakercmd) build on it; main
// registers them on the root command and runs it with Execute.
package cli

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
)

// EndpointsEnv names the environment variable that replaces the default of
// --endpoints.
const EndpointsEnv = "COLONY_ENDPOINTS"

// Flags are the flags every client command shares. One Flags serves all the
// command groups of a root command: only the command that runs parses them.
type Flags struct {
	Endpoints string        // --endpoints, as given
	Output    string        // --output (-o): table or json
	Timeout   time.Duration // --timeout: the time limit of a command
}

// Register adds the flags to fs, which belongs to cmd.
func (f *Flags) Register(cmd *cobra.Command, fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoints, "endpoints", client.DefaultEndpoint,
		"coordinator gRPC addresses, comma-separated; $"+EndpointsEnv+" replaces the default")
	AddOutputFlag(cmd, fs, &f.Output)
	fs.DurationVar(&f.Timeout, "timeout", 5*time.Second,
		"time limit of the command, failover included (watch, session open, snapshot save: of setting up)")
}

// Env is what a client command works with: a client, the output format and
// the command's streams.
type Env struct {
	Client *client.Client
	JSON   bool      // --output json
	In     io.Reader // the command's stdin
	Out    io.Writer // the command's stdout
	ErrOut io.Writer // the command's stderr
	Flags  *Flags
}

// Connect validates the shared flags and makes a client. The caller closes it.
func (f *Flags) Connect(cmd *cobra.Command) (*Env, error) {
	asJSON, err := ParseOutput(f.Output)
	if err != nil {
		return nil, err
	}
	if f.Timeout <= 0 {
		return nil, fmt.Errorf("--timeout: must be positive, got %v", f.Timeout)
	}
	eps, err := EndpointsOf(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		return nil, err
	}
	return &Env{Client: c, JSON: asJSON, In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), ErrOut: cmd.ErrOrStderr(), Flags: f}, nil
}

// EndpointsOf returns the coordinator addresses a client command uses:
// --endpoints, or $COLONY_ENDPOINTS when the flag is not given.
func EndpointsOf(cmd *cobra.Command) ([]string, error) {
	fl := cmd.Flags().Lookup("endpoints")
	if fl == nil {
		return []string{client.DefaultEndpoint}, nil
	}
	list := fl.Value.String()
	if env := os.Getenv(EndpointsEnv); env != "" && !fl.Changed {
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

// AddOutputFlag registers --output (-o) on fs, which belongs to cmd, and
// completes its values.
func AddOutputFlag(cmd *cobra.Command, fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "output", "o", outputTable,
		"output format: table (for people) or json (one JSON document; an array for lists, one object per line for streams)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]string{outputTable + "\tfor people", outputJSON + "\tfor programs"}, cobra.ShellCompDirectiveNoFileComp))
}

// ParseOutput reports whether --output asks for JSON.
func ParseOutput(v string) (asJSON bool, err error) {
	switch strings.ToLower(v) {
	case outputTable, "text":
		return false, nil
	case outputJSON:
		return true, nil
	}
	return false, fmt.Errorf("--output: want table or json, got %q", v)
}

// Run adapts a client command body to cobra: it connects, bounds the work by
// --timeout (or, for long-running commands, by Ctrl-C) and closes the client.
func (f *Flags) Run(longRunning bool, body func(ctx context.Context, s *Env, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := f.Connect(cmd)
		if err != nil {
			return err
		}
		defer s.Client.Close()
		var cancel context.CancelFunc
		ctx := cmd.Context()
		if longRunning {
			ctx, cancel = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		} else {
			ctx, cancel = context.WithTimeout(ctx, f.Timeout)
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

// PrintProto writes m as JSON.
func (s *Env) PrintProto(m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	_, err = fmt.Fprintf(s.Out, "%s\n", b)
	return err
}

// PrintProtoLine writes m as one line of JSON.
func (s *Env) PrintProtoLine(m proto.Message) error {
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
	_, err = s.Out.Write(buf.Bytes())
	return err
}

// ProtoJSON is m in JSON, for embedding in a larger document.
func ProtoJSON(m proto.Message) json.RawMessage {
	b, err := jsonLine.Marshal(m)
	if err != nil {
		return json.RawMessage("null") // protojson fails only on invalid UTF-8 in strings
	}
	return b
}

// PrintProtoList writes ms as a JSON array.
func PrintProtoList[M proto.Message](s *Env, ms []M) error {
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
	_, err = fmt.Fprintf(s.Out, "%s\n", b)
	return err
}

// Table returns a tabwriter for aligned columns; call Flush when done.
func (s *Env) Table() *tabwriter.Writer { return NewTable(s.Out) }

// NewTable returns a tabwriter on w for aligned columns; call Flush when done.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// WriteIndentedJSON writes v as indented JSON.
func WriteIndentedJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// FormatMillis formats leader time in unix milliseconds, in local time.
func FormatMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("2006-01-02T15:04:05.000Z07:00")
}

// FormatSessionID writes session ids as the coordinator's messages do.
func FormatSessionID(id uint64) string { return fmt.Sprintf("%#x", id) }

// ParseSessionID accepts a session id in decimal or 0x-prefixed hex.
func ParseSessionID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 0, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("session id: want a number like 0x2a or 42, got %q", s)
	}
	return id, nil
}

// TrimEnum is an enum value's name without its prefix.
func TrimEnum(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

// IsTerminal reports whether w is a character device (an interactive terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// OrDash is s, or "-" for an empty one (an empty table cell).
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
