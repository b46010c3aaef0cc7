//go:build race

package deploy_test

// raceEnabled: the tests run with -race. The colony binary they parse
// command lines with is built with it too, so it reuses the packages go test
// has just compiled instead of compiling the whole tree a second time.
const raceEnabled = true
