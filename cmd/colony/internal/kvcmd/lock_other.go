//go:build !unix

package kvcmd

import (
	"os"
	"syscall"
)

// childSysProcAttr: without process groups, the command runs as a plain child.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup signals the command itself; SIGKILL kills it.
func signalGroup(p *os.Process, sig os.Signal) error {
	if sig == syscall.SIGKILL {
		return p.Kill()
	}
	return p.Signal(sig)
}
