//go:build race

package framework

// RaceEnabled: the tests run with -race, so the servers are built with it too.
const RaceEnabled = true
