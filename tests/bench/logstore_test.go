package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/coordinator/raftlog"
)

// BenchmarkLogStoreAppend measures what the raft leader and followers wait
// for on every append: one StoreLogs of a batch of entries into a real log
// store on disk with fsync on, raft-boltdb against pebble. b.N counts
// batches. Entries are 128 bytes, about a CAS write with its request id.
// The store's directory is LOGSTORE_BENCH_DIR if set, else a temp dir: it
// must be on a real disk (not tmpfs) for the fsync to cost what it does in
// production. Every 512 batches the log is compacted from the front, as
// raft does after a snapshot, so the stores do not just grow.
//
// Metrics: entries/s, us/batch (ns/op is the same figure), cpu-us/batch
// (this process's user+sys CPU per batch, the store's own work, fsync
// waits excluded).
func BenchmarkLogStoreAppend(b *testing.B) {
	for _, kind := range []string{raftlog.Bolt, raftlog.Pebble} {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/batch=%d", kind, batch), func(b *testing.B) {
				benchAppend(b, kind, batch)
			})
		}
	}
}

func benchAppend(b *testing.B, kind string, batch int) {
	base := os.Getenv("LOGSTORE_BENCH_DIR")
	dir, err := os.MkdirTemp(base, "logstore-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := raftlog.Open(dir, kind, false)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	data := make([]byte, 128)
	logs := make([]*raft.Log, batch)
	for i := range logs {
		logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	next, first := uint64(1), uint64(1)
	cpu0 := selfCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range logs {
			l.Index = next
			next++
		}
		if err := st.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
		if i%512 == 511 && next-first > 10_000 {
			if err := st.DeleteRange(first, next-10_000); err != nil {
				b.Fatal(err)
			}
			first = next - 10_000 + 1
		}
	}
	b.StopTimer()
	el := b.Elapsed()
	cpu := selfCPU() - cpu0
	b.ReportMetric(float64(b.N*batch)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(el.Microseconds())/float64(b.N), "us/batch")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/batch")
}
