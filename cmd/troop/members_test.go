package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

func TestMembers(t *testing.T) {
	c := newCLI(t)
	diffText(t, "members", c.ok("members"), `ID  GOSSIP  GOSSIP ADDRESS  RAFT    RAFT ADDRESS    ROLE      VERSION  SERIAL
a   alive   -               leader  192.0.2.1:9701  director  -        -
b   alive   -               voter   192.0.2.2:9701  director  -        -
c   alive   -               voter   192.0.2.3:9701  director  -        -
`)
	if out := c.ok("members", "-json"); !strings.Contains(out, `"raft": "leader"`) || !strings.Contains(out, `"gossip": "alive"`) {
		t.Errorf("members -json:\n%s", out)
	}
	c.fails(exitUsage, "members", "extra")
}

const testGossipKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func TestGossipConfigDefaultsFromRaft(t *testing.T) {
	ac := config.Agent{NodeID: "d1", Gossip: config.Gossip{Enabled: true, Key: testGossipKey, ProbeInterval: 2 * time.Second}, Raft: config.Raft{
		Address: "192.0.2.11:9701",
		Peers:   []config.Peer{{ID: "d1", Address: "192.0.2.11:9701"}, {ID: "d2", Address: "192.0.2.12:9701"}},
		Join:    []string{"[2001:db8::13]:9701"},
	}}
	g, err := gossipConfig(ac, "192.0.2.11:9701", "")
	if err != nil {
		t.Fatal(err)
	}
	if g.BindAddr != "192.0.2.11:9702" {
		t.Errorf("bind %s, want the raft host at 9702", g.BindAddr)
	}
	if want := []string{"192.0.2.12:9702", "[2001:db8::13]:9702"}; !slices.Equal(g.Join, want) {
		t.Errorf("join %v, want %v (the other raft hosts at the gossip port)", g.Join, want)
	}
	if len(g.Key) != 32 || g.ProbeInterval != 2*time.Second || g.ProbeTimeout != cluster.DefaultGossipProbeTimeout || g.Version != version {
		t.Errorf("key %d bytes, probe %s/%s, version %q", len(g.Key), g.ProbeInterval, g.ProbeTimeout, g.Version)
	}
	if g.DeadServerCleanup != cluster.DefaultDeadServerCleanup {
		t.Errorf("cleanup %s, want the default", g.DeadServerCleanup)
	}

	ac.Gossip = config.Gossip{Enabled: true, KeyFile: filepath.Join(t.TempDir(), "gossip.key"), DeadServerCleanup: config.NeverCleanup, Address: "127.0.0.1:8000", Join: []string{"127.0.0.1:8001"}}
	if _, err := gossipConfig(ac, "192.0.2.11:9701", ""); err == nil || !strings.Contains(err.Error(), "gossip key_file") {
		t.Errorf("missing key file: %v", err)
	}
	os.WriteFile(ac.Gossip.KeyFile, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := gossipConfig(ac, "192.0.2.11:9701", ""); err == nil || !strings.Contains(err.Error(), "not 5") {
		t.Errorf("short key in file: %v", err)
	}
	os.WriteFile(ac.Gossip.KeyFile, []byte(testGossipKey+"\n"), 0o600)
	g, err = gossipConfig(ac, "192.0.2.11:9701", "")
	if err != nil {
		t.Fatal(err)
	}
	if g.DeadServerCleanup != 0 || g.BindAddr != "127.0.0.1:8000" || !slices.Equal(g.Join, []string{"127.0.0.1:8001"}) {
		t.Errorf("never cleanup, explicit address and join: %+v", g)
	}
	if g, _ := gossipConfig(config.Agent{}, "192.0.2.11:9701", ""); g != nil {
		t.Errorf("no gossip block gave %+v", g)
	}
}

// A "member" event is published when a director's gossip state or suffrage changes, and only then.
func TestWatchMembersPublishesChanges(t *testing.T) {
	d4 := func(gossip, raft, version string) []cluster.Member {
		return []cluster.Member{
			{ID: "d1", Gossip: cluster.GossipAlive, Raft: cluster.RaftLeader},
			{ID: "d4", Gossip: gossip, Raft: raft, Version: version},
		}
	}
	steps := [][]cluster.Member{
		d4(cluster.GossipAlive, cluster.RaftNone, "v1"),
		d4(cluster.GossipAlive, cluster.RaftNonvoter, "v1"),
		d4(cluster.GossipAlive, cluster.RaftNonvoter, "v2"),
		d4(cluster.GossipAlive, cluster.RaftVoter, "v2"),
		d4(cluster.GossipDead, cluster.RaftNone, "v2"),
	}
	ctx, members := replay(steps)
	ev := api.NewEvents(16, nil)
	watchMembers(ctx, members, ev)
	got, _ := ev.Since(0)
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Kind+" "+e.Message)
	}
	diffText(t, "member events", strings.Join(msgs, "\n"), strings.Join([]string{
		"member d1: gossip alive, raft leader",
		"member d4: gossip alive, raft none",
		"member d4: gossip alive, raft nonvoter",
		"member d4: gossip alive, raft voter",
		"member d4: gossip dead, raft none",
	}, "\n"))
}
