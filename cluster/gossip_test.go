package cluster

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testGossipKey is the pool's gossip key in these tests (32 bytes: AES-256).
var testGossipKey = []byte("0123456789abcdef0123456789abcdef")

// fastGossip is a gossip config on a free loopback port with design.md's tuned timings (a dead
// member is declared in about a second) and the autopilot's clocks shortened for tests.
func fastGossip(t *testing.T, key []byte, join ...string) *GossipConfig {
	g := DefaultGossip()
	g.BindAddr = freeAddr(t)
	g.Join, g.Key, g.Version = join, key, "test-1"
	g.ProbeInterval, g.ProbeTimeout, g.GossipInterval, g.SuspicionMult = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond, 3
	g.StabilizationTime = 500 * time.Millisecond
	g.DeadServerCleanup = time.Second
	return &g
}

// freeAddr returns a loopback host:port free for both TCP and UDP right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return ""
}

// gossipCluster starts n nodes bootstrapped together, each gossiping and joining n1's gossip.
func gossipCluster(t *testing.T, n int, adjust func(*GossipConfig)) *testCluster {
	t.Helper()
	first := ""
	return newTestCluster(t, n, clusterOpts{config: func(c *Config) {
		c.Gossip = fastGossip(t, testGossipKey)
		if first == "" {
			first = c.Gossip.BindAddr
		} else {
			c.Gossip.Join = []string{first}
		}
		if adjust != nil {
			adjust(c.Gossip)
		}
	}})
}

// addGossipNode starts a node with no Raft bootstrap source that only knows gossip address join.
func (c *testCluster) addGossipNode(id string, key []byte, join string) *testNode {
	c.t.Helper()
	cfg := testConfig(c.t, id)
	cfg.Gossip = fastGossip(c.t, key, join)
	c.ids = append(c.ids, id)
	c.nodes[id] = &testNode{cfg: cfg}
	c.start(id, nil)
	return c.nodes[id]
}

func member(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

func suffrageOf(tn *testNode, id string) string {
	for _, m := range tn.Members() {
		if m.ID == id {
			return m.Raft
		}
	}
	return RaftNone
}

func TestGossipAddsANewServerAsNonvoterThenPromotesIt(t *testing.T) {
	checkGoroutines(t)
	c := gossipCluster(t, 3, nil)
	leader := c.leader(5 * time.Second)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := leader.Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}

	n4 := c.addGossipNode("n4", testGossipKey, c.nodes["n1"].GossipAddr())
	var seen []string
	err := poll(ctxTimeout(t, 15*time.Second), 10*time.Millisecond, func() bool {
		s := suffrageOf(leader, "n4")
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		return s == RaftVoter
	})
	if err != nil {
		t.Fatalf("n4 never became a voter; its suffrage went %v: %s", seen, c.describe())
	}
	// n4 may be added before the first look: "none" is optional, the non-voter step is not.
	if got := strings.TrimPrefix(strings.Join(seen, ","), "none,"); got != "nonvoter,voter" {
		t.Errorf("n4's suffrage went %v, want (none,) nonvoter, voter", seen)
	}
	c.waitServices(5*time.Second, names(1, 1), n4)

	// Every node lists all four, alive, with their role, version and Raft addresses.
	for _, tn := range c.running() {
		var ms []Member
		if err := poll(ctxTimeout(t, 5*time.Second), 20*time.Millisecond, func() bool {
			ms = tn.Members()
			alive := 0
			for _, m := range ms {
				if m.Gossip == GossipAlive && m.Raft != RaftNone && m.Role == RoleDirector && m.Version == "test-1" {
					alive++
				}
			}
			return len(ms) == 4 && alive == 4
		}); err != nil {
			t.Fatalf("%s lists %+v, want n1..n4 alive in raft", tn.ID(), ms)
		}
		if m, _ := member(ms, "n4"); m.RaftAddress != n4.Addr() || m.GossipAddress != n4.GossipAddr() {
			t.Errorf("%s: n4 listed at raft %s gossip %s, want %s and %s", tn.ID(), m.RaftAddress, m.GossipAddress, n4.Addr(), n4.GossipAddr())
		}
	}
}

