package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// maxBody bounds a POST body: an override's reason is at most 1 KiB.
const maxBody = 64 << 10

// maxTTL bounds an override's expiry set from the UI.
const maxTTL = 365 * 24 * time.Hour

// apiError is every error response's body.
type apiError struct {
	// Field names the input at fault (a path parameter, a body field or a
	// header), empty when the error is not about one.
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	writeJSON(w, code, apiError{Field: field, Error: msg})
}

// badInput is a 400 naming the field at fault.
type badInput struct {
	field string
	err   error
}

func (b *badInput) Error() string { return b.field + ": " + b.err.Error() }

// writeCoordError answers with the HTTP status that matches a coordinator
// error: the one place coordinator errors become HTTP errors.
func writeCoordError(w http.ResponseWriter, err error) {
	var bad *badInput
	code := http.StatusBadGateway
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, bad.field, err.Error())
		return
	case errors.Is(err, client.ErrInvalidArgument):
		code = http.StatusBadRequest
	case errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrNoNode):
		code = http.StatusNotFound
	case status.Code(err) == codes.FailedPrecondition:
		code = http.StatusConflict
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, "", err.Error())
}

// pairParams returns the caller and callee of a /api/breakers/{caller}/{callee}
// path, validated.
func pairParams(r *http.Request) (caller, callee string, err error) {
	caller, callee = r.PathValue("caller"), r.PathValue("callee")
	if err := breaker.ValidateServiceName(caller); err != nil {
		return "", "", &badInput{"caller", err}
	}
	if err := breaker.ValidateServiceName(callee); err != nil {
		return "", "", &badInput{"callee", err}
	}
	return caller, callee, nil
}

// decodeJSON reads a POST body that must be one JSON object of v's fields.
// Only application/json is accepted: a cross-site form cannot send it
// without a CORS preflight.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) (code int, err error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, &badInput{"Content-Type", fmt.Errorf("want application/json, got %q", r.Header.Get("Content-Type"))}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return http.StatusBadRequest, &badInput{typeErr.Field, fmt.Errorf("want a %s, got %s", typeErr.Type, typeErr.Value)}
		case errors.As(err, &maxErr):
			return http.StatusRequestEntityTooLarge, &badInput{"body", fmt.Errorf("larger than %d bytes", maxBody)}
		case errors.Is(err, io.EOF):
			return http.StatusBadRequest, &badInput{"body", errors.New("empty: want a JSON object")}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return http.StatusBadRequest, &badInput{field, errors.New("unknown field")}
		}
		return http.StatusBadRequest, &badInput{"body", fmt.Errorf("not a JSON object: %w", err)}
	}
	if dec.More() {
		return http.StatusBadRequest, &badInput{"body", errors.New("more than one JSON value")}
	}
	return 0, nil
}

func writeBad(w http.ResponseWriter, code int, err error) {
	var bad *badInput
	if errors.As(err, &bad) {
		writeError(w, code, bad.field, err.Error())
		return
	}
	writeError(w, code, "", err.Error())
}

func (d *Dashboard) reqCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d.cfg.RequestTimeout)
}

// by is the actor an override set through r carries to the coordinator:
// the operator the dashboard authenticated, marked as asserted by the
// dashboard (the coordinator itself records the dashboard's certificate).
// Never a name the request declares about itself.
func (d *Dashboard) by(r *http.Request) (string, error) {
	p := principalFrom(r.Context())
	if !p.Operator || p.ID == "" {
		// guard lets only operators act; this is a second lock.
		return "", &authError{code: http.StatusForbidden, field: "Authorization", msg: "not an operator"}
	}
	by := p.ID + " (asserted by " + d.cfg.By + ")"
	if len(by) > breaker.MaxByLen || !utf8.ValidString(by) {
		return "", &badInput{"Authorization", fmt.Errorf("identity %q is longer than an override's by may be (%d bytes)", truncate(p.ID, 64), breaker.MaxByLen)}
	}
	return by, nil
}

// writeByError answers a failed d.by.
func writeByError(w http.ResponseWriter, err error) {
	var ae *authError
	if errors.As(err, &ae) {
		writeError(w, ae.code, ae.field, ae.field+": "+ae.msg)
		return
	}
	writeBad(w, http.StatusBadRequest, err)
}

// meResponse is GET /api/me's body.
type meResponse struct {
	// By is who the request is authenticated as (empty: anonymous).
	By string `json:"by"`
	// Via is how: certificate, token, proxy or anonymous.
	Via string `json:"via"`
	// Operator says whether it may act.
	Operator bool `json:"operator"`
	// Login says whether a token login is offered.
	Login bool `json:"login"`
	// Help names the credentials an operator needs.
	Help string `json:"help"`
}

