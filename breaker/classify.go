package breaker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CallKind says what a Call's Code means.
type CallKind uint8

const (
	// CallHTTP is a call that got an HTTP response; Code is its status.
	CallHTTP CallKind = iota + 1
	// CallGRPC is a call that ended with a gRPC status; Code is its number
	// (0 OK .. 16 UNAUTHENTICATED).
	CallGRPC
	// CallTimeout is a call the caller (or its proxy) gave up on: no
	// response within its deadline.
	CallTimeout
	// CallConnectionError is a call that failed to connect, or whose
	// connection was reset or refused, before any response.
	CallConnectionError
	// CallRejected is a call the breaker itself turned away (Envoy's fault
	// abort on OPEN, or HALF_OPEN without a permit).
	CallRejected
)

// Call is the raw result of one call, as a sidecar (from Envoy's access log)
// or a proxyless client sees it.
type Call struct {
	Kind     CallKind
	Code     int           // HTTP status or gRPC code number; unused for the other kinds
	Duration time.Duration // from request start to the end of the response (or the error)
}

// Outcome is how a call counts.
type Outcome uint8

const (
	// Success counts towards the calls, not the failures.
	Success Outcome = iota + 1
	// Failure counts towards the calls and the failures.
	Failure
	// Excluded counts neither way (a client-side cancel, a 4xx you chose to ignore).
	Excluded
	// Rejected is the breaker's own rejection; it counts neither way.
	Rejected
)

// String returns success, failure, excluded or rejected.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Excluded:
		return "excluded"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Verdict is a classified call: its Outcome and whether it was slow. Only
// successes and failures can be slow.
type Verdict struct {
	Outcome Outcome
	Slow    bool
}

// Classification says which calls are failures and which count neither way.
// Any call it does not name is a success. For HTTP a single code overrides
// a class ("5xx" failures with "501" excluded counts every 5xx but 501;
// "4xx" excluded with "429" a failure counts 429); a code or class listed
// both ways is excluded. The zero value counts only timeouts and connection
// errors as failures.
type Classification struct {
	// HTTPFailures lists HTTP statuses that are failures: classes ("5xx")
	// or single codes ("429"). An HTTP status outside 100..599 is always a
	// failure (a broken response).
	HTTPFailures []string `json:"httpFailures,omitempty" yaml:"httpFailures,omitempty"`
	// HTTPExcluded lists HTTP statuses that count neither way, same syntax.
	HTTPExcluded []string `json:"httpExcluded,omitempty" yaml:"httpExcluded,omitempty"`
	// GRPCFailures lists gRPC codes that are failures, by name:
	// "UNAVAILABLE", "DEADLINE_EXCEEDED" (grpc-go's "DeadlineExceeded" also
	// parses). A code number above 16 is treated as UNKNOWN.
	GRPCFailures []string `json:"grpcFailures,omitempty" yaml:"grpcFailures,omitempty"`
	// GRPCExcluded lists gRPC codes that count neither way.
	GRPCExcluded []string `json:"grpcExcluded,omitempty" yaml:"grpcExcluded,omitempty"`
	// ExcludeTimeouts makes timeouts count neither way; false (the zero
	// value) counts them as failures.
	ExcludeTimeouts bool `json:"excludeTimeouts,omitempty" yaml:"excludeTimeouts,omitempty"`
	// ExcludeConnectionErrors makes connection errors count neither way;
	// false (the zero value) counts them as failures.
	ExcludeConnectionErrors bool `json:"excludeConnectionErrors,omitempty" yaml:"excludeConnectionErrors,omitempty"`
}

// grpcCodes are the canonical gRPC status code names, indexed by number.
var grpcCodes = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

const grpcUnknown = 2

// GRPCCode returns the number of a gRPC status code name. It accepts the
// canonical names (DEADLINE_EXCEEDED) and grpc-go's (DeadlineExceeded, Canceled).
func GRPCCode(name string) (int, bool) {
	n := strings.ToUpper(strings.ReplaceAll(name, "_", ""))
	if n == "CANCELED" {
		n = "CANCELLED"
	}
	for i, c := range grpcCodes {
		if strings.ReplaceAll(c, "_", "") == n {
			return i, true
		}
	}
	return 0, false
}

