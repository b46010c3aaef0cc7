package raftdiag

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestClosingPipelinesReleasesABlockedSend: a replication pipeline to a
// peer that never answers fills up, and its next AppendEntries blocks for
// good (raft's pipelineReplicate sat there, and raft.Shutdown with it, when
// a node closed after a leadership transfer). Closing the node's pipelines
// releases the send with an error and refuses new pipelines.
func TestClosingPipelinesReleasesABlockedSend(t *testing.T) {
	// The peer: a real network transport whose RPCs nobody consumes.
	peer, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, time.Minute, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	local, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, time.Minute, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	defer local.CloseStreams()

	tr := New(testConfig).WrapTransport(local, Hooks{})
	p, err := tr.AppendEntriesPipeline("peer", peer.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var sent atomic.Int64
	released := make(chan error, 1)
	go func() {
		// Requests wait in the pipeline for answers that never come; once
		// its queue is full the next send waits for room, for good.
		for {
			if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err != nil {
				released <- err
				return
			}
			sent.Add(1)
		}
	}()
	// Wait until the sender is stuck: it makes no more progress.
	for prev := int64(-1); ; {
		time.Sleep(50 * time.Millisecond)
		select {
		case err := <-released:
			t.Fatalf("the pipeline failed before it was closed: %v", err)
		default:
		}
		cur := sent.Load()
		if cur > 0 && cur == prev {
			t.Logf("the sender is stuck after %d requests", cur)
			break
		}
		prev = cur
	}
	tr.ClosePipelines()
	select {
	case err := <-released:
		if err == nil {
			t.Fatal("released without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("closing the node's pipelines did not release a blocked AppendEntries")
	}
	if _, err := tr.AppendEntriesPipeline("peer", peer.LocalAddr()); err == nil {
		t.Error("a new pipeline was opened after ClosePipelines")
	}
}