// GET /api/me: who the request is authenticated as and whether it may act.
func (d *Dashboard) me(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	writeJSON(w, http.StatusOK, meResponse{By: p.ID, Via: p.Via, Operator: p.Operator, Login: len(d.cfg.Tokens) > 0, Help: d.credentialsHelp()})
}

// pairState is what callers enforce for one pair (and why), from a record
// or a ListBreakers row.
type pairState struct {
	Caller      string `json:"caller"`
	Callee      string `json:"callee"`
	State       string `json:"state"`
	Generation  uint64 `json:"generation"`
	SinceMs     int64  `json:"sinceMs"`
	Override    string `json:"override,omitempty"`    // the override's mode
	ShadowState string `json:"shadowState,omitempty"` // in shadow mode: what it would enforce
	Cause       string `json:"cause,omitempty"`
	// Evidence is the window that decided the last transition, from a
	// record (ListBreakers rows do not carry it); unset without calls.
	Evidence *transitionEvidence `json:"evidence,omitempty"`
}

// transitionEvidence is the gist of a record's breaker.Evidence.
type transitionEvidence struct {
	Condition          string  `json:"condition,omitempty"`
	FailureRate        float64 `json:"failureRate"`
	Calls              int64   `json:"calls"`
	FailingInstances   int     `json:"failingInstances"`
	ReportingInstances int     `json:"reportingInstances"`
}

// pairWindow is the leader's live window of one pair (soft state): the
// traffic the callers reported, and the latency percentiles of the calls
// whose reporters measured durations (the guard library, Envoy's access
// logs; stock callers' load reports carry none).
type pairWindow struct {
	FailureRate        float64 `json:"failureRate"`
	WindowCalls        int64   `json:"windowCalls"`
	FailingInstances   int32   `json:"failingInstances"`
	ReportingInstances int32   `json:"reportingInstances"`
	// SlowCalls and SlowCallRate are the window's slow calls and their
	// share of WindowCalls.
	SlowCalls    int64   `json:"slowCalls"`
	SlowCallRate float64 `json:"slowCallRate"`
	// RejectedCalls are the calls callers' breakers turned away in the
	// last rejectedSpan, whatever the state (the window counts nothing
	// while OPEN), and RejectRate the same per second.
	RejectedCalls int64   `json:"rejectedCalls"`
	RejectRate    float64 `json:"rejectRate"`
	// WindowMs is how long the window has counted (up to the policy's
	// window: it restarts at each transition); 0 without reports.
	WindowMs int64 `json:"windowMs"`
	// CallRate is WindowCalls per second over WindowMs.
	CallRate float64 `json:"callRate"`
	// LatencySamples counts the window's calls that came with a duration;
	// 0 when the pair's callers measure none (stock callers).
	LatencySamples int64 `json:"latencySamples"`
	// P50Ms, P99Ms and P999Ms are the window's latency percentiles, each the
	// upper bound of its histogram bucket (not interpolated): -1 past the
	// last bound (10 s), 0 without samples (P999Ms: below 1000 samples).
	P50Ms  int64 `json:"p50Ms"`
	P99Ms  int64 `json:"p99Ms"`
	P999Ms int64 `json:"p999Ms"`
}

// rejectedSpan is the period ListBreakers' rejected_calls covers.
const rejectedSpan = 10 * time.Second

// minRateSpan is the shortest window a rate is computed over: a window that
// restarted a moment ago would turn its first report into a burst.
const minRateSpan = time.Second

// pairSummary is one cell of the matrix. Window is unset in live updates
// from the watch: records carry no live window.
type pairSummary struct {
	pairState
	Window *pairWindow `json:"window,omitempty"`
}

