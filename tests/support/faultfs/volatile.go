//go:build linux

package faultfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// Volatile writes: what a power loss does to a disk. With SetVolatile on,
// the file system remembers, for every file written since its last fsync,
// what the file held at that fsync: its size and the original content of
// every block written since (copy on first write, undoLog). Writes still go
// to the backing file, so the program reads back what it wrote, exactly as
// it would from a page cache. An fsync or fdatasync of the file forgets the
// record: what was written is durable now. PowerLoss puts every remembered
// block and size back, so the files hold what they held at their last
// fsync, and drops the kernel's caches of them: the next program to open
// them sees what survived.
//
// Only file contents are volatile. Metadata (creating, renaming, deleting
// a file) is taken as durable at once, as if the directory were always
// synced: a program that renames a file and crashes before it syncs the
// directory is not caught here.

// undoBlockSize is the granularity of the remembered content.
const undoBlockSize = 4096

// DefaultUndoLimit bounds the content PowerLoss could have to put back,
// summed over every file: a write past it fails with EIO (and is counted in
// Stats.UndoOverflows) rather than be remembered partly.
const DefaultUndoLimit = 256 << 20

// undoLog is what one file held at its last fsync.
type undoLog struct {
	path   string // relative to the mount's root, when first written
	fd     int    // our own descriptor of the backing file
	inode  *fs.Inode
	size   int64            // the file's size at its last fsync
	blocks map[int64][]byte // block index -> the block's content then (short at the end of the file)
}

// SetVolatile turns volatile writes on or off (see PowerLoss). Turning them
// off forgets what was remembered: every write so far counts as durable.
func (f *FS) SetVolatile(on bool) {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	f.volatile = on
	if !on {
		f.umu.Lock()
		defer f.umu.Unlock()
		for ino := range f.undo {
			f.forgetLocked(ino)
		}
	}
}

// PowerLoss puts back, in every file written since its last fsync, what
// it held at that fsync (its content and size), except in files whose path
// relative to the mount's root keep accepts (a log that stands for a
// console, say); keep may be nil. Call it only once the processes using
// the files are dead, as a power loss would leave them: a write that
// arrives while it runs waits, and one after it is remembered anew.
// It returns the files it put back, and an error if one could not be.
func (f *FS) PowerLoss(keep func(rel string) bool) ([]string, error) {
	f.vmu.Lock()
	defer f.vmu.Unlock()
	f.umu.Lock()
	defer f.umu.Unlock()
	var restored []string
	var errs []error
	for ino, u := range f.undo {
		if keep != nil && keep(u.path) {
			f.forgetLocked(ino)
			continue
		}
		for idx, b := range u.blocks {
			if _, err := syscall.Pwrite(u.fd, b, idx*undoBlockSize); err != nil {
				errs = append(errs, fmt.Errorf("putting back %s at %d: %w", u.path, idx*undoBlockSize, err))
			}
		}
		if err := syscall.Ftruncate(u.fd, u.size); err != nil {
			errs = append(errs, fmt.Errorf("putting back the size of %s: %w", u.path, err))
		}
		// The kernel may cache the file's pages and attributes: drop
		// them, so the next reader sees the backing file. (It drops a
		// FUSE file's pages when the file is opened anyway, and a
		// restarted program opens its files anew; this covers a file
		// still open, or mapped, by a process that outlived the loss.)
		u.inode.NotifyContent(0, 0)
		u.inode.NotifyContent(-1, 0)
		restored = append(restored, u.path)
		f.forgetLocked(ino)
	}
	f.mu.Lock()
	f.stats.PowerLosses++
	f.stats.RestoredFiles += int64(len(restored))
	f.mu.Unlock()
	return restored, errors.Join(errs...)
}

// remember records the file's size and the content of [off, off+length)
// as they were at the file's last fsync, unless already recorded since. It
// returns EIO when the record would pass the limit. Writes to a file opened
// with O_SYNC or O_DSYNC are durable when done: nothing to record. The
// caller holds vmu for reading.
func (f *FS) remember(n *node, flags uint32, off int64, length int64) syscall.Errno {
	if !f.volatile || flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0 {
		return 0
	}
	ino := n.EmbeddedInode().StableAttr().Ino
	f.umu.Lock()
	defer f.umu.Unlock()
	u := f.undo[ino]
	if u == nil {
		rel := n.EmbeddedInode().Path(nil)
		fd, err := syscall.Open(filepath.Join(f.backing, rel), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			// Deleted meanwhile: what it held no longer matters.
			return 0
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Ino != ino {
			syscall.Close(fd)
			return 0
		}
		u = &undoLog{path: rel, fd: fd, inode: n.EmbeddedInode(), size: st.Size, blocks: map[int64][]byte{}}
		f.undo[ino] = u
	}
	// Blocks past the size at the last fsync need no record: putting the
	// size back removes them.
	end := min(off+length, u.size)
	for idx := off / undoBlockSize; idx*undoBlockSize < end; idx++ {
		if _, ok := u.blocks[idx]; ok {
			continue
		}
		if f.undoBytes+undoBlockSize > f.undoLimit {
			f.mu.Lock()
			f.stats.UndoOverflows++
			f.mu.Unlock()
			return syscall.EIO
		}
		b := make([]byte, min(undoBlockSize, u.size-idx*undoBlockSize))
		if _, err := syscall.Pread(u.fd, b, idx*undoBlockSize); err != nil {
			return fs.ToErrno(err)
		}
		u.blocks[idx] = b
		f.undoBytes += int64(len(b))
	}
	return 0
}

// synced forgets the record of the file: an fsync made it durable.
func (f *FS) synced(n *node) {
	f.umu.Lock()
	defer f.umu.Unlock()
	f.forgetLocked(n.EmbeddedInode().StableAttr().Ino)
}

// forgetLocked drops the record of a file. The caller holds umu.
func (f *FS) forgetLocked(ino uint64) {
	if u := f.undo[ino]; u != nil {
		for _, b := range u.blocks {
			f.undoBytes -= int64(len(b))
		}
		syscall.Close(u.fd)
		delete(f.undo, ino)
	}
}

// modify runs change (a write, truncate or allocation) after remembering
// [off, off+length) of the file and its size.
func (f *FS) modify(n *node, flags uint32, off, length int64, change func() syscall.Errno) syscall.Errno {
	f.vmu.RLock()
	defer f.vmu.RUnlock()
	if errno := f.remember(n, flags, off, length); errno != 0 {
		return errno
	}
	return change()
}
