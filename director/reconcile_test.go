package director_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

// rig is a reconciler on a fake kernel, fed by a real FSM, with a fake clock.
type rig struct {
	t   *testing.T
	k   *ipvsfake.IPVS
	own *director.Ownership
	clk *clock
	tb  *table
	r   *director.Reconciler
}

func newRig(t *testing.T, services ...fsm.Service) *rig {
	t.Helper()
	g := &rig{t: t, k: ipvsfake.New(), own: director.NewOwnership(), clk: newClock(), tb: newTable(t, services...)}
	g.r = g.reconciler(g.own)
	return g
}

// reconciler returns a new reconciler on the rig's kernel and clock: an agent (re)start.
func (g *rig) reconciler(own *director.Ownership) *director.Reconciler {
	g.t.Helper()
	r, err := director.NewReconciler(g.k, own, director.ReconcilerOptions{Clock: g.clk.Now}, testLogger(g.t))
	if err != nil {
		g.t.Fatal(err)
	}
	return r
}

// sync runs a full Sync that must succeed, and checks the report's call count against the fake's.
func (g *rig) sync(wantSummary string) director.Report {
	g.t.Helper()
	before := g.k.TotalCalls()
	rep, err := g.r.Sync(context.Background(), g.tb.state())
	if err != nil {
		g.t.Fatalf("Sync: %v", err)
	}
	g.checkReport(rep, before, wantSummary)
	return rep
}

func (g *rig) syncServices(names []string, wantSummary string) director.Report {
	g.t.Helper()
	before := g.k.TotalCalls()
	rep, err := g.r.SyncServices(context.Background(), g.tb.state(), names)
	if err != nil {
		g.t.Fatalf("SyncServices(%v): %v", names, err)
	}
	g.checkReport(rep, before, wantSummary)
	return rep
}

func (g *rig) checkReport(rep director.Report, callsBefore int, want string) {
	g.t.Helper()
	if n := g.k.TotalCalls() - callsBefore; n != rep.Calls {
		g.t.Errorf("report counts %d calls, the kernel saw %d", rep.Calls, n)
	}
	if want != "" {
		diffText(g.t, "report", summary(rep), want)
	}
}

func (g *rig) kernel(what, want string) {
	g.t.Helper()
	diffText(g.t, what, g.k.String(), want)
}

// calls returns the kernel calls made since the last reset, as text, and resets the counts.
func (g *rig) calls() string {
	counts := g.k.CallCounts()
	g.k.ResetCalls()
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", op, counts[op]))
	}
	return strings.Join(parts, " ")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func dk(s string) director.DestinationKey {
	ap := netip.MustParseAddrPort(s)
	return director.DestinationKey{Address: ap.Addr(), Port: ap.Port()}
}

var (
	webKey = director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("192.0.2.10"), Port: 80}
	dnsKey = director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.UDP, Address: addr("192.0.2.53"), Port: 53}
	fwmKey = director.ServiceKey{Family: fsm.IPv6, FWMark: 7}
)

const threeServices = `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
UDP  192.0.2.53:53 rr persistent 300 mask 255.255.255.0
  -> 198.51.100.1:5353  Masq  1  0  0  thresholds 10-100
FWM  7 IPv6 sh (sh-fallback,sh-port)
  -> [2001:db8::21]:0  Tunnel  2  0  0
`

func TestSyncCreatesTheTable(t *testing.T) {
	g := newRig(t, web(), dns(), fwm())
	g.sync("services.created=3 destinations.created=4 calls=8 writes=7")
	g.kernel("kernel", threeServices)
	if got := len(g.own.Keys()); got != 3 {
		t.Fatalf("owns %d services, want 3", got)
	}
	// Nothing to do: one list and one read per service, no write.
	g.sync("calls=4 writes=0")
	g.kernel("kernel after a second Sync", threeServices)
}

func TestSyncUpdatesSettings(t *testing.T) {
	g := newRig(t, web(), dns())
	g.sync("")
	w := web()
	w.Scheduler = "rr"
	w.Persistence = &fsm.Persistence{Timeout: fsm.Duration(time.Minute)}
	w.Reals[0].Weight = weight(7)
	w.Reals[1].Forwarding = fsm.NAT
	d := dns()
	d.Persistence = nil
	d.Reals[0].UpperThreshold = 200
	g.tb.apply(fsm.UpsertService(w))
	g.tb.apply(fsm.UpsertService(d))
	g.sync("services.updated=2 destinations.updated=3 calls=8 writes=5")
	g.kernel("kernel", `
TCP  192.0.2.10:80 rr persistent 60
  -> 192.0.2.21:80  Route  7  0  0
  -> 192.0.2.22:80  Masq  1  0  0
UDP  192.0.2.53:53 rr
  -> 198.51.100.1:5353  Masq  1  0  0  thresholds 10-200
`)
}

