package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// Fencing by lease (issue 6, done-when (a)), on the host kernel: the leader is cut off from the
// other directors on the bridge while the client still reaches every director, the case where
// VRRP ends with two masters. The old leader must let go of the VIP (its Raft lease runs out)
// before the new leader takes it, so the client never hears two MACs answer for the VIP; once
// the partition heals, the old leader rejoins as a follower and stays without the VIP.
func TestPartitionedLeaderLetsGo(t *testing.T) {
	p := newVIPPool(t, false)

	var runs []partitionRun
	for i := range partitionRuns() {
		r := p.partitionLeader()
		t.Logf("run %d: %s isolated from %v: dropped the VIP %s after the cut, %s took it %s after; client outage %s; overlap %s in echo replies, %s in ARP answers (%d and %d late ones from the old MAC)",
			i+1, r.old, r.others, r.dropped.Round(time.Millisecond), r.newLeader, r.taken.Round(time.Millisecond),
			r.outage.Round(time.Millisecond), r.overlap, r.arpOverlap, r.late, r.arpLate)
		runs = append(runs, r)
	}
	var worst time.Duration
	late := 0
	var dropped, taken, outage []string
	for _, r := range runs {
		worst = max(worst, r.overlap, r.arpOverlap)
		late += r.late + r.arpLate
		dropped = append(dropped, r.dropped.Round(time.Millisecond).String())
		taken = append(taken, r.taken.Round(time.Millisecond).String())
		outage = append(outage, r.outage.Round(time.Millisecond).String())
	}
	t.Logf("partition summary, %d runs: old leader dropped the VIP after %v; new leader held it after %v; client outage %v; largest overlap %s",
		len(runs), dropped, taken, outage, worst)
	if late > 0 {
		t.Errorf("two MACs answered for the VIP: %d echo replies or ARP answers from an old leader after the new one answered; the largest overlap was %s (target: none)", late, worst)
	}
}

// newVIPPool starts a pool (newPool) and applies a table that puts lvs.VIP on the leader
// (service "web", real r1) and, with v6, lvs.VIP6 too (service "web6"): on a kernel without
// IPVS the agents serve the VIPs only.
func newVIPPool(t *testing.T, v6 bool) *lvsPool {
	t.Helper()
	p := newPool(t, lvs.Config{})
	table := fmt.Sprintf(`
service "web" {
  vip  = %q
  port = 80
  real %q {}
}
`, lvs.VIP, lvs.RealAddr(1))
	if v6 {
		table += fmt.Sprintf(`service "web6" {
  vip  = %q
  port = 80
  real %q {}
}
`, lvs.VIP6, p.Node("r1").Addr6())
	}
	p.apply(table)
	return p
}

