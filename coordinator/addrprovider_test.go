package coordinator

import (
	"testing"

	"github.com/hashicorp/raft"
)

func TestPeerAddrProvider(t *testing.T) {
	p := peerAddrProvider{"n2": "127.0.0.1:9002"}
	tests := []struct {
		id      raft.ServerID
		want    raft.ServerAddress
		wantErr bool
	}{
		{id: "n2", want: "127.0.0.1:9002"},
		{id: "n3", wantErr: true}, // raft then dials the configured address
	}
	for _, tt := range tests {
		t.Run(string(tt.id), func(t *testing.T) {
			got, err := p.ServerAddr(tt.id)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ServerAddr(%s) = %q, %v; want %q, error %v", tt.id, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
