package sidecar

import (
	"encoding/json"

	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/outcome"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// api serves colony.v1.Sidecar to local apps.
type api struct {
	colonyv1.UnimplementedSidecarServer
	s *Sidecar
}

func (a *api) Report(_ context.Context, req *colonyv1.SidecarReportRequest) (*colonyv1.SidecarReportResponse, error) {
	if len(req.GetOutcomes()) > contract.MaxOutcomesPerReport {
		return nil, status.Errorf(codes.InvalidArgument, "outcomes: %d entries, the limit is %d", len(req.Outcomes), contract.MaxOutcomesPerReport)
	}
	// Validate the whole request before counting any of it.
	counts := make([]breaker.Counts, len(req.GetOutcomes()))
	for i, o := range req.GetOutcomes() {
		if err := breaker.ValidateServiceName(o.GetCallee()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "outcomes[%d].callee: %v", i, err)
		}
		var err error
		if counts[i], err = outcome.FromProto(o.GetCounts()); err == nil {
			err = counts[i].Validate()
		}
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "outcomes[%d].counts: %v", i, err)
		}
	}
	for i, o := range req.GetOutcomes() {
		if err := a.s.Report(o.Callee, counts[i]); err != nil {
			return nil, status.Errorf(codes.ResourceExhausted, "outcomes[%d]: %v", i, err)
		}
	}
	return &colonyv1.SidecarReportResponse{}, nil
}

func (a *api) WatchBreakers(_ *colonyv1.WatchBreakersRequest, stream colonyv1.Sidecar_WatchBreakersServer) error {
	ch, cancel := a.s.subscribe()
	defer cancel()
	// sent is what each callee's last update said: the record's JSON and,
	// while this instance holds probe permits in HALF_OPEN, the probe
	// secret its calls must carry.
	type update struct {
		record []byte
		secret string
	}
	sent := map[string]update{}
	first := true
	for {
		v := a.s.View()
		seen := map[string]bool{}
		for _, c := range v.Callees {
			seen[c.Name] = true
			rec := c.Record
			if rec == nil {
				rec = &breaker.PairRecord{Caller: v.Service, Callee: c.Name}
			}
			data, err := json.Marshal(rec)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if last := sent[c.Name]; string(last.record) == string(data) && last.secret == c.ProbeSecret {
				continue
			}
			sent[c.Name] = update{record: data, secret: c.ProbeSecret}
			if err := stream.Send(&colonyv1.BreakerUpdate{Record: data, Mode: string(c.Source), ProbeSecret: c.ProbeSecret}); err != nil {
				return err
			}
		}
		if first {
			if err := stream.Send(&colonyv1.BreakerUpdate{SnapshotDone: true, Mode: string(v.Mode)}); err != nil {
				return err
			}
			first = false
		}
		select {
		case <-stream.Context().Done():
			return nil
		case _, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "sidecar shutting down")
			}
		}
	}
}

func (a *api) Status(context.Context, *colonyv1.SidecarStatusRequest) (*colonyv1.SidecarStatusResponse, error) {
	return a.s.Status(), nil
}
