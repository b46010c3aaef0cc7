//go:build unix

package kvcmd

import (
	"os"
	"syscall"
)

// signalGroup sends sig to the process group that childSysProcAttr made p
// the leader of, or to p alone if there is no such group.
func signalGroup(p *os.Process, sig os.Signal) error {
	if s, ok := sig.(syscall.Signal); ok && syscall.Kill(-p.Pid, s) == nil {
		return nil
	}
	return p.Signal(sig)
}
