package director_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

// Pools the generators draw from: few enough that keys, reals and fallbacks collide often.
var (
	vipPool      = []netip.Addr{addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3")}
	realPool     = []netip.Addr{addr("198.51.100.1"), addr("198.51.100.2"), addr("198.51.100.3"), addr("198.51.100.4"), addr("198.51.100.5"), addr("198.51.100.6")}
	fallbackPool = []netip.Addr{addr("198.51.100.6"), addr("198.51.100.9")}
	// foreignPool holds keys other software uses, and one of the table's (to be adopted).
	foreignPool = []director.ServiceKey{
		{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("203.0.113.1"), Port: 80},
		{Family: fsm.IPv4, Protocol: fsm.UDP, Address: addr("203.0.113.2"), Port: 53},
		{Family: fsm.IPv4, FWMark: 50},
		{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("192.0.2.1"), Port: 80},
	}
)

// genTable draws a valid table of up to six services with distinct names and kernel keys.
func genTable(t *rapid.T) []fsm.Service {
	n := rapid.IntRange(0, 6).Draw(t, "services")
	keys := map[string]bool{}
	var out []fsm.Service
	for i := range n {
		s := fsm.Service{Name: fmt.Sprintf("s%d", i)}
		if rapid.IntRange(0, 4).Draw(t, "fwmark?") == 0 {
			s.FWMark = uint32(rapid.IntRange(1, 3).Draw(t, "mark"))
			s.Family = fsm.IPv4
		} else {
			s.VIP = rapid.SampledFrom(vipPool).Draw(t, "vip")
			s.Port = rapid.SampledFrom([]uint16{80, 443}).Draw(t, "port")
			s.Protocol = rapid.SampledFrom([]fsm.Protocol{fsm.TCP, fsm.UDP}).Draw(t, "protocol")
		}
		fsm.NormalizeService(&s)
		if keys[s.Key()] {
			continue
		}
		keys[s.Key()] = true
		s.Scheduler = rapid.SampledFrom([]fsm.Scheduler{"wlc", "rr", "sh"}).Draw(t, "scheduler")
		if s.Scheduler == "sh" && rapid.Bool().Draw(t, "flags?") {
			s.SchedFlags = []fsm.SchedulerFlag{fsm.FlagSHPort}
		}
		if rapid.Bool().Draw(t, "persistent?") {
			s.Persistence = &fsm.Persistence{
				Timeout: fsm.Duration(rapid.SampledFrom([]time.Duration{time.Minute, 5 * time.Minute}).Draw(t, "timeout")),
				Netmask: rapid.SampledFrom([]int{0, 24}).Draw(t, "netmask"),
			}
		}
		s.Quiescent = rapid.Bool().Draw(t, "quiescent")
		switch rapid.IntRange(0, 2).Draw(t, "check") {
		case 1:
			s.Check = &fsm.HealthCheck{Type: "tcp", InitialState: fsm.HealthUp}
		case 2:
			s.Check = &fsm.HealthCheck{Type: "tcp", InitialState: fsm.HealthDown}
		}
		if rapid.IntRange(0, 2).Draw(t, "fallback?") == 0 {
			s.Fallback = &fsm.Fallback{Address: rapid.SampledFrom(fallbackPool).Draw(t, "fallback")}
		}
		for _, a := range rapid.SliceOfDistinct(rapid.SampledFrom(realPool), func(a netip.Addr) netip.Addr { return a }).Draw(t, "reals") {
			r := fsm.Real{
				Address:    a,
				Port:       s.Port,
				Forwarding: rapid.SampledFrom([]fsm.Forwarding{"", fsm.DR, fsm.NAT}).Draw(t, "forwarding"),
				Admin:      rapid.SampledFrom(fsm.AdminStates).Draw(t, "admin"),
			}
			if w := rapid.IntRange(-1, 3).Draw(t, "weight"); w >= 0 {
				r.Weight = weight(w)
			}
			if rapid.Bool().Draw(t, "thresholds?") {
				r.UpperThreshold = uint32(rapid.SampledFrom([]int{0, 100}).Draw(t, "upper"))
				if r.UpperThreshold != 0 { // the FSM refuses a lower threshold without an upper one
					r.LowerThreshold = uint32(rapid.SampledFrom([]int{0, 10}).Draw(t, "lower"))
				}
			}
			s.Reals = append(s.Reals, r)
		}
		out = append(out, s)
	}
	return out
}

// genHealth draws health verdicts for some real servers of st.
func genHealth(t *rapid.T, st *fsm.State) []fsm.HealthTransition {
	var out []fsm.HealthTransition
	for _, name := range st.ServiceNames() {
		s, _ := st.Service(name)
		for _, r := range s.Reals {
			if rapid.IntRange(0, 2).Draw(t, "verdict?") == 0 {
				out = append(out, fsm.HealthTransition{Service: name, Real: r.ID(),
					State: rapid.SampledFrom([]fsm.Health{fsm.HealthUp, fsm.HealthDown}).Draw(t, "health")})
			}
		}
	}
	return out
}

// world is a reconciler, its fake kernel and table, for the property tests.
type world struct {
	t   *rapid.T
	k   *ipvsfake.IPVS
	own *director.Ownership
	clk *clock
	tb  *table
	r   *director.Reconciler
	// faults counts injected failures per method, to use up the ones never consumed.
	faults map[ipvsfake.Op]int
}

func newWorld(t *rapid.T) *world {
	w := &world{t: t, k: ipvsfake.New(), own: director.NewOwnership(), clk: newClock(), tb: newTable(t), faults: map[ipvsfake.Op]int{}}
	var err error
	w.r, err = director.NewReconciler(w.k, w.own, director.ReconcilerOptions{Clock: w.clk.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) applyTable() []string {
	changed := w.tb.apply(fsm.ApplyTable(fsm.Table{Services: genTable(w.t)}))
	if h := genHealth(w.t, w.tb.state()); len(h) > 0 {
		changed = append(changed, w.tb.apply(fsm.RecordHealth(w.clk.Now(), h))...)
	}
	return changed
}

// pass runs a Sync (names == nil) or SyncServices and checks that the report counts the calls
// the kernel saw. It returns the report and the kernel writes.
func (w *world) pass(names []string, full, mayFail bool) (director.Report, int) {
	w.t.Helper()
	calls, writes := w.k.TotalCalls(), w.k.WriteCalls()
	var rep director.Report
	var err error
	if full {
		rep, err = w.r.Sync(context.Background(), w.tb.state())
	} else {
		rep, err = w.r.SyncServices(context.Background(), w.tb.state(), names)
	}
	if err != nil && !mayFail {
		w.t.Fatalf("sync: %v", err)
	}
	if n := w.k.TotalCalls() - calls; n != rep.Calls {
		w.t.Fatalf("report counts %d calls, the kernel saw %d", rep.Calls, n)
	}
	n := w.k.WriteCalls() - writes
	if n != rep.Writes {
		w.t.Fatalf("report counts %d writes, the kernel saw %d", rep.Writes, n)
	}
	return rep, n
}

// randomService picks a kernel service, if there is one.
func (w *world) randomService() (director.ServiceKey, bool) {
	svcs, _ := w.k.Services()
	if len(svcs) == 0 {
		return director.ServiceKey{}, false
	}
	return rapid.SampledFrom(svcs).Draw(w.t, "service").ServiceKey, true
}

func (w *world) randomDest() (director.ServiceKey, director.Destination, bool) {
	k, ok := w.randomService()
	if !ok {
		return k, director.Destination{}, false
	}
	ds, _ := w.k.Destinations(k)
	if len(ds) == 0 {
		return k, director.Destination{}, false
	}
	return k, rapid.SampledFrom(ds).Draw(w.t, "destination"), true
}

// edit makes one out-of-band change to the kernel, as an operator or other software would.
// Errors (EEXIST and the like) are the kernel refusing; the edit then did nothing.
func (w *world) edit() {
	switch rapid.IntRange(0, 6).Draw(w.t, "edit") {
	case 0: // ipvsadm -D
		if k, ok := w.randomService(); ok {
			w.k.RemoveService(k)
		}
	case 1: // ipvsadm -E
		if k, ok := w.randomService(); ok {
			w.k.UpdateService(director.Service{ServiceKey: k, Scheduler: rapid.SampledFrom([]fsm.Scheduler{"rr", "lc"}).Draw(w.t, "scheduler"),
				Persistent: rapid.Bool().Draw(w.t, "persistent"), Timeout: 30})
		}
	case 2: // ipvsadm -d
		if k, d, ok := w.randomDest(); ok {
			w.k.RemoveDestination(k, d.DestinationKey)
		}
	case 3: // ipvsadm -e
		if k, d, ok := w.randomDest(); ok {
			d.Weight = rapid.IntRange(0, 5).Draw(w.t, "weight")
			w.k.UpdateDestination(k, d)
		}
	case 4: // ipvsadm -a
		if k, ok := w.randomService(); ok {
			w.k.CreateDestination(k, director.Destination{
				DestinationKey: director.DestinationKey{Address: rapid.SampledFrom(realPool).Draw(w.t, "stray"), Port: k.Port},
				Forwarding:     fsm.DR, Weight: rapid.IntRange(0, 3).Draw(w.t, "weight"),
			})
		}
	case 5: // ipvsadm -A, by someone else
		k := rapid.SampledFrom(foreignPool).Draw(w.t, "foreign")
		w.k.CreateService(director.Service{ServiceKey: k, Scheduler: "wrr"})
		w.k.CreateDestination(k, director.Destination{DestinationKey: director.DestinationKey{Address: addr("203.0.113.21"), Port: k.Port}, Forwarding: fsm.NAT, Weight: 1})
	case 6: // traffic
		if k, d, ok := w.randomDest(); ok {
			w.k.SetConns(k, d.DestinationKey, uint32(rapid.IntRange(0, 2).Draw(w.t, "active")), uint32(rapid.IntRange(0, 2).Draw(w.t, "inactive")))
		}
	}
}

// fault makes the next call of a random method fail.
func (w *world) fault() {
	op := rapid.SampledFrom([]ipvsfake.Op{ipvsfake.Services, ipvsfake.Destinations, ipvsfake.CreateService, ipvsfake.UpdateService,
		ipvsfake.RemoveService, ipvsfake.CreateDestination, ipvsfake.UpdateDestination, ipvsfake.RemoveDestination}).Draw(w.t, "fault")
	w.k.FailNext(op, syscall.EIO)
	w.faults[op]++
}

// useUpFaults consumes injected failures no pass ran into, with calls that change nothing.
func (w *world) useUpFaults() {
	var none director.ServiceKey // refused by every method
	for op, n := range w.faults {
		for range n {
			switch op {
			case ipvsfake.Services:
				w.k.Services()
			case ipvsfake.Destinations:
				w.k.Destinations(none)
			case ipvsfake.CreateService:
				w.k.CreateService(director.Service{ServiceKey: none})
			case ipvsfake.UpdateService:
				w.k.UpdateService(director.Service{ServiceKey: none})
			case ipvsfake.RemoveService:
				w.k.RemoveService(none)
			case ipvsfake.CreateDestination:
				w.k.CreateDestination(none, director.Destination{})
			case ipvsfake.UpdateDestination:
				w.k.UpdateDestination(none, director.Destination{})
			case ipvsfake.RemoveDestination:
				w.k.RemoveDestination(none, director.DestinationKey{})
			}
		}
	}
	clear(w.faults)
}

// formatService and formatDest print what Troop sets of kernel objects, and nothing else.
func formatService(s director.Service) string {
	line := fmt.Sprintf("%s %s %v", s.ServiceKey, s.Scheduler, s.SchedFlags)
	if s.Persistent {
		line += fmt.Sprintf(" persistent %d mask %d", s.Timeout, s.Netmask)
	}
	return line
}

func formatDest(d director.Destination) string {
	return fmt.Sprintf("  -> %s %s %d %d-%d", d.DestinationKey, d.Forwarding, d.Weight, d.LowerThreshold, d.UpperThreshold)
}

// dumpKernel prints the kernel services keep selects, in key order.
func dumpKernel(t tester, k director.IPVS, keep func(director.ServiceKey) bool) string {
	svcs, err := k.Services()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	slices.SortFunc(svcs, func(a, b director.Service) int { return strings.Compare(a.ServiceKey.String(), b.ServiceKey.String()) })
	var lines []string
	for _, s := range svcs {
		if !keep(s.ServiceKey) {
			continue
		}
		lines = append(lines, formatService(s))
		ds, err := k.Destinations(s.ServiceKey)
		if err != nil {
			t.Fatalf("list %s: %v", s.ServiceKey, err)
		}
		for _, d := range ds {
			lines = append(lines, formatDest(d))
		}
	}
	return strings.Join(lines, "\n")
}

func dumpDesired(ds []director.DesiredService) string {
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b director.DesiredService) int {
		return strings.Compare(a.Service.ServiceKey.String(), b.Service.ServiceKey.String())
	})
	var lines []string
	for _, d := range ds {
		lines = append(lines, formatService(d.Service))
		for _, x := range d.Destinations {
			lines = append(lines, formatDest(x))
		}
	}
	return strings.Join(lines, "\n")
}

// converged checks the reconciler's promise: the services Troop wants are in the kernel exactly
// as desired (drains included), Troop owns exactly them, and every other service is as it was in
// the foreign snapshot (but those whose key Troop wants now: adopted).
func (w *world) converged(foreign map[director.ServiceKey]string) {
	w.t.Helper()
	want := director.Desired(w.tb.state(), director.ReconcilerOptions{}, w.r.Drains(), w.clk.Now())
	keys := map[director.ServiceKey]bool{}
	for _, d := range want {
		keys[d.Service.ServiceKey] = true
		delete(foreign, d.Service.ServiceKey)
	}
	diffText(w.t, "Troop's services", dumpKernel(w.t, w.k, func(k director.ServiceKey) bool { return keys[k] }), dumpDesired(want))
	var others []string
	for _, k := range slices.SortedFunc(maps.Keys(foreign), func(a, b director.ServiceKey) int { return strings.Compare(a.String(), b.String()) }) {
		if foreign[k] != "" {
			others = append(others, foreign[k])
		}
	}
	diffText(w.t, "other services", dumpKernel(w.t, w.k, func(k director.ServiceKey) bool { return !keys[k] }), strings.Join(others, "\n"))
	owned := w.own.Keys()
	for _, k := range owned {
		if !keys[k] {
			w.t.Fatalf("owns %s, which is not desired", k)
		}
	}
	if len(owned) != len(keys) {
		w.t.Fatalf("owns %v, wants %v", owned, slices.Collect(maps.Keys(keys)))
	}
}

// foreign snapshots the services neither owned nor desired: what Sync must leave as it is.
func (w *world) foreign() map[director.ServiceKey]string {
	st := w.tb.state()
	keys := map[director.ServiceKey]bool{}
	for _, name := range st.ServiceNames() {
		s, _ := st.Service(name)
		keys[director.KeyOf(&s)] = true
	}
	out := map[director.ServiceKey]string{}
	svcs, _ := w.k.Services()
	for _, s := range svcs {
		k := s.ServiceKey
		if !keys[k] && !w.own.Owns(k) {
			out[k] = dumpKernel(w.t, w.k, func(x director.ServiceKey) bool { return x == k })
		}
	}
	return out
}

// finish runs the final passes: the first converges, the second only finishes drains whose
// connections are gone, the third writes nothing.
func (w *world) finish() {
	w.t.Helper()
	foreign := w.foreign()
	w.pass(nil, true, false)
	w.converged(foreign)
	rep, writes := w.pass(nil, true, false)
	if writes != rep.DrainsFinished || writes != rep.Destinations.Removed {
		w.t.Fatalf("second Sync wrote %d times, but finished %d drains: %s", writes, rep.DrainsFinished, summary(rep))
	}
	w.converged(foreign)
	// What is still draining still has connections: the rest went early.
	for k, m := range w.r.Drains() {
		ds, _ := w.k.Destinations(k)
		for _, d := range ds {
			if _, ok := m[d.DestinationKey]; ok && d.ActiveConns+d.InactiveConns == 0 {
				w.t.Fatalf("%s in %s drains without connections", d.DestinationKey, k)
			}
		}
	}
	if rep, writes := w.pass(nil, true, false); writes != 0 {
		w.t.Fatalf("third Sync wrote %d times: %s", writes, summary(rep))
	}
}

// TestSyncConvergesProperty: whatever the table, the history of changes, the out-of-band edits
// and the failed calls, a Sync makes Troop's services equal the desired state without touching
// anyone else's, and then there is nothing left to write.
func TestSyncConvergesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t)
		for range rapid.IntRange(0, 3).Draw(t, "foreign services") {
			w.edit()
		}
		w.applyTable()
		w.pass(nil, true, false)
		for range rapid.IntRange(0, 12).Draw(t, "steps") {
			switch rapid.IntRange(0, 6).Draw(t, "step") {
			case 0:
				w.pass(w.applyTable(), false, len(w.faults) > 0)
			case 1:
				w.applyTable()
			case 2, 3:
				w.edit()
			case 4:
				w.fault()
				w.pass(nil, rapid.Bool().Draw(t, "full"), true)
			case 5:
				w.clk.advance(rapid.SampledFrom([]time.Duration{time.Second, director.DefaultDrainPeriod}).Draw(t, "advance"))
			case 6:
				w.pass(nil, true, len(w.faults) > 0)
			}
		}
		w.useUpFaults()
		w.finish()
	})
}

