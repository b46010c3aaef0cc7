//go:build unix

package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/colonymesh/colony/tests/framework"
)

// startDev runs `colony dev` (with its demo mesh) on free loopback ports,
// its data in dataDir and its log beside it, as a user does, and stops it
// with SIGTERM when the test ends, failing the test if it does not exit or
// logged an error. It returns dev's gRPC address and its process.
func startDev(t *testing.T, dataDir string) (grpcAddr string, p *framework.Process) {
	t.Helper()
	ports, err := framework.FreePorts("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	logPath := dataDir + ".log"
	procCtx, kill := context.WithCancel(context.Background())
	p, err = framework.StartProcess(procCtx, "e2e", colonyBin, []string{"dev", "--data-dir", dataDir,
		"--grpc-addr", grpcAddr, "--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--ui-addr", "off"}, logPath)
	if err != nil {
		kill()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGTERM)
		if !p.WaitExit(exitTimeout) {
			t.Errorf("colony dev did not exit within %v of SIGTERM", exitTimeout)
		}
		kill()
		<-p.Done()
		framework.CheckServerLog(t, "colony dev", logPath)
		if t.Failed() {
			t.Logf("--- colony dev: last %d lines ---\n%s", logTailLines, framework.LogTail(logPath, logTailLines))
		}
	})
	return grpcAddr, p
}
