package ztree

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// benchTree returns a harness whose tree holds n nodes of 100 bytes under
// /bench/<group>/<node>, 100 per group.
func benchTree(b *testing.B, n int) *harness {
	h := newHarness(b)
	h.must(create("/bench", ""))
	data := string(make([]byte, 100))
	for g := 0; g*100 < n; g++ {
		ops := []*colonyv1.Op{create(fmt.Sprintf("/bench/g%03d", g), "")}
		for i := 0; i < 100 && g*100+i < n; i++ {
			ops = append(ops, create(fmt.Sprintf("/bench/g%03d/n%03d", g, i), data))
		}
		h.must(ops...)
	}
	return h
}

// BenchmarkApplySet applies single-op Txn sets, one entry per Apply, to a
// tree of 10 000 nodes, with and without a request id.
func BenchmarkApplySet(b *testing.B) {
	for _, withReq := range []bool{false, true} {
		b.Run(fmt.Sprintf("request_id=%v", withReq), func(b *testing.B) {
			h := benchTree(b, 10_000)
			data := make([]byte, 100)
			setCmd := func(i int) *peerv1.Command {
				return txn(&colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{
					Path: fmt.Sprintf("/bench/g%03d/n%03d", i%100, i/100%100),
					Data: data,
				}}})
			}
			// The leader stamps fingerprints before the entry reaches the
			// FSM, so they are computed outside the measured loop.
			var fps [][]byte
			if withReq {
				for i := range 10_000 {
					fps = append(fps, Fingerprint(setCmd(i)))
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := setCmd(i)
				if withReq {
					c.RequestId = fmt.Sprint("req-", i)
					c.ClientId = "bench-client"
					c.Fingerprint = fps[i%10_000]
				}
				i++
				h.one(c)
			}
		})
	}
}

// BenchmarkFingerprint is what the leader spends per request-id write to
// stamp its fingerprint (outside the FSM).
func BenchmarkFingerprint(b *testing.B) {
	c := txn(&colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{Path: "/bench/g001/n001", Data: make([]byte, 100)}}})
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(c)
	}
}

// BenchmarkSnapshot writes and restores a snapshot of 10 000 nodes.
func BenchmarkSnapshot(b *testing.B) {
	benchSnapshot(b, benchTree(b, 10_000))
}

// BenchmarkSnapshotFullDedup writes and restores a snapshot whose
// request-id table is full (DedupMaxEntries ids of set results): what a
// node that takes request-id writes snapshots every time.
func BenchmarkSnapshotFullDedup(b *testing.B) {
	h := benchTree(b, 100)
	for i := range DedupMaxEntries {
		h.one(withClientID("bench-client", fmt.Sprint("req-", i), txn(&colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{
			Path: fmt.Sprintf("/bench/g000/n%03d", i%100), Data: make([]byte, 64),
		}}})))
	}
	benchSnapshot(b, h)
}

// benchSnapshot measures writing h's tree to a snapshot and restoring one.
func benchSnapshot(b *testing.B, h *harness) {
	snap := h.snapshot()
	b.Run("write", func(b *testing.B) {
		v := h.tree.View()
		b.SetBytes(int64(len(snap)))
		b.ReportAllocs()
		for b.Loop() {
			if err := v.WriteSnapshot(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("restore", func(b *testing.B) {
		tr := New()
		b.SetBytes(int64(len(snap)))
		b.ReportAllocs()
		for b.Loop() {
			if err := tr.Restore(bytes.NewReader(snap)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
