package cluster

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster/serialtest"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func randomID(r *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789.-_TH"
	b := make([]byte, r.IntN(maxIDLen+1))
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

func randomFrame(r *rand.Rand) Frame {
	return Frame{Nonce: r.Uint64(), Seq: r.Uint64(), NodeID: randomID(r), Term: r.Uint64(), Leader: randomID(r)}
}

// Every frame decodes to itself, whole, also when it arrives a byte at a time, and no single
// flipped bit anywhere in it is accepted.
func TestFrameRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		f := randomFrame(r)
		buf, err := appendFrame(nil, testKey, f)
		if err != nil {
			t.Fatal(err)
		}
		got, n, reason := parseFrame(testKey, buf)
		if reason != dropNone || n != len(buf) || got != f {
			t.Fatalf("parse(encode(%+v)) = %+v, %d of %d bytes, %q", f, got, n, len(buf), reason)
		}
		for k := range len(buf) {
			if _, n, reason := parseFrame(testKey, buf[:k]); n != 0 && reason != dropCorrupt {
				t.Fatalf("a %d-byte prefix of a %d-byte frame: consumed %d, %q", k, len(buf), n, reason)
			}
		}
		// A flipped bit is never accepted, and the reader finds the next good frame (a
		// flipped length may swallow the first ones).
		stream := bytes.Clone(buf)
		bit := r.IntN(len(buf) * 8)
		stream[bit/8] ^= 1 << (bit % 8)
		next := f
		for i := range 4 {
			next.Seq = f.Seq + uint64(i) + 1
			stream, _ = appendFrame(stream, testKey, next)
		}
		frames := parseAll(stream)
		if len(frames) == 0 || frames[len(frames)-1] != next {
			t.Fatalf("bit %d flipped: then accepted %+v, want the last of 4 good frames among them", bit, frames)
		}
		for _, g := range frames {
			if g.Seq == f.Seq {
				t.Fatalf("frame with bit %d flipped accepted: %+v", bit, g)
			}
		}
	}
	if _, err := appendFrame(nil, testKey, Frame{NodeID: strings.Repeat("x", maxIDLen+1)}); err == nil {
		t.Fatal("a 64-byte node ID was encoded")
	}
}

// parseAll returns the frames parseFrame accepts in buf.
func parseAll(buf []byte) []Frame {
	var out []Frame
	for {
		f, n, reason := parseFrame(testKey, buf)
		if n == 0 {
			return out
		}
		if reason == dropNone {
			out = append(out, f)
		}
		buf = buf[n:]
	}
}

// testLink is a link whose frames are fed to consume directly.
func testLink(t *testing.T, peer string, frames *[]Frame) *serialLink {
	cfg := SerialConfig{Device: "test", Peer: peer, Key: testKey}.withDefaults()
	return newSerialLink(cfg, "d1", nil, func() (uint64, string) { return 0, "" }, func(f Frame) { *frames = append(*frames, f) }, testLogger(t))
}

