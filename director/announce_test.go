package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// annClock is a Clock that moves only when told (tailscale tstest/clock style). Every timer it
// arms is reported on armed, so a test knows when a goroutine has finished a step and is
// waiting again, without sleeping.
type annClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*annTimer
	armed  chan time.Duration
}

type annTimer struct {
	at time.Time
	c  chan time.Time
}

var annClockStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newAnnClock() *annClock {
	return &annClock{now: annClockStart, armed: make(chan time.Duration, 1000)}
}

func (c *annClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *annClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	t := &annTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	c.mu.Unlock()
	c.armed <- d
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := len(c.timers)
		c.timers = slices.DeleteFunc(c.timers, func(x *annTimer) bool { return x == t })
		return len(c.timers) < n
	}
}

// Advance moves the clock and fires the timers that are due.
func (c *annClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *annTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.c <- c.now
		return true
	})
}

// waitArmed returns the duration of the next timer armed.
func (c *annClock) waitArmed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no timer was armed")
		return 0
	}
}

// annPacket is one Send call.
type annPacket struct {
	at    time.Duration // since annClockStart
	iface string
	vip   netip.Addr
	kind  PacketKind
}

func (p annPacket) String() string {
	return fmt.Sprintf("%5.1fs %s %s on %s", p.at.Seconds(), p.kind, p.vip, p.iface)
}

// annSender records what would be sent, stamped with the fake clock.
type annSender struct {
	clock *annClock
	sent  chan annPacket

	mu   sync.Mutex
	fail error // returned by every Send while set
}

func newAnnSender(c *annClock) *annSender {
	return &annSender{clock: c, sent: make(chan annPacket, 1000)}
}

func (s *annSender) Send(iface string, vip netip.Addr, kind PacketKind) error {
	s.sent <- annPacket{at: s.clock.Now().Sub(annClockStart), iface: iface, vip: vip, kind: kind}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail
}

func (s *annSender) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// take returns the next n packets sent, rendered one per line.
func (s *annSender) take(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		select {
		case p := <-s.sent:
			b.WriteString(p.String() + "\n")
		case <-time.After(5 * time.Second):
			t.Fatalf("only these packets were sent:\n%s", b.String())
		}
	}
	return b.String()
}

// none checks that nothing more was sent.
func (s *annSender) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-s.sent:
		t.Errorf("unexpected packet: %s", p)
	default:
	}
}

type annTest struct {
	t      *testing.T
	clock  *annClock
	sender *annSender
	a      *NetAnnouncer
	cancel context.CancelFunc
	done   chan error
}

