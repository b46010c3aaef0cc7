package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/colonymesh/colony/breaker"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Report sends outcome counts (soft state: the leader aggregates them in
// memory). A report is retried on another endpoint only when the server
// answered Unavailable (it did not count it): a lost reply must not count
// the calls twice.
//
// Reports go as messages on one long-lived ReportStream per client, each
// acknowledged before Report returns; a node that does not serve the
// stream, and a client with a TracerProvider, send unary Reports. A node's acks say whether it leads: a client
// with several endpoints then moves off the leader (see DESIGN.md).
func (c *Client) Report(ctx context.Context, reports ...*colonyv1.OutcomeReport) error {
	return c.call(ctx, retryUnavailable, hintBreaker, func(ctx context.Context, ep *endpoint) error {
		// A traced client sends unary Reports: each report's trace starts
		// at its own call (otelgrpc), which one long-lived stream cannot
		// carry per message.
		if !c.cfg.UnaryReports && !ep.noReportStream.Load() && c.cfg.TracerProvider == nil {
			if err := c.reportOnStream(ctx, ep, reports); !errors.Is(err, errNoReportStream) {
				return err
			}
		}
		resp, err := ep.breakers.Report(ctx, &colonyv1.ReportRequest{Reports: reports})
		if err == nil {
			c.observe(resp.GetHeader())
		}
		return err
	})
}

