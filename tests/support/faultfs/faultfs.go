// Package faultfs is a slow, stalling or failing disk for fault-injection
// tests: a FUSE loopback file system that passes every operation through to
// a backing directory and delays, holds or fails the ones a disk makes a
// database wait for, the way Jepsen's LazyFS and CharybdeFS do.
//
// Mount a backing directory on a mount point and point the program under
// test (here: a coordinator's --data-dir) at the mount point. Every fsync and
// fdatasync (and, optionally, every write) then takes at least the latency
// set with SetLatency; Stall makes them block until Release, like a hung
// disk; SetFsyncError makes them fail. The data always lands in the backing
// directory, and survives Unmount.
//
// The mount is done with the mount(2) system call (go-fuse's
// DirectMountStrict), so no fusermount helper is needed, but the caller must
// be allowed to mount (root, or CAP_SYS_ADMIN) and /dev/fuse must exist;
// otherwise Mount fails with an error that matches ErrUnavailable. Kernel
// FUSE passthrough is turned off so that reads and writes reach this process
// and can be delayed. See DESIGN.md.
package faultfs

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"
)

var (
	// ErrUnavailable means FUSE file systems cannot be mounted here: no
	// /dev/fuse, or no permission to mount. Tests skip on it.
	ErrUnavailable = errors.New("faultfs: FUSE unavailable")
	// ErrBusy means Unmount detached the mount, but a process still holds
	// a file open on it, so the file system still serves that file.
	ErrBusy = errors.New("faultfs: still in use after a lazy unmount")
)

// FS is one mounted faultfs. Its methods are safe for concurrent use.
type FS struct {
	backing, mountpoint string
	mount               mount         // the platform's part
	served              chan struct{} // closed when the serve loop returned
	closing             chan struct{} // closed by Unmount: ends every delay and stall

	mu         sync.Mutex
	rng        *rand.Rand
	fsyncDelay time.Duration
	writeDelay time.Duration
	jitter     time.Duration
	fsyncErr   syscall.Errno
	stall      chan struct{} // non-nil while stalled; closed by Release
	stats      Stats

	// Volatile writes (volatile.go). vmu is held for reading by every
	// change to a file and for writing by PowerLoss and SetVolatile; umu
	// guards the records.
	vmu       sync.RWMutex
	volatile  bool
	umu       sync.Mutex
	undo      map[uint64]*undoLog // by backing inode number
	undoBytes int64
	undoLimit int64

	unmountOnce sync.Once
	unmountErr  error // set once by the first Unmount
}

// Stats counts what the file system did since it was mounted.
type Stats struct {
	Fsyncs         int64         // fsync, fdatasync and fsync of a directory, answered
	Writes         int64         // write requests (the kernel splits large writes)
	DelayedFsyncs  int64         // fsyncs that waited for injected latency
	StalledFsyncs  int64         // fsyncs that were held by Stall
	FailedFsyncs   int64         // fsyncs answered with the injected error
	WaitingFsyncs  int64         // fsyncs being held by Stall right now
	MaxFsync       time.Duration // the longest fsync, injected wait included
	InjectedFsyncs time.Duration // the sum of injected waits in fsyncs (latency and stalls)
	PowerLosses    int64         // PowerLoss calls
	RestoredFiles  int64         // files PowerLoss put back to their last fsync
	UndoOverflows  int64         // writes failed because the volatile record was full
}

// Option configures Mount.
type Option func(*options)

type options struct{ seed uint64 }

// WithSeed seeds the jitter, so a test run can be repeated; the default
// seed is random.
func WithSeed(seed uint64) Option { return func(o *options) { o.seed = seed } }

func newFS(backing, mountpoint string, opts []Option) *FS {
	o := options{seed: rand.Uint64()}
	for _, opt := range opts {
		opt(&o)
	}
	return &FS{
		backing:    backing,
		mountpoint: mountpoint,
		served:     make(chan struct{}),
		closing:    make(chan struct{}),
		rng:        rand.New(rand.NewPCG(o.seed, 0xfa17)),
		undo:       map[uint64]*undoLog{},
		undoLimit:  DefaultUndoLimit,
	}
}

// Mountpoint is the directory the file system is mounted on.
func (f *FS) Mountpoint() string { return f.mountpoint }

// BackingDir is the directory that holds the data.
func (f *FS) BackingDir() string { return f.backing }