// newAnnTest builds an announcer on a fake clock and sender; run starts it.
func newAnnTest(t *testing.T, cfg AnnouncerConfig, l Listener) *annTest {
	t.Helper()
	c := newAnnClock()
	s := newAnnSender(c)
	a, err := NewNetAnnouncer(AnnouncerOptions{Config: cfg, Sender: s, Listener: l, Clock: c, Log: annLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return &annTest{t: t, clock: c, sender: s, a: a}
}

func (at *annTest) run() {
	ctx, cancel := context.WithCancel(context.Background())
	at.cancel, at.done = cancel, make(chan error, 1)
	go func() { at.done <- at.a.Run(ctx) }()
	at.t.Cleanup(at.stop)
}

// stop ends Run and waits for it: every goroutine it owns has ended when it returns.
func (at *annTest) stop() {
	if at.cancel == nil {
		return
	}
	at.cancel()
	at.cancel = nil
	select {
	case err := <-at.done:
		if err != nil {
			at.t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		at.t.Fatal("Run did not return after its context ended")
	}
}

// step advances the clock by d and returns what was sent then (n packets).
func (at *annTest) step(d time.Duration, n int) string {
	at.t.Helper()
	at.clock.Advance(d)
	return at.sender.take(at.t, n)
}

func (at *annTest) expectArmed(want time.Duration) {
	at.t.Helper()
	if got := at.clock.waitArmed(at.t); got != want {
		at.t.Fatalf("timer armed for %s, want %s", got, want)
	}
}

// statsWhen returns vip's stats once ok accepts them, or after a second as they are.
func (at *annTest) statsWhen(vip netip.Addr, ok func(AnnounceStats) bool) AnnounceStats {
	deadline := time.Now().Add(time.Second)
	for {
		st := at.stats(vip)
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

func (at *annTest) stats(vip netip.Addr) AnnounceStats {
	for _, s := range at.a.Stats() {
		if s.VIP == vip {
			return s
		}
	}
	return AnnounceStats{}
}

func annDiff(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
	}
}

var (
	annVIP4 = netip.MustParseAddr("192.0.2.10")
	annVIP6 = netip.MustParseAddr("2001:db8::10")
)

func TestAnnounceDefaultSchedule(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{}, nil)
	at.run()
	at.a.Announce("eth0", annVIP4)
	got := at.sender.take(t, 2)
	for i := range DefaultAnnounceRepeats {
		at.expectArmed(DefaultAnnounceInterval)
		got += at.step(DefaultAnnounceInterval, 2)
		_ = i
	}
	annDiff(t, "IPv4 schedule", got, `  0.0s arp-request 192.0.2.10 on eth0
  0.0s arp-reply 192.0.2.10 on eth0
  1.1s arp-request 192.0.2.10 on eth0
  1.1s arp-reply 192.0.2.10 on eth0
  2.2s arp-request 192.0.2.10 on eth0
  2.2s arp-reply 192.0.2.10 on eth0
  3.3s arp-request 192.0.2.10 on eth0
  3.3s arp-reply 192.0.2.10 on eth0
  4.4s arp-request 192.0.2.10 on eth0
  4.4s arp-reply 192.0.2.10 on eth0
  5.5s arp-request 192.0.2.10 on eth0
  5.5s arp-reply 192.0.2.10 on eth0
`)
	// Refresh is off: after the repeats the schedule waits for nothing but a new burst.
	at.clock.Advance(time.Hour)
	at.a.Stop(annVIP4) // returns once the VIP's goroutine has ended
	at.sender.none(t)
	if len(at.clock.armed) != 0 {
		t.Errorf("a timer was armed after the last repeat")
	}
	st := at.stats(annVIP4)
	if st.Sent != 12 || st.Errors != 0 || st.Announcing || st.Iface != "eth0" {
		t.Errorf("stats = %+v, want 12 sent on eth0, not announcing", st)
	}
}

func TestAnnounceIPv6BurstAndRepeats(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Burst: 3, Repeats: 2, Interval: 2 * time.Second}, nil)
	at.run()
	at.a.Announce("eth1", annVIP6)
	got := at.sender.take(t, 3)
	at.expectArmed(2 * time.Second)
	got += at.step(2*time.Second, 1)
	at.expectArmed(2 * time.Second)
	got += at.step(2*time.Second, 1)
	annDiff(t, "IPv6 schedule", got, `  0.0s neighbor-advertisement 2001:db8::10 on eth1
  0.0s neighbor-advertisement 2001:db8::10 on eth1
  0.0s neighbor-advertisement 2001:db8::10 on eth1
  2.0s neighbor-advertisement 2001:db8::10 on eth1
  4.0s neighbor-advertisement 2001:db8::10 on eth1
`)
	at.a.Stop(annVIP6)
	at.sender.none(t)
}

func TestAnnounceStopCancels(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{}, nil)
	at.run()
	at.a.Announce("eth0", annVIP4)
	at.a.Announce("eth0", netip.MustParseAddr("192.0.2.11"))
	at.sender.take(t, 4)
	at.expectArmed(DefaultAnnounceInterval)
	at.expectArmed(DefaultAnnounceInterval)
	at.a.Stop(annVIP4)
	// Only the other VIP goes on.
	annDiff(t, "after Stop", at.step(DefaultAnnounceInterval, 2), `  1.1s arp-request 192.0.2.11 on eth0
  1.1s arp-reply 192.0.2.11 on eth0
`)
	at.a.Stop(netip.MustParseAddr("192.0.2.11"))
	at.clock.Advance(time.Minute)
	at.sender.none(t)
	at.a.Stop(annVIP4) // again: no error, nothing to wait for
	if st := at.stats(annVIP4); st.Sent != 2 || st.Announcing {
		t.Errorf("stats = %+v, want 2 sent, not announcing", st)
	}
}

