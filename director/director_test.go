package director_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/director/netfake"
	"github.com/troop-lb/troop/fsm"
)

// fakePool plays the Raft node: the test sets the leadership, ConsistentView reads the FSM.
type fakePool struct {
	f  *fsm.FSM
	ch chan cluster.Leadership
	// block, when set, makes ConsistentView wait for it (or ctx) first; err, when set, is then
	// its error (a leader that cannot confirm its leadership).
	mu    sync.Mutex
	block chan struct{}
	err   error
	// entered, when set, receives a value (without blocking) as ConsistentView starts to wait.
	entered chan struct{}
}

func (p *fakePool) WatchLeadership(ctx context.Context) <-chan cluster.Leadership { return p.ch }

func (p *fakePool) ConsistentView(ctx context.Context) (*fsm.State, error) {
	p.mu.Lock()
	block, err, entered := p.block, p.err, p.entered
	p.mu.Unlock()
	if block != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return p.f.View(), nil
}

// fail makes ConsistentView fail with err (nil: succeed again); blockOn makes it wait for c,
func (p *fakePool) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// and the channel it returns receives a value as a call starts to wait.
func (p *fakePool) blockOn(c chan struct{}) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.block, p.entered = c, make(chan struct{}, 1)
	return p.entered
}

// set replaces any unread leadership value, as cluster's coalescing feed does.
func (p *fakePool) set(l cluster.Leadership) {
	select {
	case <-p.ch:
	default:
	}
	p.ch <- l
}

type ownerRig struct {
	t      *testing.T
	f      *fsm.FSM
	index  uint64
	pool   *fakePool
	ipvs   *ipvsfake.IPVS
	addrs  *netfake.Addresses
	ann    *netfake.Announcer
	conns  *ipvsfake.ConnSync
	guard  *netfake.Guard
	events *eventLog
	d      *director.Director
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8::10")
)

func newOwnerRig(t *testing.T, withIPVS bool) *ownerRig {
	t.Helper()
	return newOwnerRigWith(t, withIPVS, nil)
}

// newOwnerRigWith is newOwnerRig with tune (if set) changing the director's config.
func newOwnerRigWith(t *testing.T, withIPVS bool, tune func(*director.Config)) *ownerRig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &ownerRig{t: t, f: fsm.New(log), ipvs: ipvsfake.New()}
	r.pool = &fakePool{f: r.f, ch: make(chan cluster.Leadership, 1)}
	j := netfake.NewJournal(nil)
	r.addrs = netfake.NewAddresses(j)
	r.addrs.AddInterface("eth0", net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParsePrefix("192.0.2.1/24"))
	r.ann = netfake.NewAnnouncer(j, r.addrs)
	r.guard = netfake.NewGuard(j)
	r.events = &eventLog{}
	deps := director.Deps{FSM: r.f, Pool: r.pool, Addresses: r.addrs, Announcer: r.ann, Guard: r.guard, Log: log,
		Events: r.events.add, OnReconcile: r.events.reconciled}
	cfg := director.Config{Interface: "eth0", ReconcileInterval: 50 * time.Millisecond, NoIPVS: "disabled"}
	if withIPVS {
		r.conns = ipvsfake.NewConnSync("eth0")
		deps.IPVS, deps.Owned, deps.Syncd, deps.ConnSync = r.ipvs, director.NewOwnership(), r.ipvs.SyncDaemons(), r.conns
		cfg.Sync = &director.SyncDaemon{Interface: "eth0", SyncID: 1}
		r.ipvs.SyncDaemons().SetInterfaces("eth0")
	}
	if tune != nil {
		tune(&cfg)
	}
	d, err := director.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	return r
}

func (r *ownerRig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.d.Run(ctx)
	}()
	r.t.Cleanup(r.stop)
}

func (r *ownerRig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *ownerRig) apply(c fsm.Command) {
	r.t.Helper()
	b, err := fsm.EncodeCommand(c)
	if err != nil {
		r.t.Fatal(err)
	}
	r.index++
	if res := r.f.Apply(r.index, b); res.Err != nil {
		r.t.Fatal(res.Err)
	}
}

func (r *ownerRig) seedTable() {
	r.apply(fsm.ApplyTable(fsm.Table{
		Services: []fsm.Service{
			{Name: "web", VIP: vip4, Port: 80, Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}}},
			{Name: "web6", VIP: vip6, Port: 80, Reals: []fsm.Real{{Address: netip.MustParseAddr("2001:db8::21")}}},
		},
	}))
}