// TestSyncServicesProperty: applying each change through SyncServices alone (no out-of-band
// edits) keeps the kernel equal to the desired state after every change; a full Sync then only
// finishes drains.
func TestSyncServicesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t)
		for range rapid.IntRange(0, 2).Draw(t, "foreign services") {
			w.edit()
		}
		foreign := w.foreign()
		w.applyTable()
		w.pass(nil, true, false)
		w.converged(foreign)
		for range rapid.IntRange(1, 8).Draw(t, "changes") {
			var changed []string
			switch rapid.IntRange(0, 3).Draw(t, "change") {
			case 0:
				changed = w.applyTable()
			case 1:
				if h := genHealth(t, w.tb.state()); len(h) > 0 {
					changed = w.tb.apply(fsm.RecordHealth(w.clk.Now(), h))
				}
			case 2:
				if k, d, ok := w.randomDest(); ok {
					w.k.SetConns(k, d.DestinationKey, uint32(rapid.IntRange(0, 1).Draw(t, "conns")), 0)
				}
			case 3:
				names := w.tb.state().ServiceNames()
				if len(names) == 0 {
					continue
				}
				s, _ := w.tb.state().Service(rapid.SampledFrom(names).Draw(t, "service"))
				if len(s.Reals) == 0 {
					continue
				}
				r := rapid.SampledFrom(s.Reals).Draw(t, "real")
				switch rapid.IntRange(0, 2).Draw(t, "real change") {
				case 0:
					changed = w.tb.apply(fsm.SetAdmin(s.Name, r.ID(), rapid.SampledFrom(fsm.AdminStates).Draw(t, "admin")))
				case 1:
					changed = w.tb.apply(fsm.SetWeight(s.Name, r.ID(), rapid.IntRange(0, 3).Draw(t, "weight")))
				case 2:
					changed = w.tb.apply(fsm.DeleteReal(s.Name, r.ID()))
				}
			}
			w.pass(changed, false, false)
			w.converged(foreign)
		}
		w.finish()
	})
}

