package integration

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// keepalivedBin is where the VM's initramfs holds Debian's keepalived.
const keepalivedBin = "/usr/sbin/keepalived"

// TestLVSKeepalivedFailover is the other side of `make bench`'s failover comparison: the same
// pool, reals, client, load and ping watcher as TestLVSLeaderCrash and TestLVSGracefulStop, with
// keepalived (VRRP over unicast, priorities 150/100/50, the web service as a virtual_server) on
// the directors in place of `troop agent`. Crash: the master's link is cut and keepalived
// SIGKILLed with its children; graceful: SIGTERM (the master advertises priority 0). It runs only
// when TROOP_BENCH_KEEPALIVED is set (the bench sets it; it takes minutes) and keepalived is
// installed (the VM has Debian's).
func TestLVSKeepalivedFailover(t *testing.T) {
	if os.Getenv("TROOP_BENCH_KEEPALIVED") == "" {
		t.Skip("keepalived comparison: `make bench` runs it in the VM (TROOP_BENCH_KEEPALIVED=1)")
	}
	if _, err := os.Stat(keepalivedBin); err != nil {
		t.Skipf("keepalived comparison: no %s (the VM tier has Debian's)", keepalivedBin)
	}
	needIPVS(t)
	for _, kind := range []string{"crash", "graceful"} {
		for _, prof := range []lvs.Keepalived{lvs.KeepalivedDefault, lvs.KeepalivedTuned} {
			t.Run(kind+"/"+strings.Fields(prof.Name)[0], func(t *testing.T) {
				p := newKeepalivedPool(t, prof)
				var fs []failover
				for range failoverRuns() {
					f := p.loseMaster(kind == "crash", prof)
					if f.outage > 15*time.Second {
						t.Errorf("a %s failover took %s as the client saw it", kind, f.outage)
					}
					fs = append(fs, f)
				}
				reportFailovers(t, "keepalived", kind, prof.Name, fs)
			})
		}
	}
}

// newKeepalivedPool starts keepalived with prof on every director, prepares and starts the
// reals, and waits until the client is served by both through the VIP.
func newKeepalivedPool(t *testing.T, prof lvs.Keepalived) *lvsPool {
	t.Helper()
	lp := openPool(t, lvs.Config{})
	p := lp.Pool
	lp.serveReals(p.Reals())
	for _, d := range p.Directors() {
		if err := p.StartKeepalived(d, prof); err != nil {
			t.Fatal(err)
		}
	}
	lp.leader = lp.waitMaster(20 * time.Second)
	lp.waitServedBy(webURL, []string{"r1", "r2"}, 20*time.Second)
	return lp
}

// waitMaster waits until exactly one running director holds the VIP, and has for half a second
// (VRRP's preemption settled: a master that hears a higher priority gives way at once), and
// returns it.
func (p *lvsPool) waitMaster(timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var h []string
	var since time.Time
	for time.Now().Before(deadline) {
		now := p.liveHolders()
		if len(now) != 1 || !slices.Equal(now, h) {
			h, since = now, time.Now()
		} else if time.Since(since) >= 500*time.Millisecond {
			return h[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no single VRRP master among the running directors within %s: VIP held by %v", timeout, h)
	return ""
}

// loseMaster is loseLeader for keepalived: the VRRP master goes away (crash: link cut, then
// keepalived and its children SIGKILLed; stop: SIGTERM), the client's view of the failover is
// measured the same way, and the old master comes back (after a crash as a rebooted host) and,
// having the highest priority, takes the VIP back before the next run.
func (p *lvsPool) loseMaster(crash bool, prof lvs.Keepalived) failover {
	p.t.Helper()
	// The last run ended with its master settled; wait again only if that changed since.
	old := p.leader
	if !slices.Equal(p.liveHolders(), []string{old}) {
		old = p.waitMaster(20 * time.Second)
	}
	ph := newPhases()
	o := p.takeDownObserved("master", old, crash)
	defer o.stop()
	ph.mark("take down")
	var next string
	p.waitFor(15*time.Second, "another director holds the VIP", func() bool {
		h := p.liveHolders()
		if len(h) == 1 && h[0] != old {
			next = h[0]
			return true
		}
		return false
	})
	newMAC := o.waitAnswer(p, "master", next)
	ph.mark("new master answers")
	_, f := o.finish(p, newMAC)
	ph.mark("traffic after")
	if crash {
		if err := p.Reboot(p.ctx, old); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := p.StartKeepalived(old, prof); err != nil {
		p.t.Fatal(err)
	}
	p.waitFor(15*time.Second, old+" (highest priority) takes the VIP back", func() bool {
		return slices.Equal(p.liveHolders(), []string{old})
	})
	ph.mark("takes back")
	p.leader = p.waitMaster(10 * time.Second)
	ph.mark("settles")
	p.t.Logf("failover phases: %s", ph)
	return f
}
