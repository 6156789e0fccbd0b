package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// hostService is web<i> with a real server at 192.0.2.21.
func hostService(i int) fsm.Command {
	s := service(i)
	s.Reals = []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}, {Address: netip.MustParseAddr("192.0.2.22")}}
	return fsm.UpsertService(s)
}

var drainHost = fsm.SetHostAdmin(netip.MustParseAddr("192.0.2.21"), fsm.Draining)

// waitAdmin waits until every running node has real server 192.0.2.21 of web1 in state want.
func (c *testCluster) waitAdmin(timeout time.Duration, want fsm.AdminState) {
	c.t.Helper()
	for _, tn := range c.running() {
		var got fsm.AdminState
		err := poll(ctxTimeout(c.t, timeout), 5*time.Millisecond, func() bool {
			s, _ := tn.View().Service("web1")
			for _, r := range s.Reals {
				if r.ID() == "192.0.2.21:1001" {
					got = r.Admin
				}
			}
			return got == want
		})
		if err != nil {
			c.t.Fatalf("node %s: 192.0.2.21 of web1 is %q, want %q", tn.ID(), got, want)
		}
	}
}

// A protocol-2 entry is refused while one server speaks protocol 1, through the leader and
// through a follower, and nothing reaches the log; once that server is upgraded it applies
// everywhere.
func TestFeatureGateWaitsForEveryServer(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{disk: true, config: func(cfg *Config) {
		if cfg.NodeID == "n3" {
			// The leader asks n3, and must not trust its old answer.
			asOldFollower(cfg)
		}
	}})
	leader := c.leaderOtherThan("n3")
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := leader.Apply(ctx, hostService(1)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 1))
	last := leader.Status().LastIndex

	for _, via := range []*testNode{leader, c.follower()} {
		_, err := via.Apply(ctx, drainHost)
		if !errors.Is(err, ErrFeatureUnavailable) {
			t.Fatalf("set_host_admin through %s with n3 at protocol 1: err = %v, want ErrFeatureUnavailable", via.ID(), err)
		}
		for _, want := range []string{"set_host_admin", "protocol 2", "n3 (protocol 1)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "(protocol 2") {
			t.Errorf("error %q names a protocol-2 server", err)
		}
	}
	if got := leader.Status().LastIndex; got != last {
		t.Fatalf("refused write appended entries: last index %d, was %d", got, last)
	}
	// Protocol-1 types still go through.
	if _, err := leader.Apply(ctx, fsm.SetAdmin("web1", "192.0.2.21:1001", fsm.Disabled)); err != nil {
		t.Fatal(err)
	}

	// Upgrade n3: restart it advertising this build's protocol.
	c.stop("n3")
	c.nodes["n3"].cfg.Protocol = 0
	c.start("n3", nil)
	leader = c.leader(10 * time.Second)
	if _, err := c.nodes["n3"].Apply(ctx, drainHost); err != nil {
		t.Fatalf("set_host_admin with every server at protocol %d: %v", fsm.ProtocolVersion, err)
	}
	c.waitAdmin(5*time.Second, fsm.Draining)
	c.waitSame(5 * time.Second)
}

// A server that cannot be asked counts as too old.
func TestFeatureGateCountsAnUnreachableServerAsOld(t *testing.T) {
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := leader.Apply(ctx, hostService(1)); err != nil {
		t.Fatal(err)
	}
	down := c.follower()
	c.stop(down.ID())
	_, err := leader.Apply(ctx, drainHost)
	if !errors.Is(err, ErrFeatureUnavailable) || !strings.Contains(err.Error(), down.ID()+" (unreachable") {
		t.Fatalf("set_host_admin with %s down: err = %v, want ErrFeatureUnavailable naming it unreachable", down.ID(), err)
	}
}

// With gossip, the leader reads each server's protocol from its gossip metadata.
func TestFeatureGateReadsGossip(t *testing.T) {
	first := ""
	c := newTestCluster(t, 3, clusterOpts{config: func(cfg *Config) {
		cfg.Gossip = fastGossip(t, testGossipKey)
		if first == "" {
			first = cfg.Gossip.BindAddr
		} else {
			cfg.Gossip.Join = []string{first}
		}
		if cfg.NodeID == "n2" {
			// The leader learns n2's protocol from gossip.
			asOldFollower(cfg)
		}
	}})
	leader := c.leaderOtherThan("n2")
	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := leader.Apply(ctx, hostService(1)); err != nil {
		t.Fatal(err)
	}
	var ms []Member
	if err := poll(ctx, 20*time.Millisecond, func() bool {
		ms = leader.Members()
		n := 0
		for _, m := range ms {
			if m.Gossip == GossipAlive && (m.Protocol == fsm.ProtocolVersion || (m.ID == "n2" && m.Protocol == 1)) {
				n++
			}
		}
		return n == 3
	}); err != nil {
		t.Fatalf("members %+v, want three alive with their protocols", ms)
	}
	_, err := leader.Apply(ctx, drainHost)
	if !errors.Is(err, ErrFeatureUnavailable) || !strings.Contains(err.Error(), "n2 (protocol 1 in gossip)") {
		t.Fatalf("err = %v, want ErrFeatureUnavailable naming n2's gossiped protocol 1", err)
	}
}

