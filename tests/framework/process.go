//go:build unix

package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Bounds on how long the framework waits for processes. They only keep a
// broken run from hanging; nothing asserts how fast things are.
const (
	StartTimeout = 30 * time.Second // a process to serve gRPC
	ExitTimeout  = 20 * time.Second // a process to exit after a signal
)

// Process is one run of a binary, in a process group of its own, its output
// appended to a log file. Its Wait runs in a goroutine that ends when the
// process has exited.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, set before done is closed
}

// StartProcess runs bin with args in a process group of its own, appending
// its output to logPath between two marker lines that name suite. ctx
// ending kills it (and its group).
func StartProcess(ctx context.Context, suite, bin string, args []string, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "=== %s %s: starting %s %s\n", suite, time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = SysProcAttr()
	p := &Process{cmd: cmd, done: make(chan struct{})}
	cmd.Cancel = p.Kill
	cmd.WaitDelay = ExitTimeout
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== %s %s: process exited: %v\n", suite, time.Now().Format(time.RFC3339Nano), ExitDescription(cmd, p.err))
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// ExitDescription says how a command's process ended: its exit status or
// signal, or err when it has none.
func ExitDescription(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return fmt.Sprint(err)
}

// Done is closed once the process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is Wait's result; it is set once Done is closed.
func (p *Process) Err() error { return p.err }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Describe says how the process ended (see ExitDescription).
func (p *Process) Describe() string { return ExitDescription(p.cmd, p.err) }

// Exited reports whether the process has exited and been waited for.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the process and its process group. The process is
// signalled through os.Process (a pidfd on Linux, safe against pid reuse);
// the group only while the process has not been waited for, because once it
// has, its pid (and so the group id) may belong to another process already.
func (p *Process) Kill() error {
	err := p.cmd.Process.Kill()
	if !p.Exited() {
		if gerr := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); gerr != nil && !errors.Is(gerr, syscall.ESRCH) {
			return gerr
		}
	}
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Signal sends sig to the running process, unless it has exited.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("process exited: %v", p.Describe())
	}
	return p.cmd.Process.Signal(sig)
}

// WaitExit waits up to d for the process to exit, and reports whether it
// did.
func (p *Process) WaitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}
