package raftlog

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// eintrFS is the file system pebble writes the log through, with every sync
// a signal interrupts tried again.
//
// pebble syncs with fdatasync and sync_file_range called directly
// (golang.org/x/sys/unix), which, unlike os.File.Sync, hand EINTR back to
// the caller, and pebble takes any failed sync as fatal. A local disk's
// fdatasync does not return EINTR, but one on FUSE or NFS does when a signal
// reaches the waiting thread, and the Go runtime signals its threads all
// the time (SIGURG, to preempt goroutines): a node with its data on such a
// mount exited on an fsync that had only been interrupted (the robustness
// harness's faultfs mount caught it). Retrying is what os.File.Sync does: a
// sync that returns success covers every write before it, whatever became
// of the interrupted one. Any other error is returned at once, EIO above all
// (retrying a failed fsync can report success for writes the kernel
// dropped).
type eintrFS struct{ vfs.FS }

// Unwrap is the file system underneath (vfs.Root).
func (fs eintrFS) Unwrap() vfs.FS { return fs.FS }

func (fs eintrFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return eintrWrap(fs.FS.Create(name, c))
}

func (fs eintrFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return eintrWrap(fs.FS.Open(name, opts...))
}

func (fs eintrFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return eintrWrap(fs.FS.OpenReadWrite(name, c, opts...))
}

func (fs eintrFS) OpenDir(name string) (vfs.File, error) {
	return eintrWrap(fs.FS.OpenDir(name))
}

func (fs eintrFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return eintrWrap(fs.FS.ReuseForWrite(oldname, newname, c))
}

func eintrWrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return eintrFile{f}, nil
}

// eintrFile is a file whose syncs are retried on EINTR.
type eintrFile struct{ vfs.File }

func (f eintrFile) Sync() error { return retryEINTR(f.File.Sync) }

func (f eintrFile) SyncData() error { return retryEINTR(f.File.SyncData) }

func (f eintrFile) SyncTo(offset int64) (fullSync bool, err error) {
	for {
		fullSync, err = f.File.SyncTo(offset)
		if !errors.Is(err, syscall.EINTR) {
			return fullSync, err
		}
	}
}

func retryEINTR(sync func() error) error {
	for {
		if err := sync(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
