package director_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/netfake"
	"github.com/troop-lb/troop/fsm"
)

// handOverAsync runs r.d.HandOver with a transfer that makes the pool depose this director,
// as a successful Raft leadership transfer does, and returns HandOver's result.
func (r *ownerRig) handOverAsync(term uint64) <-chan error {
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res <- r.d.HandOver(ctx, func(context.Context) error {
			r.pool.set(cluster.Leadership{IsLeader: false, Term: term, LeaderID: "b"})
			return nil
		})
	}()
	return res
}

// handingOver starts a leader holding both VIPs (with IPVS if asked) whose director keeps a VIP
// the new leader has not announced for hold, asks it to hand over, and returns once it has
// yielded both VIPs, with HandOver's result to come.
func handingOver(t *testing.T, withIPVS bool, hold time.Duration) (*ownerRig, <-chan error) {
	t.Helper()
	r := newOwnerRigWith(t, withIPVS, func(c *director.Config) { c.HandoverHold = hold })
	r.leading()
	res := r.handOverAsync(3)
	eventually(t, "both VIPs yielded", func() bool { return len(r.ann.Yielded()) == 2 })
	return r, res
}

// leading starts the rig as the leader holding both VIPs.
func (r *ownerRig) leading() {
	r.t.Helper()
	r.seedTable()
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 2, LeaderID: "a"})
	r.start()
	eventually(r.t, "leader holds both VIPs", func() bool { return len(r.holds()) == 2 })
	eventually(r.t, "both announced", func() bool { return len(r.ann.Active()) == 2 })
}

func (r *ownerRig) syncRole() string {
	ds, _ := r.ipvs.SyncDaemons().Daemons()
	var out []string
	for _, d := range ds {
		out = append(out, map[director.SyncState]string{director.SyncMaster: "master", director.SyncBackup: "backup"}[d.State])
	}
	return strings.Join(out, ",")
}

func pending(t *testing.T, res <-chan error, what string) {
	t.Helper()
	select {
	case err := <-res:
		t.Fatalf("HandOver returned (%v) %s", err, what)
	default:
	}
}

func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("HandOver did not return")
		return nil
	}
}

func TestHandOverKeepsVIPsUntilTheNewLeaderAnnouncesThem(t *testing.T) {
	r, res := handingOver(t, true, time.Minute)
	// Leadership is gone, the announcements have stopped, but the VIPs stay, and so does the
	// master sync daemon: this director still forwards what clients send it.
	time.Sleep(100 * time.Millisecond) // several reconcile intervals
	if got := strings.Join(r.holds(), ","); got != "192.0.2.10/32,2001:db8::10/128" {
		t.Fatalf("VIPs held during the handover: %q, want both", got)
	}
	if a := r.ann.Active(); len(a) != 0 {
		t.Errorf("still announcing %v during the handover", a)
	}
	if st := r.d.Status(); st.Leader || len(st.VIPs) != 2 {
		t.Errorf("status during the handover: %+v", st)
	}
	if got := r.syncRole(); got != "master" {
		t.Errorf("sync daemons during the handover: %s, want master", got)
	}
	pending(t, res, "before the new leader announced anything")

	// The new leader announces one VIP: that one goes at once, the other stays.
	if !r.ann.Claim(vip4) {
		t.Fatal("192.0.2.10 was not yielded")
	}
	eventually(t, "claimed VIP released", func() bool { return strings.Join(r.holds(), ",") == "2001:db8::10/128" })
	pending(t, res, "with a VIP not yet announced by the new leader")

	r.ann.Claim(vip6)
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	if h := r.holds(); len(h) != 0 {
		t.Errorf("VIPs left after the handover: %v", h)
	}
	if got := r.syncRole(); got != "backup" {
		t.Errorf("sync daemons after the handover: %s, want backup", got)
	}
	lines := r.ann.Journal().Lines()
	for _, vip := range []string{"192.0.2.10", "2001:db8::10"} {
		// (The director's start removes leftovers first: look after the yield.)
		yield := slices.Index(lines, "yield "+vip+" on eth0")
		after := lines[max(yield, 0):]
		stop := slices.Index(after, "stop "+vip)
		remove := slices.IndexFunc(after, func(l string) bool { return strings.HasPrefix(l, "remove "+vip+"/") })
		if yield < 0 || stop < 0 || remove < stop {
			t.Errorf("%s: want yield, stop, remove in that order:\n%s", vip, strings.Join(lines, "\n"))
		}
	}
	if m := r.ann.Mistakes(); len(m) != 0 {
		t.Errorf("mistakes: %v", m)
	}
}

