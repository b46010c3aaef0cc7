package coordinator

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A data dir keeps the log store it was created with: opening it as the other
// kind must fail loudly instead of starting the node with an empty log.
func TestLogStoreRefusesToSwitch(t *testing.T) {
	for _, tc := range []struct{ first, second string }{
		{LogStoreBolt, LogStoreWAL},
		{LogStoreWAL, LogStoreBolt},
	} {
		t.Run(tc.first+"_then_"+tc.second, func(t *testing.T) {
			dir := t.TempDir()
			st, err := openLogStore(dir, tc.first, false, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			if err := st.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = openLogStore(dir, tc.second, false, hclog.NewNullLogger())
			if err == nil || !strings.Contains(err.Error(), tc.first) {
				t.Fatalf("opening a %s dir as %s: %v, want an error naming %s", tc.first, tc.second, err, tc.first)
			}
			// And it still opens as what it is, with the entry intact.
			st, err = openLogStore(dir, tc.first, false, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var l raft.Log
			if err := st.GetLog(1, &l); err != nil || string(l.Data) != "x" {
				t.Fatalf("entry after reopening: %v %q", err, l.Data)
			}
		})
	}
	if _, err := openLogStore(t.TempDir(), "rocksdb", false, hclog.NewNullLogger()); err == nil {
		t.Error("unknown log store accepted")
	}
}
