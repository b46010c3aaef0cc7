//go:build linux

package faultfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// busyWait is how long Unmount waits, after a lazy unmount, for the last
// open file to be closed before it gives up (or aborts the connection).
const busyWait = 5 * time.Second

// mount is the go-fuse server of a mounted FS.
type mount struct {
	server *fuse.Server
	conn   uint32 // the FUSE connection id (fusectl's directory name)
}

// Mount mounts a loopback of backingDir on mountpoint. Both must be
// existing directories. Unmount it when done, also when a test fails.
func Mount(backingDir, mountpoint string, opts ...Option) (*FS, error) {
	backing, err := filepath.Abs(backingDir)
	if err != nil {
		return nil, fmt.Errorf("faultfs: backing dir: %w", err)
	}
	mnt, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount point: %w", err)
	}
	for _, d := range []string{backing, mnt} {
		if st, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("faultfs: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("faultfs: %s is not a directory", d)
		}
	}
	if err := checkDevice(); err != nil {
		return nil, err
	}

	f := newFS(backing, mnt, opts)
	rootOps, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	loop := rootOps.(*fs.LoopbackNode)
	root := &node{LoopbackNode: loop, fs: f}
	loop.RootData.RootNode = root
	second := time.Second
	fsOpts := &fs.Options{
		// Only this mount changes the backing dir while it is mounted, so
		// the kernel may cache names and attributes (go-fuse's default).
		EntryTimeout: &second,
		AttrTimeout:  &second,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // mount(2) ourselves: no fusermount
			FsName:            backing,
			Name:              "faultfs",
		},
	}
	server, err := fuse.NewServer(fs.NewNodeFS(root, fsOpts), mnt, &fsOpts.MountOptions)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("%w: mounting %s: %w (mount(2) of a fuse file system needs root or CAP_SYS_ADMIN)", ErrUnavailable, mnt, err)
		}
		return nil, fmt.Errorf("faultfs: mounting %s: %w", mnt, err)
	}
	// NewServer has completed the INIT handshake: the mount serves once
	// the loop below runs.
	f.mount.server = server
	go func() {
		defer close(f.served)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		f.Unmount()
		return nil, fmt.Errorf("faultfs: mounting %s: %w", mnt, err)
	}
	// Only now that requests are served: a stat of the mount point is one.
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		f.Unmount()
		return nil, fmt.Errorf("faultfs: mounted %s but cannot stat it: %w", mnt, err)
	}
	// fusectl names a connection by the kernel's own encoding of the
	// mount's device number.
	f.mount.conn = unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)
	return f, nil
}

// checkDevice reports why /dev/fuse cannot be used, as ErrUnavailable.
func checkDevice() error {
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: opening /dev/fuse: %w", ErrUnavailable, err)
	}
	syscall.Close(fd)
	return nil
}

func (f *FS) unmount() error {
	// go-fuse retries a plain unmount a few times over ~150 ms: a file
	// closed a moment ago may still count as open.
	if f.mount.server.Unmount() == nil {
		<-f.served
		return nil
	}
	if err := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		// EINVAL: no longer a mount point (unmounted by someone else).
		return fmt.Errorf("faultfs: lazy unmount of %s: %w", f.mountpoint, err)
	}
	t := time.NewTimer(busyWait)
	defer t.Stop()
	select {
	case <-f.served:
		return nil
	case <-t.C:
	}
	abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", f.mount.conn)
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		return fmt.Errorf("%w: %s was detached, files on it are still open, and the connection cannot be aborted (%w)", ErrBusy, f.mountpoint, err)
	}
	t.Reset(busyWait)
	select {
	case <-f.served:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %s was detached and aborted, but its serve loop has not ended", ErrBusy, f.mountpoint)
	}
}