// eventually polls cond (each check is cheap; the director works in the background).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *ownerRig) holds() []string {
	list, _ := r.addrs.List("eth0")
	var out []string
	for _, p := range list {
		if p.Addr() == vip4 || p.Addr() == vip6 {
			out = append(out, p.String())
		}
	}
	return out
}

func TestLeaderHoldsAndAnnouncesVIPsFollowerDoesNot(t *testing.T) {
	r := newOwnerRigWith(t, true, func(c *director.Config) { c.TakeoverWindow = 300 * time.Millisecond })
	r.seedTable()
	r.pool.set(cluster.Leadership{})
	r.start()

	// A follower programs IPVS (hot standby) but holds no VIP.
	eventually(t, "follower IPVS programmed", func() bool { return strings.Contains(r.ipvs.String(), "192.0.2.21:80") })
	if h := r.holds(); len(h) != 0 {
		t.Fatalf("follower holds %v", h)
	}
	if st := r.d.Status(); st.Leader || st.IPVS != "enabled" {
		t.Errorf("follower status %+v", st)
	}

	r.pool.set(cluster.Leadership{IsLeader: true, Term: 2, LeaderID: "a"})
	eventually(t, "leader holds both VIPs", func() bool { return len(r.holds()) == 2 })
	if got := strings.Join(r.holds(), ","); got != "192.0.2.10/32,2001:db8::10/128" {
		t.Errorf("VIPs held: %s", got)
	}
	eventually(t, "both announced", func() bool { return r.ann.Count(vip4) == 1 && r.ann.Count(vip6) == 1 })
	if m := r.ann.Mistakes(); len(m) != 0 {
		t.Errorf("announced before holding: %v", m)
	}
	// The takeover window: the backup daemon stays beside the master (so that connections a
	// handing-over leader sends still land) and the TCP services are guarded; then both end.
	if got := r.syncRole(); got != "master,backup" {
		t.Errorf("leader's sync daemons in the takeover window: %s, want master,backup", got)
	}
	if got := fmt.Sprint(r.guard.Ports()); got != "[192.0.2.10:80 [2001:db8::10]:80]" {
		t.Errorf("guarded in the takeover window: %v, want the TCP services", got)
	}
	eventually(t, "takeover window over", func() bool { return r.syncRole() == "master" && len(r.guard.Ports()) == 0 })
	lines := r.ann.Journal().Lines()
	guard, add := slices.Index(lines, "guard 192.0.2.10:80,[2001:db8::10]:80"), slices.Index(lines, "add 192.0.2.10/32 to eth0")
	if guard < 0 || guard > add {
		t.Errorf("the guard must be up before the VIP moves:\n%s", strings.Join(lines, "\n"))
	}

	// Leadership lost: announcements stop and the VIPs go.
	r.pool.set(cluster.Leadership{IsLeader: false, Term: 3, LeaderID: "b"})
	eventually(t, "VIPs released", func() bool { return len(r.holds()) == 0 })
	if a := r.ann.Active(); len(a) != 0 {
		t.Errorf("still announcing %v", a)
	}
	lines = r.ann.Journal().Lines()
	stop := slices.Index(lines, "stop 192.0.2.10")
	remove := slices.Index(lines, "remove 192.0.2.10/32 from eth0")
	if stop < 0 || remove < 0 || stop > remove {
		t.Errorf("announcements must stop before the VIP goes:\n%s", strings.Join(lines, "\n"))
	}
	eventually(t, "backup daemon", func() bool {
		ds, _ := r.ipvs.SyncDaemons().Daemons()
		return len(ds) == 1 && ds[0].State == director.SyncBackup
	})
	// IPVS stays programmed on the follower.
	if !strings.Contains(r.ipvs.String(), "192.0.2.21:80") {
		t.Errorf("IPVS table lost on losing leadership:\n%s", r.ipvs.String())
	}
}

func TestStartRemovesVIPsLeftFromACrash(t *testing.T) {
	r := newOwnerRig(t, false)
	r.seedTable()
	// A previous run died while leading and left its VIP behind.
	r.addrs.Add("eth0", netip.MustParsePrefix("192.0.2.10/32"), "")
	r.pool.set(cluster.Leadership{})
	r.start()
	eventually(t, "leftover VIP removed", func() bool { return len(r.holds()) == 0 })
	if st := r.d.Status(); st.IPVS != "disabled" {
		t.Errorf("VIP-only status says IPVS %q", st.IPVS)
	}
}

