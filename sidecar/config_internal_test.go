package sidecar

import (
	"testing"
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
		cfg.SessionTTL != def.SessionTTL || cfg.DegradedAfter != def.DegradedAfter || cfg.DegradedMode != def.DegradedMode {
		t.Errorf("zero config with defaults = %+v, want DefaultConfig's %+v", cfg, def)
	}
	// DefaultConfig plus the fields without a default is valid.
	def.Service, def.Instance, def.Coordinators, def.Address = "checkout", "checkout-1", []string{"127.0.0.1:7400"}, "127.0.0.1:8080"
	if err := def.Validate(); err != nil {
		t.Errorf("DefaultConfig with identity and addresses: %v", err)
	}
}
