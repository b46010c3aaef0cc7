package engine

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/outcome"
	"github.com/colonymesh/colony/internal/wiretime"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// The checks of the Breakers API's input, run on the node that received a
// request before it reaches the leader's engine. Their errors are the
// engine's (Code maps them).

// maxOverrideTTL bounds an override's expiry.
const maxOverrideTTL = 366 * 24 * time.Hour

// ValidateName checks a service name in the request field named field.
func ValidateName(field, name string) error {
	if err := breaker.ValidateServiceName(name); err != nil {
		return invalid("%s: %v", field, err)
	}
	return nil
}

// ValidatePair checks a request's caller and callee.
func ValidatePair(caller, callee string) error {
	if err := ValidateName("caller", caller); err != nil {
		return err
	}
	return ValidateName("callee", callee)
}

// ValidateReports checks a Report request as a whole: names, counts, sizes,
// and that each callee is known (known answers for a caller and callee;
// it is asked once per pair).
func ValidateReports(reports []*colonyv1.OutcomeReport, known func(caller, callee string) (bool, error)) error {
	if len(reports) == 0 {
		return invalid("reports: empty")
	}
	if len(reports) > contract.MaxOutcomesPerReport {
		return invalid("reports: %d entries, the limit is %d per request", len(reports), contract.MaxOutcomesPerReport)
	}
	seen := map[pairKey]bool{}
	for i, r := range reports {
		if err := breaker.ValidateServiceName(r.GetCaller()); err != nil {
			return invalid("reports[%d].caller: %v", i, err)
		}
		if err := breaker.ValidateServiceName(r.GetCallee()); err != nil {
			return invalid("reports[%d].callee: %v", i, err)
		}
		if err := breaker.ValidateInstanceID(r.GetInstance()); err != nil {
			return invalid("reports[%d].instance: %v", i, err)
		}
		if r.GetCounts() == nil {
			return invalid("reports[%d].counts: missing", i)
		}
		c, err := outcome.FromProto(r.Counts)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			return invalid("reports[%d].counts: %v", i, err)
		}
		k := pairKey{r.Caller, r.Callee}
		if _, ok := seen[k]; !ok {
			ok, err := known(r.Caller, r.Callee)
			if err != nil {
				return err
			}
			seen[k] = ok
		}
		if !seen[k] {
			return UnknownCallee(fmt.Sprintf("reports[%d].callee", i), r.Caller, r.Callee)
		}
	}
	return nil
}

// UnknownCallee is the error for a request field naming a callee the pair
// may not get a breaker for (CalleeKnown said no).
func UnknownCallee(field, caller, callee string) error {
	return newErr(ErrUnknownCallee, "%s: unknown callee %q: no policy at %s, no instance under %s and no breaker %s",
		field, callee, contract.PolicyPath(callee), contract.ServiceDir(callee), contract.BreakerPath(caller, callee))
}

// TreeReader is the part of a tree view CalleeKnown reads.
type TreeReader interface {
	Get(string) ([]byte, *colonyv1.Stat, error)
	Children(string) ([]string, *colonyv1.Stat, error)
}

// CalleeKnown reports whether a pair may get a breaker: its callee has a
// policy or a registered instance, or the pair has a record already. This
// keeps a misspelt callee from silently creating a pair nobody enforces.
func CalleeKnown(v TreeReader, caller, callee string) bool {
	if _, _, err := v.Get(contract.PolicyPath(callee)); err == nil {
		return true
	}
	if _, _, err := v.Get(contract.BreakerPath(caller, callee)); err == nil {
		return true
	}
	kids, _, err := v.Children(contract.ServiceDir(callee))
	return err == nil && len(kids) > 0
}

// HistoryLimit checks GetBreakerRequest.history_limit and returns the
// number of entries to return (0 means 20).
func HistoryLimit(n int32) (int, error) {
	limit := int(n)
	switch {
	case limit < 0 || limit > HistoryKeep:
		return 0, invalid("history_limit: %d is outside 0..%d", limit, HistoryKeep)
	case limit == 0:
		limit = 20
	}
	return limit, nil
}