func TestTakeoverInterruptedByLossTakesNoVIP(t *testing.T) {
	r := newOwnerRig(t, false)
	r.seedTable()
	block := make(chan struct{})
	r.pool.block = block
	r.pool.set(cluster.Leadership{})
	r.start()
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 2})
	time.Sleep(50 * time.Millisecond) // the takeover now waits for a current state
	r.pool.set(cluster.Leadership{IsLeader: false, Term: 3})
	time.Sleep(100 * time.Millisecond)
	if h := r.holds(); len(h) != 0 {
		t.Fatalf("a takeover interrupted by losing leadership added %v", h)
	}
	if r.ann.Count(vip4) != 0 {
		t.Fatal("announced a VIP after losing leadership")
	}
	if p := r.guard.Ports(); len(p) != 0 {
		t.Fatalf("the takeover guard stayed up after an interrupted takeover: %v", p)
	}
	close(block)
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 4})
	eventually(t, "VIPs after the next takeover", func() bool { return len(r.holds()) == 2 })
}

// The announcer's re-announcements wait for ConfirmLeadership (issue 6, fencing by lease): it
// confirms only a director that leads, whose Raft node has just confirmed the leadership, and
// that still leads when the confirmation comes back.
func TestConfirmLeadership(t *testing.T) {
	r := newOwnerRig(t, false)
	r.seedTable()
	r.pool.set(cluster.Leadership{})
	r.start()
	ctx := context.Background()
	if err := r.d.ConfirmLeadership(ctx); !errors.Is(err, director.ErrNotLeading) {
		t.Errorf("a follower's confirmation: %v, want ErrNotLeading", err)
	}

	r.pool.set(cluster.Leadership{IsLeader: true, Term: 2})
	eventually(t, "leading", func() bool { return r.d.Status().Leader })
	if err := r.d.ConfirmLeadership(ctx); err != nil {
		t.Errorf("the leader's confirmation: %v", err)
	}

	// A leader cut off from its quorum: Raft cannot confirm, and neither does the director.
	lost := errors.New("leadership lost while committing log")
	r.pool.fail(lost)
	if err := r.d.ConfirmLeadership(ctx); !errors.Is(err, lost) {
		t.Errorf("confirmation without a quorum: %v, want %v", err, lost)
	}
	r.pool.fail(nil)

	// Deposed while the check runs (a follower's ConsistentView asks the new leader, and
	// succeeds): not confirmed.
	block := make(chan struct{})
	entered := r.pool.blockOn(block)
	errc := make(chan error, 1)
	go func() { errc <- r.d.ConfirmLeadership(ctx) }()
	<-entered
	r.pool.set(cluster.Leadership{IsLeader: false, Term: 3, LeaderID: "b"})
	eventually(t, "VIPs released", func() bool { return len(r.holds()) == 0 })
	close(block)
	if err := <-errc; !errors.Is(err, director.ErrNotLeading) {
		t.Errorf("confirmation by a leader deposed meanwhile: %v, want ErrNotLeading", err)
	}
	if err := r.d.ConfirmLeadership(ctx); !errors.Is(err, director.ErrNotLeading) {
		t.Errorf("a deposed leader's confirmation: %v, want ErrNotLeading", err)
	}
}

func TestLeaderFollowsTableAndRepairsVIPs(t *testing.T) {
	r := newOwnerRig(t, false)
	r.seedTable()
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 2})
	r.start()
	eventually(t, "VIPs held", func() bool { return len(r.holds()) == 2 })

	// A VIP group moves 192.0.2.10 to a /24 on eth0 and the v6 service goes away.
	r.apply(fsm.DeleteService("web6"))
	r.apply(fsm.ApplyTable(fsm.Table{
		Services:  []fsm.Service{{Name: "web", VIP: vip4, Port: 80}},
		VIPGroups: []fsm.VIPGroup{{Name: "front", Interface: "eth0", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}}},
	}))
	eventually(t, "VIPs follow the table", func() bool { return strings.Join(r.holds(), ",") == "192.0.2.10/24" })

	// Someone removes the VIP by hand: the leader puts it back and announces it again.
	before := r.ann.Count(vip4)
	r.addrs.Remove("eth0", netip.MustParsePrefix("192.0.2.10/24"))
	eventually(t, "VIP repaired", func() bool { return len(r.holds()) == 1 && r.ann.Count(vip4) > before })

	// A new term (someone else may have led meanwhile) re-announces.
	before = r.ann.Count(vip4)
	r.pool.set(cluster.Leadership{IsLeader: true, Term: 5})
	eventually(t, "re-announced in the new term", func() bool { return r.ann.Count(vip4) > before })

	// Stopping the director releases the VIPs.
	r.stop()
	if h := r.holds(); len(h) != 0 {
		t.Errorf("VIPs left after Run returned: %v", h)
	}
}

