//go:build unix

package framework

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// StartRetrying calls try with attempt 1, 2, ... until it succeeds, and
// fails t after five attempts or on an error other than ErrAddrInUse:
// another process can take a port between FreePorts and the node's bind,
// and the next attempt picks other ports. undo runs after each failed
// attempt, to kill what it started.
func StartRetrying(t testing.TB, what string, try func(attempt int) error, undo func()) {
	t.Helper()
	const attempts = 5
	for attempt := 1; ; attempt++ {
		err := try(attempt)
		if err == nil {
			return
		}
		undo()
		if attempt == attempts || !errors.Is(err, ErrAddrInUse) {
			t.Fatalf("starting %s: %v", what, err)
		}
		t.Logf("starting %s, attempt %d: %v; retrying on other ports", what, attempt, err)
	}
}

// StartAll starts every node and waits, up to StartTimeout, until each
// serves gRPC.
func StartAll(ctx context.Context, nodes []*Node) error {
	for _, node := range nodes {
		if err := node.Start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	for _, node := range nodes {
		if err := node.WaitServing(ctx); err != nil {
			return err
		}
	}
	return nil
}

// KillAll kills every running node, waits for it, and closes the admin
// connections. With reportExits, a node that had exited without the test
// stopping it (it crashed, or something outside the test killed it) fails
// t.
func KillAll(t testing.TB, nodes []*Node, reportExits bool) {
	for _, n := range nodes {
		if p := n.takeProc(); p != nil {
			if reportExits && p.Exited() {
				t.Errorf("%s exited while the test expected it to run: %v", n.ID, p.Describe())
			}
			p.Kill()
			if !p.WaitExit(ExitTimeout) {
				t.Errorf("%s did not exit within %v of SIGKILL", n.ID, ExitTimeout)
			}
		}
		n.mu.Lock()
		if n.conn != nil {
			n.conn.Close()
			n.conn = nil
		}
		n.mu.Unlock()
	}
}

// CheckLogs fails t for every data race or panic the nodes logged.
func CheckLogs(t testing.TB, nodes []*Node) {
	t.Helper()
	for _, n := range nodes {
		CheckServerLog(t, n.ID, n.LogPath)
	}
}

// Statuses asks every node for Cluster.Status, each within rpcTimeout.
func Statuses(ctx context.Context, nodes []*Node, rpcTimeout time.Duration) (map[string]*colonyv1.StatusResponse, error) {
	out := map[string]*colonyv1.StatusResponse{}
	for _, n := range nodes {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		st, err := n.Cluster().Status(rctx, &colonyv1.StatusRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", n.ID, err)
		}
		out[n.ID] = st
	}
	return out, nil
}

// AgreedLeader returns the leader that the statuses of every one of nodes
// name, or an error saying why there is none. With withAddress, a status
// must also know the leader's gRPC address.
func AgreedLeader(nodes []*Node, sts map[string]*colonyv1.StatusResponse, withAddress bool) (string, error) {
	if len(nodes) == 0 {
		return "", errors.New("no node is running")
	}
	leaderID := ""
	for _, n := range nodes {
		st := sts[n.ID]
		switch {
		case st == nil:
			return "", fmt.Errorf("no status of %s", n.ID)
		case st.LeaderId == "":
			return "", fmt.Errorf("%s knows no leader", n.ID)
		case withAddress && st.LeaderGrpcAddress == "":
			return "", fmt.Errorf("%s knows leader %s but not its address", n.ID, st.LeaderId)
		case leaderID != "" && st.LeaderId != leaderID:
			return "", fmt.Errorf("nodes disagree on the leader: %s and %s", leaderID, st.LeaderId)
		}
		leaderID = st.LeaderId
	}
	return leaderID, nil
}

// ReadThroughAll does a linearizable read through every node, each within
// rpcTimeout: it succeeds once the leader has committed an entry of its
// term and every node reaches it.
func ReadThroughAll(ctx context.Context, nodes []*Node, rpcTimeout time.Duration) error {
	for _, n := range nodes {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		_, err := n.Tree().Exists(rctx, &colonyv1.ExistsRequest{Path: "/"})
		cancel()
		if err != nil {
			return fmt.Errorf("linearizable read through %s: %w", n.ID, err)
		}
	}
	return nil
}

// Eventually calls f every interval until it returns nil, and returns nil
// then; when ctx ends first it returns ctx's error with f's last error.
func Eventually(ctx context.Context, interval time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// WaitReady waits, trying every interval, until leader finds one that every
// node it asks agrees on and a linearizable read succeeds through every one
// of nodes() (the leader has committed an entry of its term), and returns
// that leader.
func WaitReady[N interface{ Base() *Node }](ctx context.Context, interval, rpcTimeout time.Duration,
	leader func(context.Context) (N, error), nodes func() []N) (N, error) {
	var found N
	err := Eventually(ctx, interval, func() error {
		l, err := leader(ctx)
		if err != nil {
			return err
		}
		found = l
		return ReadThroughAll(ctx, Nodes(nodes()), rpcTimeout)
	})
	if err != nil {
		var zero N
		return zero, fmt.Errorf("no ready leader: %w", err)
	}
	return found, nil
}
