package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.bug.st/serial"
)

// SerialConfig is one serial heartbeat link to a peer over a null-modem cable: the successor of
// Heartbeat's serial/baud lines and authkeys.
type SerialConfig struct {
	// Device is the serial port, /dev/ttyS0; Baud its speed.
	Device string
	Baud   int
	// Peer is the node ID of the director at the other end; frames from any other node are
	// dropped.
	Peer string
	// Keepalive is how often a frame is sent; the peer's link is down after Deadtime without a
	// good frame.
	Keepalive time.Duration
	Deadtime  time.Duration
	// Key is the shared HMAC-SHA256 key; both ends must have the same.
	Key []byte
}

// Serial heartbeat defaults: a frame is 62 bytes plus the two node IDs, at most 188 bytes (98 ms
// at 19200 baud), so a frame every 200 ms fits even with the longest IDs, and a link is down
// after 5 missed frames.
const (
	DefaultSerialBaud      = 19200
	DefaultSerialKeepalive = 200 * time.Millisecond
	DefaultSerialDeadtime  = time.Second
)

// minSerialKey is the shortest shared key accepted: 128 bits.
const minSerialKey = 16

// withDefaults fills the zero Baud, Keepalive and Deadtime.
func (c SerialConfig) withDefaults() SerialConfig {
	if c.Baud == 0 {
		c.Baud = DefaultSerialBaud
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultSerialKeepalive
	}
	if c.Deadtime == 0 {
		c.Deadtime = DefaultSerialDeadtime
	}
	return c
}

// Link states and peer verdicts in SerialStatus.
const (
	LinkUp   = "up"
	LinkDown = "down"

	// RaftContact values: whether Raft reaches the peer, or cannot tell (neither end leads).
	ContactOK      = "ok"
	ContactLost    = "lost"
	ContactUnknown = "unknown"

	// Verdicts: alive (Raft reaches the peer, or it cannot tell and the serial link is up),
	// network cut (Raft lost the peer but its heartbeats still arrive over the cable), dead
	// (both lost), unknown (Raft cannot tell and the link is down).
	PeerAlive      = "alive"
	PeerNetworkCut = "network cut"
	PeerDead       = "dead"
	PeerUnknown    = "unknown"
)

// SerialStatus is one serial link's state and this node's verdict on its peer.
type SerialStatus struct {
	Peer   string `json:"peer"`
	Device string `json:"device"`
	// State is "up" while a good frame arrived within the deadtime, else "down".
	State string `json:"state"`
	// LastFrame is when the last good frame arrived; zero if none has.
	LastFrame time.Time `json:"last_frame,omitzero"`
	// PeerTerm and PeerLeader are what the peer's last good frame said.
	PeerTerm   uint64 `json:"peer_term,omitempty"`
	PeerLeader string `json:"peer_leader,omitempty"`
	// Counters of frames sent, accepted and dropped by reason.
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	Corrupt  uint64 `json:"corrupt"`
	BadMAC   uint64 `json:"bad_mac"`
	Replayed uint64 `json:"replayed"`
	Foreign  uint64 `json:"foreign"`
	// Error is the last failure to open, read or write the port; empty when it works.
	Error string `json:"error,omitempty"`
	// RaftContact and Verdict are filled by Node.Status.
	RaftContact string `json:"raft_contact"`
	Verdict     string `json:"verdict"`
}

// serialLink runs one link: it writes a frame every keepalive and reads the peer's. open is
// called (again after an error, every keepalive) to get the port; closing the port must unblock
// a Read, as go.bug.st/serial's ports do.
type serialLink struct {
	cfg  SerialConfig
	self string
	open func() (io.ReadWriteCloser, error)
	// local reports this node's Raft term and believed leader for each frame.
	local func() (term uint64, leader string)
	// onFrame is called with each accepted frame, on the reading goroutine.
	onFrame func(Frame)
	nonce   uint64
	log     *slog.Logger

	mu sync.Mutex // guards all following fields
	st SerialStatus
	// seq is the last sequence number sent; lastNonce and lastSeq the newest frame accepted.
	seq       uint64
	lastNonce uint64
	lastSeq   uint64
}

// openSerial opens a real serial port at cfg's speed.
func openSerial(cfg SerialConfig) func() (io.ReadWriteCloser, error) {
	return func() (io.ReadWriteCloser, error) {
		p, err := serial.Open(cfg.Device, &serial.Mode{BaudRate: cfg.Baud})
		if err != nil {
			return nil, fmt.Errorf("open serial port %s: %w", cfg.Device, err)
		}
		return p, nil
	}
}

func newSerialLink(cfg SerialConfig, self string, open func() (io.ReadWriteCloser, error), local func() (uint64, string), onFrame func(Frame), log *slog.Logger) *serialLink {
	return &serialLink{
		cfg: cfg, self: self, open: open, local: local, onFrame: onFrame,
		nonce: uint64(time.Now().UnixNano()),
		log:   log.With("op", "serial", "peer", cfg.Peer, "device", cfg.Device),
		st:    SerialStatus{Peer: cfg.Peer, Device: cfg.Device},
	}
}

