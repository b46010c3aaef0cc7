//go:build race

package robustness

// raceEnabled: the tests run with -race, so the servers are built with it too.
const raceEnabled = true
