//go:build unix && !linux

package robustness

import "syscall"

// sysProcAttr puts a node in its own process group, so that killing the
// group kills whatever it started too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
