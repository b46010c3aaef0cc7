package breaker

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// The documents below are what the coordinator's breaker engine stores in the
// tree, as JSON:
//
//	/colony/policies/<callee>                 PolicySet
//	/colony/breakers/<caller>/<callee>        PairRecord
//	/colony/history/<caller>/<callee>/h-<seq> HistoryEntry
//
// Sidecars, the CLI and the dashboard decode them with these types.

// MaxServiceNameLen bounds a service name, in bytes.
const MaxServiceNameLen = 128

// ErrInvalidName is returned for a service or instance name that cannot name
// a pair or a caller instance.
var ErrInvalidName = errors.New("breaker: invalid name")

// ValidateServiceName checks that name can name a caller or callee service:
// 1..128 bytes of ASCII letters, digits, '.', '_' and '-', starting with a
// letter or digit. It becomes one path component of the pair's znode.
func ValidateServiceName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty service name", ErrInvalidName)
	}
	if len(name) > MaxServiceNameLen {
		return fmt.Errorf("%w: service name of %d bytes, the limit is %d", ErrInvalidName, len(name), MaxServiceNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Errorf("%w: service name %q: byte %d (%q) is not allowed (letters, digits, '.', '_', '-'; a letter or digit first)", ErrInvalidName, name, i, c)
	}
	return nil
}

// ValidateInstanceID checks that id can name a caller instance: 1..256
// printable ASCII bytes other than '/' (it is a znode name under
// /colony/services/<service>/ when the instance registers).
func ValidateInstanceID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty instance id", ErrInvalidInstance)
	}
	if len(id) > MaxInstanceIDLen {
		return fmt.Errorf("%w: instance id of %d bytes, the limit is %d", ErrInvalidInstance, len(id), MaxInstanceIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: instance id %q", ErrInvalidInstance, id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return fmt.Errorf("%w: instance id %q: byte %d is not allowed (printable ASCII other than space and '/')", ErrInvalidInstance, id, i)
		}
	}
	return nil
}

// OverrideMode is a manual override of a pair's breaker.
type OverrideMode string

const (
	// ForceOpen rejects every call; the breaker is not evaluated.
	ForceOpen OverrideMode = "force-open"
	// ForceClosed lets every call through; the breaker is not evaluated.
	ForceClosed OverrideMode = "force-closed"
	// Disabled lets every call through and ignores reports: the pair never
	// trips. Mechanically the same as ForceClosed; it says "this pair is not
	// protected" rather than "an operator closed it for now" (resilience4j's
	// DISABLED state).
	Disabled OverrideMode = "disabled"
	// Shadow evaluates the policy and records what the breaker would do, in
	// PairRecord.Shadow and the history, while callers keep enforcing
	// CLOSED (resilience4j's METRICS_ONLY).
	Shadow OverrideMode = "shadow"
)

// ParseOverrideMode accepts the modes' names, and "force-close" for
// ForceClosed.
func ParseOverrideMode(s string) (OverrideMode, error) {
	switch m := OverrideMode(s); m {
	case ForceOpen, ForceClosed, Disabled, Shadow:
		return m, nil
	case "force-close":
		return ForceClosed, nil
	}
	return "", fmt.Errorf("breaker: unknown override mode %q (want force-open, force-closed, disabled or shadow)", s)
}

// Enforced returns the state callers enforce under the override.
func (m OverrideMode) Enforced() State {
	if m == ForceOpen {
		return Open
	}
	return Closed
}

// Limits on an override's free text.
const (
	MaxReasonLen = 1024
	MaxByLen     = 256
)

// Override is a manual override of one pair, as stored in its record.
type Override struct {
	Mode   OverrideMode `json:"mode"`
	Reason string       `json:"reason"`
	By     string       `json:"by,omitempty"`
	At     time.Time    `json:"at"`
	// Until is when the override ends by itself; zero: when cleared.
	Until time.Time `json:"until,omitzero"`
}

// Validate checks the override's mode and text.
func (o Override) Validate() error {
	var errs []error
	if _, err := ParseOverrideMode(string(o.Mode)); err != nil {
		errs = append(errs, fmt.Errorf("mode: %w", err))
	}
	if o.Reason == "" {
		errs = append(errs, errors.New("reason: required (say why, for the audit trail)"))
	}
	if len(o.Reason) > MaxReasonLen {
		errs = append(errs, fmt.Errorf("reason: %d bytes, the limit is %d", len(o.Reason), MaxReasonLen))
	}
	if len(o.By) > MaxByLen {
		errs = append(errs, fmt.Errorf("by: %d bytes, the limit is %d", len(o.By), MaxByLen))
	}
	if !o.Until.IsZero() && !o.Until.After(o.At) {
		errs = append(errs, errors.New("until: must be after the override starts"))
	}
	return errors.Join(errs...)
}

