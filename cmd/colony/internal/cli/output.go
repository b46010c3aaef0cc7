package cli

// Output: --output (-o) and the printers of results as tables for people or
// JSON for programs, and the formatting of values more than one command
// group writes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

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

var (
	jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitDefaultValues: true}
	// jsonLine is for streams: one object per line.
	jsonLine = protojson.MarshalOptions{EmitDefaultValues: true}
)

// PrintProto writes m as JSON.
func (s *Env) PrintProto(m proto.Message) error {
	b, err := marshalJSON(jsonOut, m)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	_, err = fmt.Fprintf(s.Out, "%s\n", b)
	return err
}

// PrintProtoLine writes m as one line of JSON.
func (s *Env) PrintProtoLine(m proto.Message) error {
	b, err := marshalJSON(jsonLine, m)
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
	b, err := marshalJSON(jsonLine, m)
	if err != nil {
		return json.RawMessage("null") // protojson fails only on invalid UTF-8 in strings
	}
	return b
}

// PrintProtoList writes ms as a JSON array.
func PrintProtoList[M proto.Message](s *Env, ms []M) error {
	parts := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		b, err := marshalJSON(jsonLine, m)
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
