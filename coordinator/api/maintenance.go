package api

// The Maintenance service streams a snapshot file of a node's state for
// backups. A snapshot file is the FSM's snapshot format (ztree's
// WriteSnapshot) followed by the SHA-256 of everything before it; package
// coordinator/snapshotfile defines the format, checks a file (Read) and
// builds a new node's data dir from one (Restore).

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"google.golang.org/grpc"

	"github.com/colonymesh/colony/coordinator/snapshotfile"
	"github.com/colonymesh/colony/internal/ztree"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

const (
	// SnapshotChunk is the most blob bytes in one SnapshotResponse.
	SnapshotChunk = 64 << 10
)

// maintenanceServer serves colony.v1.Maintenance.
type maintenanceServer struct {
	colonyv1.UnimplementedMaintenanceServer
	s *Service
}

// Snapshot streams a snapshot file of this node's state. The view is
// immutable, so it is written twice without holding anything up: once to
// learn its size (for the client's progress), once to send it.
func (a *maintenanceServer) Snapshot(req *colonyv1.SnapshotRequest, stream grpc.ServerStreamingServer[colonyv1.SnapshotResponse]) error {
	s := a.s
	c := req.GetConsistency()
	if _, ok := colonyv1.Consistency_name[int32(c)]; !ok {
		return ToStatus(fmt.Errorf("%w: consistency: unknown value %d", ztree.ErrInvalidArgument, c))
	}
	v, err := s.node.ReadView(stream.Context(), c, req.GetMinZxid())
	if err != nil {
		return ToStatus(err)
	}
	var size countingWriter
	if err := v.WriteSnapshot(&size); err != nil {
		return ToStatus(err)
	}
	if err := stream.Send(&colonyv1.SnapshotResponse{
		Header:    s.viewHeader(v),
		Index:     v.Index(),
		TimeMs:    v.TimeMs(),
		SizeBytes: uint64(size.n) + snapshotfile.SumLen,
	}); err != nil {
		return err
	}
	w := &chunkSender{send: stream.Send, sum: sha256.New()}
	if err := v.WriteSnapshot(w); err != nil {
		return ToStatus(err)
	}
	if w.n != size.n { // the same view always writes the same bytes
		return ToStatus(fmt.Errorf("snapshot: wrote %d bytes, announced %d", w.n, size.n))
	}
	if err := w.put(w.sum.Sum(nil)); err != nil {
		return ToStatus(err)
	}
	return ToStatus(w.flush())
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// chunkSender sends what is written to it as blobs of SnapshotChunk bytes,
// hashing the snapshot's bytes on the way.
type chunkSender struct {
	send func(*colonyv1.SnapshotResponse) error
	sum  hash.Hash
	n    int64
	buf  []byte
}

func (w *chunkSender) Write(p []byte) (int, error) {
	w.sum.Write(p)
	w.n += int64(len(p))
	if err := w.put(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// put queues p, sending every full chunk.
func (w *chunkSender) put(p []byte) error {
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, SnapshotChunk) // a new one each time: gRPC may hold the last
		}
		k := min(len(p), SnapshotChunk-len(w.buf))
		w.buf, p = append(w.buf, p[:k]...), p[k:]
		if len(w.buf) == SnapshotChunk {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *chunkSender) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(&colonyv1.SnapshotResponse{Blob: w.buf})
	w.buf = nil
	return err
}
