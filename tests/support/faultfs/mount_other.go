//go:build !linux

package faultfs

import (
	"fmt"
	"runtime"
)

type mount struct{}

// Mount fails: faultfs mounts with Linux's mount(2) of a FUSE file system.
func Mount(backingDir, mountpoint string, opts ...Option) (*FS, error) {
	return nil, fmt.Errorf("%w: faultfs mounts only on Linux, not %s", ErrUnavailable, runtime.GOOS)
}

func (f *FS) unmount() error { return nil }