func TestAnnounceRefresh(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Repeats: 1, Refresh: 30 * time.Second}, nil)
	at.run()
	at.a.Announce("eth0", annVIP6)
	got := at.sender.take(t, 1)
	at.expectArmed(DefaultAnnounceInterval)
	got += at.step(DefaultAnnounceInterval, 1)
	for range 3 {
		at.expectArmed(30 * time.Second)
		got += at.step(30*time.Second, 1)
	}
	annDiff(t, "refresh", got, `  0.0s neighbor-advertisement 2001:db8::10 on eth0
  1.1s neighbor-advertisement 2001:db8::10 on eth0
 31.1s neighbor-advertisement 2001:db8::10 on eth0
 61.1s neighbor-advertisement 2001:db8::10 on eth0
 91.1s neighbor-advertisement 2001:db8::10 on eth0
`)
}

// Issue 6: periodic re-announcements go out only once the leadership has been confirmed. The
// repeats, the refreshes and a claim's burst ask Confirm; Announce's own bursts (a takeover)
// do not. A refused round is skipped and counted, and the schedule goes on.
func TestAnnounceReannouncesOnlyOnceConfirmed(t *testing.T) {
	var mu sync.Mutex
	var refuse error
	var asked int
	confirm := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return refuse
	}
	setRefuse := func(err error) {
		mu.Lock()
		refuse = err
		mu.Unlock()
	}
	l := newAnnListener()
	c := newAnnClock()
	s := newAnnSender(c)
	a, err := NewNetAnnouncer(AnnouncerOptions{Config: AnnouncerConfig{Repeats: 1, Refresh: 30 * time.Second},
		Sender: s, Listener: l, Clock: c, Log: annLogger(t), Confirm: confirm})
	if err != nil {
		t.Fatal(err)
	}
	at := &annTest{t: t, clock: c, sender: s, a: a}
	at.run()

	at.a.Announce("eth0", annVIP6)
	got := s.take(t, 1) // the takeover's burst
	at.expectArmed(DefaultAnnounceInterval)
	l.waitOpened(t, "eth0")
	got += at.step(DefaultAnnounceInterval, 1) // the repeat, confirmed
	at.expectArmed(30 * time.Second)

	setRefuse(errors.New("not leader"))
	c.Advance(30 * time.Second) // the refresh, refused
	at.expectArmed(30 * time.Second)
	claim := Observed{Kind: NeighborAdvertisement, SenderIP: netip.MustParseAddr("fe80::b"), TargetIP: annVIP6, LinkAddr: annOtherMAC}
	l.inject(t, "eth0", claim) // past the holdoff: a burst at once, refused
	at.expectArmed(DefaultAnnounceInterval)
	s.none(t)

	setRefuse(nil)
	got += at.step(DefaultAnnounceInterval, 1) // the claim burst's repeat, confirmed
	at.expectArmed(30 * time.Second)
	setRefuse(errors.New("not leader"))
	at.a.Announce("eth0", annVIP6) // a new takeover's burst is not asked
	got += s.take(t, 1)
	annDiff(t, "rounds", got, `  0.0s neighbor-advertisement 2001:db8::10 on eth0
  1.1s neighbor-advertisement 2001:db8::10 on eth0
 32.2s neighbor-advertisement 2001:db8::10 on eth0
 32.2s neighbor-advertisement 2001:db8::10 on eth0
`)
	mu.Lock()
	n := asked
	mu.Unlock()
	if n != 4 {
		t.Errorf("Confirm asked %d times, want 4 (repeat, refresh, claim burst, repeat)", n)
	}
	if st := at.stats(annVIP6); st.Unconfirmed != 2 || st.Reannounced != 1 {
		t.Errorf("stats = %+v, want 2 unconfirmed rounds, 1 re-announcement", st)
	}
}

