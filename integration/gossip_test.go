package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/integration/lvs"
)

// gossipTiming is design.md's tuned gossip (a dead member in about a second) with the
// autopilot's clocks short enough for a test.
const gossipTiming = `  probe_interval      = "200ms"
  probe_timeout       = "100ms"
  gossip_interval     = "50ms"
  suspicion_mult      = 3
  stabilization_time  = "1s"
  dead_server_cleanup = "3s"`

const gossipCleanup = 3 * time.Second

// Issue 6 (gossip), real agents on the host kernel: d4 knows nothing but d1's gossip address. It
// gossips in with the pool's key, the leader adds it to Raft as a non-voter and promotes it once
// it has caught up, and every director lists four alive members. Crashed, d4 is removed from Raft
// after dead_server_cleanup; a founder crashed next is kept, because removing it would leave
// fewer than min_quorum (3) voters.
func TestGossipFourthDirectorJoinsAndTheDeadAreRemovedAboveQuorum(t *testing.T) {
	p := newPool(t, lvs.Config{Directors: 4, Founders: 3, Gossip: true, GossipExtra: gossipTiming})
	table := fmt.Sprintf("service \"web\" {\n  vip  = %q\n  port = 80\n  real %q {}\n}\n", lvs.VIP, lvs.RealAddr(1))
	p.apply(table)
	p.waitMembers(p.leader, "the founders alive and voting", func(ms []cluster.Member) bool {
		return count(ms, cluster.GossipAlive, cluster.RaftVoter, cluster.RaftLeader) == 3 && len(ms) == 3
	})

	started := time.Now()
	if err := p.Start("d4"); err != nil {
		t.Fatal(err)
	}
	p.waitMembers(p.leader, "d4 added and promoted to voter", func(ms []cluster.Member) bool {
		m := find(ms, "d4")
		return m.Gossip == cluster.GossipAlive && m.Raft == cluster.RaftVoter && m.Role == cluster.RoleDirector && m.Version != ""
	})
	t.Logf("d4 joined through gossip and became a voter %s after it started", time.Since(started).Round(time.Millisecond))
	for _, d := range p.Directors() {
		p.waitMembers(d, "four alive members", func(ms []cluster.Member) bool {
			return count(ms, cluster.GossipAlive, cluster.RaftVoter, cluster.RaftLeader) == 4
		})
	}
	st, err := p.Status(p.ctx, "d4")
	if err != nil || st.Services != 1 || st.LeaderID != p.leader {
		t.Fatalf("d4's status: %d services, leader %q (%v); want the table and leader %s", st.Services, st.LeaderID, err, p.leader)
	}
	out, err := p.Exec(p.ctx, lvs.ClientName, p.Bin(), "members", "-address", apiURL("d4"))
	if err != nil || strings.Count(out, " alive ") != 4 || !strings.Contains(out, "GOSSIP ADDRESS") {
		t.Fatalf("troop members on d4 (%v):\n%s", err, out)
	}
	t.Logf("troop members on d4:\n%s", out)

	crashed := time.Now()
	if err := p.Crash(p.ctx, "d4"); err != nil {
		t.Fatal(err)
	}
	p.waitMembers(p.leader, "d4 dead and removed from raft", func(ms []cluster.Member) bool {
		m := find(ms, "d4")
		return m.Gossip == cluster.GossipDead && m.Raft == cluster.RaftNone
	})
	took := time.Since(crashed)
	if took < gossipCleanup {
		t.Fatalf("d4 removed %s after the crash, before dead_server_cleanup %s", took, gossipCleanup)
	}
	// The leader also waits for its Raft heartbeats to d4 to fail, which takes the transport's
	// 10 s I/O timeout once the cable is cut.
	t.Logf("d4 crashed: removed from raft %s later (dead_server_cleanup %s)", took.Round(time.Millisecond), gossipCleanup)

	victim := "d1"
	if victim == p.leader {
		victim = "d2"
	}
	if err := p.Crash(p.ctx, victim); err != nil {
		t.Fatal(err)
	}
	p.waitMembers(p.leader, victim+" dead", func(ms []cluster.Member) bool { return find(ms, victim).Gossip == cluster.GossipDead })
	time.Sleep(gossipCleanup + 2*time.Second)
	ms, err := p.API(p.leader).Members(p.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := find(ms, victim); m.Raft != cluster.RaftVoter {
		t.Fatalf("%s is %+v after %s dead: a voter below min_quorum must stay", victim, m, gossipCleanup+2*time.Second)
	}
	// Two of the three voters still commit writes.
	if err := p.Apply(p.ctx, p.leader, table+fmt.Sprintf("service \"more\" {\n  vip  = %q\n  port = 81\n  real %q {}\n}\n", lvs.VIP, lvs.RealAddr(1))); err != nil {
		t.Fatal(err)
	}
}

// waitMembers waits until director d's member list satisfies cond.
func (p *lvsPool) waitMembers(d, what string, cond func([]cluster.Member) bool) {
	p.t.Helper()
	waitFor(p.t, 20*time.Second, d+" lists "+what, func() error {
		ms, err := p.API(d).Members(p.ctx)
		if err == nil && !cond(ms) {
			err = fmt.Errorf("members %+v", ms)
		}
		return err
	})
}

func find(ms []cluster.Member, id string) cluster.Member {
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return cluster.Member{}
}

// count is how many members are in gossip state state with one of the raft suffrages.
func count(ms []cluster.Member, state string, raft ...string) int {
	n := 0
	for _, m := range ms {
		for _, r := range raft {
			if m.Gossip == state && m.Raft == r {
				n++
				break
			}
		}
	}
	return n
}
