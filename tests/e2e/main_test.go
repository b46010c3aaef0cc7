//go:build unix

package e2e

import (
	"os"
	"testing"

	"github.com/colonymesh/colony/tests/framework"
)

// colonyBin is the colony binary the tests run, set by TestMain.
var colonyBin string

func TestMain(m *testing.M) {
	os.Exit(framework.RunSuite(m, "e2e", &colonyBin))
}