// summaryFromProto converts a ListBreakers row read at atMs.
func summaryFromProto(b *colonyv1.BreakerSummary, atMs int64) pairSummary {
	w := &pairWindow{
		FailureRate: b.GetFailureRate(), WindowCalls: b.GetWindowCalls(),
		FailingInstances: b.GetFailingInstances(), ReportingInstances: b.GetReportingInstances(),
		SlowCalls: b.GetSlowCalls(), RejectedCalls: b.GetRejectedCalls(),
		LatencySamples: b.GetLatencySamples(),
		P50Ms:          b.GetLatencyP50Ms(), P99Ms: b.GetLatencyP99Ms(), P999Ms: b.GetLatencyP999Ms(),
	}
	if w.WindowCalls > 0 {
		w.SlowCallRate = float64(w.SlowCalls) / float64(w.WindowCalls)
	}
	if start := b.GetWindowStartMs(); start > 0 && atMs > start {
		w.WindowMs = atMs - start
		secs := max(time.Duration(w.WindowMs)*time.Millisecond, minRateSpan).Seconds()
		w.CallRate = float64(w.WindowCalls) / secs
	}
	w.RejectRate = float64(w.RejectedCalls) / rejectedSpan.Seconds()
	return pairSummary{
		pairState: pairState{
			Caller: b.GetCaller(), Callee: b.GetCallee(), State: b.GetState(), Generation: b.GetGeneration(),
			SinceMs: b.GetSinceMs(), Override: b.GetOverride(), ShadowState: b.GetShadowState(),
		},
		Window: w,
	}
}

func stateFromRecord(rec *breaker.PairRecord) pairState {
	s := pairState{
		Caller: rec.Caller, Callee: rec.Callee, State: rec.State.String(), Generation: rec.Generation,
		Cause: rec.Cause,
	}
	if !rec.Since.IsZero() {
		s.SinceMs = rec.Since.UnixMilli()
	}
	if rec.Override != nil {
		s.Override = string(rec.Override.Mode)
	}
	if rec.Shadow != nil {
		s.ShadowState = rec.Shadow.State.String()
	}
	if ev := rec.Evidence; ev.Calls > 0 {
		s.Evidence = &transitionEvidence{Condition: string(ev.Condition), FailureRate: ev.FailureRate, Calls: ev.Calls,
			FailingInstances: ev.FailingInstances, ReportingInstances: ev.ReportingInstances}
	}
	return s
}

// breakerList is GET /api/breakers' body and the events' snapshot.
type breakerList struct {
	AtMs     int64         `json:"atMs"`
	Breakers []pairSummary `json:"breakers"`
}

func listBreakers(ctx context.Context, c Coordinator) (breakerList, error) {
	rows, err := c.ListBreakers(ctx, "", "")
	if err != nil {
		return breakerList{}, err
	}
	l := breakerList{AtMs: time.Now().UnixMilli(), Breakers: make([]pairSummary, 0, len(rows))}
	for _, b := range rows {
		l.Breakers = append(l.Breakers, summaryFromProto(b, l.AtMs))
	}
	return l, nil
}

// GET /api/breakers: every pair, with the leader's live window and, as the
// live feed's snapshots, its record's evidence.
func (d *Dashboard) listBreakers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.reqCtx(r)
	defer cancel()
	l, err := listBreakers(ctx, d.coord)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	d.hub.mu.Lock()
	d.hub.attachEvidenceLocked(&l)
	d.hub.mu.Unlock()
	writeJSON(w, http.StatusOK, l)
}

// pairDetail is GET /api/breakers/{caller}/{callee}'s body.
type pairDetail struct {
	Record breaker.PairRecord `json:"record"`
	Policy breaker.Policy     `json:"policy"`
	// Live is the leader's window now.
	Live breaker.Evidence `json:"live"`
	// History is the audit trail, oldest first.
	History []breaker.HistoryEntry `json:"history"`
	// LastTrip is the newest transition to OPEN in History (enforced, or
	// only recorded in shadow mode), nil when History has none.
	LastTrip *breaker.HistoryEntry `json:"lastTrip"`
	// TripFromClosed is, when LastTrip re-opened the breaker from
	// HALF_OPEN (a failed probe), the newest trip from CLOSED before it:
	// the window's evidence that began the episode.
	TripFromClosed *breaker.HistoryEntry `json:"tripFromClosed,omitempty"`
}

