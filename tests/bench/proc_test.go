package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/colonymesh/colony/tests/framework"
)

// buildDir holds the colony binary built for this run; TestMain removes it.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// colonyBinary builds ./cmd/colony once per test binary into a temp dir
// (COLONY_BIN, when set, names a prebuilt binary to use instead).
func colonyBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("COLONY_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		var err error
		buildDir, err = os.MkdirTemp("", "colony-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		bin := filepath.Join(buildDir, "colony")
		// Never with -race: the benchmarks measure the server as shipped.
		if buildErr = framework.BuildColony(bin, false); buildErr == nil {
			buildBin = bin
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildBin
}

// proc is one server process, in its own process group, its output in a
// log file. Stop (or the test's cleanup) ends the whole group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done closes
	once    sync.Once
}

// startProc starts bin with args, output to logPath, and registers its stop
// with tb.Cleanup.
func startProc(tb testing.TB, name, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so that stop reaches every child; SIGKILL if this
	// test binary dies without running its cleanups.
	cmd.SysProcAttr = framework.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() { p.stop(5 * time.Second) })
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to p's process group.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// stop sends SIGTERM to the group, waits up to grace, then SIGKILLs it.
func (p *proc) stop(grace time.Duration) {
	p.once.Do(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		// No group kill once the process is reaped: its pid (and so the
		// group id) may already belong to someone else. The servers start no
		// children of their own.
	})
}

// stopAll stops procs concurrently (a colony leader hands leadership over on
// SIGTERM; stopping the members one by one would make each wait for that).
func stopAll(ps []*proc, grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(grace) }()
	}
	wg.Wait()
}

func describeExit(ps []*proc) error {
	var errs []error
	for _, p := range ps {
		if p != nil && p.exited() {
			errs = append(errs, fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, p.err, framework.LogTail(p.logPath, 20)))
		}
	}
	return errors.Join(errs...)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) { return framework.FreePorts("127.0.0.1", n) }

// portsFree reports whether every port can be bound on 127.0.0.1 now.
func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// retryStart runs start up to 3 times: a port picked free may be taken by
// someone else before the server binds it.
func retryStart[T any](tb testing.TB, what string, start func(attempt int) (T, error)) T {
	tb.Helper()
	var errs []error
	for attempt := range 3 {
		v, err := start(attempt)
		if err == nil {
			return v
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt+1, err))
	}
	var zero T
	tb.Fatalf("starting %s: %v", what, errors.Join(errs...))
	return zero
}

// cpuTime returns the user+system CPU time p's process has used so far
// (from /proc/PID/stat; 0 once it has exited).
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses;
	// utime and stime are fields 14 and 15, in clock ticks (100 Hz on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU returns this process's (the benchmark clients') CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU the servers and this process use over a run: on
// a 2-core machine the benchmark clients compete with the servers for CPU,
// so it is worth seeing who used how much.
type cpuMeter struct {
	procs       []*proc
	srv0, self0 time.Duration
}

func startCPUMeter(procs []*proc) *cpuMeter {
	m := &cpuMeter{procs: procs, self0: selfCPU()}
	for _, p := range procs {
		m.srv0 += p.cpuTime()
	}
	return m
}

// report adds per-write CPU metrics: servers (all members) and clients.
func (m *cpuMeter) report(b *testing.B, writes int) {
	var srv time.Duration
	for _, p := range m.procs {
		srv += p.cpuTime()
	}
	srv -= m.srv0
	self := selfCPU() - m.self0
	if writes > 0 {
		b.ReportMetric(float64(srv.Microseconds())/float64(writes), "srv-cpu-us/write")
		b.ReportMetric(float64(self.Microseconds())/float64(writes), "cli-cpu-us/write")
	}
}
