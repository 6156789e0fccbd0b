package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// runNode runs n until the returned stop is called (or the test ends).
func runNode(t *testing.T, n *Node) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s: Run: %v", n.ID(), err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("node %s: Run did not return within 10s of cancel", n.ID())
		}
	})
	t.Cleanup(stop)
	if err := poll(ctxTimeout(t, 5*time.Second), time.Millisecond, func() bool { return n.raft.Load() != nil }); err != nil {
		t.Fatalf("node %s did not start", n.ID())
	}
	return stop
}

func tcpConfig(t *testing.T, id, dataDir, bind string) Config {
	c := DefaultConfig()
	c.NodeID = id
	c.DataDir = dataDir
	c.BindAddr = bind
	c.Logger = testLogger(t).With("test_node", id)
	return c
}

// TestTCPPool runs three nodes over real TCP on loopback with bbolt storage: one bootstraps
// alone, two join it, writes go through a follower, and a restarted node comes back from disk
// on its old address.
func TestTCPPool(t *testing.T) {
	checkGoroutines(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	c1 := tcpConfig(t, "n1", dirs[0], "127.0.0.1:0")
	c1.BootstrapExpect = 1
	n1, err := New(c1, fsm.New(c1.Logger))
	if err != nil {
		t.Fatal(err)
	}
	runNode(t, n1)
	nodes := []*Node{n1}
	stops := map[string]func(){}
	for i, id := range []string{"n2", "n3"} {
		c := tcpConfig(t, id, dirs[i+1], "127.0.0.1:0")
		c.Join = []string{n1.Addr()}
		n, err := New(c, fsm.New(c.Logger))
		if err != nil {
			t.Fatal(err)
		}
		stops[id] = runNode(t, n)
		nodes = append(nodes, n)
	}
	leader := waitPool(t, nodes, 3)
	var followers []*Node
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}

	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := followers[0].Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}
	st, err := followers[1].ConsistentView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.ServiceNames(); !slices.Equal(got, names(1, 1)) {
		t.Fatalf("consistent view over TCP: %v", got)
	}
	// Bad input through a follower over TCP.
	if _, err := followers[0].Apply(ctx, fsm.DeleteService("nope")); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("delete missing service: %v", err)
	}

	// Restart a follower on its old address and data directory.
	f := followers[1]
	addr, id := f.Addr(), f.ID()
	stops[id]()
	if _, err := leader.Apply(ctx, upsert(2)); err != nil {
		t.Fatal(err)
	}
	cfg := tcpConfig(t, id, dirs[slices.Index(nodes, f)], addr)
	cfg.Join = []string{n1.Addr()}
	f2, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	if !f2.hasState {
		t.Fatal("restarted node found no raft state")
	}
	runNode(t, f2)
	nodes[slices.Index(nodes, f)] = f2
	if got := waitPool(t, nodes, 3); got == f2 {
		t.Fatal("restarted node, which missed a write, became leader")
	}
	st, err = f2.ConsistentView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.ServiceNames(); !slices.Equal(got, names(1, 2)) {
		t.Fatalf("restarted node has %v", got)
	}
	if s := f2.Status(); s.Role != Follower {
		t.Fatalf("restarted node is %s", s.Role)
	}
}

// waitPool waits until every node sees the same leader and a configuration of size voters, and
// returns the leader.
func waitPool(t *testing.T, nodes []*Node, voters int) *Node {
	t.Helper()
	var leader *Node
	err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, func() bool {
		leader = nil
		var leaderID string
		for _, n := range nodes {
			st := n.Status()
			if len(st.Peers) != voters || st.LeaderID == "" || leaderID != "" && st.LeaderID != leaderID {
				return false
			}
			leaderID = st.LeaderID
			if st.Role == Leader {
				leader = n
			}
		}
		return leader != nil && leader.ID() == leaderID
	})
	if err != nil {
		var b strings.Builder
		for _, n := range nodes {
			b.WriteString("\n  " + statusLine(n.Status()))
		}
		t.Fatalf("pool did not form:%s", b.String())
	}
	return leader
}