func TestGossipRemovesADeadServerButNeverBelowMinQuorum(t *testing.T) {
	checkGoroutines(t)
	c := gossipCluster(t, 4, nil)
	leader := c.leader(5 * time.Second)
	victims := []*testNode{}
	for _, tn := range c.running() {
		if tn != leader && len(victims) < 2 {
			victims = append(victims, tn)
		}
	}

	// The first stopped server leaves 3 voters: it is removed after DeadServerCleanup.
	first := victims[0]
	stopped := time.Now()
	c.stop(first.ID())
	if err := poll(ctxTimeout(t, 15*time.Second), 20*time.Millisecond, func() bool {
		return suffrageOf(leader, first.ID()) == RaftNone
	}); err != nil {
		t.Fatalf("%s was not removed: %+v", first.ID(), leader.Members())
	}
	if took := time.Since(stopped); took < leader.cfg.Gossip.DeadServerCleanup {
		t.Errorf("%s removed %s after it stopped, before the %s cleanup", first.ID(), took, leader.cfg.Gossip.DeadServerCleanup)
	}
	if m, _ := member(leader.Members(), first.ID()); m.Gossip != GossipLeft || m.GossipSince.IsZero() {
		t.Errorf("a stopped server's gossip state is %q since %v, want left with a time", m.Gossip, m.GossipSince)
	}

	// The second would leave 2 voters, below MinQuorum 3: it stays, whatever the wait.
	second := victims[1]
	c.stop(second.ID())
	time.Sleep(leader.cfg.Gossip.DeadServerCleanup + 3*time.Second)
	m, _ := member(leader.Members(), second.ID())
	if m.Raft != RaftVoter || (m.Gossip != GossipLeft && m.Gossip != GossipDead) {
		t.Fatalf("%s is %+v, want a departed voter kept for the quorum", second.ID(), m)
	}
	// The pool still has its quorum of three voters, two of them alive: writes go through.
	if _, err := leader.Apply(ctxTimeout(t, 5*time.Second), upsert(7)); err != nil {
		t.Fatalf("write with one voter kept down: %v", err)
	}
}

func TestGossipKeepsOutANodeWithTheWrongKey(t *testing.T) {
	checkGoroutines(t)
	c := gossipCluster(t, 3, nil)
	leader := c.leader(5 * time.Second)
	stranger := c.addGossipNode("intruder", []byte("fedcba9876543210"), c.nodes["n1"].GossipAddr())

	time.Sleep(2 * time.Second)
	if got := len(stranger.Members()); got != 1 {
		t.Errorf("the intruder sees %d members: %+v, want only itself", got, stranger.Members())
	}
	if m, ok := member(leader.Members(), "intruder"); ok {
		t.Errorf("the leader lists the intruder: %+v", m)
	}
	if st := stranger.Status(); len(st.Peers) != 0 {
		t.Errorf("the intruder is in raft: %+v", st.Peers)
	}
}

func TestGossipConfigValidation(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.NodeID, c.DataDir, c.BindAddr = "d1", "/tmp/x", "127.0.0.1:9701"
		g := DefaultGossip()
		g.BindAddr, g.Join, g.Key = "127.0.0.1:7946", []string{"192.0.2.12:7946"}, testGossipKey
		c.Gossip = &g
		return c
	}
	if c := base(); c.Validate() != nil {
		err := c.Validate()
		t.Fatalf("gossip.Join alone should be a bootstrap source: %v", err)
	}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no key", func(c *Config) { c.Gossip.Key = nil }, "Gossip.Key"},
		{"20-byte key", func(c *Config) { c.Gossip.Key = make([]byte, 20) }, "Gossip.Key"},
		{"bad bind", func(c *Config) { c.Gossip.BindAddr = "nowhere" }, "Gossip.BindAddr"},
		{"bad join", func(c *Config) { c.Gossip.Join = []string{"0.0.0.0:7946"} }, "Gossip.Join[0]"},
		{"timeout not under interval", func(c *Config) { c.Gossip.ProbeTimeout = c.Gossip.ProbeInterval }, "Gossip.ProbeTimeout"},
		{"min quorum 0", func(c *Config) { c.Gossip.MinQuorum = 0 }, "Gossip.MinQuorum"},
		{"no bootstrap source", func(c *Config) { c.Gossip.Join = nil }, "Peers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("Validate() = %v, want a ConfigError on %s", err, tc.field)
			}
		})
	}
	dev := DevConfig()
	g := DefaultGossip()
	g.BindAddr = "127.0.0.1:0"
	dev.Gossip = &g
	if err := dev.Validate(); err != nil {
		t.Errorf("a dev node may gossip without a key: %v", err)
	}
}

// TestAddServerNeverDemotes checks that a join of a voter already present asks for nothing.
func TestAddServerNeverDemotes(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	r := leader.raft.Load()
	f := c.follower()
	if err := leader.addServer(r, f.ID(), f.Addr(), raft.Nonvoter); err != nil {
		t.Fatal(err)
	}
	if got := suffrageOf(leader, f.ID()); got != RaftVoter {
		t.Fatalf("%s is %s after a non-voter join, want still voter", f.ID(), got)
	}
	if err := leader.addServer(r, "n9", "n9:7946", raft.Nonvoter); err != nil {
		t.Fatal(err)
	}
	if got := suffrageOf(leader, "n9"); got != RaftNonvoter {
		t.Fatalf("n9 is %s, want nonvoter", got)
	}
	if err := leader.addServer(r, "n9", "n9:7946", raft.Voter); err != nil {
		t.Fatal(err)
	}
	if got := suffrageOf(leader, "n9"); got != RaftVoter {
		t.Fatalf("n9 is %s after a voter join, want promoted", got)
	}
}
