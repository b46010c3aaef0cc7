//go:build linux

package faultfs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/colonymesh/colony/tests/support/faultfs"
)

// A data dir on a disk whose fsyncs take 200 ms or more, then one that
// hangs until released.
func Example() {
	backing, _ := os.MkdirTemp("", "disk-")
	mnt, _ := os.MkdirTemp("", "mnt-")
	defer os.RemoveAll(backing)
	defer os.Remove(mnt)

	disk, err := faultfs.Mount(backing, mnt)
	if err != nil {
		fmt.Println(err) // errors.Is(err, faultfs.ErrUnavailable): no FUSE here
		return
	}
	defer disk.Unmount() // before the deferred removals: it runs first

	disk.SetLatency(200*time.Millisecond, 0, 50*time.Millisecond)
	f, _ := os.Create(filepath.Join(mnt, "wal"))
	f.WriteString("entry")
	f.Sync() // 200-250 ms

	disk.Stall()
	go func() { time.Sleep(time.Second); disk.Release() }()
	f.Sync() // about a second
	f.Close()
}
