//go:build !race

package robustness

// raceEnabled: the tests run without -race, so the servers are built without it.
const raceEnabled = false
