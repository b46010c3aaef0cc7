package raftnet

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/colonymesh/colony/internal/trust"
)

// BenchmarkRaftTransport measures one AppendEntries round trip (16 entries
// of 512 bytes) between two transports on pooled connections, over plain
// TCP and over mutual TLS: the cost TLS adds to replication.
func BenchmarkRaftTransport(b *testing.B) {
	p := newPKI(b)
	for _, bc := range []struct {
		name     string
		from, to *trust.Material
	}{
		{"plaintext", nil, nil},
		{"tls", p.material(trust.RoleNode, "n1"), p.material(trust.RoleNode, "n2")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			to := benchTransport(b, bc.to)
			from := benchTransport(b, bc.from)
			done := make(chan struct{})
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case rpc := <-to.Consumer():
						rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
					case <-done:
						return
					}
				}
			}()
			defer func() { close(done); <-stopped }()
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte(from.LocalAddr())},
				Term:      1,
			}
			data := make([]byte, 512)
			for i := range 16 {
				req.Entries = append(req.Entries, &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})
			}
			b.SetBytes(16 * 512)
			b.ReportAllocs()
			var resp raft.AppendEntriesResponse
			for b.Loop() {
				if err := from.AppendEntries("n2", to.LocalAddr(), req, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchTransport(b *testing.B, m *trust.Material) *raft.NetworkTransport {
	b.Helper()
	tr, err := NewTransport(Config{Bind: "127.0.0.1:0", Self: "x", TLS: m})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.CloseStreams(); tr.Close() })
	return tr
}
