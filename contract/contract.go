// Package contract is the data contract between Colony's parts: where in
// the coordinator's tree each kind of record lives, the records more than one
// part reads or writes, and the limits every part applies the same way.
//
// The coordinator's breaker engine writes under BreakersRoot, PoliciesRoot
// and HistoryRoot (the Tree API refuses anyone else's writes there);
// sidecars register their instances under ServicesRoot and watch the
// breakers and policies; the dashboard and the CLI read all four. The
// records at the breaker paths are the breaker package's (breaker.PairRecord,
// breaker.PolicySet, breaker.HistoryEntry), stored as JSON; the one record
// that is not a breaker's, an instance's Registration, is here.
//
// This package imports nothing of Colony's, so any part may import it.
package contract

import "path"

// Root is the parent of every path Colony itself writes.
const Root = "/colony"

// The engine's and the registry's subtrees.
const (
	// BreakersRoot holds one breaker.PairRecord per pair at
	// <BreakersRoot>/<caller>/<callee>. Only the engine writes it.
	BreakersRoot = Root + "/breakers"
	// PoliciesRoot holds one breaker.PolicySet per callee at
	// <PoliciesRoot>/<callee>. Only the engine writes it.
	PoliciesRoot = Root + "/policies"
	// HistoryRoot holds each pair's transitions, breaker.HistoryEntry, at
	// <HistoryRoot>/<caller>/<callee>/h-<sequence>. Only the engine writes it.
	HistoryRoot = Root + "/history"
	// ServicesRoot holds one Registration per running instance at
	// <ServicesRoot>/<service>/<instance>, an ephemeral node of the
	// registering sidecar's session.
	ServicesRoot = Root + "/services"
)

// WellKnownDirs are the directories the leader's breaker engine creates,
// parents first, when its term starts: registrations and policies go under
// them.
var WellKnownDirs = [...]string{Root, BreakersRoot, PoliciesRoot, HistoryRoot, ServicesRoot}

// EngineRoots are the subtrees only the breaker engine writes.
var EngineRoots = [...]string{BreakersRoot, PoliciesRoot, HistoryRoot}

// BreakerPath is where the record of caller -> callee lives.
func BreakerPath(caller, callee string) string { return path.Join(BreakersRoot, caller, callee) }

// CallerBreakers is the directory of every pair whose caller is caller: a
// sidecar of that service watches it.
func CallerBreakers(caller string) string { return path.Join(BreakersRoot, caller) }

// PolicyPath is where callee's policy set lives.
func PolicyPath(callee string) string { return path.Join(PoliciesRoot, callee) }

// HistoryDir is the directory of caller -> callee's history entries.
func HistoryDir(caller, callee string) string { return path.Join(HistoryRoot, caller, callee) }

// ServiceDir is the directory of service's registered instances.
func ServiceDir(service string) string { return path.Join(ServicesRoot, service) }

// RegistrationPath is where instance of service registers.
func RegistrationPath(service, instance string) string {
	return path.Join(ServicesRoot, service, instance)
}

// Registration is what a sidecar writes at RegistrationPath (an ephemeral
// node of its session): how to reach the instance. It is JSON in the tree.
type Registration struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Address  string `json:"address"` // host of the service's own listener
	Port     int    `json:"port"`
	Zone     string `json:"zone,omitempty"`
	// Protocol is "grpc" or "http": what callers speak to it.
	Protocol string `json:"protocol"`
	// XDSNode is the node id its Envoy and proxyless clients use.
	XDSNode string `json:"xdsNode,omitempty"`
	// Sidecar is the sidecar's local API address.
	Sidecar string `json:"sidecar,omitempty"`
}

// Limits every part applies alike: a sender splits its work to fit them, a
// receiver refuses more with InvalidArgument naming the field and the limit.
const (
	// MaxOutcomesPerReport is the most outcome entries (one per pair) in one
	// report: a coordinator's Breakers.Report, a sidecar's Report API.
	// Sidecars and the guard send larger batches in several calls.
	MaxOutcomesPerReport = 1000
	// MaxPoliciesPerCall is the most callees one SetPolicies call may name.
	MaxPoliciesPerCall = 1000
)