// PairRecord is the shared breaker record of one caller -> callee pair: the
// content of /colony/breakers/<caller>/<callee>. The embedded Record is what
// callers enforce; its Generation increases with every change they must
// apply (a transition, an override set or cleared).
type PairRecord struct {
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	Record
	// Cause is why the enforced state last changed: a Condition, or
	// "override", "cleared", "expired", "created".
	Cause string `json:"cause,omitempty"`
	// Override is the manual override in force, if any.
	Override *Override `json:"override,omitempty"`
	// Shadow is, in Shadow mode, the breaker's own record: what it would
	// enforce.
	Shadow *Record `json:"shadow,omitempty"`
	// PolicyVersion is the version of /colony/policies/<callee> the engine
	// last evaluated with; -1 for the default policy.
	PolicyVersion int64 `json:"policyVersion"`
	// Traceparent is the W3C trace context of the write that stored this
	// record (the coordinator's colony.breaker.apply span), empty when the
	// coordinator does not trace. A sidecar starts its spans for the change
	// (watch delivery, xDS push, ACK) as its children, so one trace runs
	// from the reports that tripped the pair to every caller enforcing it.
	Traceparent string `json:"traceparent,omitempty"`
}

// Clone returns a deep copy.
func (r PairRecord) Clone() PairRecord {
	r.Record = r.Record.clone()
	if r.Override != nil {
		o := *r.Override
		r.Override = &o
	}
	if r.Shadow != nil {
		s := r.Shadow.clone()
		r.Shadow = &s
	}
	return r
}

func (r Record) clone() Record {
	r.Probes = maps.Clone(r.Probes)
	return r
}

// HistoryKind says what a HistoryEntry records.
type HistoryKind string

const (
	// HistoryTransition is a state change the breaker decided (enforced, or
	// only recorded in shadow mode when Shadow is set).
	HistoryTransition HistoryKind = "transition"
	// HistoryProbes is a HALF_OPEN probe reassignment.
	HistoryProbes HistoryKind = "probes"
	// HistoryOverride is a manual override set.
	HistoryOverride HistoryKind = "override"
	// HistoryCleared is a manual override cleared by an operator.
	HistoryCleared HistoryKind = "cleared"
	// HistoryExpired is a manual override that reached its Until.
	HistoryExpired HistoryKind = "expired"
)

// HistoryEntry is one entry of a pair's audit trail, under
// /colony/history/<caller>/<callee>/. The engine keeps the newest 200.
type HistoryEntry struct {
	At         time.Time   `json:"at"`
	Kind       HistoryKind `json:"kind"`
	From       State       `json:"from"`
	To         State       `json:"to"`
	Generation uint64      `json:"generation"`
	// Cause is the Condition of a transition.
	Cause string `json:"cause,omitempty"`
	// Shadow marks a transition that was only recorded: the pair was in
	// shadow mode and callers kept enforcing CLOSED.
	Shadow    bool           `json:"shadow,omitempty"`
	OpenUntil time.Time      `json:"openUntil,omitzero"`
	Probes    map[string]int `json:"probes,omitempty"`
	Evidence  *Evidence      `json:"evidence,omitempty"`
	// Override is the override set (HistoryOverride) or removed
	// (HistoryCleared, HistoryExpired).
	Override *Override `json:"override,omitempty"`
	// By and Reason say who cleared an override and why.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// PolicySet is the content of /colony/policies/<callee>: the policy for calls
// to the callee and, optionally, per-caller policies that replace it for
// those callers. Policies are stored resolved (every field set).
type PolicySet struct {
	Callee  string            `json:"callee"`
	Policy  Policy            `json:"policy"`
	Callers map[string]Policy `json:"callers,omitempty"`
	By      string            `json:"by,omitempty"`
	At      time.Time         `json:"at,omitzero"`
}

// For returns the policy for calls from caller.
func (ps PolicySet) For(caller string) Policy {
	if p, ok := ps.Callers[caller]; ok {
		return p
	}
	return ps.Policy
}

// Validate checks the names and every policy, naming the one at fault.
func (ps PolicySet) Validate() error {
	var errs []error
	if err := ValidateServiceName(ps.Callee); err != nil {
		errs = append(errs, fmt.Errorf("callee: %w", err))
	}
	if err := ps.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	for caller, p := range ps.Callers {
		if err := ValidateServiceName(caller); err != nil {
			errs = append(errs, fmt.Errorf("callers[%q]: %w", caller, err))
			continue
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("callers[%q]: %w", caller, err))
		}
	}
	return errors.Join(errs...)
}
