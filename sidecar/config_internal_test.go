package sidecar

import (
	"strings"
	"testing"

	"github.com/colonymesh/colony/internal/trust"
)

// TestZeroConfigTakesDefaultConfig: a zero field means DefaultConfig's value,
// so the library, the CLI's flags (which read DefaultConfig) and a program
// that leaves the field unset all get the same default.
func TestZeroConfigTakesDefaultConfig(t *testing.T) {
	var cfg Config
	cfg.withDefaults()
	if cfg.Logger == nil {
		t.Error("withDefaults left Logger nil")
	}
	cfg.Logger = nil
	def := DefaultConfig()
	if cfg.Protocol != def.Protocol || cfg.APIAddr != def.APIAddr || cfg.ReportInterval != def.ReportInterval ||
		cfg.SessionTTL != def.SessionTTL || cfg.DegradedAfter != def.DegradedAfter || cfg.DegradedMode != def.DegradedMode ||
		cfg.ProbeGateAddr != def.ProbeGateAddr || cfg.ProbeGateMaxCalls != def.ProbeGateMaxCalls {
		t.Errorf("zero config with defaults = %+v, want DefaultConfig's %+v", cfg, def)
	}
	// DefaultConfig plus the fields without a default is valid.
	def.Service, def.Instance, def.Coordinators, def.Address = "checkout", "checkout-1", []string{"127.0.0.1:7400"}, "127.0.0.1:8080"
	if err := def.Validate(); err != nil {
		t.Errorf("DefaultConfig with identity and addresses: %v", err)
	}
}

// TestValidateListener: a plaintext local API is allowed on loopback (the
// default) and refused where other hosts can reach it, unless Insecure says
// so; ListenTLS needs the sidecar's certificate.
func TestValidateListener(t *testing.T) {
	for _, tt := range []struct {
		name    string
		addr    string
		tls     bool
		listen  bool
		insec   bool
		wantErr string
	}{
		{"default", "", false, false, false, ""},
		{"loopback v4", "127.0.0.1:7500", false, false, false, ""},
		{"loopback v6", "[::1]:7500", false, false, false, ""},
		{"localhost", "localhost:7500", false, false, false, ""},
		{"every interface", ":7500", false, false, false, "api addr"},
		{"pod address", "10.1.2.3:7500", false, false, false, "api addr"},
		{"pod address, insecure", "10.1.2.3:7500", false, false, true, ""},
		{"certificate but plaintext listener", "0.0.0.0:7500", true, false, false, "api addr"},
		{"listen TLS", "0.0.0.0:7500", true, true, false, ""},
		{"listen TLS without a certificate", "0.0.0.0:7500", false, true, false, "listen TLS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{APIAddr: tt.addr, ListenTLS: tt.listen, Insecure: tt.insec}
			if tt.tls {
				cfg.TLS = &trust.Material{} // only its presence is checked
			}
			err := cfg.validateListener()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("%v, want valid", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("%v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidateProbeGate: the probe gate's address goes to clients as an
// endpoint, so it must be a specific IP; it is plaintext, so loopback unless
// Insecure; its call bound has limits.
func TestValidateProbeGate(t *testing.T) {
	for _, tt := range []struct {
		name     string
		addr     string
		maxCalls int
		insec    bool
		wantErr  string
	}{
		{"default", "", 0, false, ""},
		{"loopback, any port", "127.0.0.1:0", 1, false, ""},
		{"loopback v6", "[::1]:7501", MaxProbeGateMaxCalls, false, ""},
		{"host name", "localhost:7501", 0, false, "probe gate addr"},
		{"every interface", "0.0.0.0:7501", 0, true, "specific IP"},
		{"pod address", "10.1.2.3:7501", 0, false, "not a loopback"},
		{"pod address, insecure", "10.1.2.3:7501", 0, true, ""},
		{"negative bound", "", -1, false, "probe gate max calls"},
		{"bound too large", "", MaxProbeGateMaxCalls + 1, false, "probe gate max calls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{ProbeGateAddr: tt.addr, ProbeGateMaxCalls: tt.maxCalls, Insecure: tt.insec}.validateProbeGate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("%v, want valid", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("%v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}
