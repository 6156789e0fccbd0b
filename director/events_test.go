package director_test

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// eventLog records a director's events (Deps.Events) and reconcile passes (Deps.OnReconcile).
type eventLog struct {
	mu     sync.Mutex // guards the following fields
	events []string
	passes int
}

func (l *eventLog) add(kind, message string) {
	l.mu.Lock()
	l.events = append(l.events, kind+" "+message)
	l.mu.Unlock()
}

func (l *eventLog) reconciled(director.Report, error) {
	l.mu.Lock()
	l.passes++
	l.mu.Unlock()
}

// of returns the events of kind, in order.
func (l *eventLog) of(kind string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if strings.HasPrefix(e, kind+" ") {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits until the events of kind are want (in any order: a director takes and
// releases its VIPs in address order, but these tests need not depend on it).
func (l *eventLog) waitFor(t *testing.T, kind string, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, kind+" events", func() bool {
		got := l.of(kind)
		slices.Sort(got)
		return slices.Equal(got, want)
	})
}

func TestVIPEventsSayWhy(t *testing.T) {
	r := newOwnerRig(t, false)
	r.leading() // term 2
	r.events.waitFor(t, "vip",
		"vip took over 192.0.2.10/32 on eth0: leadership won (term 2)",
		"vip took over 2001:db8::10/128 on eth0: leadership won (term 2)")

	r.apply(fsm.DeleteService("web6"))
	r.events.waitFor(t, "vip",
		"vip took over 192.0.2.10/32 on eth0: leadership won (term 2)",
		"vip took over 2001:db8::10/128 on eth0: leadership won (term 2)",
		"vip released 2001:db8::10/128 on eth0: table changed (term 2)")

	r.pool.set(cluster.Leadership{IsLeader: false, Term: 3, LeaderID: "b"})
	r.events.waitFor(t, "vip",
		"vip took over 192.0.2.10/32 on eth0: leadership won (term 2)",
		"vip took over 2001:db8::10/128 on eth0: leadership won (term 2)",
		"vip released 2001:db8::10/128 on eth0: table changed (term 2)",
		"vip released 192.0.2.10/32 on eth0: leadership lost (term 3)")
	if c := r.d.Counters(); c.Takeovers != 2 || c.Releases != 2 {
		t.Errorf("counters = %+v, want 2 takeovers and 2 releases", c)
	}
	if a := r.events.of("announce"); len(a) != 0 {
		t.Errorf("the director published announce events itself (the announcer's job): %v", a)
	}
}

func TestVIPEventsOfAHandoverHoldExpiring(t *testing.T) {
	r, res := handingOver(t, false, 100*time.Millisecond)
	if err := result(t, res); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	r.events.waitFor(t, "vip",
		"vip took over 192.0.2.10/32 on eth0: leadership won (term 2)",
		"vip took over 2001:db8::10/128 on eth0: leadership won (term 2)",
		"vip released 192.0.2.10/32 on eth0: handover hold of 100ms expired (term 2)",
		"vip released 2001:db8::10/128 on eth0: handover hold of 100ms expired (term 2)")
}

func TestDriftEventsSayWhatWasRepaired(t *testing.T) {
	r := newOwnerRig(t, true)
	r.seedTable()
	r.pool.set(cluster.Leadership{})
	r.start()
	eventually(t, "IPVS programmed", func() bool { return strings.Contains(r.ipvs.String(), "2001:db8::21") })
	if d := r.events.of("drift"); len(d) != 0 {
		t.Fatalf("drift events before any out-of-band edit: %v", d)
	}

	// Out-of-band edits: a weight changed, a service deleted (ipvsadm -e, ipvsadm -D).
	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: vip4, Port: 80}
	if err := r.ipvs.UpdateDestination(key, director.Destination{DestinationKey: director.DestinationKey{Address: netip.MustParseAddr("192.0.2.21"), Port: 80}, Forwarding: fsm.DR, Weight: 9}); err != nil {
		t.Fatal(err)
	}
	if err := r.ipvs.RemoveService(director.ServiceKey{Family: fsm.IPv6, Protocol: fsm.TCP, Address: vip6, Port: 80}); err != nil {
		t.Fatal(err)
	}
	r.events.waitFor(t, "drift",
		"drift repaired an out-of-band IPVS edit: real 192.0.2.21:80 of service web was changed (weight 9 in the kernel); set back to weight 1",
		"drift repaired an out-of-band IPVS edit: service web6 (TCP [2001:db8::10]:80) was deleted; created again")
	if c := r.d.Counters(); c.DriftRepairs != 2 || c.ReconcileErrors != 0 || c.ReconcilePasses == 0 {
		t.Errorf("counters = %+v, want 2 drift repairs, no errors, some passes", c)
	}
	r.events.mu.Lock()
	passes := r.events.passes
	r.events.mu.Unlock()
	if passes == 0 {
		t.Error("OnReconcile was never called")
	}
}
