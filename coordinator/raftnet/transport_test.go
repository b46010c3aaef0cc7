package raftnet

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func TestPeerAddrProvider(t *testing.T) {
	p := &peerAddrProvider{self: "n1", selfAddr: "127.0.0.1:9001", peers: map[string]string{"n2": "127.0.0.1:9002"}}
	tests := []struct {
		id      raft.ServerID
		want    raft.ServerAddress
		wantErr bool
	}{
		{id: "n1", want: "127.0.0.1:9001"}, // its own, which raft encodes into requests
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

func TestRaftTransportEncodesOwnAddress(t *testing.T) {
	tr, err := NewTransport(Config{Bind: "127.0.0.1:0", Self: "n1", PeerAddrs: map[string]string{"n2": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := string(tr.EncodePeer("n1", "ignored")); got != string(tr.LocalAddr()) {
		t.Errorf("EncodePeer(self) = %q, want the transport's own %q", got, tr.LocalAddr())
	}
}

// Every member given the same peers bootstraps the same configuration:
// voters in id order, whatever order the map iterates in.
func TestVoters(t *testing.T) {
	conf := Voters(map[string]string{"n3": "h3:7", "n1": "h1:7", "n2": "h2:7"})
	want := []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "h1:7"},
		{Suffrage: raft.Voter, ID: "n2", Address: "h2:7"},
		{Suffrage: raft.Voter, ID: "n3", Address: "h3:7"},
	}
	if !reflect.DeepEqual(conf.Servers, want) {
		t.Errorf("Voters = %v, want %v", conf.Servers, want)
	}
}
