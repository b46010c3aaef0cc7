//go:build !race

package deploy_test

// raceEnabled: the tests run without -race, and so does the colony binary.
const raceEnabled = false