// parseHTTP returns the inclusive status range a spec names.
func parseHTTP(spec string) (lo, hi int, ok bool) {
	s := strings.ToLower(strings.TrimSpace(spec))
	if len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5' {
		lo = int(s[0]-'0') * 100
		return lo, lo + 99, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, 0, false
	}
	return n, n, true
}

// Validate reports every unparsable entry, naming its list and index.
func (c Classification) Validate() error {
	var errs []error
	for _, l := range []struct {
		name  string
		specs []string
	}{{"httpFailures", c.HTTPFailures}, {"httpExcluded", c.HTTPExcluded}} {
		for i, s := range l.specs {
			if _, _, ok := parseHTTP(s); !ok {
				errs = append(errs, fmt.Errorf("classification.%s[%d]: %q is not an HTTP status (100..599) or class (1xx..5xx)", l.name, i, s))
			}
		}
	}
	for _, l := range []struct {
		name  string
		specs []string
	}{{"grpcFailures", c.GRPCFailures}, {"grpcExcluded", c.GRPCExcluded}} {
		for i, s := range l.specs {
			if _, ok := GRPCCode(s); !ok {
				errs = append(errs, fmt.Errorf("classification.%s[%d]: %q is not a gRPC status code name (e.g. UNAVAILABLE)", l.name, i, s))
			}
		}
	}
	return errors.Join(errs...)
}

// Classifier turns Calls into Verdicts. Build it once per policy with
// NewClassifier; Classify is a table lookup, cheap enough for every call.
// It is immutable and safe for concurrent use.
type Classifier struct {
	http     [600]Outcome
	grpc     [len(grpcCodes)]Outcome
	timeout  Outcome
	connErr  Outcome
	slowOver time.Duration
}

// NewClassifier compiles c. A call longer than slowCallDuration is slow;
// zero means no call is slow.
func NewClassifier(c Classification, slowCallDuration time.Duration) (*Classifier, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	k := &Classifier{timeout: Failure, connErr: Failure, slowOver: slowCallDuration}
	for i := range k.http {
		k.http[i] = Success
	}
	for i := range k.grpc {
		k.grpc[i] = Success
	}
	// Classes first, then single codes, so the more specific entry wins;
	// at equal specificity exclusion wins (it is marked last).
	markHTTP := func(specs []string, o Outcome, classes bool) {
		for _, s := range specs {
			lo, hi, _ := parseHTTP(s)
			if (hi > lo) != classes {
				continue
			}
			for code := lo; code <= hi; code++ {
				k.http[code] = o
			}
		}
	}
	markGRPC := func(names []string, o Outcome) {
		for _, n := range names {
			code, _ := GRPCCode(n)
			k.grpc[code] = o
		}
	}
	markHTTP(c.HTTPFailures, Failure, true)
	markHTTP(c.HTTPExcluded, Excluded, true)
	markHTTP(c.HTTPFailures, Failure, false)
	markHTTP(c.HTTPExcluded, Excluded, false)
	markGRPC(c.GRPCFailures, Failure)
	markGRPC(c.GRPCExcluded, Excluded)
	if c.ExcludeTimeouts {
		k.timeout = Excluded
	}
	if c.ExcludeConnectionErrors {
		k.connErr = Excluded
	}
	return k, nil
}

// Classify returns how call counts. A call of an unknown kind is Excluded:
// data the classifier does not understand never trips a breaker.
func (k *Classifier) Classify(call Call) Verdict {
	var o Outcome
	switch call.Kind {
	case CallHTTP:
		if call.Code < 100 || call.Code > 599 {
			o = Failure
		} else {
			o = k.http[call.Code]
		}
	case CallGRPC:
		code := call.Code
		if code < 0 || code >= len(k.grpc) {
			code = grpcUnknown
		}
		o = k.grpc[code]
	case CallTimeout:
		o = k.timeout
	case CallConnectionError:
		o = k.connErr
	case CallRejected:
		return Verdict{Outcome: Rejected}
	default:
		return Verdict{Outcome: Excluded}
	}
	slow := (o == Success || o == Failure) && k.slowOver > 0 && call.Duration > k.slowOver
	return Verdict{Outcome: o, Slow: slow}
}
