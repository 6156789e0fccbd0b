package director_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

// The big table: 10,000 services × 10 real servers (110,000 kernel objects), the size of the
// ipvsadm -R baseline in design.md.
const (
	benchServices = 10_000
	benchReals    = 10
)

var bigTable = sync.OnceValues(func() (*table, []fsm.Service) {
	services := make([]fsm.Service, benchServices)
	for i := range services {
		s := fsm.Service{
			Name: fmt.Sprintf("svc%05d", i),
			// 10.x.y.z VIPs: 10,000 distinct addresses.
			VIP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 80,
		}
		for j := range benchReals {
			s.Reals = append(s.Reals, fsm.Real{Address: netip.AddrFrom4([4]byte{172, 16, byte(j), byte(i % 250)})})
		}
		services[i] = s
	}
	return newTable(discardT{}, services...), services
})

// discardT satisfies the helpers' tester outside a test (the big table is shared).
type discardT struct{}

func (discardT) Helper()                           {}
func (discardT) Log(...any)                        {}
func (discardT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func benchReconciler(b *testing.B, k director.IPVS) *director.Reconciler {
	r, err := director.NewReconciler(k, director.NewOwnership(), director.ReconcilerOptions{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// BenchmarkSyncFullLoad programs the whole big table into an empty kernel.
func BenchmarkSyncFullLoad(b *testing.B) {
	tb, _ := bigTable()
	st := tb.state()
	b.ReportAllocs()
	var calls, alloc, n float64
	for b.Loop() {
		n++
		b.StopTimer()
		k := ipvsfake.New()
		r := benchReconciler(b, k)
		before := totalAlloc()
		b.StartTimer()
		rep, err := r.Sync(context.Background(), st)
		b.StopTimer()
		alloc += float64(totalAlloc() - before)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Services.Created != benchServices || rep.Destinations.Created != benchServices*benchReals {
			b.Fatalf("created %s", summary(rep))
		}
		calls += float64(rep.Calls)
		b.StartTimer()
	}
	b.ReportMetric(calls/n, "calls/op")
	b.ReportMetric(alloc/n/1e6, "MB/op")
}

// loadedKernel returns a kernel holding the big table and the reconciler that put it there.
func loadedKernel(b *testing.B) (*ipvsfake.IPVS, *director.Reconciler, *table) {
	tb, _ := bigTable()
	k := ipvsfake.New()
	r := benchReconciler(b, k)
	if _, err := r.Sync(context.Background(), tb.state()); err != nil {
		b.Fatal(err)
	}
	return k, r, tb
}

// BenchmarkSyncSteadyState compares the whole big table with a kernel that already matches.
func BenchmarkSyncSteadyState(b *testing.B) {
	k, r, tb := loadedKernel(b)
	st := tb.state()
	b.ReportAllocs()
	var calls, alloc, n float64
	writes := k.WriteCalls()
	for b.Loop() {
		n++
		before := totalAlloc()
		rep, err := r.Sync(context.Background(), st)
		alloc += float64(totalAlloc() - before)
		if err != nil || rep.Writes != 0 {
			b.Fatalf("steady state: %s, %v", summary(rep), err)
		}
		calls += float64(rep.Calls)
	}
	if k.WriteCalls() != writes {
		b.Fatal("a steady-state Sync wrote")
	}
	b.ReportMetric(calls/n, "calls/op")
	b.ReportMetric(alloc/n/1e6, "MB/op")
}

// BenchmarkSyncServicesOneReal changes one real server's weight in the big table and applies it
// with SyncServices, as the director does for each FSM change.
func BenchmarkSyncServicesOneReal(b *testing.B) {
	k, r, tb := loadedKernel(b)
	const name = "svc05000"
	s, _ := tb.state().Service(name)
	id := s.Reals[3].ID()
	tb.apply(fsm.SetWeight(name, id, 2))
	two := tb.state()
	tb.apply(fsm.SetWeight(name, id, 1))
	one := tb.state()
	states := [2]*fsm.State{two, one}
	names := []string{name}
	b.ReportAllocs()
	k.ResetCalls()
	n := 0
	for b.Loop() {
		rep, err := r.SyncServices(context.Background(), states[n%2], names)
		if err != nil || rep.Destinations.Updated != 1 {
			b.Fatalf("one-real change: %s, %v", summary(rep), err)
		}
		n++
	}
	b.ReportMetric(float64(k.TotalCalls())/float64(n), "calls/change")
}
