package director_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/director"
)

// nsDirector is a director's VIP side in a lab namespace: its addresses and its announcer
// (with the duplicate watch), running until the test ends.
type nsDirector struct {
	*nsNode
	addrs *director.NetlinkAddresses
	io    *director.PacketIO
	ann   *director.NetAnnouncer
}

func newNSDirector(t *testing.T, n *nsNode, cfg director.AnnouncerConfig) *nsDirector {
	t.Helper()
	log := slog.New(slog.NewTextHandler(annNSLog{t, n.name}, nil))
	io := director.NewPacketIO(n.path, log)
	ann, err := director.NewNetAnnouncer(director.AnnouncerOptions{Config: cfg, Sender: io, Listener: io, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ann.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", n.name, err)
		}
		io.Close()
	})
	return &nsDirector{nsNode: n, addrs: n.addresses(), io: io, ann: ann}
}

// take makes d the VIP's owner: add, then announce.
func (d *nsDirector) take(t *testing.T, vip netip.Addr) {
	t.Helper()
	if err := d.addrs.Add("eth0", director.HostPrefix(vip), ""); err != nil {
		t.Fatal(err)
	}
	d.ann.Announce("eth0", vip)
}

// release gives the VIP up as a deposed leader does: stop announcing, then remove.
func (d *nsDirector) release(t *testing.T, vip netip.Addr) {
	t.Helper()
	d.ann.Stop(vip)
	if err := d.addrs.Remove("eth0", director.HostPrefix(vip)); err != nil {
		t.Fatal(err)
	}
}

func (d *nsDirector) stats(vip netip.Addr) director.AnnounceStats {
	for _, s := range d.ann.Stats() {
		if s.VIP == vip {
			return s
		}
	}
	return director.AnnounceStats{}
}

type annNSLog struct {
	t    *testing.T
	node string
}

func (w annNSLog) Write(b []byte) (int, error) {
	w.t.Log(w.node + ": " + strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// TestAnnounceMovesClientNeighbour: the VIP moves between directors A and B, and client C's
// neighbour entry follows it with nothing but the announcements (C sends nothing after its
// first datagram). Linux updates an existing entry only, from an unsolicited NA, so C's first
// datagram creates one.
func TestAnnounceMovesClientNeighbour(t *testing.T) {
	l := newNSLab(t)
	a := newNSDirector(t, l.node("A", "192.0.2.1/24", "2001:db8::1/64"), director.AnnouncerConfig{})
	b := newNSDirector(t, l.node("B", "192.0.2.2/24", "2001:db8::2/64"), director.AnnouncerConfig{})
	c := l.node("C", "192.0.2.50/24", "2001:db8::50/64")

	for _, vip := range []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")} {
		t.Run(vip.String(), func(t *testing.T) {
			b.take(t, vip)
			if err := c.reach(vip, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			if mac, state := c.neighbour(vip); mac != b.mac.String() {
				t.Fatalf("after its datagram C's entry is %s %s, want B's %s", mac, state, b.mac)
			}

			b.release(t, vip)
			a.take(t, vip)
			took := c.waitNeighbour(vip, a.mac, 3*time.Second)
			t.Logf("B → A: C's entry moved to A %s after A announced", took.Round(time.Millisecond))

			a.release(t, vip)
			b.take(t, vip)
			took = c.waitNeighbour(vip, b.mac, 3*time.Second)
			t.Logf("A → B: C's entry moved to B %s after B announced", took.Round(time.Millisecond))
			b.release(t, vip)

			if sa := a.stats(vip); sa.Sent == 0 || sa.Errors != 0 || sa.Announcing {
				t.Errorf("A's stats: %+v", sa)
			}
		})
	}
}

// TestDuplicateWatchInNetns: A holds the VIP; B claims it too (a split brain, or a
// misconfigured real server) and announces it. A's watch sees B's claim, counts it and
// re-announces, and C's entry comes back to A.
func TestDuplicateWatchInNetns(t *testing.T) {
	l := newNSLab(t)
	// A tiny holdoff: re-announce at every claim, so the test need not wait 5 s.
	a := newNSDirector(t, l.node("A", "192.0.2.1/24", "2001:db8::1/64"), director.AnnouncerConfig{ConflictHoldoff: time.Nanosecond})
	b := l.node("B", "192.0.2.2/24", "2001:db8::2/64")
	bAddrs := b.addresses()
	bIO := director.NewPacketIO(b.path, nil)
	t.Cleanup(func() { bIO.Close() })
	c := l.node("C", "192.0.2.50/24", "2001:db8::50/64")

	for _, vip := range []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")} {
		t.Run(vip.String(), func(t *testing.T) {
			a.take(t, vip)
			if err := c.reach(vip, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			c.waitNeighbour(vip, a.mac, time.Second)
			// B holds it too (its NA must come from an address it has).
			if err := bAddrs.Add("eth0", director.HostPrefix(vip), ""); err != nil {
				t.Fatal(err)
			}
			kind := director.ARPRequest
			if vip.Is6() {
				kind = director.NeighborAdvertisement
			}
			// The watch starts with Announce, asynchronously: B claims until A has seen it.
			start := time.Now()
			for a.stats(vip).Conflicts == 0 {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("A saw no conflict in 5 s; stats %+v", a.stats(vip))
				}
				if err := bIO.Send("eth0", vip, kind); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			st := a.stats(vip)
			t.Logf("A saw B's claim %s after B's first; stats %+v", time.Since(start).Round(time.Millisecond), st)
			if !bytes.Equal(st.LastConflictFrom, b.mac) {
				t.Errorf("conflict from %s, want B's %s", st.LastConflictFrom, b.mac)
			}
			took := c.waitNeighbour(vip, a.mac, 3*time.Second)
			t.Logf("C's entry is A's again %s after the claim was seen", took.Round(time.Millisecond))
			if err := bAddrs.Remove("eth0", director.HostPrefix(vip)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for a.stats(vip).Reannounced == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if st := a.stats(vip); st.Reannounced == 0 {
				t.Errorf("A did not re-announce: %+v", st)
			}
			a.release(t, vip)
		})
	}
}
