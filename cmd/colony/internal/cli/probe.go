package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/colonymesh/colony/coordinator/client"
)

// probeWait bounds the check that every endpoint refuses connections. A
// refusal comes back in one round trip; an endpoint that has not answered
// by then may be slow or partitioned, and the command goes on to wait for
// it within --timeout as before.
const probeWait = 500 * time.Millisecond

// waitsForServers marks a command that is meant to wait for coordinators
// to come up (colony cluster wait): it skips the probe.
const waitsForServers = "colony-waits-for-servers"

// WaitsForServers marks cmd as one that waits for coordinators that are
// not up yet, so a refused connection does not end it early.
func WaitsForServers(cmd *cobra.Command) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[waitsForServers] = "true"
}

// RefusedError is the error of a command none of whose endpoints accepted
// a connection: nothing listens there, so waiting for --timeout would not
// help. It matches client.ErrUnavailable and each endpoint's dial error.
type RefusedError struct {
	Endpoints []string
	Errs      []error // one per endpoint
}

func (e *RefusedError) Error() string {
	if len(e.Endpoints) == 1 {
		return fmt.Sprintf("connection refused by %s", e.Endpoints[0])
	}
	return fmt.Sprintf("connection refused by every endpoint (%s)", strings.Join(e.Endpoints, ", "))
}

func (e *RefusedError) Unwrap() []error { return append([]error{client.ErrUnavailable}, e.Errs...) }

// FailFast runs body, the part of a command that connects (a command that
// does not run through Flags.Run, like colony lock, which opens a session
// and then runs for as long as its child does), while probing cmd's
// endpoints: when every one of them refuses connections, body's context is
// cancelled and the error is a *RefusedError, as for every other client
// command, instead of the client retrying for --timeout.
func FailFast(ctx context.Context, cmd *cobra.Command, body func(context.Context) error) error {
	eps, err := EndpointsOf(cmd)
	if err != nil {
		return err
	}
	return withProbe(ctx, eps, body)
}

// withProbe runs body while probing eps: when every endpoint refuses
// connections, body's context is cancelled and the refusal is the error,
// rather than the client retrying refused connections for the whole
// --timeout. A body that fails without the network (a bad flag value)
// fails as it would alone.
func withProbe(ctx context.Context, eps []string, body func(context.Context) error) error {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pctx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		if err := probe(pctx, eps); err != nil {
			cancel(err)
		}
	}()
	err := body(bctx)
	if err == nil || !unavailable(err) {
		stopProbe()
	}
	// A body that failed on its own dial (snapshot save's) lets the probe
	// finish (probeWait at most), so a refusal reads the same for every
	// command.
	<-probed
	stopProbe()
	// Whatever body made of its cancelled context (a watch ends quietly,
	// as on Ctrl-C), the refusal is what ended it.
	var refused *RefusedError
	if errors.As(context.Cause(bctx), &refused) {
		return refused
	}
	return err
}

// probe dials every endpoint that is host:port at once and returns a
// *RefusedError when each of them refused (or could not be resolved);
// nil when any accepted, any is still connecting after probeWait, or an
// endpoint is a gRPC target it does not dial itself.
func probe(ctx context.Context, eps []string) error {
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	for _, ep := range eps {
		if strings.Contains(ep, ":/") || strings.HasPrefix(ep, "unix:") {
			return nil
		}
	}
	errs := make(chan error, len(eps))
	for _, ep := range eps {
		go func() {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", ep)
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	refused := &RefusedError{Endpoints: eps}
	for range eps {
		err := <-errs
		var dnsErr *net.DNSError
		switch {
		case err == nil:
			cancel() // one is up: let the others' dials go
			return nil
		case ctx.Err() != nil:
			return nil // stopped: the command ended first
		case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			refused.Errs = append(refused.Errs, err)
		default:
			return nil // a timeout, or something the client may get past
		}
	}
	return refused
}
