package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// A serial heartbeat frame, as it crosses the cable:
//
//	"TH" version(1) length(1) body(length) mac(32)
//	body: nonce(8) seq(8) term(8) len(1) node id, len(1) believed leader id
//
// Integers are big-endian. mac is HMAC-SHA256 with the link's shared key over everything before
// it, so a frame cannot be forged without the key and a flipped bit anywhere is caught. nonce is
// the sender's boot time (Unix nanoseconds): a restarted sender starts a new, larger nonce, and
// within one nonce seq grows by one per frame. A receiver keeps the largest (nonce, seq) it
// accepted and drops anything not above it, so a recorded frame replayed later is refused.
//
// The magic lets a reader resynchronise after line noise: it drops bytes until the next "TH"
// that starts a frame with a good MAC.
const (
	frameVersion = 1
	// frameHeader is magic, version and length.
	frameHeader = 4
	frameMAC    = sha256.Size
	// maxIDLen is the longest node ID a frame carries (the agent's node_id limit).
	maxIDLen     = 63
	minFrameBody = 8 + 8 + 8 + 1 + 1
	maxFrameBody = minFrameBody + 2*maxIDLen
)

var frameMagic = []byte("TH")

// Frame is what one heartbeat says about its sender.
type Frame struct {
	// Nonce identifies the sender's boot; Seq numbers its frames within that boot.
	Nonce uint64
	Seq   uint64
	// NodeID is the sender; Term and Leader are its Raft term and the leader it believes in
	// (empty if it knows none).
	NodeID string
	Term   uint64
	Leader string
}

// errFrameField means a frame's node or leader ID is longer than a frame carries.
var errFrameField = errors.New("serial frame: node and leader IDs are limited to 63 bytes")

// appendFrame encodes f with key's MAC onto dst.
func appendFrame(dst []byte, key []byte, f Frame) ([]byte, error) {
	if len(f.NodeID) > maxIDLen || len(f.Leader) > maxIDLen {
		return dst, errFrameField
	}
	start := len(dst)
	dst = append(dst, frameMagic...)
	dst = append(dst, frameVersion, byte(minFrameBody+len(f.NodeID)+len(f.Leader)))
	dst = binary.BigEndian.AppendUint64(dst, f.Nonce)
	dst = binary.BigEndian.AppendUint64(dst, f.Seq)
	dst = binary.BigEndian.AppendUint64(dst, f.Term)
	dst = append(dst, byte(len(f.NodeID)))
	dst = append(dst, f.NodeID...)
	dst = append(dst, byte(len(f.Leader)))
	dst = append(dst, f.Leader...)
	m := hmac.New(sha256.New, key)
	m.Write(dst[start:])
	return m.Sum(dst), nil
}

// dropReason says why a reader dropped bytes; dropNone means it did not.
type dropReason string

const (
	dropNone dropReason = ""
	// dropCorrupt: bytes that are not a well-formed frame (line noise, a truncated frame).
	dropCorrupt dropReason = "corrupt"
	// dropBadMAC: a well-formed frame whose MAC does not match: forged, sent with another key,
	// or damaged in transit.
	dropBadMAC dropReason = "bad_mac"
	// dropReplayed: an authentic frame not newer than one already accepted.
	dropReplayed dropReason = "replayed"
	// dropForeign: an authentic frame from a node other than the configured peer.
	dropForeign dropReason = "foreign"
)

// parseFrame looks for one frame at the start of buf. It returns how many bytes to consume and
// either the frame (reason dropNone, n > 0), a reason for dropping n bytes, or n == 0 when buf
// holds the beginning of a frame that needs more bytes. After corrupt bytes or a bad MAC it
// consumes up to the next possible frame start, so that one damaged frame does not hide the
// next.
func parseFrame(key, buf []byte) (f Frame, n int, reason dropReason) {
	i := bytes.Index(buf, frameMagic)
	switch {
	case i < 0:
		// Keep a trailing first magic byte: it may start the next frame.
		keep := 0
		if len(buf) > 0 && buf[len(buf)-1] == frameMagic[0] {
			keep = 1
		}
		if len(buf)-keep == 0 {
			return Frame{}, 0, dropNone
		}
		return Frame{}, len(buf) - keep, dropCorrupt
	case i > 0:
		return Frame{}, i, dropCorrupt
	}
	if len(buf) < frameHeader {
		return Frame{}, 0, dropNone
	}
	body := int(buf[3])
	if buf[2] != frameVersion || body < minFrameBody || body > maxFrameBody {
		return Frame{}, 1, dropCorrupt
	}
	total := frameHeader + body + frameMAC
	if len(buf) < total {
		return Frame{}, 0, dropNone
	}
	m := hmac.New(sha256.New, key)
	m.Write(buf[:frameHeader+body])
	if !hmac.Equal(m.Sum(nil), buf[frameHeader+body:total]) {
		return Frame{}, 1, dropBadMAC
	}
	b := buf[frameHeader : frameHeader+body]
	f.Nonce = binary.BigEndian.Uint64(b[0:])
	f.Seq = binary.BigEndian.Uint64(b[8:])
	f.Term = binary.BigEndian.Uint64(b[16:])
	b = b[24:]
	var ok bool
	if f.NodeID, b, ok = cutID(b); !ok {
		return Frame{}, 1, dropCorrupt
	}
	if f.Leader, b, ok = cutID(b); !ok || len(b) != 0 {
		return Frame{}, 1, dropCorrupt
	}
	return f, total, dropNone
}

// cutID reads one length-prefixed ID off b.
func cutID(b []byte) (id string, rest []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	return string(b[1 : 1+b[0]]), b[1+b[0]:], true
}
