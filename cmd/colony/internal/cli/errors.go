package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/coordinator/snapshotfile"
)

// ExitStatus is an error that makes colony exit with Code, saying nothing
// more: the command whose status it passes on has spoken for itself.
type ExitStatus struct{ Code int }

func (e *ExitStatus) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Execute runs the command line and returns its error, explained.
func Execute(ctx context.Context, root *cobra.Command) error {
	cmd, err := root.ExecuteContextC(ctx)
	return Explain(cmd, err)
}

// hinted is an error with what the user can do about it. It reads as a
// message (err's, unless replaced) and the hint on the next line, indented,
// and matches err with errors.Is and errors.As.
type hinted struct {
	err  error
	msg  string // replaces err's text when set
	hint string
}

func (e *hinted) Error() string {
	msg := e.msg
	if msg == "" {
		msg = e.err.Error()
	}
	if e.hint == "" {
		return msg
	}
	return msg + "\n  " + strings.ReplaceAll(e.hint, "\n", "\n  ")
}

func (e *hinted) Unwrap() error { return e.err }

// Hint returns err with what the user can do about it, on the lines after
// err's message. Explain leaves it as it is.
func Hint(err error, hint string) error { return &hinted{err: err, hint: hint} }

// usageError is a command line that does not parse: a bad flag or
// argument count. Explain adds the usage line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// MarkUsageErrors makes cmd's and its subcommands' flag and argument errors
// usageErrors, and makes a command that only groups others fail on a
// subcommand name it does not know (guardGroups).
func MarkUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// "colony put /a x --endpoints A": the unknown command is the
		// mistake to report, not the flag that only it would have had.
		if args := c.Flags().Args(); isGuardedGroup(c) && len(args) > 0 {
			return unknownCommand(c, args[0])
		}
		return &usageError{err}
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		guardGroups(c)
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return &usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
}

// Explain is the one place where an error that ends a command gets a hint:
// what to run or which flag to set to get past it. cmd is the command that
// failed. Errors keep matching what they wrap.
func Explain(cmd *cobra.Command, err error) error {
	var h *hinted
	var st *ExitStatus
	if err == nil || cmd == nil || errors.As(err, &h) || errors.As(err, &st) {
		return err
	}
	name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
	var ue *usageError
	if errors.As(err, &ue) {
		msg := err.Error()
		if want := flagValueHint(err); want != "" {
			msg += " (" + want + ")"
		}
		return &hinted{err: err, msg: msg, hint: fmt.Sprintf("Usage: %s\nSee '%s --help'.", cmd.UseLine(), cmd.CommandPath())}
	}

	if e := tlsProblem(cmd, err); e != nil {
		return e
	}
	switch {
	case unavailable(err):
		eps := endpointsText(cmd)
		if reason, ok := ConnectionProblem(err); ok {
			return &hinted{err: err,
				msg:  fmt.Sprintf("no coordinator reachable at %s: %s", eps, reason),
				hint: "Start one with `colony dev`, or point --endpoints (or $" + EndpointsEnv + ") at a running cluster."}
		}
		return &hinted{err: err,
			msg:  fmt.Sprintf("the coordinator at %s cannot serve the request: %v", eps, err),
			hint: "The cluster may be electing a leader or have lost its quorum: `colony cluster status` shows every member's state; `colony cluster wait` waits for a leader."}

	case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		timeout := "--timeout"
		if fl := cmd.Flags().Lookup("timeout"); fl != nil {
			timeout += " " + fl.Value.String()
		}
		return &hinted{err: err,
			msg:  fmt.Sprintf("no answer from %s within %s: %v", endpointsText(cmd), timeout, err),
			hint: "Check the addresses (--endpoints or $" + EndpointsEnv + ") and `colony cluster status`, or give a slow cluster a longer --timeout."}

	case errors.Is(err, client.ErrNotFound):
		switch {
		case strings.Contains(err.Error(), "unknown callee"):
			return &hinted{err: err, hint: "A callee is known once it has a policy (`colony policy apply -f FILE`) or a registered instance (a sidecar of it runs); `colony breaker ls` lists the pairs that exist."}
		case strings.HasPrefix(name, "policy "):
			return &hinted{err: err, hint: "`colony policy get CALLEE` shows the policy a callee uses, its own or the default."}
		}
		return &hinted{err: err, hint: "`colony breaker ls` lists the pairs that exist."}

	case errors.Is(err, client.ErrNoNode) && strings.HasPrefix(name, "kv "):
		if args := cmd.Flags().Args(); len(args) > 0 && strings.HasPrefix(args[0], "/") {
			return &hinted{err: err, hint: fmt.Sprintf("`colony kv ls %s` lists what is there.", path.Dir(args[0]))}
		}

	case errors.Is(err, client.ErrSessionExpired):
		return &hinted{err: err, hint: "`colony session ls` lists the open sessions; `colony session open` opens one."}

	case errors.Is(err, snapshotfile.ErrCorrupt):
		return &hinted{err: err, hint: "Use another copy of the snapshot, or save a new one with `colony snapshot save FILE`."}

	case errors.Is(err, snapshotfile.ErrDataDirNotEmpty):
		return &hinted{err: err, hint: "A restore never overwrites a node's data: give --data-dir a new directory, or move the old one away first."}
	}
	return err
}

