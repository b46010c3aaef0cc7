package ztree

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// testdata/snapshot-format1.bin was written by the code before the
// request-id table kept results encoded (commit 2bcf480): richHarness, then
// four client-scoped request ids (an open session, a set, a failed set, a
// noop). This code must read it, write the very same bytes back, and
// deduplicate its requests.
func TestSnapshotFormat1FromEarlierVersion(t *testing.T) {
	old, err := os.ReadFile("testdata/snapshot-format1.bin")
	if err != nil {
		t.Fatal(err)
	}
	tr := New()
	if err := tr.Restore(bytes.NewReader(old)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	v := tr.View()
	if err := checkInvariants(v.s); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, v); !bytes.Equal(got, old) {
		t.Errorf("rewritten snapshot differs from the earlier version's (%d bytes, want %d)", len(got), len(old))
	}
	if n := v.s.dedup.Len(); n != 6 { // req-1, req-2 and the four scoped ones
		t.Errorf("%d request ids, want 6", n)
	}

	h := &harness{t: t, tree: tr, index: v.Index(), timeMs: v.TimeMs()}
	// A retry of the remembered set gets its result and changes nothing
	// but the index; the same id on another request is refused.
	res := h.one(withClientID("client-b", "r-set", txn(set("/colony", "v3"))))
	if !res.GetTxn().GetSucceeded() || res.GetTxn().GetResults()[0].GetSet().GetStat().GetVersion() != 2 {
		t.Errorf("retried set: %v, want the remembered success at version 2", res)
	}
	if data, st, err := h.tree.View().Get("/colony"); err != nil || string(data) != "v3" || st.GetVersion() != 2 {
		t.Errorf("/colony after the retry: %q %v %v", data, st, err)
	}
	if res := h.one(withClientID("client-b", "r-set", txn(set("/colony", "other")))); res.GetError() == nil {
		t.Errorf("reused id: %v, want an error", res)
	}
	if res := h.one(withClientID("client-a", "r-open", openCmd(5000))).GetOpenSession(); res.GetSessionId() == 0 {
		t.Errorf("retried open: %v, want the remembered session", res)
	}
}

// The table writes its records by hand; they must be the bytes a
// deterministic Marshal of the same SnapshotRecord gives, which is what
// earlier versions wrote.
func TestDedupRecordMatchesMarshal(t *testing.T) {
	results := []*peerv1.CommandResult{
		{},
		resultOK(),
		resultErr(errNoNode("/x")),
		{Result: &peerv1.CommandResult_Txn{Txn: nil}},
	}
	entries := []*dedupEntry{
		{requestID: "r"},
		{requestID: "r", clientID: "c", timeMs: 1700000000000, index: 42, fingerprint: []byte{1, 2, 3}},
		{requestID: "ü-ñ", timeMs: -5, index: 1 << 60},
		{requestID: "r", clientID: "", fingerprint: []byte{}},
	}
	for i, e := range entries {
		for j, res := range results {
			e.result = encodeResult(res)
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{
				RequestId: e.requestID, TimeMs: e.timeMs, Index: e.index, Result: res, ClientId: e.clientID, Fingerprint: e.fingerprint,
			}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := appendDedupRecord(nil, e); !bytes.Equal(got, want) {
				t.Errorf("entry %d, result %d: %x, want %x", i, j, got, want)
			}
		}
	}
}

// A view holds its request ids while later commands append to the table
// and evict from it, across many chunks: a snapshot of a held view is the
// same before and after.
func TestDedupHeldViewUnchangedByLaterApplies(t *testing.T) {
	h := newHarness(t)
	h.tree.dedupMax = dedupChunk + dedupChunk/2
	type held struct {
		v    *View
		snap []byte
	}
	var views []held
	for i := range 6 * dedupChunk {
		h.one(withClientID(fmt.Sprint("c", i%3), fmt.Sprint("r", i), noop()))
		if i%(dedupChunk/2+7) == 0 {
			v := h.tree.View()
			views = append(views, held{v, snapshotBytes(t, v)})
		}
	}
	if n := h.tree.View().s.dedup.Len(); n != h.tree.dedupMax {
		t.Errorf("%d request ids, want the max %d", n, h.tree.dedupMax)
	}
	for i, hv := range views {
		if got := snapshotBytes(t, hv.v); !bytes.Equal(got, hv.snap) {
			t.Errorf("held view %d (index %d) changed", i, hv.v.Index())
		}
		if err := checkInvariants(hv.v.s); err != nil {
			t.Errorf("held view %d: %v", i, err)
		}
	}
	// The newest ids are still answered, the evicted ones are not.
	last := 6*dedupChunk - 1
	if res := h.one(withClientID(fmt.Sprint("c", last%3), fmt.Sprint("r", last), noop())); res.GetOk() == nil {
		t.Errorf("retry of the newest id: %v", res)
	}
	if _, ok := h.tree.View().s.dedup.Get("c0", "r0"); ok {
		t.Error("the oldest id is still remembered")
	}
}

// A snapshot whose request ids are out of eviction order is restored in
// order, so eviction still drops the oldest first.
func TestRestoreOrdersRequestIDs(t *testing.T) {
	var buf bytes.Buffer
	for _, m := range []proto.Message{
		&peerv1.SnapshotHeader{Format: snapshotFormat, Index: 10, TimeMs: 100},
		&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Node{Node: &peerv1.SnapshotNode{Path: "/", Stat: &colonyv1.Stat{}}}},
		&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{RequestId: "late", TimeMs: 90, Index: 9, Result: resultOK()}}},
		&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_Dedup{Dedup: &peerv1.SnapshotDedup{RequestId: "early", TimeMs: 50, Index: 3, Result: resultOK()}}},
		&peerv1.SnapshotRecord{Record: &peerv1.SnapshotRecord_End{End: true}},
	} {
		if _, err := protodelim.MarshalTo(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	tr := New()
	if err := tr.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if err := checkInvariants(tr.View().s); err != nil {
		t.Fatal(err)
	}
	tr.dedupMax = 2
	h := &harness{t: t, tree: tr, index: 10, timeMs: 100}
	h.one(withID("new", noop()))
	s := tr.View().s
	if _, ok := s.dedup.Get("", "early"); ok {
		t.Error("early is still remembered: eviction did not take the oldest")
	}
	if _, ok := s.dedup.Get("", "late"); !ok {
		t.Error("late was evicted")
	}
}