// partitionRuns is how many partitions TestPartitionedLeaderLetsGo makes (TROOP_PARTITION_RUNS).
func partitionRuns() int {
	if n, err := strconv.Atoi(os.Getenv("TROOP_PARTITION_RUNS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// partitionRun is one partition of the leader, as the directors' kernels and the client saw it.
type partitionRun struct {
	old, newLeader string
	others         []string
	// dropped and taken are measured from the cut: until the old leader's eth0 no longer holds
	// the VIP, and until the new leader's does.
	dropped, taken time.Duration
	// outage is the client's gap from the last echo reply from the old MAC to the first from
	// the new one.
	outage time.Duration
	// overlap is the span from the first echo reply from the new MAC to the last from the old
	// one after it (0 if none came after); late counts those replies. The client's pings follow
	// its neighbour entry, so they hear one MAC at a time: arpOverlap and arpLate are the same
	// for the ARP answers to its broadcast requests, which every holder of the VIP sends.
	overlap, arpOverlap time.Duration
	late, arpLate       int
}

// partitionLeader isolates the leader from the other directors, checks the VIP moves without
// two holders, heals the partition and checks the old leader stays a follower without the VIP.
func (p *lvsPool) partitionLeader() partitionRun {
	p.t.Helper()
	r := partitionRun{old: p.waitLeader()}
	p.leader = r.old
	r.others = slices.DeleteFunc(p.Directors(), func(d string) bool { return d == r.old })
	p.waitFor(10*time.Second, "exactly the leader "+r.old+" holds the VIP", func() bool {
		return slices.Equal(p.Holders(lvs.VIP), []string{r.old})
	})
	oldMAC := p.mac(r.old)
	watch, err := p.WatchAddr(p.ctx, lvs.VIP, 10*time.Millisecond)
	if err != nil {
		p.t.Fatal(err)
	}
	defer watch.Stop()
	arps, err := p.WatchARP(p.ctx, lvs.VIP, 10*time.Millisecond)
	if err != nil {
		p.t.Fatal(err)
	}
	defer arps.Stop()
	p.waitFor(3*time.Second, "the leader "+r.old+" answers the client's pings", func() bool {
		return slices.ContainsFunc(watch.Replies(), func(rep lvs.Reply) bool { return rep.MAC == oldMAC })
	})

	cut := time.Now()
	if err := p.Isolate(p.ctx, r.old, r.others...); err != nil {
		p.t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			p.Heal(p.ctx)
		}
	}()
	var bothHeld time.Duration // since the cut, when the old and a new leader both held the VIP
	// Poll the kernels: the new holders first, then the old one, so that "both hold" is only
	// reported when the old leader still held the VIP after a new one had it.
	p.waitFor(15*time.Second, "the VIP moves from "+r.old+" to one of "+fmt.Sprint(r.others), func() bool {
		newHolders := slices.DeleteFunc(p.Holders(lvs.VIP), func(d string) bool { return d == r.old })
		oldHolds := slices.Contains(p.Holders(lvs.VIP), r.old)
		if len(newHolders) > 0 && oldHolds && bothHeld == 0 {
			bothHeld = time.Since(cut)
		}
		if !oldHolds && r.dropped == 0 {
			r.dropped = time.Since(cut)
		}
		if len(newHolders) == 1 && r.taken == 0 {
			r.taken, r.newLeader = time.Since(cut), newHolders[0]
		}
		if len(newHolders) > 1 {
			p.t.Fatalf("the VIP is held by %v at once", newHolders)
		}
		return r.taken > 0 && (r.dropped > 0 || bothHeld > 0)
	})
	newMAC := p.mac(r.newLeader)
	p.waitFor(5*time.Second, "the new leader "+r.newLeader+" answers the client's pings", func() bool {
		return slices.ContainsFunc(watch.Replies(), func(rep lvs.Reply) bool { return rep.MAC == newMAC })
	})
	if bothHeld > 0 {
		p.t.Errorf("%s still held the VIP %s after the cut, when %s already held it", r.old, bothHeld.Round(time.Millisecond), r.newLeader)
	}
	// The partition is between the directors only: the client still reaches every one of them,
	// the old leader included, which no longer acts as the leader.
	for _, d := range p.Directors() {
		st, err := p.Status(p.ctx, d)
		if err != nil {
			p.t.Fatalf("the client cannot reach %s during the partition: %v", d, err)
		}
		if d == r.old && st.Role == "leader" {
			p.t.Errorf("%s, partitioned, still says it is the leader", d)
		}
	}
	// Stay partitioned a while: the old leader, alone with the client, must not take the VIP
	// back (it cannot win an election, and must not announce).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && bothHeld == 0 {
		if slices.Contains(p.Holders(lvs.VIP), r.old) {
			p.t.Fatalf("%s, partitioned, holds the VIP again", r.old)
		}
		time.Sleep(20 * time.Millisecond)
	}
	replies := watch.Stop()
	if r.outage, err = lvs.Outage(replies, oldMAC, newMAC); err != nil {
		p.t.Fatal(err)
	}
	r.overlap, r.late = overlap(replies, oldMAC, newMAC)
	r.arpOverlap, r.arpLate = overlap(arps.Stop(), oldMAC, newMAC)
	if bothHeld > 0 {
		p.t.Fatalf("two holders: the client heard %d echo replies and %d ARP answers from the old leader's MAC after the new one's, over %s and %s",
			r.late, r.arpLate, r.overlap, r.arpOverlap)
	}

	if err := p.Heal(p.ctx); err != nil {
		p.t.Fatal(err)
	}
	healed = true
	p.leader = r.newLeader
	// The old leader rejoins as a follower: nobody but the new leader holds the VIP meanwhile.
	deadline = time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if h := p.Holders(lvs.VIP); !slices.Equal(h, []string{r.newLeader}) {
			p.t.Fatalf("after the partition healed, the VIP was held by %v, want [%s] only", h, r.newLeader)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if l := p.waitLeader(); l != r.newLeader {
		p.t.Errorf("leader after the partition healed: %s, want %s unchanged", l, r.newLeader)
	}
	if st, err := p.Status(p.ctx, r.old); err != nil || st.Role != "follower" {
		p.t.Errorf("%s after the partition healed: role %q (%v), want follower", r.old, st.Role, err)
	}
	return r
}

// overlap is how long two MACs answered for one address as a client saw it: the span from the
// first reply from newMAC to the last reply from oldMAC after it (0 if none came after), and how
// many replies from oldMAC came after the first from newMAC.
func overlap(replies []lvs.Reply, oldMAC, newMAC string) (span time.Duration, late int) {
	replies = slices.Clone(replies)
	slices.SortStableFunc(replies, func(a, b lvs.Reply) int { return a.At.Compare(b.At) })
	var first time.Time
	for _, r := range replies {
		switch {
		case r.MAC == newMAC && first.IsZero():
			first = r.At
		case r.MAC == oldMAC && !first.IsZero():
			span, late = r.At.Sub(first), late+1
		}
	}
	return span, late
}