func encode(t *testing.T, key []byte, f Frame) []byte {
	t.Helper()
	b, err := appendFrame(nil, key, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Forged, replayed, foreign and corrupted frames are dropped and counted; good frames around
// them still arrive.
func TestSerialLinkDrops(t *testing.T) {
	var got []Frame
	l := testLink(t, "d2", &got)
	good := func(nonce, seq uint64) []byte {
		return encode(t, testKey, Frame{Nonce: nonce, Seq: seq, NodeID: "d2", Term: 3, Leader: "d2"})
	}
	corrupted := good(10, 3)
	corrupted[10] ^= 0x40
	// A damaged length byte makes the frame reach into the next one, which must still arrive.
	stretched := good(10, 4)
	stretched[3] = maxFrameBody
	var stream []byte
	for _, part := range [][]byte{
		good(10, 1),
		encode(t, []byte("another key, another pool......"), Frame{Nonce: 10, Seq: 2, NodeID: "d2", Term: 9, Leader: "d3"}), // forged
		good(10, 1),                 // replayed
		[]byte("line noise \x00TH"), // noise, with a false magic
		corrupted,
		stretched,
		good(10, 2),
		good(9, 100), // an older boot's frame: replayed
		encode(t, testKey, Frame{Nonce: 10, Seq: 5, NodeID: "d3"}), // authentic but not the peer
		good(11, 1), // the peer restarted
	} {
		stream = append(stream, part...)
	}
	rest := l.consume(stream, time.Now())
	if len(rest) != 0 {
		t.Errorf("%d bytes left over", len(rest))
	}
	var seqs []uint64
	for _, f := range got {
		seqs = append(seqs, f.Nonce*1000+f.Seq)
	}
	if want := []uint64{10001, 10002, 11001}; !slices.Equal(seqs, want) {
		t.Errorf("accepted nonce*1000+seq %v, want %v", seqs, want)
	}
	st := l.status(time.Now())
	if st.Received != 3 || st.Replayed != 2 || st.Foreign != 1 || st.BadMAC < 3 || st.Corrupt < 1 {
		t.Errorf("counters %+v: want received 3, replayed 2, foreign 1, bad_mac >= 3 (forged, corrupted, stretched), corrupt >= 1 (noise)", st)
	}
	if st.State != LinkUp || st.PeerTerm != 3 || st.PeerLeader != "d2" {
		t.Errorf("status %+v: want up, peer term 3 led by d2", st)
	}
	if st := l.status(time.Now().Add(DefaultSerialDeadtime)); st.State != LinkDown {
		t.Errorf("state %q a deadtime after the last frame, want down", st.State)
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct{ contact, link, want string }{
		{ContactOK, LinkUp, PeerAlive},
		{ContactOK, LinkDown, PeerAlive},
		{ContactLost, LinkUp, PeerNetworkCut},
		{ContactLost, LinkDown, PeerDead},
		{ContactUnknown, LinkUp, PeerAlive},
		{ContactUnknown, LinkDown, PeerUnknown},
	} {
		if got := verdict(c.contact, c.link); got != c.want {
			t.Errorf("verdict(%s, %s) = %q, want %q", c.contact, c.link, got, c.want)
		}
	}
}

// Two links over a pty null-modem cable see each other up, and one sees the other down a
// deadtime after it stops.
func TestSerialLinkOverPTY(t *testing.T) {
	devA, devB := serialtest.NullModem(t)
	cfg := func(dev, peer string) SerialConfig {
		return SerialConfig{Device: dev, Baud: 19200, Peer: peer, Keepalive: 20 * time.Millisecond, Deadtime: 200 * time.Millisecond, Key: testKey}
	}
	var mu sync.Mutex
	var heard []Frame
	a := newSerialLink(cfg(devA, "d2"), "d1", openSerial(cfg(devA, "d2")), func() (uint64, string) { return 7, "d1" }, func(f Frame) {
		mu.Lock()
		heard = append(heard, f)
		mu.Unlock()
	}, testLogger(t))
	b := newSerialLink(cfg(devB, "d1"), "d2", openSerial(cfg(devB, "d1")), func() (uint64, string) { return 8, "d2" }, nil, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxB, stopB := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { a.Run(ctx) })
	wg.Go(func() { b.Run(ctxB) })

	waitFor(t, 3*time.Second, "both ends up", func() bool {
		return a.status(time.Now()).State == LinkUp && b.status(time.Now()).State == LinkUp
	})
	// Bytes written before the far end set raw mode may arrive mangled; once both are up,
	// nothing is dropped.
	drops := func(st SerialStatus) uint64 { return st.BadMAC + st.Corrupt + st.Replayed + st.Foreign }
	before := b.status(time.Now())
	waitFor(t, 3*time.Second, "5 more frames", func() bool { return b.status(time.Now()).Received >= before.Received+5 })
	if st := b.status(time.Now()); st.PeerTerm != 7 || st.PeerLeader != "d1" || drops(st) != drops(before) {
		t.Errorf("d2's view of d1: %+v, drops before %d", st, drops(before))
	}
	mu.Lock()
	if len(heard) == 0 || heard[0].NodeID != "d2" || heard[0].Term != 8 {
		t.Errorf("d1 heard %+v", heard)
	}
	mu.Unlock()
	stopB()
	start := time.Now()
	waitFor(t, 3*time.Second, "d1 sees d2 down", func() bool { return a.status(time.Now()).State == LinkDown })
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("link down %s after the peer stopped, before the 200ms deadtime", took)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll(ctxTimeout(t, timeout), 5*time.Millisecond, cond); err != nil {
		t.Fatalf("%s: not within %s", what, timeout)
	}
}
