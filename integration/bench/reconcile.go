package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

// The big table of design.md's ipvsadm -R baseline: 10,000 services × 10 real servers.
const (
	bigServices = 10_000
	bigReals    = 10
	// oneRealChanges is how many single-weight changes are timed with the big table loaded.
	oneRealChanges = 1000
)

// usage is the process's CPU time and allocation so far.
type usage struct {
	cpu   time.Duration
	alloc uint64
	wall  time.Time
}

func now() usage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{
		cpu:   time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		alloc: m.TotalAlloc,
		wall:  time.Now(),
	}
}

type cost struct {
	wall, cpu time.Duration
	allocMB   float64
	calls     int
	writes    int
}

func since(u usage, k *ipvsfake.IPVS) cost {
	n := now()
	return cost{wall: n.wall.Sub(u.wall), cpu: n.cpu - u.cpu, allocMB: float64(n.alloc-u.alloc) / (1 << 20),
		calls: k.TotalCalls(), writes: k.WriteCalls()}
}

// bigFSM returns an FSM holding the big table, applied as one entry.
func bigFSM() (*fsm.FSM, uint64, error) {
	t := fsm.Table{Services: make([]fsm.Service, bigServices)}
	for i := range t.Services {
		s := fsm.Service{Name: fmt.Sprintf("svc%05d", i), Port: 80,
			VIP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
		for j := range bigReals {
			s.Reals = append(s.Reals, fsm.Real{Address: netip.AddrFrom4([4]byte{172, 16, byte(j), byte(i % 250)})})
		}
		t.Services[i] = s
	}
	f := fsm.New(slog.New(slog.DiscardHandler))
	entry, err := fsm.EncodeCommand(fsm.ApplyTable(t))
	if err != nil {
		return nil, 0, err
	}
	if res := f.Apply(1, entry); res.Err != nil {
		return nil, 0, res.Err
	}
	return f, 1, nil
}

// benchReconcile measures the reconciler against the fake kernel, which counts the calls a real
// one would make as netlink requests: the cost is Troop's own (the kernel's share is the VM
// tier's business).
func benchReconcile() (string, error) {
	ctx := context.Background()
	f, index, err := bigFSM()
	if err != nil {
		return "", err
	}
	k := ipvsfake.New()
	r, err := director.NewReconciler(k, director.NewOwnership(), director.ReconcilerOptions{}, nil)
	if err != nil {
		return "", err
	}
	runtime.GC()
	u := now()
	if _, err := r.Sync(ctx, f.View()); err != nil {
		return "", err
	}
	load := since(u, k)

	k.ResetCalls()
	runtime.GC()
	u = now()
	if _, err := r.Sync(ctx, f.View()); err != nil {
		return "", err
	}
	steady := since(u, k)

	// One real's weight changes: the FSM applies the entry, the reconciler handles the one
	// service the entry changed, as the director does on every apply.
	w := f.Watch()
	k.ResetCalls()
	lat := make([]time.Duration, 0, oneRealChanges)
	u = now()
	for i := range oneRealChanges {
		name := fmt.Sprintf("svc%05d", (i*7919)%bigServices)
		entry, _ := fsm.EncodeCommand(fsm.SetWeight(name, fmt.Sprintf("172.16.3.%d:80", ((i*7919)%bigServices)%250), 2+i%50))
		start := time.Now()
		index++
		if res := f.Apply(index, entry); res.Err != nil {
			return "", res.Err
		}
		names, _ := w.Take()
		if _, err := r.SyncServices(ctx, f.View(), names); err != nil {
			return "", err
		}
		lat = append(lat, time.Since(start))
	}
	change := since(u, k)
	q := quantiles(lat)

	var b strings.Builder
	b.WriteString("## IPVS reconcile cost (10,000 services × 10 real servers, fake kernel)\n\n")
	fmt.Fprintf(&b, "Measured %s on %s. The reconciler programs `director/ipvsfake`, which counts each call a real kernel would get as one netlink request; the time is Troop's own work (the kernel's share, and the comparison with `ipvsadm -R` of the same table, belong to the VM tier).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostname())
	b.WriteString("| pass | wall | CPU | allocated | IPVS calls | of which writes |\n|---|---|---|---|---|---|\n")
	row := func(name string, c cost) {
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f MB | %d | %d |\n", name, ms(c.wall), ms(c.cpu), c.allocMB, c.calls, c.writes)
	}
	row("full load into an empty table", load)
	row("full comparison, nothing to do", steady)
	row(fmt.Sprintf("%d one-real weight changes (FSM apply + incremental sync)", oneRealChanges), change)
	fmt.Fprintf(&b, "\nOne-real change: **%.1f IPVS calls** per change (list that service's destinations, update one), latency p50 %s, p99 %s (FSM apply included, no Raft).\n",
		float64(change.calls)/oneRealChanges, ms(q.p50), ms(q.p99))
	return b.String(), nil
}