func statusLine(s Status) string {
	var peers []string
	for _, p := range s.Peers {
		peers = append(peers, p.ID+"@"+p.Address)
	}
	return s.ID + " " + string(s.Role) + " leader=" + s.LeaderID + " peers=" + strings.Join(peers, ",")
}

func TestDevModeLeadsAlone(t *testing.T) {
	checkGoroutines(t)
	cfg := DevConfig()
	cfg.Logger = testLogger(t)
	n, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	watch := n.WatchLeadership(ctx)
	if l := <-watch; l.IsLeader {
		t.Fatalf("leader before Run: %+v", l)
	}
	start := time.Now()
	stop := runNode(t, n)
	l := waitLeadership(t, watch, func(l Leadership) bool { return l.IsLeader })
	took := time.Since(start)
	t.Logf("dev node leader after %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("dev node took %s to lead, want under a second", took)
	}
	if l.LeaderID != "dev" || l.Term == 0 {
		t.Errorf("leadership %+v", l)
	}
	res, err := n.Apply(ctx, upsert(1))
	if err != nil || res.Err != nil {
		t.Fatalf("apply: %v %v", err, res.Err)
	}
	st, err := n.ConsistentView(ctx)
	if err != nil || !slices.Equal(st.ServiceNames(), names(1, 1)) {
		t.Fatalf("consistent view: %v %v", err, st)
	}
	s := n.Status()
	if s.Role != Leader || len(s.Peers) != 1 || !s.Peers[0].Leader || s.Peers[0].ID != "dev" {
		t.Fatalf("status %+v", s)
	}
	if err := n.Leave(ctx); err != nil {
		t.Fatalf("leave of the last server: %v", err)
	}
	stop()
	waitLeadership(t, watch, func(l Leadership) bool { return !l.IsLeader })
	if _, ok := <-watch; ok {
		t.Fatal("leadership channel still open after Run returned")
	}
	if _, err := n.Apply(ctx, upsert(2)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("apply after Run: %v, want ErrNotRunning", err)
	}
	if s := n.Status(); s.Role != Shutdown {
		t.Fatalf("role after Run: %s", s.Role)
	}
	if w := n.WatchLeadership(ctx); func() bool { _, ok := <-w; return ok }() {
		t.Fatal("watch after Run returned an open channel")
	}
}

func TestLockedDataDirFailsFast(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	cfg := tcpConfig(t, "n1", dir, "127.0.0.1:0")
	cfg.BootstrapExpect = 1
	first, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := New(cfg, fsm.New(cfg.Logger))
	took := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second node opened a locked data directory")
	}
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q, want ErrDataDirLocked naming %s", err, dir)
	}
	if took > 3*time.Second {
		t.Fatalf("second node took %s to fail", took)
	}
	t.Logf("locked: %v (after %s)", err, took.Round(time.Millisecond))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Released, the directory opens again.
	third, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	third.Close()
}

func TestLifecycle(t *testing.T) {
	checkGoroutines(t)
	cfg := DevConfig()
	cfg.Logger = testLogger(t)
	n, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := n.Apply(ctx, upsert(1)); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("apply before Run: %v", err)
	}
	if _, err := n.ConsistentView(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("consistent view before Run: %v", err)
	}
	if err := n.TransferLeadership(ctx, ""); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("transfer before Run: %v", err)
	}
	if s := n.Status(); s.Role != Shutdown || s.ID != "dev" {
		t.Fatalf("status before Run: %+v", s)
	}
	// Bad input is refused even before Run: it never needs the log.
	if _, err := n.Apply(ctx, fsm.DeleteService("nope")); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("bad input before Run: %v", err)
	}
	stop := runNode(t, n)
	if err := n.Close(); err == nil {
		t.Fatal("Close while running succeeded")
	}
	if err := n.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
	stop()
	if err := n.Close(); err != nil {
		t.Fatalf("Close after Run: %v", err)
	}
	if err := n.Run(ctx); err == nil {
		t.Fatal("Run after Run returned succeeded")
	}

	// New then Close without Run releases everything.
	n2, err := New(cfg, fsm.New(cfg.Logger))
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err == nil {
		t.Fatal("New accepted a nil fsm")
	}
}