func TestSyncRemovesADeletedService(t *testing.T) {
	g := newRig(t, web(), dns())
	g.sync("")
	g.tb.apply(fsm.DeleteService("dns"))
	g.sync("services.removed=1 calls=3 writes=1")
	g.kernel("kernel", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
	if keys := g.own.Keys(); len(keys) != 1 || keys[0] != webKey {
		t.Fatalf("owned after the removal: %v", keys)
	}
}

func TestSyncRepairsOutOfBandEdits(t *testing.T) {
	g := newRig(t, web(), dns(), fwm())
	g.sync("")
	// An operator at the shell: ipvsadm -D, -e, -a, -E, -d.
	must(t, g.k.RemoveService(dnsKey))
	must(t, g.k.UpdateDestination(webKey, director.Destination{DestinationKey: dk("192.0.2.21:80"), Forwarding: fsm.DR, Weight: 9}))
	must(t, g.k.CreateDestination(webKey, director.Destination{DestinationKey: dk("192.0.2.23:80"), Forwarding: fsm.DR, Weight: 1}))
	must(t, g.k.UpdateService(director.Service{ServiceKey: fwmKey, Scheduler: "wrr"}))
	must(t, g.k.RemoveDestination(fwmKey, dk("[2001:db8::21]:0")))

	g.sync("services.created=1 services.updated=1 destinations.created=2 destinations.updated=2 " +
		"drift.services_missing=1 drift.services_changed=1 drift.destinations_missing=1 drift.destinations_changed=1 drift.destinations_stray=1 " +
		"drains.started=1 draining=1 calls=9 writes=6")
	// The stray destination may carry connections: it is drained like a removed real server.
	g.kernel("kernel after the repair", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
  -> 192.0.2.23:80  Route  0  0  0
UDP  192.0.2.53:53 rr persistent 300 mask 255.255.255.0
  -> 198.51.100.1:5353  Masq  1  0  0  thresholds 10-100
FWM  7 IPv6 sh (sh-fallback,sh-port)
  -> [2001:db8::21]:0  Tunnel  2  0  0
`)
	// It has no connections, so the next pass removes it.
	g.sync("destinations.removed=1 drains.finished=1 calls=5 writes=1")
	g.kernel("kernel", threeServices)
}

func TestForeignServicesAreNeverTouched(t *testing.T) {
	g := newRig(t, web())
	// kube-proxy's service and a hand-made firewall-mark service were there first.
	kube := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("203.0.113.5"), Port: 443}
	mark := director.ServiceKey{Family: fsm.IPv4, FWMark: 99}
	must(t, g.k.CreateService(director.Service{ServiceKey: kube, Scheduler: "rr"}))
	must(t, g.k.CreateDestination(kube, director.Destination{DestinationKey: dk("203.0.113.21:8443"), Forwarding: fsm.NAT, Weight: 1}))
	must(t, g.k.CreateService(director.Service{ServiceKey: mark, Scheduler: "wlc"}))
	g.k.ResetCalls()

	g.sync("services.created=1 destinations.created=2 calls=4 writes=3")
	foreign := `TCP  203.0.113.5:443 rr
  -> 203.0.113.21:8443  Masq  1  0  0
FWM  99 wlc
`
	g.kernel("kernel with Troop's service", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
`+foreign)
	g.tb.apply(fsm.DeleteService("web"))
	g.sync("services.removed=1 calls=2 writes=1")
	g.kernel("kernel after Troop's service left", foreign)
	if got := g.calls(); got != "CreateDestination=2 CreateService=1 RemoveService=1 Services=2" {
		t.Fatalf("calls: %s (foreign services must not even be read)", got)
	}
}

func TestAdoptsAReadyTableWithoutWrites(t *testing.T) {
	g := newRig(t, web(), dns(), fwm())
	g.sync("")
	// Troop lost its ownership file (or this is the first start on a director someone set up
	// by hand with the same services): it adopts them as they are.
	g.r = g.reconciler(director.NewOwnership())
	g.k.ResetCalls()
	g.sync("adopted=3 calls=4 writes=0")
	g.kernel("kernel", threeServices)
}

func TestRestartKeepsTheTableWithZeroWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), director.OwnershipFile)
	own, err := director.LoadOwnership(path)
	must(t, err)
	g := newRig(t, web(), dns(), fwm())
	g.r = g.reconciler(own)
	g.sync("services.created=3 destinations.created=4 calls=8 writes=7")

	// The agent restarts: a new reconciler, the same kernel and ownership file.
	own2, err := director.LoadOwnership(path)
	must(t, err)
	g.r = g.reconciler(own2)
	g.k.ResetCalls()
	g.sync("calls=4 writes=0")
	if w := g.k.WriteCalls(); w != 0 {
		t.Fatalf("restart wrote to the kernel %d times", w)
	}
	g.kernel("kernel", threeServices)

	// The restarted agent still knows the services are its own: a deleted one goes.
	g.tb.apply(fsm.DeleteService("dns"))
	g.sync("services.removed=1 calls=4 writes=1")
}

