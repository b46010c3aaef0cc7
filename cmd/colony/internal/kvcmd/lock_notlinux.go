//go:build unix && !linux

package kvcmd

import "syscall"

// childSysProcAttr starts the command of `colony lock` in its own process
// group, so that it and everything it started can be signalled together.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