// ParseOverride checks a SetOverride request's mode, ttl_ms, reason and
// author, and returns the override as of now with its time to live (0:
// until cleared). The leader recomputes the expiry on its own clock.
func ParseOverride(req *colonyv1.SetOverrideRequest, now time.Time) (breaker.Override, time.Duration, error) {
	var mode breaker.OverrideMode
	switch req.GetMode() {
	case colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_OPEN:
		mode = breaker.ForceOpen
	case colonyv1.OverrideMode_OVERRIDE_MODE_FORCE_CLOSED:
		mode = breaker.ForceClosed
	case colonyv1.OverrideMode_OVERRIDE_MODE_DISABLED:
		mode = breaker.Disabled
	case colonyv1.OverrideMode_OVERRIDE_MODE_SHADOW:
		mode = breaker.Shadow
	default:
		return breaker.Override{}, 0, invalid("mode: %v is not an override (want FORCE_OPEN, FORCE_CLOSED, DISABLED or SHADOW)", req.GetMode())
	}
	ttl, err := overrideTTL(req.GetTtlMs())
	if err != nil {
		return breaker.Override{}, 0, err
	}
	o := breaker.Override{Mode: mode, Reason: req.GetReason(), By: req.GetBy(), At: now}
	if ttl > 0 {
		o.Until = o.At.Add(ttl)
	}
	if err := o.Validate(); err != nil {
		return breaker.Override{}, 0, invalid("override: %v", err)
	}
	return o, ttl, nil
}

// overrideTTL converts SetOverrideRequest.ttl_ms, saturating before the
// range check: a plain time.Duration(ms)*time.Millisecond wraps negative for
// ms >= 9,223,372,036,855 and such an override passed the maximum check and
// never expired.
func overrideTTL(ms int64) (time.Duration, error) {
	ttl := wiretime.Millis(ms)
	if ttl < 0 || ttl > maxOverrideTTL {
		return 0, invalid("ttl_ms: %d is outside 0..%d (0: until cleared)", ms, maxOverrideTTL.Milliseconds())
	}
	return ttl, nil
}

// ValidateAudit checks the reason and author an operator's action records.
func ValidateAudit(reason, by string) error {
	if len(reason) > breaker.MaxReasonLen {
		return invalid("reason: %d bytes, the limit is %d", len(reason), breaker.MaxReasonLen)
	}
	if len(by) > breaker.MaxByLen {
		return invalid("by: %d bytes, the limit is %d", len(by), breaker.MaxByLen)
	}
	return nil
}

// ResolvePolicies turns the user's specs (JSON overlays) into stored policy
// sets, validating everything.
func ResolvePolicies(specs []*colonyv1.PolicySpec, by string, now time.Time) ([]breaker.PolicySet, error) {
	if len(specs) == 0 {
		return nil, invalid("policies: empty")
	}
	if len(specs) > contract.MaxPoliciesPerCall {
		return nil, invalid("policies: %d entries, the limit is %d per request", len(specs), contract.MaxPoliciesPerCall)
	}
	if len(by) > breaker.MaxByLen {
		return nil, invalid("by: %d bytes, the limit is %d", len(by), breaker.MaxByLen)
	}
	seen := map[string]int{}
	out := make([]breaker.PolicySet, 0, len(specs))
	for i, spec := range specs {
		if err := breaker.ValidateServiceName(spec.GetCallee()); err != nil {
			return nil, invalid("policies[%d].callee: %v", i, err)
		}
		if j, dup := seen[spec.Callee]; dup {
			return nil, invalid("policies[%d].callee: %q is also policies[%d]", i, spec.Callee, j)
		}
		seen[spec.Callee] = i
		ps := breaker.PolicySet{Callee: spec.Callee, Policy: breaker.DefaultPolicy(), By: by, At: now}
		if len(spec.Policy) > 0 {
			p, err := breaker.ParsePolicy(breaker.DefaultPolicy(), spec.Policy)
			if err != nil {
				return nil, invalid("policies[%d] (callee %s).policy: %v", i, spec.Callee, oneLine(err))
			}
			ps.Policy = p
		}
		callers := make([]string, 0, len(spec.Callers))
		for c := range spec.Callers {
			callers = append(callers, c)
		}
		sort.Strings(callers)
		for _, c := range callers {
			if err := breaker.ValidateServiceName(c); err != nil {
				return nil, invalid("policies[%d] (callee %s).callers: %v", i, spec.Callee, err)
			}
			p, err := breaker.ParsePolicy(ps.Policy, spec.Callers[c])
			if err != nil {
				return nil, invalid("policies[%d] (callee %s).callers[%s]: %v", i, spec.Callee, c, oneLine(err))
			}
			if ps.Callers == nil {
				ps.Callers = map[string]breaker.Policy{}
			}
			ps.Callers[c] = p
		}
		if err := ps.Validate(); err != nil { // names and policies, once more as a whole
			return nil, invalid("policies[%d]: %v", i, oneLine(err))
		}
		out = append(out, ps)
	}
	return out, nil
}

// oneLine joins a multi-line error (errors.Join) with "; " so that a
// prefix naming the policy applies to every problem in it.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
