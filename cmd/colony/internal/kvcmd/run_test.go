package kvcmd

import (
	"os"
	"testing"

	"github.com/colonymesh/colony/cmd/colony/internal/clitest"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

// testColony runs command lines on a root with this package's groups.
var testColony = clitest.NewColony(NewKVCmd, NewSessionCmd, NewLockCmd, NewElectCmd)

var (
	colony    = testColony.Run
	runColony = testColony.RunWith
)

type syncBuffer = clitest.SyncBuffer

var (
	startTestCoordinator = clitest.StartCoordinator
	waitFor              = clitest.WaitFor
)
