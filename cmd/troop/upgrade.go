package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

var upgradeVerbs = []verb{
	{name: "operator upgrade-check", maxArgs: 0, json: true, flags: noFlags(upgradeCheck),
		synopsis: "Tell whether the pool is safe to roll: a leader, every voter alive and caught up, protocols within one of this build's, and a quorum that survives one director down"},
}

// UpgradeCheck is what `troop operator upgrade-check` finds.
type UpgradeCheck struct {
	Safe   bool             `json:"safe"`
	Checks []UpgradeFinding `json:"checks"`
}

// UpgradeFinding is one check with its verdict.
type UpgradeFinding struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// errUnsafe makes the command exit 1 after its report.
var errUnsafe = errors.New("not safe to roll: fix the failed checks first")

func upgradeCheck(ctx context.Context, c *call) error {
	st, _, err := c.client.Status(ctx, api.ReadOptions{})
	if err != nil {
		return err
	}
	members, err := c.client.Members(ctx)
	if err != nil {
		return err
	}
	res := checkUpgrade(st.Status, members, fsm.ProtocolVersion)
	if c.json {
		if err := printJSON(c.stdout, res); err != nil {
			return err
		}
	} else {
		for _, f := range res.Checks {
			mark := "ok  "
			if !f.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(c.stdout, "%s %-20s %s\n", mark, f.Name, f.Detail)
		}
		if res.Safe {
			fmt.Fprintln(c.stdout, "\nSafe to roll: upgrade one director at a time, wait for /v1/agent/ready, the leader last.")
		}
	}
	if !res.Safe {
		return errUnsafe
	}
	return nil
}

// checkUpgrade judges whether the pool that st and members describe (one agent's view) can lose
// one director at a time to an upgrade to a build of protocol next.
func checkUpgrade(st cluster.Status, members []cluster.Member, next int) UpgradeCheck {
	var res UpgradeCheck
	add := func(name string, ok bool, format string, args ...any) {
		res.Checks = append(res.Checks, UpgradeFinding{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	add("leader", st.LeaderID != "", "%s", orDefault(st.LeaderID, "none known"))
	add("log applied", st.Halted == "", "%s", orDefault(st.Halted, fmt.Sprintf("%s applies the log (index %d)", st.ID, st.AppliedIndex)))

	var voters, alive, down, unknown []string
	protocols := map[int][]string{}
	for _, m := range members {
		if m.Raft == cluster.RaftNone {
			continue
		}
		protocols[m.Protocol] = append(protocols[m.Protocol], m.ID)
		if m.Raft != cluster.RaftLeader && m.Raft != cluster.RaftVoter {
			continue
		}
		voters = append(voters, m.ID)
		switch m.Gossip {
		case cluster.GossipAlive:
			alive = append(alive, m.ID)
		case cluster.GossipNone:
			unknown = append(unknown, m.ID)
		default:
			down = append(down, m.ID+" ("+m.Gossip+")")
		}
	}
	switch {
	case len(unknown) > 0:
		add("voters alive", false, "cannot tell for %s: no gossip from them (enable gossip, or check each agent's /v1/agent/ready)", strings.Join(unknown, ", "))
	default:
		add("voters alive", len(down) == 0, "%d of %d alive%s", len(alive), len(voters), listIf(" — not alive: ", down))
	}

	if ids := protocols[0]; len(ids) > 0 {
		add("versions", false, "protocol unknown for %s (an agent that predates protocol advertising, or no gossip)", strings.Join(ids, ", "))
	} else {
		low, high := next, next
		for p := range protocols {
			low, high = min(low, p), max(high, p)
		}
		add("versions", high-low <= 1, "servers speak protocol %s; this build speaks %d (N and N-1 run together)", protocolList(protocols), next)
	}

	quorum := len(voters)/2 + 1
	margin := len(alive) - quorum
	add("quorum margin", margin >= 1, "%d voters, quorum %d, %d alive: %d can be down at once", len(voters), quorum, len(alive), max(margin, 0))

	res.Safe = !slices.ContainsFunc(res.Checks, func(f UpgradeFinding) bool { return !f.OK })
	return res
}

func listIf(prefix string, items []string) string {
	if len(items) == 0 {
		return ""
	}
	return prefix + strings.Join(items, ", ")
}

// protocolList renders {1: [d1], 2: [d2 d3]} as "1 (d1), 2 (d2, d3)".
func protocolList(p map[int][]string) string {
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, fmt.Sprintf("%d (%s)", v, strings.Join(p[v], ", ")))
	}
	return strings.Join(parts, ", ")
}
