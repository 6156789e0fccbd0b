package main

import (
	"strings"
	"testing"

	"github.com/troop-lb/troop/cluster"
)

func TestCheckUpgrade(t *testing.T) {
	st := cluster.Status{ID: "d1", LeaderID: "d2", AppliedIndex: 40}
	m := func(id, gossip, raft string, proto int) cluster.Member {
		return cluster.Member{ID: id, Gossip: gossip, Raft: raft, Protocol: proto}
	}
	healthy := []cluster.Member{
		m("d1", cluster.GossipAlive, cluster.RaftVoter, 1),
		m("d2", cluster.GossipAlive, cluster.RaftLeader, 1),
		m("d3", cluster.GossipAlive, cluster.RaftVoter, 2),
	}
	failed := func(res UpgradeCheck) string {
		var out []string
		for _, f := range res.Checks {
			if !f.OK {
				out = append(out, f.Name+": "+f.Detail)
			}
		}
		return strings.Join(out, "; ")
	}
	if res := checkUpgrade(st, healthy, 2); !res.Safe {
		t.Fatalf("a healthy pool mid-roll is unsafe: %s", failed(res))
	}
	for _, tc := range []struct {
		name    string
		st      cluster.Status
		members []cluster.Member
		next    int
		want    string
	}{
		{"no leader", cluster.Status{ID: "d1"}, healthy, 2, "leader: none known"},
		{"halted", cluster.Status{ID: "d1", LeaderID: "d2", Halted: "index 41: unknown command"}, healthy, 2, "log applied: index 41"},
		{"a voter dead", st, []cluster.Member{healthy[0], healthy[1], m("d3", cluster.GossipDead, cluster.RaftVoter, 2)}, 2,
			"voters alive: 2 of 3 alive — not alive: d3 (dead); quorum margin: 3 voters, quorum 2, 2 alive: 0 can be down at once"},
		{"two protocols apart", st, healthy, 3, "versions: servers speak protocol 1 (d1, d2), 2 (d3); this build speaks 3"},
		{"protocol unknown", st, []cluster.Member{healthy[0], healthy[1], m("d3", cluster.GossipAlive, cluster.RaftVoter, 0)}, 2, "versions: protocol unknown for d3"},
		{"no gossip", st, []cluster.Member{m("d1", cluster.GossipNone, cluster.RaftVoter, 2), healthy[1], healthy[2]}, 2, "voters alive: cannot tell for d1"},
		{"two voters", st, healthy[:2], 2, "quorum margin: 2 voters, quorum 2, 2 alive: 0 can be down at once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := checkUpgrade(tc.st, tc.members, tc.next)
			if res.Safe || !strings.HasPrefix(failed(res), tc.want) {
				t.Errorf("safe %v, failed checks %q; want them to start with %q", res.Safe, failed(res), tc.want)
			}
		})
	}
	// A non-voter counts for versions, not for the quorum.
	withLearner := append(healthy, m("d4", cluster.GossipAlive, cluster.RaftNonvoter, 0))
	if res := checkUpgrade(st, withLearner, 2); res.Safe || !strings.Contains(failed(res), "protocol unknown for d4") {
		t.Errorf("a non-voter of unknown protocol: %s", failed(res))
	}
}

func TestUpgradeCheckVerb(t *testing.T) {
	c := newCLI(t)
	// The test backend's members advertise no protocol: the check must say so and exit 1.
	code, out, errOut := c.run("operator", "upgrade-check")
	if code != exitError || !strings.Contains(out, "FAIL versions") || !strings.Contains(out, "ok   leader") || !strings.Contains(errOut, "not safe to roll") {
		t.Errorf("upgrade-check: exit %d\n%s\n%s", code, out, errOut)
	}
}