func TestLossWithoutHandOverReleasesAtOnce(t *testing.T) {
	r := newOwnerRigWith(t, false, func(c *director.Config) { c.HandoverHold = time.Minute })
	r.leading()

	// A transfer that fails calls the handover off ...
	failed := errors.New("no voter to transfer to")
	if err := r.d.HandOver(context.Background(), func(context.Context) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("HandOver = %v, want the transfer's error", err)
	}
	// ... so a later loss (a partition, say) drops the VIPs first, as any loss does.
	r.pool.set(cluster.Leadership{IsLeader: false, Term: 3, LeaderID: "b"})
	eventually(t, "VIPs released", func() bool { return len(r.holds()) == 0 })
	for _, l := range r.ann.Journal().Lines() {
		if strings.HasPrefix(l, "yield ") {
			t.Errorf("a loss without a handover yielded: %s", l)
		}
	}
}

func TestHandOverHoldExpires(t *testing.T) {
	const hold = 200 * time.Millisecond
	start := time.Now()
	r, res := handingOver(t, true, hold)
	// The new leader never announces: the VIPs go when the hold runs out, not before.
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("handover over after %s, before the %s hold", took, hold)
	}
	if h := r.holds(); len(h) != 0 {
		t.Errorf("VIPs left after the hold expired: %v", h)
	}
	if y := r.ann.Yielded(); len(y) != 0 {
		t.Errorf("still yielding %v", y)
	}
	if got := r.syncRole(); got != "backup" {
		t.Errorf("sync daemons after the hold: %s, want backup", got)
	}
}

func TestHandOverEndsWithRun(t *testing.T) {
	r, res := handingOver(t, false, time.Minute)
	r.stop() // the agent's dataplane stops: the VIPs go at once, hold or not
	if h := r.holds(); len(h) != 0 {
		t.Errorf("VIPs left after Run returned: %v", h)
	}
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
}

func TestHandOverEndsWhenLeadingAgain(t *testing.T) {
	r, res := handingOver(t, false, time.Minute)
	r.ann.Claim(vip6)
	eventually(t, "claimed VIP released", func() bool { return len(r.holds()) == 1 })

	// Elected again before the other VIP was announced: the hold ends, and the takeover puts
	// back and announces both.
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 4, LeaderID: "a"})
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	eventually(t, "both VIPs held and announced", func() bool { return len(r.holds()) == 2 && len(r.ann.Active()) == 2 })
	if y := r.ann.Yielded(); len(y) != 0 {
		t.Errorf("still yielding %v", y)
	}
	// The next loss, with no handover asked for, drops them at once.
	r.pool.set(cluster.Leadership{IsLeader: false, Term: 5, LeaderID: "b"})
	eventually(t, "VIPs released", func() bool { return len(r.holds()) == 0 })
}

