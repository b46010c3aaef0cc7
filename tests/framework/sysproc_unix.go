//go:build unix && !linux

package framework

import "syscall"

// SysProcAttr puts a process in its own process group, so that killing the
// group kills whatever it started too.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