// unavailable reports whether err means no coordinator could serve the
// request: none reachable, or none with a leader.
func unavailable(err error) bool {
	return errors.Is(err, client.ErrUnavailable) || status.Code(err) == codes.Unavailable
}

// ConnectionProblem reports whether an Unavailable error is a failure to
// connect (rather than a coordinator answering that it cannot serve) and,
// if so, why, without gRPC's wrapping.
//
// It asks the error values first: a dial or name lookup that failed in
// this process is a *net.OpError or *net.DNSError. gRPC hides the cause of
// a failed connection: its error is an Unavailable status whose message is
// the only trace of the dial, so for those the message is read
// (grpcConnectionProblem).
func ConnectionProblem(err error) (string, bool) {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return "connection refused (is a coordinator running there?)", true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error(), true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return opErr.Error(), true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return err.Error(), true
	}
	if status.Code(err) != codes.Unavailable {
		return "", false
	}
	return grpcConnectionProblem(err.Error())
}

// grpcConnectionProblem reads gRPC's text for a connection it could not
// make or keep. The first of these gives the reason: the dial's own error
// (`connection error: desc = "transport: Error while dialing: dial tcp
// ADDR: connect: connection refused"`), a name resolver's error, or a
// resolver that produced zero addresses. Other transport failures give the
// whole message.
func grpcConnectionProblem(msg string) (string, bool) {
	reason, at := "", len(msg)
	for _, s := range []string{"dial ", "name resolver error", "produced zero addresses"} {
		i := strings.Index(msg, s)
		if i < 0 || i >= at {
			continue
		}
		r, _, _ := strings.Cut(msg[i:], `"`)
		if s == "dial " && !strings.Contains(r, ": ") {
			continue // not a dial error's text ("dial tcp ADDR: ...")
		}
		if s == "produced zero addresses" {
			r = s
		}
		reason, at = r, i
	}
	if reason != "" {
		return reason, true
	}
	for _, s := range []string{"connection error", "connection refused", "no such host", "connection reset", "transport is closing"} {
		if strings.Contains(msg, s) {
			return msg, true
		}
	}
	return "", false
}

// endpointsText names the addresses a client command used.
func endpointsText(cmd *cobra.Command) string {
	eps, err := EndpointsOf(cmd)
	if err != nil || len(eps) == 0 {
		return client.DefaultEndpoint
	}
	return strings.Join(eps, ", ")
}

// flagValueHint says what a flag of a common type wants, for a value that
// did not parse (pflag's *InvalidValueError names the flag).
func flagValueHint(err error) string {
	var bad *pflag.InvalidValueError
	if !errors.As(err, &bad) || bad.GetFlag() == nil {
		return ""
	}
	switch bad.GetFlag().Value.Type() {
	case "duration":
		return "want a duration like 500ms, 10s or 1m30s"
	case "int", "int32", "int64":
		return "want a whole number"
	case "uint", "uint32", "uint64":
		return "want a whole number, 0 or more"
	case "bool":
		return "want true or false"
	case "float64", "float32":
		return "want a number"
	}
	return ""
}