// Run keeps the link going until ctx ends, reopening the port after errors; it closes the port
// and waits for its reader before it returns.
func (l *serialLink) Run(ctx context.Context) {
	retry := time.NewTicker(l.cfg.Keepalive)
	defer retry.Stop()
	for ctx.Err() == nil {
		port, err := l.open()
		if err == nil {
			err = l.serve(ctx, port)
		}
		if err != nil {
			l.mu.Lock()
			changed := l.st.Error != err.Error()
			l.st.Error = err.Error()
			l.mu.Unlock()
			if changed {
				l.log.Warn("serial link failed; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
		case <-retry.C:
		}
	}
}

// serve sends and reads frames on port until ctx ends or the port fails; it closes port.
func (l *serialLink) serve(ctx context.Context, port io.ReadWriteCloser) error {
	readErr := make(chan error, 1)
	go func() { readErr <- l.read(port) }()
	tick := time.NewTicker(l.cfg.Keepalive)
	defer tick.Stop()
	var err error
	for err == nil {
		if err = l.send(port); err != nil {
			break
		}
		select {
		case <-ctx.Done():
			port.Close()
			<-readErr
			return nil
		case err = <-readErr:
			port.Close()
			return err
		case <-tick.C:
		}
	}
	port.Close()
	<-readErr
	return err
}

func (l *serialLink) send(w io.Writer) error {
	term, leader := l.local()
	l.mu.Lock()
	l.seq++
	f := Frame{Nonce: l.nonce, Seq: l.seq, NodeID: l.self, Term: term, Leader: leader}
	l.mu.Unlock()
	buf, err := appendFrame(nil, l.cfg.Key, f)
	if err == nil {
		_, err = w.Write(buf)
	}
	if err != nil {
		return fmt.Errorf("write serial frame to %s: %w", l.cfg.Device, err)
	}
	l.mu.Lock()
	l.st.Sent++
	l.st.Error = ""
	l.mu.Unlock()
	return nil
}

// read parses frames off r until it fails.
func (l *serialLink) read(r io.Reader) error {
	buf := make([]byte, 0, 4*(frameHeader+maxFrameBody+frameMAC))
	chunk := make([]byte, 256)
	for {
		k, err := r.Read(chunk)
		buf = append(buf, chunk[:k]...)
		buf = l.consume(buf, time.Now())
		if err != nil {
			return fmt.Errorf("read serial port %s: %w", l.cfg.Device, err)
		}
	}
}

// consume handles every whole frame at the start of buf and returns what remains.
func (l *serialLink) consume(buf []byte, now time.Time) []byte {
	for {
		f, n, reason := parseFrame(l.cfg.Key, buf)
		if n == 0 {
			break
		}
		if reason == dropNone {
			reason = l.accept(f, now)
		}
		if reason != dropNone {
			l.count(reason)
		}
		buf = buf[n:]
	}
	// Bound what an unfinished frame can hold on to; the rest moves to the front.
	return append(buf[:0:0], buf...)
}

// accept checks an authentic frame's sender and freshness and records it.
func (l *serialLink) accept(f Frame, now time.Time) dropReason {
	l.mu.Lock()
	switch {
	case f.NodeID != l.cfg.Peer:
		l.mu.Unlock()
		return dropForeign
	case f.Nonce < l.lastNonce || (f.Nonce == l.lastNonce && f.Seq <= l.lastSeq):
		l.mu.Unlock()
		return dropReplayed
	}
	l.lastNonce, l.lastSeq = f.Nonce, f.Seq
	l.st.Received++
	l.st.LastFrame = now
	l.st.PeerTerm, l.st.PeerLeader = f.Term, f.Leader
	l.mu.Unlock()
	if l.onFrame != nil {
		l.onFrame(f)
	}
	return dropNone
}

func (l *serialLink) count(r dropReason) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r {
	case dropCorrupt:
		l.st.Corrupt++
	case dropBadMAC:
		l.st.BadMAC++
	case dropReplayed:
		l.st.Replayed++
	case dropForeign:
		l.st.Foreign++
	}
}

// status reports the link as of now (RaftContact and Verdict are left for the node).
func (l *serialLink) status(now time.Time) SerialStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.State = LinkDown
	if !st.LastFrame.IsZero() && now.Sub(st.LastFrame) < l.cfg.Deadtime {
		st.State = LinkUp
	}
	return st
}

// verdict combines Raft's contact with the peer and the serial link's state.
func verdict(contact, link string) string {
	switch {
	case contact == ContactOK:
		return PeerAlive
	case contact == ContactLost && link == LinkUp:
		return PeerNetworkCut
	case contact == ContactLost:
		return PeerDead
	case link == LinkUp:
		return PeerAlive
	default:
		return PeerUnknown
	}
}
