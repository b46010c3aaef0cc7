package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// oldBreakers is a node from before ReportStream: it serves unary Report
// only, answering the stream Unimplemented, as gRPC does for an unknown
// method.
type oldBreakers struct {
	colonyv1.UnimplementedBreakersServer
	reports atomic.Int64
}

func (b *oldBreakers) Report(ctx context.Context, req *colonyv1.ReportRequest) (*colonyv1.ReportResponse, error) {
	b.reports.Add(1)
	if req.GetReports()[0].GetCallee() == "nowhere" {
		return nil, status.Error(codes.NotFound, "callee nowhere is not known")
	}
	return &colonyv1.ReportResponse{Header: header(7), Accepted: uint32(len(req.GetReports()))}, nil
}

// TestReportFallsBackToUnary: against a node that does not serve
// ReportStream, Report sends each report once as a unary Report, answers
// with that call's result, and stops trying the stream on that node.
func TestReportFallsBackToUnary(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	old := &oldBreakers{}
	colonyv1.RegisterBreakersServer(srv, old)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	c := newTestClient(t, Config{}, lis.Addr().String())
	ctx := context.Background()
	report := func(callee string) error {
		return c.Report(ctx, &colonyv1.OutcomeReport{Caller: "checkout", Callee: callee, Instance: "i1", Counts: &colonyv1.OutcomeCounts{Successes: 1}})
	}
	for i := range 3 {
		if err := report("payments"); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	if got := old.reports.Load(); got != 3 {
		t.Errorf("the node got %d unary Reports for 3 reports, want 3", got)
	}
	if !c.eps[0].noReportStream.Load() {
		t.Error("the client did not remember that the node has no ReportStream")
	}
	if err := report("nowhere"); !isCode(err, codes.NotFound) {
		t.Errorf("a report the node rejects = %v, want NotFound", err)
	}
	if c.LastZxid() != 7 {
		t.Errorf("LastZxid = %d, want the unary response's 7", c.LastZxid())
	}
}

func isCode(err error, code codes.Code) bool { return status.Code(err) == code }