// SetLatency makes every fsync (and fdatasync, and fsync of a directory)
// from now on wait fsync, and every write wait write, before it is done,
// plus a uniform jitter in [0, jitter) each. Zero durations remove the
// latency. A wait already under way keeps its length.
func (f *FS) SetLatency(fsync, write, jitter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fsyncDelay, f.writeDelay, f.jitter = fsync, write, jitter
}

// SetFsyncError makes every fsync from now on fail with errno, after any
// latency or stall, without syncing; 0 lets them succeed again. (What a
// program does after a failed fsync is the question: the data written
// before it may or may not be durable, and Linux may have dropped the dirty
// pages.)
func (f *FS) SetFsyncError(errno syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fsyncErr = errno
}

// Stall holds every fsync from now on until Release (or Unmount), like a
// disk that stopped answering. Fsyncs in progress are not affected. The
// caller's process blocks in fsync(2); SIGKILL still ends it.
func (f *FS) Stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall == nil {
		f.stall = make(chan struct{})
	}
}

// Release lets every fsync held by Stall go on, and ends the stall.
func (f *FS) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall != nil {
		close(f.stall)
		f.stall = nil
	}
}

// Heal removes every injected fault: no latency, no error, no stall.
func (f *FS) Heal() {
	f.SetLatency(0, 0, 0)
	f.SetFsyncError(0)
	f.Release()
}

// Stats returns the counters so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Unmount releases every held fsync, ends every injected wait and unmounts
// the file system. Calling it again returns the first call's result
// (waiting for it to finish).
//
// A file system that a process still uses (an open file, a working
// directory) is detached lazily (MNT_DETACH): it leaves the mount table at
// once and goes on serving the files already open, without faults, until
// they are closed. Unmount waits a few seconds for that; then, if the
// fusectl file system is mounted, it aborts the connection (the remaining
// calls on those files fail with ENOTCONN); otherwise it returns an error
// matching ErrBusy, and the serve loop ends by itself when the last file is
// closed.
func (f *FS) Unmount() error {
	f.unmountOnce.Do(func() {
		close(f.closing)
		f.Heal()
		f.unmountErr = f.unmount()
	})
	return f.unmountErr
}

// sampleLocked returns d plus its jitter (none if d is zero).
func (f *FS) sampleLocked(d time.Duration) time.Duration {
	if d > 0 && f.jitter > 0 {
		d += time.Duration(f.rng.Int64N(int64(f.jitter)))
	}
	return d
}

// fsync runs sync (the real fsync) after the injected stall and latency,
// or fails it with the injected error.
func (f *FS) fsync(ctx context.Context, sync func() syscall.Errno) syscall.Errno {
	start := time.Now()
	f.mu.Lock()
	stall := f.stall
	if stall != nil {
		f.stats.StalledFsyncs++
		f.stats.WaitingFsyncs++
	}
	f.mu.Unlock()
	errno := syscall.Errno(0)
	if stall != nil {
		select {
		case <-stall:
		case <-f.closing:
		case <-ctx.Done(): // the caller was interrupted (killed)
			errno = syscall.EINTR
		}
		f.mu.Lock()
		f.stats.WaitingFsyncs--
		f.mu.Unlock()
	}
	f.mu.Lock()
	delay := f.sampleLocked(f.fsyncDelay)
	injectErr := f.fsyncErr
	if delay > 0 {
		f.stats.DelayedFsyncs++
	}
	f.mu.Unlock()
	if errno == 0 && !f.wait(ctx, delay) {
		errno = syscall.EINTR
	}
	injected := time.Since(start)
	if errno == 0 {
		if injectErr != 0 {
			errno = injectErr
		} else {
			errno = sync()
		}
	}
	total := time.Since(start)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Fsyncs++
	if injectErr != 0 && errno == injectErr {
		f.stats.FailedFsyncs++
	}
	if stall != nil || delay > 0 {
		f.stats.InjectedFsyncs += injected
	}
	f.stats.MaxFsync = max(f.stats.MaxFsync, total)
	return errno
}

// delayWrite waits the injected write latency; false if interrupted.
func (f *FS) delayWrite(ctx context.Context) bool {
	f.mu.Lock()
	delay := f.sampleLocked(f.writeDelay)
	f.stats.Writes++
	f.mu.Unlock()
	return f.wait(ctx, delay)
}

// wait sleeps d, cut short (true) by Unmount, or (false) by the caller's
// interruption.
func (f *FS) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.closing:
		return true
	case <-ctx.Done():
		return false
	}
}
