//go:build linux

package faultfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is go-fuse's loopback node with its file handles wrapped, so that
// fsync and write pass through the FS's faults. Every node wraps its
// children (WrapChild), so the whole tree is covered.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeWrapChilder     = (*node)(nil)
	_ fs.NodeOpener          = (*node)(nil)
	_ fs.NodeCreater         = (*node)(nil)
	_ fs.NodeOpendirHandler  = (*node)(nil)
	_ fs.FileFsyncer         = (*file)(nil)
	_ fs.FileWriter          = (*file)(nil)
	_ fs.FileWritever        = (*file)(nil)
	_ fs.FileSetattrer       = (*file)(nil)
	_ fs.FileAllocater       = (*file)(nil)
	_ fs.NodeSetattrer       = (*node)(nil)
	_ fs.FilePassthroughFder = (*file)(nil)
	_ fs.FileFsyncdirer      = (*dir)(nil)
	_ fs.FileReaddirenter    = (*dir)(nil)
	_ fs.FileSeekdirer       = (*dir)(nil)
	_ fs.FileReleasedirer    = (*dir)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.fs.wrapFile(n, flags, fh), fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.fs.wrapFile(ch.Operations().(*node), flags, fh), fuseFlags, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{h: fh, fs: n.fs}, fuseFlags, 0
}

// Setattr without a file handle (truncate(2) by path) is remembered like a
// write when it changes the size.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if _, isFile := fh.(*file); !isFile {
			return n.fs.modify(n, 0, int64(sz), 1<<62, func() syscall.Errno { return n.LoopbackNode.Setattr(ctx, fh, in, out) })
		}
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// wrapFile wraps a loopback file handle of node n opened with flags.
func (f *FS) wrapFile(n *node, flags uint32, fh fs.FileHandle) fs.FileHandle {
	return &file{LoopbackFile: fh.(*fs.LoopbackFile), fs: f, n: n, flags: flags}
}

// file is a loopback file whose fsync and writes pass through the faults,
// and whose changes are remembered while writes are volatile. The embedded
// LoopbackFile serves everything else.
type file struct {
	*fs.LoopbackFile
	fs    *FS
	n     *node
	flags uint32 // the open(2) flags
}

// PassthroughFd refuses kernel passthrough: with it the kernel would read
// and write the backing file itself, and writes could not be delayed.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	errno := f.fs.fsync(ctx, func() syscall.Errno { return f.LoopbackFile.Fsync(ctx, flags) })
	if errno == 0 {
		f.fs.synced(f.n)
	}
	return errno
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !f.fs.delayWrite(ctx) {
		return 0, syscall.EINTR
	}
	var n uint32
	errno := f.fs.modify(f.n, f.flags, off, int64(len(data)), func() (errno syscall.Errno) {
		n, errno = f.LoopbackFile.Write(ctx, data, off)
		return errno
	})
	return n, errno
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if !f.fs.delayWrite(ctx) {
		return 0, syscall.EINTR
	}
	var length int64
	for _, d := range data {
		length += int64(len(d))
	}
	var n uint32
	errno := f.fs.modify(f.n, f.flags, off, length, func() (errno syscall.Errno) {
		n, errno = f.LoopbackFile.Writev(ctx, data, off)
		return errno
	})
	return n, errno
}

// Setattr with a size (ftruncate) is remembered like a write of everything
// past the new size.
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		return f.fs.modify(f.n, f.flags, int64(sz), 1<<62, func() syscall.Errno { return f.LoopbackFile.Setattr(ctx, in, out) })
	}
	return f.LoopbackFile.Setattr(ctx, in, out)
}

// Allocate (fallocate) may grow the file or zero a range: remembered like
// a write of the range.
func (f *file) Allocate(ctx context.Context, off uint64, sz uint64, mode uint32) syscall.Errno {
	return f.fs.modify(f.n, f.flags, int64(off), int64(sz), func() syscall.Errno { return f.LoopbackFile.Allocate(ctx, off, sz, mode) })
}

// dir is a loopback directory handle whose fsync passes through the faults
// (raft's snapshot store fsyncs the directory after a rename).
type dir struct {
	h  fs.FileHandle
	fs *FS
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.fs.fsync(ctx, func() syscall.Errno {
		if s, ok := d.h.(fs.FileFsyncdirer); ok {
			return s.Fsyncdir(ctx, flags)
		}
		return 0
	})
}

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.h.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, 0
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.h.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.h.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}
