//go:build !race

package framework

// RaceEnabled: the tests run without -race, so the servers are built without it.
const RaceEnabled = false
