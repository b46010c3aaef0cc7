package contract

import (
	"encoding/json"
	"testing"
)

// A registration is read by other versions of sidecars, the dashboard and
// the CLI: its JSON keys are part of the contract.
func TestRegistrationJSONKeys(t *testing.T) {
	b, err := json.Marshal(Registration{Service: "payments", Instance: "p1", Address: "10.0.0.7", Port: 50051,
		Zone: "a", Protocol: "grpc", XDSNode: "payments/p1", Sidecar: "127.0.0.1:7500"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"service":"payments","instance":"p1","address":"10.0.0.7","port":50051,"zone":"a","protocol":"grpc","xdsNode":"payments/p1","sidecar":"127.0.0.1:7500"}`
	if string(b) != want {
		t.Errorf("Registration as JSON:\n got %s\nwant %s", b, want)
	}
}

// The engine's paths and the registry's are what sidecars watch and the
// Tree API guards: they must not move.
func TestPaths(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{BreakerPath("checkout", "payments"), "/colony/breakers/checkout/payments"},
		{CallerBreakers("checkout"), "/colony/breakers/checkout"},
		{PolicyPath("payments"), "/colony/policies/payments"},
		{HistoryDir("checkout", "payments"), "/colony/history/checkout/payments"},
		{ServiceDir("payments"), "/colony/services/payments"},
		{RegistrationPath("payments", "p1"), "/colony/services/payments/p1"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