func TestFakeAnnouncerYield(t *testing.T) {
	addrs := netfake.NewAddresses(nil)
	addrs.AddInterface("eth0", annMAC(1))
	if err := addrs.Add("eth0", netip.MustParsePrefix("192.0.2.10/32"), ""); err != nil {
		t.Fatal(err)
	}
	ann := netfake.NewAnnouncer(addrs.Journal(), addrs)
	ann.Announce("eth0", vip4)
	claimed := ann.Yield("eth0", vip4)
	if again := ann.Yield("eth0", vip4); again != claimed {
		t.Error("yielding again returned another channel")
	}
	ann.Yield("eth0", vip6) // not held: a mistake
	annDiffText(t, "state", ann.String(), "192.0.2.10 on eth0 (yielded)\n2001:db8::10 on eth0 (yielded)\n")
	if !ann.Claim(vip4) {
		t.Fatal("Claim of a yielded VIP reported none")
	}
	select {
	case <-claimed:
	default:
		t.Fatal("Claim did not close the yield channel")
	}
	if ann.Claim(vip4) {
		t.Error("a second Claim found the yield still there")
	}
	ann.Stop(vip6)
	if y := ann.Yielded(); len(y) != 0 {
		t.Errorf("yields left after the claim and Stop: %v", y)
	}
	if m := ann.Mistakes(); len(m) != 1 || !strings.HasPrefix(m[0], "yield 2001:db8::10 on eth0:") {
		t.Errorf("mistakes = %q", m)
	}
	annDiffText(t, "journal", addrs.Journal().String(), `add 192.0.2.10/32 to eth0
announce 192.0.2.10 on eth0
yield 192.0.2.10 on eth0
yield 192.0.2.10 on eth0
yield 2001:db8::10 on eth0
stop 2001:db8::10
`)
}

// A leader that hands over sends its connections to the backups itself, at once and again for
// each new one (a handshake in progress included) until the hold ends: the kernel's daemon would
// send them up to 2 s late, and never one in SYN_RECV.
func TestHandOverSendsConnectionsToTheBackups(t *testing.T) {
	r := newOwnerRigWith(t, true, func(c *director.Config) { c.HandoverHold = time.Minute })
	r.leading()
	eventually(t, "IPVS programmed", func() bool { return strings.Contains(r.ipvs.String(), "192.0.2.21:80") })
	conn := func(port uint16, state string) director.Conn {
		return director.Conn{Protocol: fsm.TCP, Client: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.200"), port),
			Virtual: netip.MustParseAddrPort("192.0.2.10:80"), Dest: netip.MustParseAddrPort("192.0.2.21:80"), State: state, Expires: time.Minute}
	}
	established := conn(40000, "ESTABLISHED")
	r.conns.SetConns(established, director.Conn{Protocol: fsm.TCP, Client: established.Client,
		Virtual: established.Virtual, Dest: netip.MustParseAddrPort("192.0.2.99:80"), State: "ESTABLISHED"}) // not Troop's
	res := r.handOverAsync(3)
	eventually(t, "the established connection sent", func() bool { return sentConns(r) == 1 })
	sent := r.conns.Sent()
	if sent[0].Iface != "eth0" || sent[0].Msg[1] != 1 {
		t.Errorf("sent %+v, want syncid 1 on eth0", sent[0])
	}

	// A handshake reaching this director during the hold is sent as soon as it shows up, and
	// again once established; what was sent is not sent again.
	r.conns.SetConns(established, conn(40001, "SYN_RECV"))
	eventually(t, "the handshake sent", func() bool { return sentConns(r) == 2 })
	r.conns.SetConns(established, conn(40001, "ESTABLISHED"))
	eventually(t, "its new state sent", func() bool { return sentConns(r) == 3 })
	time.Sleep(100 * time.Millisecond)
	if n := sentConns(r); n != 3 {
		t.Errorf("%d connections sent, want 3 (each state once)", n)
	}

	r.ann.Claim(vip4)
	r.ann.Claim(vip6)
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	r.conns.SetConns(established, conn(40002, "SYN_RECV"))
	time.Sleep(100 * time.Millisecond)
	if n := sentConns(r); n != 3 {
		t.Errorf("%d connections sent after the handover ended, want none more", n-3)
	}
}

// sentConns counts the connections in the sync messages the rig's leader sent.
func sentConns(r *ownerRig) int {
	n := 0
	for _, s := range r.conns.Sent() {
		n += int(s.Msg[4])
	}
	return n
}