// ListBreakers returns every pair's summary, optionally only one caller's
// or one callee's ("" matches all).
func (c *Client) ListBreakers(ctx context.Context, caller, callee string) ([]*colonyv1.BreakerSummary, error) {
	var resp *colonyv1.ListBreakersResponse
	err := c.call(ctx, retrySafe, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.ListBreakers(ctx, &colonyv1.ListBreakersRequest{Caller: caller, Callee: callee})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	return resp.Breakers, nil
}

// BreakerInfo is everything the coordinator knows about one pair.
type BreakerInfo struct {
	Record breaker.PairRecord `json:"record"`
	// Policy is the policy in force for the pair.
	Policy breaker.Policy `json:"policy"`
	// PolicyVersion is the version of /colony/policies/<callee> Policy
	// comes from, -1 for the default policy. Record.PolicyVersion is the
	// version the engine last decided with, which can be older.
	PolicyVersion int64 `json:"policyVersion"`
	// Live is the leader's window now (soft state).
	Live breaker.Evidence `json:"live"`
	// History is the pair's audit trail, oldest first.
	History []breaker.HistoryEntry `json:"history"`
}

// GetBreaker returns one pair's record, policy, live evidence and its newest
// history entries (historyLimit; 0 means 20).
func (c *Client) GetBreaker(ctx context.Context, caller, callee string, historyLimit int) (*BreakerInfo, error) {
	var resp *colonyv1.GetBreakerResponse
	err := c.call(ctx, retrySafe, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.GetBreaker(ctx, &colonyv1.GetBreakerRequest{Caller: caller, Callee: callee, HistoryLimit: int32(historyLimit)})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	info := &BreakerInfo{History: make([]breaker.HistoryEntry, len(resp.History))}
	defer func() {
		if info != nil {
			info.PolicyVersion = info.Record.PolicyVersion // a server that predates the field
			if resp.PolicyVersion != nil {
				info.PolicyVersion = resp.GetPolicyVersion()
			}
		}
	}()
	for what, d := range map[string]struct {
		data []byte
		dst  any
	}{"record": {resp.Record, &info.Record}, "policy": {resp.Policy, &info.Policy}, "live evidence": {resp.Live, &info.Live}} {
		if err := json.Unmarshal(d.data, d.dst); err != nil {
			return nil, fmt.Errorf("client: decoding the breaker's %s: %w", what, err)
		}
	}
	for i, h := range resp.History {
		if err := json.Unmarshal(h, &info.History[i]); err != nil {
			return nil, fmt.Errorf("client: decoding history entry %d: %w", i, err)
		}
	}
	return info, nil
}

// SetOverride puts a manual override on a pair. ttl > 0 makes it expire by
// itself. Setting the same override again changes nothing, so it is retried
// freely.
func (c *Client) SetOverride(ctx context.Context, caller, callee string, mode breaker.OverrideMode, reason, by string, ttl time.Duration) (*breaker.PairRecord, error) {
	req := &colonyv1.SetOverrideRequest{Caller: caller, Callee: callee, Reason: reason, By: by, TtlMs: ttl.Milliseconds()}
	switch mode {
	case breaker.ForceOpen:
		req.Mode = colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN
	case breaker.ForceClosed:
		req.Mode = colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED
	case breaker.Disabled:
		req.Mode = colonyv1.OverrideMode_OVERRIDE_MODE_DISABLED
	case breaker.Shadow:
		req.Mode = colonyv1.OverrideMode_OVERRIDE_MODE_SHADOW
	default:
		return nil, fmt.Errorf("client: unknown override mode %q", mode)
	}
	var resp *colonyv1.OverrideResponse
	err := c.call(ctx, retrySafe, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.SetOverride(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.overrideRecord(resp)
}

// ClearOverride removes a pair's override; the pair starts again CLOSED.
func (c *Client) ClearOverride(ctx context.Context, caller, callee, reason, by string) (*breaker.PairRecord, error) {
	var resp *colonyv1.OverrideResponse
	err := c.call(ctx, retryUnavailable, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.ClearOverride(ctx, &colonyv1.ClearOverrideRequest{Caller: caller, Callee: callee, Reason: reason, By: by})
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.overrideRecord(resp)
}

// DeleteBreaker forgets a pair: its record and history are deleted and
// callers enforce nothing for it until it is reported again. A pair that is
// OPEN or HALF_OPEN or has an override needs force (FailedPrecondition
// otherwise); NotFound when there is no such pair. It returns
// the record as it was.
func (c *Client) DeleteBreaker(ctx context.Context, caller, callee string, force bool, reason, by string) (*breaker.PairRecord, error) {
	var resp *colonyv1.DeleteBreakerResponse
	err := c.call(ctx, retryUnavailable, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.DeleteBreaker(ctx, &colonyv1.DeleteBreakerRequest{Caller: caller, Callee: callee, Force: force, Reason: reason, By: by})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	var rec breaker.PairRecord
	if err := json.Unmarshal(resp.Record, &rec); err != nil {
		return nil, fmt.Errorf("client: decoding the breaker record: %w", err)
	}
	return &rec, nil
}

func (c *Client) overrideRecord(resp *colonyv1.OverrideResponse) (*breaker.PairRecord, error) {
	c.observe(resp.GetHeader())
	var rec breaker.PairRecord
	if err := json.Unmarshal(resp.Record, &rec); err != nil {
		return nil, fmt.Errorf("client: decoding the breaker record: %w", err)
	}
	return &rec, nil
}

// ApplyPolicies validates and writes policies, all or nothing (dryRun:
// validate only). Applying the same policies again changes nothing.
func (c *Client) ApplyPolicies(ctx context.Context, specs []*colonyv1.PolicySpec, by string, dryRun bool) ([]*colonyv1.AppliedPolicy, error) {
	var resp *colonyv1.ApplyPoliciesResponse
	err := c.call(ctx, retrySafe, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.ApplyPolicies(ctx, &colonyv1.ApplyPoliciesRequest{Policies: specs, By: by, DryRun: dryRun})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	return resp.Applied, nil
}

// GetPolicy returns the policies for calls to callee; isDefault says it has
// none of its own.
func (c *Client) GetPolicy(ctx context.Context, callee string) (ps *breaker.PolicySet, isDefault bool, err error) {
	var resp *colonyv1.GetPolicyResponse
	err = c.call(ctx, retrySafe, hintBreaker, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.breakers.GetPolicy(ctx, &colonyv1.GetPolicyRequest{Callee: callee})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	c.observe(resp.GetHeader())
	ps = &breaker.PolicySet{}
	if err := json.Unmarshal(resp.PolicySet, ps); err != nil {
		return nil, false, fmt.Errorf("client: decoding the policy: %w", err)
	}
	return ps, resp.IsDefault, nil
}

// DeletePolicy removes a callee's policies; its pairs use the default.
func (c *Client) DeletePolicy(ctx context.Context, callee, by string) error {
	return c.call(ctx, retryUnavailable, hintBreaker, func(ctx context.Context, ep *endpoint) error {
		resp, err := ep.breakers.DeletePolicy(ctx, &colonyv1.DeletePolicyRequest{Callee: callee, By: by})
		if err == nil {
			c.observe(resp.GetHeader())
		}
		return err
	})
}

// ParsePolicyFile reads a policies file (YAML or JSON):
//
//	policies:
//	  - callee: payments
//	    policy:                  # overlaid on the default policy
//	      failureRateThreshold: 0.5
//	      window: 10s
//	      minFailingInstances: 2
//	    callers:                 # optional, each overlaid on the callee's policy
//	      checkout:
//	        minimumCalls: 50
//
// Unknown keys at any level are errors; the policy fields themselves are
// checked by the coordinator (ApplyPolicies), which names the field at fault.
func ParsePolicyFile(data []byte) ([]*colonyv1.PolicySpec, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("policies file: %w", err)
	}
	var file struct {
		Policies []struct {
			Callee  string                     `json:"callee"`
			Policy  json.RawMessage            `json:"policy"`
			Callers map[string]json.RawMessage `json:"callers"`
		} `json:"policies"`
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("policies file: %w (want a top-level \"policies\" list of {callee, policy, callers})", err)
	}
	if len(file.Policies) == 0 {
		return nil, fmt.Errorf("policies file: no policies (want a top-level \"policies\" list)")
	}
	specs := make([]*colonyv1.PolicySpec, len(file.Policies))
	for i, p := range file.Policies {
		if p.Callee == "" {
			return nil, fmt.Errorf("policies file: policies[%d]: callee is required", i)
		}
		s := &colonyv1.PolicySpec{Callee: p.Callee}
		if len(p.Policy) > 0 && string(p.Policy) != "null" {
			s.Policy = p.Policy
		}
		for caller, raw := range p.Callers {
			if s.Callers == nil {
				s.Callers = map[string][]byte{}
			}
			s.Callers[caller] = raw
		}
		specs[i] = s
	}
	return specs, nil
}