func TestKernelViewMarksDrift(t *testing.T) {
	r := newOwnerRig(t, true)
	r.seedTable()
	r.pool.set(cluster.Leadership{})
	r.start()
	eventually(t, "IPVS programmed", func() bool { return strings.Contains(r.ipvs.String(), "2001:db8::21") })
	r.stop()

	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: vip4, Port: 80}
	if err := r.ipvs.UpdateDestination(key, director.Destination{DestinationKey: director.DestinationKey{Address: netip.MustParseAddr("192.0.2.21"), Port: 80}, Forwarding: fsm.DR, Weight: 9}); err != nil {
		t.Fatal(err)
	}
	if err := r.ipvs.RemoveService(director.ServiceKey{Family: fsm.IPv6, Protocol: fsm.TCP, Address: vip6, Port: 80}); err != nil {
		t.Fatal(err)
	}
	view, err := r.d.KernelView()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range view {
		got = append(got, s.Key+" "+s.Drift)
		for _, d := range s.Destinations {
			got = append(got, "  "+d.Key+" "+d.Drift)
		}
	}
	want := "TCP 192.0.2.10:80 |  192.0.2.21:80 weight|TCP [2001:db8::10]:80 missing|  [2001:db8::21]:80 missing"
	if strings.Join(got, "|") != want {
		t.Errorf("kernel view:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}

// The IPVS loop lists the kernel's services for a full pass in the background: a change goes
// into the kernel while a listing (seconds, for a large table on a slow CPU) is still out.
func TestChangeDoesNotWaitForAFullPassListing(t *testing.T) {
	r := newOwnerRig(t, true)
	r.seedTable()
	r.start()
	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: vip4, Port: 80}
	weightIs := func(w int) func() bool {
		return func() bool {
			ds, err := r.ipvs.Destinations(key)
			return err == nil && len(ds) == 1 && ds[0].Weight == w
		}
	}
	eventually(t, "web in the kernel", weightIs(1))
	listed, release := r.ipvs.HoldNextListing()
	defer release()
	<-listed // the next full pass is listing
	r.apply(fsm.SetWeight("web", "192.0.2.21:80", 7))
	eventually(t, "the new weight in the kernel while the listing is out", weightIs(7))
	release()
	r.apply(fsm.SetWeight("web", "192.0.2.21:80", 3))
	eventually(t, "the next weight after the listing", weightIs(3))
}

// After a full pass, each change applied without error carries the index the kernel matches
// forward: readiness and takeovers need not wait for the next full pass.
func TestChangesCarryTheSyncedIndexForward(t *testing.T) {
	r := newOwnerRigWith(t, true, func(c *director.Config) { c.ReconcileInterval = time.Hour })
	r.seedTable()
	r.start()
	synced := func(want uint64) func() bool {
		return func() bool { return r.d.Status().SyncedIndex == want }
	}
	eventually(t, "the first full pass matches the seeded table", synced(r.index))
	r.apply(fsm.SetWeight("web", "192.0.2.21:80", 7))
	eventually(t, "the change carries the synced index forward", synced(r.index))
	// A failed change does not, and nor does anything after it until a full pass.
	r.ipvs.FailNext(ipvsfake.UpdateDestination, syscall.EINVAL)
	r.apply(fsm.SetWeight("web", "192.0.2.21:80", 8))
	failed := r.index
	eventually(t, "the failed change is reported", func() bool { return r.d.Status().LastError != "" })
	r.apply(fsm.SetWeight("web6", "[2001:db8::21]:80", 3))
	time.Sleep(50 * time.Millisecond)
	if got := r.d.Status().SyncedIndex; got >= failed {
		t.Fatalf("synced index %d after a failed change at %d", got, failed)
	}
}
