package client

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func TestParsePolicyFile(t *testing.T) {
	tests := []struct {
		name string
		file string
		// want is each spec as {callee, policy, callers} with the policies
		// as JSON text; nil when the file is rejected.
		want    []wantSpec
		wantErr string // a fragment of the error
	}{
		{
			name: "yaml",
			file: `# payments and its batch caller
policies:
  - callee: payments
    policy:
      failureRateThreshold: 0.5
      window: 10s
    callers:
      checkout:
        minimumCalls: 50
  - callee: inventory
`,
			want: []wantSpec{
				{"payments", `{"failureRateThreshold":0.5,"window":"10s"}`, map[string]string{"checkout": `{"minimumCalls":50}`}},
				{"inventory", "", nil},
			},
		},
		{
			name: "json",
			file: `{"policies": [{"callee": "payments", "policy": {"consecutiveFailures": 5}}]}`,
			want: []wantSpec{{"payments", `{"consecutiveFailures":5}`, nil}},
		},
		{
			name: "null policy is the default",
			file: "policies:\n  - callee: payments\n    policy:\n",
			want: []wantSpec{{"payments", "", nil}},
		},
		{
			// Policy fields are the coordinator's to check: it names the
			// field at fault (ApplyPolicies).
			name: "policy fields pass through",
			file: "policies:\n  - callee: payments\n    policy:\n      failureRateTreshold: 2\n",
			want: []wantSpec{{"payments", `{"failureRateTreshold":2}`, nil}},
		},
		{name: "unknown top-level key", file: "policy:\n  - callee: payments\n", wantErr: `unknown field "policy"`},
		{name: "unknown key in an entry", file: "policies:\n  - callee: payments\n    polcy: {}\n", wantErr: `unknown field "polcy"`},
		{name: "missing callee", file: "policies:\n  - policy: {window: 10s}\n", wantErr: "policies[0]: callee is required"},
		{name: "empty", file: "", wantErr: "no policies"},
		{name: "empty list", file: "policies: []\n", wantErr: "no policies"},
		{name: "duplicate key", file: "policies:\n  - callee: a\n    callee: b\n", wantErr: "policies file"},
		{name: "not yaml", file: "policies: [\n", wantErr: "policies file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, err := ParsePolicyFile([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePolicyFile = %v, %v; want an error containing %q", specs, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicyFile: %v", err)
			}
			if len(specs) != len(tt.want) {
				t.Fatalf("ParsePolicyFile = %d specs, want %d: %v", len(specs), len(tt.want), specs)
			}
			for i, w := range tt.want {
				w.check(t, specs[i])
			}
		})
	}
}

type wantSpec struct {
	callee  string
	policy  string            // JSON; "" for none
	callers map[string]string // caller -> JSON
}

func (w wantSpec) check(t *testing.T, got *colonyv1.PolicySpec) {
	t.Helper()
	if got.GetCallee() != w.callee {
		t.Errorf("callee = %q, want %q", got.GetCallee(), w.callee)
	}
	if !sameJSON(t, got.GetPolicy(), w.policy) {
		t.Errorf("%s: policy = %s, want %s", w.callee, got.GetPolicy(), w.policy)
	}
	if len(got.GetCallers()) != len(w.callers) {
		t.Errorf("%s: callers = %v, want %v", w.callee, got.GetCallers(), w.callers)
	}
	for c, p := range w.callers {
		if !sameJSON(t, got.GetCallers()[c], p) {
			t.Errorf("%s: callers[%s] = %s, want %s", w.callee, c, got.GetCallers()[c], p)
		}
	}
}

// sameJSON reports whether got holds the JSON value want ("": no data).
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	if want == "" || len(got) == 0 {
		return want == "" && len(got) == 0
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("not JSON: %s: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad test JSON %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