func TestAnnounceAgainRestartsBurst(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Repeats: 2}, nil)
	at.run()
	at.a.Announce("eth0", annVIP6)
	got := at.sender.take(t, 1)
	at.expectArmed(1100 * time.Millisecond)
	at.clock.Advance(500 * time.Millisecond)
	at.a.Announce("eth0", annVIP6) // a new takeover: burst now, repeats counted from it
	got += at.sender.take(t, 1)
	at.expectArmed(1100 * time.Millisecond)
	got += at.step(1100*time.Millisecond, 1)
	at.expectArmed(1100 * time.Millisecond)
	got += at.step(1100*time.Millisecond, 1)
	annDiff(t, "restart", got, `  0.0s neighbor-advertisement 2001:db8::10 on eth0
  0.5s neighbor-advertisement 2001:db8::10 on eth0
  1.6s neighbor-advertisement 2001:db8::10 on eth0
  2.7s neighbor-advertisement 2001:db8::10 on eth0
`)
	// Moving the VIP to another interface stops the old schedule and starts a new one.
	at.a.Announce("eth1", annVIP6)
	annDiff(t, "moved", at.sender.take(t, 1), "  2.7s neighbor-advertisement 2001:db8::10 on eth1\n")
	// The sender hands the packet over before the announcer counts it: wait for the count.
	if st := at.statsWhen(annVIP6, func(s AnnounceStats) bool { return s.Sent == 5 }); st.Iface != "eth1" || !st.Announcing || st.Sent != 5 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAnnounceBeforeAndAfterRun(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Repeats: -1}, nil)
	at.a.Announce("eth0", annVIP4) // recorded; starts with Run
	at.a.Announce("eth0", netip.MustParseAddr("192.0.2.99"))
	at.a.Stop(netip.MustParseAddr("192.0.2.99")) // never started: nothing to wait for
	at.sender.none(t)
	at.run()
	annDiff(t, "on Run", at.sender.take(t, 2), `  0.0s arp-request 192.0.2.10 on eth0
  0.0s arp-reply 192.0.2.10 on eth0
`)
	at.stop()
	at.a.Announce("eth0", annVIP6) // after Run: recorded, never sent
	at.a.Stop(annVIP6)
	at.sender.none(t)
	if err := at.a.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestAnnounceSendErrorsCounted(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Repeats: 1}, nil)
	at.sender.setFail(errors.New("network is down"))
	at.run()
	at.a.Announce("eth0", annVIP4)
	at.sender.take(t, 2)
	at.expectArmed(DefaultAnnounceInterval)
	at.sender.setFail(nil)
	at.step(DefaultAnnounceInterval, 2) // the schedule went on
	at.a.Stop(annVIP4)
	st := at.stats(annVIP4)
	if st.Errors != 2 || st.Sent != 2 || st.LastError != "network is down" {
		t.Errorf("stats = %+v, want 2 errors and 2 sent", st)
	}
}

func TestAnnounceRunStopsEverything(t *testing.T) {
	l := newAnnListener()
	at := newAnnTest(t, AnnouncerConfig{}, l)
	at.run()
	for i := range 20 {
		at.a.Announce(fmt.Sprintf("eth%d", i%3), netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}))
	}
	at.sender.take(t, 40)
	at.stop() // returns only once all 20 schedules and 3 watches have ended
	if n := l.active(); n != 0 {
		t.Errorf("%d watches still listening after Run returned", n)
	}
}

func TestAnnouncerConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  AnnouncerConfig
		want string
	}{
		{AnnouncerConfig{}, ""},
		{AnnouncerConfig{Burst: 5, Repeats: -1, Interval: 2 * time.Second, Refresh: time.Minute}, ""},
		{AnnouncerConfig{Interval: time.Second}, "announce interval 1s: must be at least 1.1s"},
		{AnnouncerConfig{Burst: 11}, "announce burst 11: must be 1–10"},
		{AnnouncerConfig{Repeats: 101}, "announce repeats 101"},
		{AnnouncerConfig{Refresh: time.Second}, "announce refresh 1s: must be off (0) or at least the interval 1.1s"},
		{AnnouncerConfig{ConflictHoldoff: -time.Second}, "announce conflict holdoff -1s"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := NewNetAnnouncer(AnnouncerOptions{}); err == nil {
		t.Error("NewNetAnnouncer without a Sender succeeded")
	}
}

// annListener is a Listener whose packets the test injects.
type annListener struct {
	mu      sync.Mutex
	handles map[string]func(Observed)
	fail    map[string]int // iface -> Listen calls still to fail
	opened  chan string
}

func newAnnListener() *annListener {
	return &annListener{handles: map[string]func(Observed){}, fail: map[string]int{}, opened: make(chan string, 100)}
}

var annOurMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}