func TestDrainThenRemove(t *testing.T) {
	for _, how := range []string{"deleted", "disabled"} {
		remove := func(g *rig) {
			if how == "deleted" {
				g.tb.apply(fsm.DeleteReal("web", "192.0.2.22:80"))
			} else {
				g.tb.apply(fsm.SetAdmin("web", "192.0.2.22:80", fsm.Disabled))
			}
		}
		draining := `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  0  4  2
`
		gone := `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
`
		t.Run(how+" by time", func(t *testing.T) {
			g := newRig(t, web())
			g.sync("")
			must(t, g.k.SetConns(webKey, dk("192.0.2.22:80"), 4, 2))
			remove(g)
			g.sync("destinations.updated=1 drains.started=1 draining=1 calls=3 writes=1")
			g.kernel("draining", draining)
			g.clk.advance(director.DefaultDrainPeriod - time.Second)
			g.sync("draining=1 calls=2 writes=0")
			g.kernel("still draining", draining)
			g.clk.advance(time.Second)
			g.sync("destinations.removed=1 drains.finished=1 calls=3 writes=1")
			g.kernel("drained", gone)
		})
		t.Run(how+" by connections", func(t *testing.T) {
			g := newRig(t, web())
			g.sync("")
			must(t, g.k.SetConns(webKey, dk("192.0.2.22:80"), 4, 2))
			remove(g)
			g.syncServices([]string{"web"}, "destinations.updated=1 drains.started=1 draining=1 calls=2 writes=1")
			g.kernel("draining", draining)
			must(t, g.k.SetConns(webKey, dk("192.0.2.22:80"), 0, 1))
			g.clk.advance(time.Second)
			g.sync("draining=1 calls=2 writes=0")
			must(t, g.k.SetConns(webKey, dk("192.0.2.22:80"), 0, 0))
			g.clk.advance(time.Second)
			g.sync("destinations.removed=1 drains.finished=1 calls=3 writes=1")
			g.kernel("drained", gone)
		})
	}
}

func TestDrainResumesAfterRestart(t *testing.T) {
	g := newRig(t, web())
	g.sync("")
	must(t, g.k.SetConns(webKey, dk("192.0.2.22:80"), 3, 0))
	g.tb.apply(fsm.DeleteReal("web", "192.0.2.22:80"))
	g.sync("destinations.updated=1 drains.started=1 draining=1 calls=3 writes=1")

	// A restart forgets the bookkeeping; the destination at weight 0 drains from now.
	g.clk.advance(20 * time.Second)
	g.r = g.reconciler(g.own)
	g.sync("drains.started=1 draining=1 calls=2 writes=0")
	g.clk.advance(director.DefaultDrainPeriod - time.Second)
	g.sync("draining=1 calls=2 writes=0")
	g.clk.advance(time.Second)
	g.sync("destinations.removed=1 drains.finished=1 calls=3 writes=1")

	// Found at weight 0 without connections: nothing to drain, removed at once.
	g.tb.apply(fsm.SetAdmin("web", "192.0.2.21:80", fsm.Draining))
	g.sync("destinations.updated=1 calls=3 writes=1")
	g.tb.apply(fsm.DeleteReal("web", "192.0.2.21:80"))
	g.r = g.reconciler(g.own)
	g.sync("destinations.removed=1 calls=3 writes=1")
	g.kernel("kernel", "TCP  192.0.2.10:80 wlc")
}

