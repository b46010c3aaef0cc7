//go:build linux

package framework

import "syscall"

// SysProcAttr puts a process in its own process group, so that killing the
// group kills whatever it started too, and has the kernel kill it if the
// test process dies without cleaning up.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
