package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// The pebble store's keys: one byte naming the space, then the raft index
// (big-endian, so byte order is index order) or the stable-store key.
const (
	logPrefix    byte = 'l'
	stablePrefix byte = 's'
)

// logKeyLen is the length of a log entry's key.
const logKeyLen = 1 + 8

func logKey(buf []byte, index uint64) []byte {
	buf = append(buf[:0], logPrefix)
	return binary.BigEndian.AppendUint64(buf, index)
}

func logKeyIndex(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != logPrefix {
		return 0, fmt.Errorf("raftlog: malformed log key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

func stableKey(k []byte) []byte {
	return append([]byte{stablePrefix}, k...)
}

// logCodecV1 is the first byte of every encoded entry, so a later layout
// can be told apart from this one.
const logCodecV1 byte = 1

// errCorruptEntry is wrapped by every decoding failure.
var errCorruptEntry = errors.New("raftlog: corrupt log entry")

// appendLog encodes l (its Index lives in the key) after buf:
//
//	version(1) term(uvarint) type(1) appended(varint unix nanos, 0: zero)
//	len(data)(uvarint) data len(extensions)(uvarint) extensions
func appendLog(buf []byte, l *raft.Log) []byte {
	buf = append(buf, logCodecV1)
	buf = binary.AppendUvarint(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var appended int64
	if !l.AppendedAt.IsZero() {
		appended = l.AppendedAt.UnixNano()
	}
	buf = binary.AppendVarint(buf, appended)
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	return append(buf, l.Extensions...)
}

// decodeLog fills l from an entry appendLog wrote. l's slices are copies:
// the store's buffers are reused after the read.
func decodeLog(index uint64, b []byte, l *raft.Log) error {
	corrupt := func(what string) error {
		return fmt.Errorf("%w: index %d: %s", errCorruptEntry, index, what)
	}
	if len(b) == 0 || b[0] != logCodecV1 {
		return corrupt("unknown encoding version")
	}
	b = b[1:]
	term, n := binary.Uvarint(b)
	if n <= 0 {
		return corrupt("term")
	}
	b = b[n:]
	if len(b) == 0 {
		return corrupt("type")
	}
	typ := raft.LogType(b[0])
	b = b[1:]
	appended, n := binary.Varint(b)
	if n <= 0 {
		return corrupt("appended time")
	}
	b = b[n:]
	dataLen, n := binary.Uvarint(b)
	if n <= 0 || dataLen > uint64(len(b)-n) {
		return corrupt("data length")
	}
	b = b[n:]
	data := b[:dataLen]
	b = b[dataLen:]
	extLen, n := binary.Uvarint(b)
	if n <= 0 || extLen != uint64(len(b)-n) {
		return corrupt("extensions length")
	}
	ext := b[n:]

	*l = raft.Log{Index: index, Term: term, Type: typ}
	if appended != 0 {
		l.AppendedAt = time.Unix(0, appended)
	}
	// One allocation for both slices; nil stays nil as raft-boltdb keeps it.
	if len(data)+len(ext) > 0 {
		owned := make([]byte, 0, len(data)+len(ext))
		owned = append(owned, data...)
		owned = append(owned, ext...)
		if len(data) > 0 {
			l.Data = owned[:len(data):len(data)]
		}
		if len(ext) > 0 {
			l.Extensions = owned[len(data):]
		}
	}
	return nil
}
