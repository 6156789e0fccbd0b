package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

var memberVerbs = []verb{
	{name: "members", maxArgs: 0, json: true, flags: noFlags(listMembers),
		synopsis: "List the pool's directors as this agent sees them: gossip state, Raft suffrage, role, version, serial link"},
}

func listMembers(ctx context.Context, c *call) error {
	members, err := c.client.Members(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, members)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGOSSIP\tGOSSIP ADDRESS\tRAFT\tRAFT ADDRESS\tROLE\tVERSION\tSERIAL")
	for _, m := range members {
		state := m.Gossip
		if !m.GossipSince.IsZero() {
			state += " " + time.Since(m.GossipSince).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, state, dash(m.GossipAddress), m.Raft, dash(m.RaftAddress), dash(m.Role), dash(m.Version), dash(m.Serial))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// memberWatchInterval is how often the agent compares its member list for events.
const memberWatchInterval = 500 * time.Millisecond

// watchMembers publishes a "member" event each time a director's gossip state or Raft suffrage
// changes as this agent sees it, until ctx ends.
func watchMembers(ctx context.Context, members func() []cluster.Member, events *api.Events) {
	watchChanges(ctx, memberWatchInterval, "member", events, func() map[string]string {
		out := map[string]string{}
		for _, m := range members() {
			out[m.ID] = fmt.Sprintf("gossip %s, raft %s", m.Gossip, m.Raft)
		}
		return out
	})
}

// gossipConfig turns the agent file's gossip block into cluster's, or nil without one. The
// address defaults to the Raft address's host at DefaultGossipPort, and join to the hosts of the
// Raft peers and Raft join addresses at this node's gossip port, so that a pool whose directors
// all use the same port needs only a key.
func gossipConfig(ac config.Agent, raftAddr, raftAdvertise string) (*cluster.GossipConfig, error) {
	gb := ac.Gossip
	if !gb.Enabled {
		return nil, nil
	}
	g := cluster.DefaultGossip()
	g.Version = version
	g.BindAddr, g.AdvertiseAddr = gb.Address, gb.Advertise
	if g.BindAddr == "" {
		host, _, _ := net.SplitHostPort(raftAddr)
		g.BindAddr = net.JoinHostPort(host, strconv.Itoa(config.DefaultGossipPort))
		if g.AdvertiseAddr == "" && raftAdvertise != "" {
			host, _, _ := net.SplitHostPort(raftAdvertise)
			g.AdvertiseAddr = net.JoinHostPort(host, strconv.Itoa(config.DefaultGossipPort))
		}
	}
	g.Join = gb.Join
	if len(g.Join) == 0 {
		_, port, _ := net.SplitHostPort(g.BindAddr)
		self := map[string]bool{raftAddr: true, raftAdvertise: true}
		var raftPeers []string
		for _, p := range ac.Raft.Peers {
			if p.ID != ac.NodeID {
				raftPeers = append(raftPeers, p.Address)
			}
		}
		for _, a := range append(raftPeers, ac.Raft.Join...) {
			if host, _, err := net.SplitHostPort(a); err == nil && !self[a] {
				g.Join = append(g.Join, net.JoinHostPort(host, port))
			}
		}
	}
	keyText, keyField := gb.Key, "gossip key"
	if gb.KeyFile != "" {
		b, err := os.ReadFile(gb.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("gossip key_file: %w", err)
		}
		keyText, keyField = string(b), "gossip key_file "+gb.KeyFile
	}
	key, err := config.DecodeGossipKey(keyText)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyField, err)
	}
	g.Key = key
	setIf(&g.ProbeInterval, gb.ProbeInterval)
	setIf(&g.ProbeTimeout, gb.ProbeTimeout)
	setIf(&g.GossipInterval, gb.GossipInterval)
	setIf(&g.SuspicionMult, gb.SuspicionMult)
	setIf(&g.StabilizationTime, gb.StabilizationTime)
	setIf(&g.MinQuorum, gb.MinQuorum)
	switch gb.DeadServerCleanup {
	case 0:
	case config.NeverCleanup:
		g.DeadServerCleanup = 0
	default:
		g.DeadServerCleanup = gb.DeadServerCleanup
	}
	return &g, nil
}
