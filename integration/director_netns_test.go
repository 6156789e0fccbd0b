package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// The seed's scenario 2 on the host kernel (the namespace tier; without IPVS the agents serve
// VIPs only): exactly one director, the Raft leader, holds the VIPs and answers on them; when its
// host dies (SIGKILL and its link cut) the VIPs move, and the client's neighbour entries follow
// the new leader's gratuitous ARP / unsolicited NA without the client sending anything.
func TestDirectorsMoveTheVIP(t *testing.T) {
	p := newVIPPool(t, true)

	leader := p.leader
	for _, vip := range []string{lvs.VIP, lvs.VIP6} {
		p.waitFor(10*time.Second, "exactly the leader "+leader+" holds "+vip, func() bool {
			return slices.Equal(p.Holders(vip), []string{leader})
		})
		p.waitFor(10*time.Second, "the client reaches the leader on "+vip, func() bool {
			st, err := p.StatusAt(p.ctx, vip)
			return err == nil && st.ID == leader
		})
		if mac := p.clientNeighbour(vip); mac != p.mac(leader) {
			t.Fatalf("client's neighbour entry for %s is %q, want the leader's %s", vip, mac, p.mac(leader))
		}
	}

	oldMAC := p.mac(leader)
	died := time.Now()
	if err := p.Crash(p.ctx, leader); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []string{lvs.VIP, lvs.VIP6} {
		start := time.Now()
		var holder string
		p.waitFor(15*time.Second, "the VIP "+vip+" moves to one survivor", func() bool {
			h := slices.DeleteFunc(p.Holders(vip), func(d string) bool { return d == leader })
			if len(h) == 1 {
				holder = h[0]
			}
			return len(h) == 1
		})
		took := time.Since(start)
		// Without the client sending anything, its neighbour entry now names the new holder.
		p.waitFor(10*time.Second, "the client's neighbour entry for "+vip+" follows", func() bool {
			mac := p.clientNeighbour(vip)
			return mac != oldMAC && mac == p.mac(holder)
		})
		t.Logf("%s: held by %s %s after the crash; the client's entry updated %s after it",
			vip, holder, took.Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
		if st, err := p.StatusAt(p.ctx, vip); err != nil || st.ID != holder {
			t.Errorf("the client asking %s reached %q (%v), want %s", vip, st.ID, err, holder)
		}
	}
	if l := p.waitLeader(); !slices.Equal(p.liveHolders(), []string{l}) {
		t.Errorf("the VIP holders %v are not the Raft leader %s", p.liveHolders(), l)
	}
}
