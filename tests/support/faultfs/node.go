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
	return n.fs.wrapFile(fh), fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.fs.wrapFile(fh), fuseFlags, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{h: fh, fs: n.fs}, fuseFlags, 0
}

// wrapFile wraps a loopback file handle.
func (f *FS) wrapFile(fh fs.FileHandle) fs.FileHandle {
	return &file{LoopbackFile: fh.(*fs.LoopbackFile), fs: f}
}

// file is a loopback file whose fsync and writes pass through the faults.
// The embedded LoopbackFile serves everything else.
type file struct {
	*fs.LoopbackFile
	fs *FS
}

// PassthroughFd refuses kernel passthrough: with it the kernel would read
// and write the backing file itself, and writes could not be delayed.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.fs.fsync(ctx, func() syscall.Errno { return f.LoopbackFile.Fsync(ctx, flags) })
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !f.fs.delayWrite(ctx) {
		return 0, syscall.EINTR
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if !f.fs.delayWrite(ctx) {
		return 0, syscall.EINTR
	}
	return f.LoopbackFile.Writev(ctx, data, off)
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