func TestAdminDrainingStaysAtWeightZero(t *testing.T) {
	g := newRig(t, web())
	g.sync("")
	g.syncServices(g.tb.apply(fsm.SetAdmin("web", "192.0.2.21:80", fsm.Draining)), "destinations.updated=1 calls=2 writes=1")
	g.clk.advance(time.Hour)
	g.sync("calls=2 writes=0")
	g.kernel("kernel", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  0  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
	g.syncServices(g.tb.apply(fsm.SetAdmin("web", "192.0.2.21:80", fsm.Enabled)), "destinations.updated=1 calls=2 writes=1")
	g.kernel("kernel", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
}

func TestHealthDown(t *testing.T) {
	t.Run("not quiescent: removed at once", func(t *testing.T) {
		g := newRig(t, web())
		g.sync("")
		must(t, g.k.SetConns(webKey, dk("192.0.2.21:80"), 7, 7))
		g.syncServices(g.tb.health("web", "192.0.2.21:80", fsm.HealthDown), "destinations.removed=1 calls=2 writes=1")
		g.kernel("down", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.22:80  Route  1  0  0
`)
		g.syncServices(g.tb.health("web", "192.0.2.21:80", fsm.HealthUp), "destinations.created=1 calls=2 writes=1")
		g.kernel("up again", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
	})
	t.Run("quiescent: weight 0", func(t *testing.T) {
		s := web()
		s.Quiescent = true
		g := newRig(t, s)
		g.sync("")
		g.syncServices(g.tb.health("web", "192.0.2.21:80", fsm.HealthDown), "destinations.updated=1 calls=2 writes=1")
		g.kernel("down", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  0  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
		g.clk.advance(time.Hour)
		g.sync("calls=2 writes=0")
		g.syncServices(g.tb.health("web", "192.0.2.21:80", fsm.HealthUp), "destinations.updated=1 calls=2 writes=1")
		g.kernel("up again", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
	})
}

func TestFallbackWhileNoRealServerServes(t *testing.T) {
	s := web()
	s.Fallback = &fsm.Fallback{Address: addr("192.0.2.99"), Forwarding: fsm.NAT}
	g := newRig(t, s)
	g.sync("services.created=1 destinations.created=2 calls=4 writes=3")
	g.syncServices(g.tb.health("web", "192.0.2.21:80", fsm.HealthDown), "destinations.removed=1 calls=2 writes=1")
	g.syncServices(g.tb.health("web", "192.0.2.22:80", fsm.HealthDown), "destinations.created=1 destinations.removed=1 calls=3 writes=2")
	g.kernel("all down: the fallback serves", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.99:80  Masq  1  0  0
`)
	g.sync("calls=2 writes=0")
	must(t, g.k.SetConns(webKey, dk("192.0.2.99:80"), 5, 5))
	g.syncServices(g.tb.health("web", "192.0.2.22:80", fsm.HealthUp), "destinations.created=1 destinations.removed=1 calls=3 writes=2")
	g.kernel("one back: the fallback leaves at once", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.22:80  Route  1  0  0
`)
}

func TestSyncServicesCostsAHandfulOfCalls(t *testing.T) {
	var services []fsm.Service
	for i := range 50 {
		services = append(services, fsm.Service{
			Name: fmt.Sprintf("svc%02d", i), VIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), Port: 80,
			Reals: []fsm.Real{
				{Address: addr("198.51.100.1")}, {Address: addr("198.51.100.2")}, {Address: addr("198.51.100.3")},
			},
		})
	}
	g := newRig(t, services...)
	g.sync("services.created=50 destinations.created=150 calls=201 writes=200")
	g.k.ResetCalls()
	for _, tt := range []struct {
		name  string
		cmd   fsm.Command
		want  string
		calls string
	}{
		{"weight", fsm.SetWeight("svc07", "198.51.100.2:80", 3),
			"destinations.updated=1 calls=2 writes=1", "Destinations=1 UpdateDestination=1"},
		{"new real", fsm.UpsertReal("svc07", fsm.Real{Address: addr("198.51.100.4")}),
			"destinations.created=1 calls=2 writes=1", "CreateDestination=1 Destinations=1"},
		{"drained real", fsm.SetAdmin("svc07", "198.51.100.1:80", fsm.Draining),
			"destinations.updated=1 calls=2 writes=1", "Destinations=1 UpdateDestination=1"},
		{"deleted real (drain starts)", fsm.DeleteReal("svc07", "198.51.100.3:80"),
			"destinations.updated=1 drains.started=1 draining=1 calls=2 writes=1", "Destinations=1 UpdateDestination=1"},
		{"scheduler", fsm.UpsertService(fsm.Service{Name: "svc08", VIP: addr("192.0.2.9"), Port: 80, Scheduler: "rr"}),
			"services.updated=1 draining=1 calls=2 writes=1", "Destinations=1 UpdateService=1"},
		{"VIP moved", fsm.UpsertService(fsm.Service{Name: "svc09", VIP: addr("192.0.2.200"), Port: 80}),
			"services.created=1 services.removed=1 destinations.created=3 draining=1 calls=6 writes=5",
			"CreateDestination=3 CreateService=1 Destinations=1 RemoveService=1"},
		{"deleted service", fsm.DeleteService("svc10"),
			"services.removed=1 draining=1 calls=1 writes=1", "RemoveService=1"},
		{"new service", fsm.UpsertService(fsm.Service{Name: "new", VIP: addr("192.0.2.201"), Port: 443, Reals: []fsm.Real{{Address: addr("198.51.100.1")}}}),
			"services.created=1 destinations.created=1 draining=1 calls=3 writes=2", "CreateDestination=1 CreateService=1 Destinations=1"},
	} {
		changed := g.tb.apply(tt.cmd)
		g.syncServices(changed, tt.want)
		if got := g.calls(); got != tt.calls {
			t.Errorf("%s: calls %s, want %s", tt.name, got, tt.calls)
		}
	}
	// Nothing was missed: a full Sync finds only the drain to finish.
	g.sync("destinations.removed=1 drains.finished=1 calls=52 writes=1")
}

func TestSyncServicesWithSwappedVIPs(t *testing.T) {
	a := fsm.Service{Name: "a", VIP: addr("192.0.2.1"), Port: 80, Reals: []fsm.Real{{Address: addr("198.51.100.1")}}}
	b := fsm.Service{Name: "b", VIP: addr("192.0.2.2"), Port: 80, Scheduler: "rr", Reals: []fsm.Real{{Address: addr("198.51.100.2")}}}
	g := newRig(t, a, b)
	g.sync("")
	a.VIP, b.VIP = b.VIP, a.VIP
	changed := g.tb.apply(fsm.ApplyTable(fsm.Table{Services: []fsm.Service{a, b}}))
	g.syncServices(changed, "services.updated=2 destinations.created=2 destinations.updated=2 drains.started=2 draining=2 calls=8 writes=6")
	// Each took the other's kernel service over in place, and drains the other's real out of it.
	g.kernel("swapped", `
TCP  192.0.2.1:80 rr
  -> 198.51.100.1:80  Route  0  0  0
  -> 198.51.100.2:80  Route  1  0  0
TCP  192.0.2.2:80 wlc
  -> 198.51.100.1:80  Route  1  0  0
  -> 198.51.100.2:80  Route  0  0  0
`)
	g.sync("destinations.removed=2 drains.finished=2 calls=5 writes=2")
	if got := len(g.own.Keys()); got != 2 {
		t.Fatalf("owns %v", g.own.Keys())
	}
}

func TestSyncServicesRenameKeepsTheKernelService(t *testing.T) {
	for _, newName := range []string{"a", "z"} {
		t.Run("web to "+newName, func(t *testing.T) {
			g := newRig(t, web())
			g.sync("")
			g.k.ResetCalls()
			s := web()
			s.Name = newName
			changed := g.tb.apply(fsm.ApplyTable(fsm.Table{Services: []fsm.Service{s}}))
			g.syncServices(changed, "calls=1 writes=0")
			if got := g.calls(); got != "Destinations=1" {
				t.Fatalf("a rename costs %s", got)
			}
			g.tb.apply(fsm.DeleteService(newName))
			g.syncServices([]string{newName}, "services.removed=1 calls=1 writes=1")
			g.kernel("kernel", "")
			if g.own.Len() != 0 {
				t.Fatalf("still owns %v", g.own.Keys())
			}
		})
	}
}

func TestFailedCallsAreReportedAndRepairedNextTime(t *testing.T) {
	g := newRig(t, web(), dns())
	g.k.FailNext(ipvsfake.CreateDestination, syscall.EIO)
	rep, err := g.r.Sync(context.Background(), g.tb.state())
	var se *director.SyncError
	if !errors.As(err, &se) || !errors.Is(err, syscall.EIO) || se.Total != 1 {
		t.Fatalf("Sync error = %v, want one EIO", err)
	}
	diffText(t, "report", summary(rep), "services.created=2 destinations.created=2 errors=1 calls=6 writes=5")
	g.kernel("partly synced", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  5  0  0
  -> 192.0.2.22:80  Route  1  0  0
UDP  192.0.2.53:53 rr persistent 300 mask 255.255.255.0
`)
	// A retry is not drift.
	g.sync("destinations.created=1 calls=4 writes=1")

	g.k.FailNext(ipvsfake.Services, syscall.ENOBUFS)
	if rep, err := g.r.Sync(context.Background(), g.tb.state()); !errors.Is(err, syscall.ENOBUFS) || rep.Calls != 1 {
		t.Fatalf("Sync with a failing list = %+v, %v", rep, err)
	}

	g.tb.apply(fsm.SetWeight("web", "192.0.2.21:80", 8))
	g.tb.apply(fsm.DeleteService("dns"))
	g.k.FailNext(ipvsfake.UpdateDestination, syscall.EIO)
	g.k.FailNext(ipvsfake.RemoveService, syscall.EIO)
	_, err = g.r.Sync(context.Background(), g.tb.state())
	if !errors.As(err, &se) || se.Total != 2 {
		t.Fatalf("Sync error = %v, want two", err)
	}
	g.sync("services.removed=1 destinations.updated=1 calls=4 writes=2")
	g.kernel("repaired", `
TCP  192.0.2.10:80 wlc
  -> 192.0.2.21:80  Route  8  0  0
  -> 192.0.2.22:80  Route  1  0  0
`)
}

func TestNoOwnershipRecordNoCreate(t *testing.T) {
	own, err := director.LoadOwnership(filepath.Join(t.TempDir(), "missing-dir", director.OwnershipFile))
	must(t, err)
	g := newRig(t, web())
	g.r = g.reconciler(own)
	rep, err := g.r.Sync(context.Background(), g.tb.state())
	if err == nil || rep.Errors != 1 {
		t.Fatalf("Sync = %+v, %v; want the ownership write's error", rep, err)
	}
	if g.k.WriteCalls() != 0 {
		t.Fatalf("created services it could not record as its own: %s", g.calls())
	}
}

func TestNewReconcilerRefusesBadInput(t *testing.T) {
	k, own := ipvsfake.New(), director.NewOwnership()
	for _, tt := range []struct {
		name string
		k    director.IPVS
		own  *director.Ownership
		opts director.ReconcilerOptions
	}{
		{"no kernel", nil, own, director.ReconcilerOptions{}},
		{"no ownership", k, nil, director.ReconcilerOptions{}},
		{"negative drain period", k, own, director.ReconcilerOptions{DrainPeriod: -time.Second}},
	} {
		if _, err := director.NewReconciler(tt.k, tt.own, tt.opts, nil); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestSyncStopsWhenCancelled(t *testing.T) {
	g := newRig(t, web(), dns())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := g.r.Sync(ctx, g.tb.state())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync = %v, want context.Canceled", err)
	}
	if g.k.WriteCalls() != 0 {
		t.Fatalf("a cancelled Sync wrote: %s", g.calls())
	}
}

func TestPassesMayRunConcurrently(t *testing.T) {
	g := newRig(t, web(), dns(), fwm())
	g.r = func() *director.Reconciler {
		r, err := director.NewReconciler(g.k, g.own, director.ReconcilerOptions{}, nil)
		must(t, err)
		return r
	}()
	st := g.tb.state()
	done := make(chan error, 3)
	go func() {
		for range 20 {
			if _, err := g.r.Sync(context.Background(), st); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for range 20 {
			if _, err := g.r.SyncServices(context.Background(), st, []string{"web", "dns"}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for range 20 {
			g.r.Drains()
		}
		done <- nil
	}()
	for range 3 {
		must(t, <-done)
	}
	g.kernel("kernel", threeServices)
}

// A yielding pass stops between services for waiting changes (here after every service: the
// fake clock moves a quantum each time it is asked), carries on where it stopped, and only the
// part that reaches the end removes what nobody wants.
func TestSyncYieldingResumesWhereItStopped(t *testing.T) {
	g := newRig(t, web(), dns(), fwm())
	ctx := context.Background()
	asked := 0
	waiting := func() bool {
		asked++
		g.clk.advance(time.Second)
		return true
	}
	inKernel := func() string {
		t.Helper()
		list, err := g.k.Services()
		must(t, err)
		var keys []string
		for _, s := range list {
			keys = append(keys, s.ServiceKey.String())
		}
		slices.Sort(keys)
		return strings.Join(keys, " ")
	}
	step := func(wantComplete bool, wantKernel string) {
		t.Helper()
		_, complete, err := g.r.SyncYielding(ctx, g.tb.state(), waiting)
		must(t, err)
		if complete != wantComplete {
			t.Fatalf("complete = %v, want %v; kernel %s", complete, wantComplete, inKernel())
		}
		if got := inKernel(); got != wantKernel {
			t.Fatalf("kernel holds %s, want %s", got, wantKernel)
		}
	}
	all := strings.Join(slices.Sorted(slices.Values([]string{webKey.String(), dnsKey.String(), fwmKey.String()})), " ")

	// Before the first complete pass it does not yield: it could not tell old keys from foreign.
	step(true, all)
	if asked != 0 {
		t.Fatalf("the first pass asked about changes %d times", asked)
	}

	// dns and mark vanish behind Troop's back; web leaves the table.
	must(t, g.k.RemoveService(dnsKey))
	must(t, g.k.RemoveService(fwmKey))
	g.tb.apply(fsm.DeleteService("web"))
	withDNS := strings.Join(slices.Sorted(slices.Values([]string{webKey.String(), dnsKey.String()})), " ")
	// Sorted by name: dns is repaired, then the pass stops before mark; web stays for now.
	step(false, withDNS)
	// It resumes at mark and reaches the end, which removes web.
	step(true, strings.Join(slices.Sorted(slices.Values([]string{dnsKey.String(), fwmKey.String()})), " "))

	// Without waiting changes, one call does it all.
	must(t, g.k.RemoveService(dnsKey))
	_, complete, err := g.r.SyncYielding(ctx, g.tb.state(), func() bool { return false })
	must(t, err)
	if !complete || !strings.Contains(inKernel(), dnsKey.String()) {
		t.Fatalf("complete %v, kernel %s: want a whole pass that restored dns", complete, inKernel())
	}
}

// ListForSync holds nothing while the kernel lists its services: changes go in meanwhile, and
// the pass that follows compares the services they wrote afresh rather than from the stale
// listing. It neither calls them drift nor writes them again, nor trips over a service created
// after the listing, nor keeps one deleted after it.
func TestListForSyncComparesServicesChangedWhileListing(t *testing.T) {
	g := newRig(t, web(), dns())
	ctx := context.Background()
	g.sync("")
	listed, release := g.k.HoldNextListing()
	defer release()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.r.ListForSync(g.tb.state())
	}()
	<-listed
	// While the listing is out: web's scheduler changes, mark arrives, dns goes.
	w := web()
	w.Scheduler = "rr"
	names := g.tb.apply(fsm.UpsertService(w))
	names = append(names, g.tb.apply(fsm.UpsertService(fwm()))...)
	names = append(names, g.tb.apply(fsm.DeleteService("dns"))...)
	_, err := g.r.SyncServices(ctx, g.tb.state(), names)
	must(t, err)
	release()
	<-done

	before := g.k.WriteCalls()
	rep, complete, err := g.r.SyncYielding(ctx, g.tb.state(), func() bool { return false })
	must(t, err)
	if !complete || rep.Drift.Total() != 0 || rep.Writes != 0 || g.k.WriteCalls() != before {
		t.Fatalf("complete %v, %s, %d kernel writes: want a complete pass with nothing to do", complete, summary(rep), g.k.WriteCalls()-before)
	}
	list, err := g.k.Services()
	must(t, err)
	var got []string
	for _, s := range list {
		got = append(got, s.ServiceKey.String()+" "+string(s.Scheduler))
	}
	slices.Sort(got)
	want := []string{fwmKey.String() + " sh", webKey.String() + " rr"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kernel holds %q, want %q", got, want)
	}
}
