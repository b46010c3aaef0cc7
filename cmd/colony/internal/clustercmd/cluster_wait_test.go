package clustercmd

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/tests/support/coordinatortest"
)

func TestClusterReadiness(t *testing.T) {
	voter := func(id, state string) *colonyv1.Member {
		m := &colonyv1.Member{Id: id, State: state}
		if state == "" {
			m.Error = "connection refused"
		}
		return m
	}
	nonvoter := &colonyv1.Member{Id: "n9", State: "Follower", Suffrage: colonyv1.Suffrage_SUFFRAGE_NONVOTER}
	three := []*colonyv1.Member{voter("n1", "Leader"), voter("n2", "Follower"), voter("n3", "Follower"), nonvoter}
	oneDown := []*colonyv1.Member{voter("n1", "Leader"), voter("n2", "Follower"), voter("n3", ""), nonvoter}
	led := func(ms []*colonyv1.Member) *colonyv1.StatusResponse {
		return &colonyv1.StatusResponse{LeaderId: "n1", LeaderGrpcAddress: "127.0.0.1:7400", Term: 2, Members: ms}
	}
	tests := []struct {
		name  string
		st    *colonyv1.StatusResponse
		err   error
		want  int
		ready bool
		what  string
	}{
		{"formed", led(three), nil, 0, true, "leader n1 (term 2), 3 voters: n1, n2, n3"},
		{"formed, counted", led(three), nil, 3, true, "3 voters"},
		{"a voter silent", led(oneDown), nil, 0, false, "2 of 3 voters answering (n3: connection refused)"},
		{"a voter silent, two wanted", led(oneDown), nil, 2, true, "leader n1"},
		{"too few voters", led(three), nil, 5, false, "3 of 5 voters in the configuration"},
		{"no leader", &colonyv1.StatusResponse{Term: 3, Members: three}, nil, 0, false, "no leader yet (term 3)"},
		{"leader not registered", &colonyv1.StatusResponse{LeaderId: "n1", Members: three}, nil, 0, false, "leader n1 has not registered its address yet"},
		{"unreachable", nil, status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7400: connect: connection refused"`), 0, false,
			"no coordinator answered (dial tcp 127.0.0.1:7400: connect: connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, what := clusterReadiness(tt.st, tt.err, tt.want)
			if ready != tt.ready || !strings.Contains(what, tt.what) {
				t.Errorf("clusterReadiness = %v, %q; want %v, %q", ready, what, tt.ready, tt.what)
			}
		})
	}
}

func TestClusterWait(t *testing.T) {
	ctx := t.Context()
	addr := startTestCoordinator(t)
	out, err := colony(ctx, t, "", "cluster", "wait", "--endpoints", addr)
	if err != nil || !strings.HasPrefix(out, "cluster ready after ") || !strings.Contains(out, "leader n1") {
		t.Errorf("cluster wait = %q, %v", out, err)
	}

	// Three voters never come: the error says what is missing, in time.
	_, err = colony(ctx, t, "", "cluster", "wait", "--members", "3", "--timeout", "300ms", "--endpoints", addr)
	if err == nil || !strings.Contains(err.Error(), "cluster not ready after 300ms: 1 of 3 voters in the configuration") {
		t.Errorf("cluster wait --members 3: %v", err)
	}
	// The client commands' --timeout default is unchanged by wait's own.
	if c, _, err := newTestRoot().Find([]string{"cluster", "status"}); err != nil || c.Flag("timeout").DefValue != "5s" {
		t.Errorf("cluster status --timeout: %v, %v; want a default of 5s", c.Flag("timeout"), err)
	}

	// Started before the node: it waits, showing progress, and ends once
	// the node leads.
	grpcAddr := freeAddr(t)
	var wout, werr syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := runColony(ctx, &wout, &werr, "", "cluster", "wait", "--timeout", "30s", "--endpoints", grpcAddr)
		done <- err
	}()
	waitFor(t, "the progress line", func() bool { return strings.Contains(werr.String(), "no coordinator answered") }, done, &werr)
	coordinatortest.StartNode(t, func(c *coordinator.Config) { c.GRPCAddr = grpcAddr })
	select {
	case err := <-done:
		if err != nil || !strings.Contains(wout.String(), "cluster ready") {
			t.Errorf("cluster wait = %q, %v; stderr %s", wout.String(), err, werr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("cluster wait did not end once the node led; stderr %s", werr.String())
	}
}