// staleFSM makes a node's FSM read set_host_admin as a type it does not know, as a protocol-1
// agent would: the stand-in for an agent that was gated wrongly or rolled back.
type staleFSM struct{ raft.FSM }

func (s staleFSM) Apply(l *raft.Log) any {
	if bytes.Contains(l.Data, []byte(`"op":"set_host_admin"`)) {
		c := *l
		c.Data = bytes.Replace(l.Data, []byte(`"op":"set_host_admin"`), []byte(`"op":"set_host_admin_v9"`), 1)
		l = &c
	}
	return s.FSM.Apply(l)
}

// A node that meets an entry it does not understand stops applying, says so in its status,
// refuses snapshots and writes through it, and catches up by replaying the log once upgraded.
func TestHaltedNodeStopsAndCatchesUpAfterUpgrade(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{
		disk:    true,
		wrapFSM: map[string]func(raft.FSM) raft.FSM{"n3": func(f raft.FSM) raft.FSM { return staleFSM{f} }},
		config: func(cfg *Config) {
			if cfg.NodeID == "n3" {
				cfg.HeartbeatTimeout, cfg.ElectionTimeout = 2*time.Second, 2*time.Second
			}
		},
	})
	leader := c.leaderOtherThan("n3")
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := leader.Apply(ctx, hostService(1)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 1))
	res, err := leader.Apply(ctx, drainHost)
	if err != nil {
		t.Fatal(err)
	}
	n3 := c.nodes["n3"]
	if err := poll(ctx, 5*time.Millisecond, func() bool { return n3.Status().Halted != "" }); err != nil {
		t.Fatalf("n3 did not halt: %+v", n3.Status())
	}
	st := n3.Status()
	for _, want := range []string{fmt.Sprintf("entry %d", res.Index), "set_host_admin_v9", "upgrade this agent"} {
		if !strings.Contains(st.Halted, want) {
			t.Errorf("n3 status halted = %q, lacks %q", st.Halted, want)
		}
	}
	if leader.Status().Halted != "" {
		t.Errorf("the leader reports a halt: %s", leader.Status().Halted)
	}
	// Later entries reach n3's log but not its state.
	if _, err := leader.Apply(ctx, upsert(2)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 2), leader)
	if got := n3.View().ServiceNames(); !equalStrings(got, names(1, 1)) {
		t.Errorf("halted n3 has services %v, want only web1", got)
	}
	if err := n3.raft.Load().Snapshot().Error(); err == nil {
		t.Error("halted n3 took a snapshot")
	}
	// A write through n3 is committed by the leader, but n3 says it cannot show it.
	if _, err := n3.Apply(ctx, upsert(3)); !errors.Is(err, fsm.ErrHalted) {
		t.Errorf("write through halted n3: err = %v, want ErrHalted", err)
	}

	// Upgrade n3: it replays the log and catches up.
	c.stop("n3")
	c.start("n3", nil)
	c.waitServices(10*time.Second, names(1, 3))
	c.waitAdmin(5*time.Second, fsm.Draining)
	c.waitSame(5 * time.Second)
	if h := c.nodes["n3"].Status().Halted; h != "" {
		t.Errorf("upgraded n3 still halted: %s", h)
	}
}

// The raft.FSM adapter refuses to snapshot a halted FSM and keeps its applied index at the
// last entry the FSM applied.
func TestHaltedAdapterRefusesSnapshot(t *testing.T) {
	a := newRaftFSM(fsm.New(slog.New(slog.DiscardHandler)))
	apply := func(index uint64, data []byte) fsm.Result {
		return a.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(fsm.Result)
	}
	b, _ := fsm.EncodeCommand(upsert(1))
	if res := apply(3, b); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := a.Snapshot(); err != nil {
		t.Fatalf("snapshot before the halt: %v", err)
	}
	if res := apply(4, []byte(`{"v":1,"op":"teleport"}`)); !errors.Is(res.Err, fsm.ErrHalted) {
		t.Fatalf("unknown entry: err = %v, want ErrHalted", res.Err)
	}
	b, _ = fsm.EncodeCommand(upsert(2))
	if res := apply(5, b); !errors.Is(res.Err, fsm.ErrHalted) {
		t.Fatalf("entry after the halt: err = %v, want ErrHalted", res.Err)
	}
	if got := a.applied.Load(); got != 3 {
		t.Errorf("applied = %d, want 3", got)
	}
	snap, err := a.Snapshot()
	if !errors.Is(err, fsm.ErrHalted) || snap != nil {
		t.Fatalf("snapshot while halted: %v, %v; want ErrHalted", snap, err)
	}
}

// asOldFollower makes cfg a protocol-1 node that stays a follower: its election timeout is long
// enough that a node of the default timing always wins first.
func asOldFollower(cfg *Config) {
	cfg.Protocol = 1
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 2*time.Second, 2*time.Second
}

// leaderOtherThan waits for the leader and fails the test if it is id.
func (c *testCluster) leaderOtherThan(id string) *testNode {
	c.t.Helper()
	leader := c.leader(10 * time.Second)
	if leader.ID() == id {
		c.t.Fatalf("%s leads", id)
	}
	return leader
}
