//go:build linux

package robustness

import "syscall"

// sysProcAttr puts a node in its own process group, so that killing the
// group kills whatever it started too, and has the kernel kill it if the
// test process dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