// TestYieldingPassProperty: a full pass whose listing is taken while a change goes in, and which
// yields to changes after every service, never calls those changes drift, and once complete
// leaves the kernel equal to the desired state.
func TestYieldingPassProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		w := newWorld(t)
		for range rapid.IntRange(0, 2).Draw(t, "foreign services") {
			w.edit()
		}
		foreign := w.foreign()
		// change applies a new table through SyncServices; a foreign service the table wants is
		// adopted, and Troop's from then on.
		change := func() {
			w.pass(w.applyTable(), false, false)
			for _, d := range director.Desired(w.tb.state(), director.ReconcilerOptions{}, nil, w.clk.Now()) {
				delete(foreign, d.Service.ServiceKey)
			}
		}
		change()
		w.pass(nil, true, false)
		for range rapid.IntRange(1, 4).Draw(t, "passes") {
			listed, release := w.k.HoldNextListing()
			done := make(chan struct{})
			go func() {
				defer close(done)
				w.r.ListForSync(w.tb.state())
			}()
			<-listed
			change()
			release()
			<-done
			for {
				// Changes wait after every service (the clock moves a quantum each time).
				rep, complete, err := w.r.SyncYielding(ctx, w.tb.state(), func() bool { w.clk.advance(time.Second); return true })
				if err != nil {
					t.Fatalf("yielding pass: %v", err)
				}
				if rep.Drift.Total() != 0 {
					t.Fatalf("a change made during the pass was taken for drift: %s", summary(rep))
				}
				if complete {
					break
				}
				if rapid.Bool().Draw(t, "change between services") {
					change()
				}
			}
			w.converged(foreign)
		}
	})
}
