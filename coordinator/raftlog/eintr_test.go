package raftlog

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// interruptedFile fails its syncs with the errors queued, then succeeds.
type interruptedFile struct {
	vfs.File
	errs  []error
	calls int
}

func (f *interruptedFile) next() error {
	f.calls++
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}

func (f *interruptedFile) Sync() error                { return f.next() }
func (f *interruptedFile) SyncData() error            { return f.next() }
func (f *interruptedFile) SyncTo(int64) (bool, error) { return true, f.next() }

// TestSyncsRetriedOnlyOnEINTR: a sync a signal interrupted is tried again
// until it answers; any other failure, EIO above all, is returned at once,
// for pebble to end the process on.
func TestSyncsRetriedOnlyOnEINTR(t *testing.T) {
	eintr := syscall.EINTR
	syncs := map[string]func(vfs.File) error{
		"Sync":     func(f vfs.File) error { return f.Sync() },
		"SyncData": func(f vfs.File) error { return f.SyncData() },
		"SyncTo":   func(f vfs.File) error { _, err := f.SyncTo(4096); return err },
	}
	for name, sync := range syncs {
		in := &interruptedFile{errs: []error{eintr, eintr, eintr}}
		if err := sync(eintrFile{in}); err != nil || in.calls != 4 {
			t.Errorf("%s interrupted 3 times: %v after %d calls, want success on the 4th", name, err, in.calls)
		}
		in = &interruptedFile{errs: []error{eintr, syscall.EIO}}
		if err := sync(eintrFile{in}); !errors.Is(err, syscall.EIO) || in.calls != 2 {
			t.Errorf("%s interrupted, then EIO: %v after %d calls, want EIO, not retried", name, err, in.calls)
		}
	}
}

// TestPebbleStoreOpensThroughTheRetryingFS: the store's files come from the
// retrying file system, and pebble still finds the OS file system under
// it.
func TestPebbleStoreOpensThroughTheRetryingFS(t *testing.T) {
	fs := eintrFS{vfs.Default}
	if vfs.Root(fs) != vfs.Default {
		t.Fatalf("vfs.Root of the retrying FS is %T, want the OS file system", vfs.Root(fs))
	}
	f, err := fs.Create(t.TempDir()+"/x", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(eintrFile); !ok {
		t.Fatalf("Create returned %T, want the retrying file", f)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
}
