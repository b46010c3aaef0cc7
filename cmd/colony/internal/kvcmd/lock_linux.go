package kvcmd

import "syscall"

// childSysProcAttr starts the command of `colony lock` in its own process
// group, so that it and everything it started can be signalled together, and
// has the kernel kill it if colony dies (it would otherwise run on without
// the lock).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