// GET /api/breakers/{caller}/{callee}: one pair's record, policy, evidence
// and audit trail.
func (d *Dashboard) getBreaker(w http.ResponseWriter, r *http.Request) {
	caller, callee, err := pairParams(r)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := d.reqCtx(r)
	defer cancel()
	info, err := d.coord.GetBreaker(ctx, caller, callee, d.cfg.HistoryLimit)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	out := pairDetail{Record: info.Record, Policy: info.Policy, Live: info.Live, History: info.History}
	if out.History == nil {
		out.History = []breaker.HistoryEntry{}
	}
	for _, h := range slices.Backward(out.History) {
		if h.Kind != breaker.HistoryTransition || h.To != breaker.Open {
			continue
		}
		if out.LastTrip == nil {
			out.LastTrip = &h
		}
		if out.LastTrip.From == breaker.Closed {
			break
		}
		if h.From == breaker.Closed {
			out.TripFromClosed = &h
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// overrideRequest is POST /api/breakers/{caller}/{callee}/override's body.
type overrideRequest struct {
	// Mode is force-open, force-closed (or force-close), disabled (or
	// disable) or shadow.
	Mode string `json:"mode"`
	// Reason is required: it goes into the audit trail.
	Reason string `json:"reason"`
	// TTL makes the override expire by itself (a Go duration, "10m");
	// empty keeps it until cleared.
	TTL string `json:"ttl"`
}

// clearRequest is POST /api/breakers/{caller}/{callee}/clear's body.
type clearRequest struct {
	Reason string `json:"reason"`
}

func validReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", &badInput{"reason", errors.New("required: say why, for the audit trail")}
	case len(reason) > breaker.MaxReasonLen:
		return "", &badInput{"reason", fmt.Errorf("%d bytes, the limit is %d", len(reason), breaker.MaxReasonLen)}
	case !utf8.ValidString(reason):
		return "", &badInput{"reason", errors.New("not valid UTF-8")}
	}
	return reason, nil
}

// parseOverride validates an override request, naming the field at fault.
func parseOverride(req overrideRequest) (mode breaker.OverrideMode, reason string, ttl time.Duration, err error) {
	m := req.Mode
	if m == "disable" {
		m = string(breaker.Disabled)
	}
	if m == "" {
		return "", "", 0, &badInput{"mode", errors.New("required: force-open, force-closed, disabled or shadow")}
	}
	if mode, err = breaker.ParseOverrideMode(m); err != nil {
		return "", "", 0, &badInput{"mode", err}
	}
	if reason, err = validReason(req.Reason); err != nil {
		return "", "", 0, err
	}
	if s := strings.TrimSpace(req.TTL); s != "" {
		if ttl, err = time.ParseDuration(s); err != nil {
			return "", "", 0, &badInput{"ttl", fmt.Errorf("want a duration such as 10m or 1h30m: %w", err)}
		}
		if ttl < time.Second || ttl > maxTTL {
			return "", "", 0, &badInput{"ttl", fmt.Errorf("%v is outside 1s..%v (leave it empty to keep the override until cleared)", ttl, maxTTL)}
		}
	}
	return mode, reason, ttl, nil
}

// POST /api/breakers/{caller}/{callee}/override: set an override.
func (d *Dashboard) setOverride(w http.ResponseWriter, r *http.Request) {
	caller, callee, err := pairParams(r)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	var req overrideRequest
	if code, err := decodeJSON(w, r, &req); err != nil {
		writeBad(w, code, err)
		return
	}
	mode, reason, ttl, err := parseOverride(req)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	by, err := d.by(r)
	if err != nil {
		writeByError(w, err)
		return
	}
	ctx, cancel := d.reqCtx(r)
	defer cancel()
	rec, err := d.coord.SetOverride(ctx, caller, callee, mode, reason, by, ttl)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	d.log.Info("override set from the dashboard", "caller", caller, "callee", callee, "mode", mode, "by", by, "reason", reason, "ttl", ttl)
	writeJSON(w, http.StatusOK, map[string]any{"record": rec})
}

// POST /api/breakers/{caller}/{callee}/clear: clear the pair's override.
func (d *Dashboard) clearOverride(w http.ResponseWriter, r *http.Request) {
	caller, callee, err := pairParams(r)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	var req clearRequest
	if code, err := decodeJSON(w, r, &req); err != nil {
		writeBad(w, code, err)
		return
	}
	reason, err := validReason(req.Reason)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	by, err := d.by(r)
	if err != nil {
		writeByError(w, err)
		return
	}
	ctx, cancel := d.reqCtx(r)
	defer cancel()
	rec, err := d.coord.ClearOverride(ctx, caller, callee, reason, by)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	d.log.Info("override cleared from the dashboard", "caller", caller, "callee", callee, "by", by, "reason", reason)
	writeJSON(w, http.StatusOK, map[string]any{"record": rec})
}

// protoJSON renders API messages with every field present (so the page
// need not know proto3's defaults) and lowerCamelCase names. 64-bit
// integers are JSON strings, as protojson writes them.
var protoJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// GET /api/cluster: Cluster.Status as the node the client talks to sees it.
func (d *Dashboard) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.reqCtx(r)
	defer cancel()
	st, err := d.coord.Status(ctx)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	b, err := protoJSON.Marshal(st)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