func (l *annListener) HardwareAddr(string) (net.HardwareAddr, error) { return annOurMAC, nil }

func (l *annListener) Listen(ctx context.Context, iface string, handle func(Observed)) error {
	l.mu.Lock()
	if l.fail[iface] > 0 {
		l.fail[iface]--
		l.mu.Unlock()
		return errors.New("socket: operation not permitted")
	}
	l.handles[iface] = handle
	l.mu.Unlock()
	l.opened <- iface
	<-ctx.Done()
	l.mu.Lock()
	delete(l.handles, iface)
	l.mu.Unlock()
	return nil
}

func (l *annListener) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.handles)
}

// inject delivers o as if seen on iface.
func (l *annListener) inject(t *testing.T, iface string, o Observed) {
	t.Helper()
	l.mu.Lock()
	h := l.handles[iface]
	l.mu.Unlock()
	if h == nil {
		t.Fatalf("nobody listens on %s", iface)
	}
	h(o)
}

func (l *annListener) waitOpened(t *testing.T, iface string) {
	t.Helper()
	select {
	case got := <-l.opened:
		if got != iface {
			t.Fatalf("listening on %s, want %s", got, iface)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no watch opened on %s", iface)
	}
}

var annOtherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

func TestConflictReannouncesWithinHoldoff(t *testing.T) {
	l := newAnnListener()
	at := newAnnTest(t, AnnouncerConfig{}, l)
	at.run()
	at.a.Announce("eth0", annVIP6)
	at.sender.take(t, 1)
	at.expectArmed(DefaultAnnounceInterval)
	l.waitOpened(t, "eth0")

	claim := Observed{Kind: NeighborAdvertisement, SenderIP: netip.MustParseAddr("fe80::b"), TargetIP: annVIP6, LinkAddr: annOtherMAC}
	l.inject(t, "eth0", claim) // at 0 s: within the holdoff of the takeover burst
	// The schedule re-arms for its next repeat; the conflict burst waits for 5 s.
	at.expectArmed(DefaultAnnounceInterval)
	l.inject(t, "eth0", claim) // covered by the burst already waiting
	at.expectArmed(DefaultAnnounceInterval)
	got := ""
	for i := range 4 {
		got += at.step(DefaultAnnounceInterval, 1)
		if i < 3 {
			at.expectArmed(DefaultAnnounceInterval)
		}
	}
	at.expectArmed(600 * time.Millisecond) // 4.4 s → 5.0 s
	got += at.step(600*time.Millisecond, 1)
	at.expectArmed(DefaultAnnounceInterval) // the new burst's first repeat
	got += at.step(DefaultAnnounceInterval, 1)
	annDiff(t, "conflict burst", got, `  1.1s neighbor-advertisement 2001:db8::10 on eth0
  2.2s neighbor-advertisement 2001:db8::10 on eth0
  3.3s neighbor-advertisement 2001:db8::10 on eth0
  4.4s neighbor-advertisement 2001:db8::10 on eth0
  5.0s neighbor-advertisement 2001:db8::10 on eth0
  6.1s neighbor-advertisement 2001:db8::10 on eth0
`)
	st := at.stats(annVIP6)
	if st.Conflicts != 2 || st.Reannounced != 1 || st.LastConflictFrom.String() != annOtherMAC.String() || !st.LastConflictAt.Equal(annClockStart) {
		t.Errorf("stats = %+v, want 2 conflicts from %s at the start, 1 re-announcement", st, annOtherMAC)
	}

	// A claim after the holdoff re-announces at once.
	at.expectArmed(DefaultAnnounceInterval)
	// A stall (the process paused 10 s): the repeat due at 7.2 s goes out late, alone, and
	// the next one keeps the spacing instead of catching up back to back.
	got = at.step(10*time.Second, 1)
	at.expectArmed(DefaultAnnounceInterval)
	l.inject(t, "eth0", claim) // past the holdoff: at once
	got += at.sender.take(t, 1)
	annDiff(t, "late and immediate", got, ` 16.1s neighbor-advertisement 2001:db8::10 on eth0
 16.1s neighbor-advertisement 2001:db8::10 on eth0
`)

	// Our own packets, and claims on another interface, change nothing.
	before := at.stats(annVIP6)
	l.inject(t, "eth0", Observed{Kind: NeighborAdvertisement, TargetIP: annVIP6, LinkAddr: annOurMAC})
	if got := at.a.handleObserved("eth1", annOurMAC, claim); got != claimNotOwned {
		t.Errorf("claim on another interface: %s, want not-owned", got)
	}
	if after := at.stats(annVIP6); after.Conflicts != before.Conflicts {
		t.Errorf("conflicts went from %d to %d", before.Conflicts, after.Conflicts)
	}

	// Stopping the last VIP of the interface ends its watch.
	at.a.Stop(annVIP6)
	if got := at.a.handleObserved("eth0", annOurMAC, claim); got != claimNotOwned {
		t.Errorf("claim after Stop: %s, want not-owned", got)
	}
}

func TestWatchRetriesAfterFailure(t *testing.T) {
	l := newAnnListener()
	l.fail["eth0"] = 1
	at := newAnnTest(t, AnnouncerConfig{Repeats: -1}, l)
	at.run()
	at.a.Announce("eth0", annVIP4)
	at.sender.take(t, 2)
	// The failed watch waits watchRetry on the clock; the schedule arms nothing (no repeats).
	if d := at.clock.waitArmed(t); d != watchRetry {
		t.Fatalf("armed %s, want the retry %s", d, watchRetry)
	}
	at.clock.Advance(watchRetry)
	l.waitOpened(t, "eth0")
}

// annLogger sends the announcer's log lines to the test log.
func annLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(annLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type annLogWriter struct{ t *testing.T }

func (w annLogWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// closedWithin reports whether c is closed within d (real time: the watch runs in goroutines).
func closedWithin(c <-chan struct{}, d time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(d):
		return false
	}
}

func TestYieldHandsOverOnAClaimWithoutDefending(t *testing.T) {
	l := newAnnListener()
	at := newAnnTest(t, AnnouncerConfig{}, l)
	at.run()
	at.a.Announce("eth0", annVIP4)
	at.a.Announce("eth0", annVIP6)
	at.sender.take(t, 3)
	at.expectArmed(DefaultAnnounceInterval)
	at.expectArmed(DefaultAnnounceInterval)
	l.waitOpened(t, "eth0")

	claimed4 := at.a.Yield("eth0", annVIP4)
	if again := at.a.Yield("eth0", annVIP4); again != claimed4 {
		t.Error("yielding again returned another channel")
	}
	// The yield stopped the VIP's schedule (Yield returns once its goroutine has ended) but
	// kept the interface's watch open: no gap in which the new leader's claim could be missed.
	select {
	case iface := <-l.opened:
		t.Errorf("the watch on %s was reopened", iface)
	default:
	}
	if l.active() != 1 {
		t.Fatal("no watch on eth0 while yielding")
	}
	if st := at.stats(annVIP4); st.Announcing {
		t.Errorf("stats = %+v, want not announcing", st)
	}
	// Only the VIP still announced goes on.
	annDiff(t, "after Yield", at.step(DefaultAnnounceInterval, 1), "  1.1s neighbor-advertisement 2001:db8::10 on eth0\n")
	at.expectArmed(DefaultAnnounceInterval)

	// Our own packets and a host claiming nothing of ours close nothing.
	ours := Observed{Kind: ARPRequest, SenderIP: annVIP4, TargetIP: annVIP4, LinkAddr: annOurMAC}
	if got := at.a.handleObserved("eth0", annOurMAC, ours); got != claimFromUs {
		t.Errorf("our own GARP: %s, want from-us", got)
	}
	if closedWithin(claimed4, 10*time.Millisecond) {
		t.Fatal("the yield channel closed without a claim")
	}

	// The new leader's gratuitous ARP: the channel closes and nothing defends the VIP.
	garp := Observed{Kind: ARPRequest, SenderIP: annVIP4, TargetIP: annVIP4, LinkAddr: annOtherMAC}
	if got := at.a.handleObserved("eth0", annOurMAC, garp); got != claimHandedOver {
		t.Errorf("the new leader's GARP: %s, want handed-over", got)
	}
	if !closedWithin(claimed4, time.Second) {
		t.Fatal("the yield channel is still open after another host claimed the VIP")
	}
	// The yield is over: further claims are none of ours (and no burst, however long we wait).
	if got := at.a.handleObserved("eth0", annOurMAC, garp); got != claimNotOwned {
		t.Errorf("a claim after the handover: %s, want not-owned", got)
	}
	// Past the conflict holdoff: only the v6 repeat due at 2.2 s goes out (late), no v4 burst.
	got := at.step(DefaultConflictHoldoff+time.Second, 1)
	at.expectArmed(DefaultAnnounceInterval)
	annDiff(t, "no burst for the yielded VIP", got, "  7.1s neighbor-advertisement 2001:db8::10 on eth0\n")
	at.sender.none(t)
	if st := at.stats(annVIP4); st.Conflicts != 0 || st.Reannounced != 0 || st.Sent != 2 {
		t.Errorf("stats = %+v, want the takeover round only, no conflict", st)
	}
	at.a.Stop(annVIP4) // the caller removes the VIP: nothing to do
	if l.active() != 1 {
		t.Error("the watch closed while a VIP is still announced on eth0")
	}
}

func TestYieldWithoutClaimEndsWithStopOrAnnounce(t *testing.T) {
	l := newAnnListener()
	at := newAnnTest(t, AnnouncerConfig{Repeats: -1}, l)
	at.run()
	at.a.Announce("eth0", annVIP4)
	at.sender.take(t, 2)
	l.waitOpened(t, "eth0")

	// Nobody claims it: the channel stays open, and the caller's hold runs out (its timeout).
	claimed := at.a.Yield("eth0", annVIP4)
	if closedWithin(claimed, 20*time.Millisecond) {
		t.Fatal("the yield channel closed without a claim")
	}
	// Leading again: Announce ends the yield and the schedule starts over, defending again.
	at.a.Announce("eth0", annVIP4)
	at.sender.take(t, 2)
	claim := Observed{Kind: ARPReply, SenderIP: annVIP4, TargetIP: annVIP4, LinkAddr: annOtherMAC}
	if got := at.a.handleObserved("eth0", annOurMAC, claim); got != claimConflict {
		t.Errorf("a claim after Announce: %s, want conflict", got)
	}
	if closedWithin(claimed, 10*time.Millisecond) {
		t.Error("a claim on a VIP announced again closed the old yield's channel")
	}

	// Yield and then Stop without a claim: the watch ends with the last VIP of the interface.
	claimed = at.a.Yield("eth0", annVIP4)
	at.a.Stop(annVIP4)
	if got := at.a.handleObserved("eth0", annOurMAC, claim); got != claimNotOwned {
		t.Errorf("a claim after Stop: %s, want not-owned", got)
	}
	if closedWithin(claimed, 10*time.Millisecond) {
		t.Error("Stop closed the yield channel")
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.active() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watch is still open after the yield was stopped")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestYieldWithoutListenerNeverCloses(t *testing.T) {
	at := newAnnTest(t, AnnouncerConfig{Repeats: -1}, nil)
	at.run()
	at.a.Announce("eth0", annVIP6)
	at.sender.take(t, 1)
	claimed := at.a.Yield("eth0", annVIP6)
	if closedWithin(claimed, 20*time.Millisecond) {
		t.Fatal("closed without a watch")
	}
	at.a.Stop(annVIP6)
	at.sender.none(t)
}
