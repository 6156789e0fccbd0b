package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// testLogger sends logs to t.Log until the test ends (goroutines that outlive it must not call
// t.Log). TROOP_TEST_LOG=debug shows Raft's debug lines too.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.stop)
	level := slog.LevelInfo
	if os.Getenv("TROOP_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// checkGoroutines fails the test if goroutines started during it are still running when it ends
// (after every cleanup registered later has run), like tailscale's tstest.ResourceCheck.
func checkGoroutines(t *testing.T) {
	start := runtime.NumGoroutine()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= start {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines at start, %d at end; leaked:\n%s", start, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// testConfig is a node config for an in-memory pool. Timing is the production default: tests
// see the failover users get.
func testConfig(t *testing.T, id string) Config {
	c := DefaultConfig()
	c.NodeID = id
	c.DataDir = t.TempDir()
	c.BindAddr = id + ":7946"
	c.Logger = testLogger(t).With("test_node", id)
	return c
}

// testCluster is a pool of nodes on one memNetwork.
type testCluster struct {
	t     *testing.T
	net   *memNetwork
	nodes map[string]*testNode
	ids   []string
}

type testNode struct {
	*Node
	cfg    Config
	disk   bool
	cancel context.CancelFunc
	done   chan error
}

// clusterOpts adjusts a test pool.
type clusterOpts struct {
	// config changes each node's config.
	config func(*Config)
	// disk keeps Raft state in bbolt under the node's DataDir (so that restarts recover it).
	disk bool
	// wrapFSM is passed to every node.
	wrapFSM map[string]func(raft.FSM) raft.FSM
	// noBootstrap leaves Peers empty (the caller sets another bootstrap source).
	noBootstrap bool
}

// newTestCluster starts n nodes n1..nN bootstrapped with the same static configuration and
// stops them all when the test ends.
func newTestCluster(t *testing.T, n int, o clusterOpts) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: newMemNetwork(), nodes: map[string]*testNode{}}
	var peers []PeerConfig
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.ids = append(c.ids, id)
		peers = append(peers, PeerConfig{ID: id, Address: id + ":7946"})
	}
	for _, id := range c.ids {
		cfg := testConfig(t, id)
		if !o.noBootstrap {
			cfg.Peers = peers
		}
		if o.config != nil {
			o.config(&cfg)
		}
		tn := &testNode{cfg: cfg, disk: o.disk}
		c.nodes[id] = tn
		c.start(id, o.wrapFSM[id])
	}
	t.Cleanup(func() {
		for _, id := range c.ids {
			c.stop(id)
		}
	})
	return c
}

// start runs node id (again), on the same storage if it is on disk.
func (c *testCluster) start(id string, wrap func(raft.FSM) raft.FSM) {
	c.t.Helper()
	tn := c.nodes[id]
	if err := tn.cfg.Validate(); err != nil {
		c.t.Fatal(err)
	}
	st := memStores()
	if tn.disk {
		var err error
		if st, err = openDiskStores(tn.cfg.DataDir, newHclog(tn.cfg.Logger, "raft")); err != nil {
			c.t.Fatal(err)
		}
	}
	n, err := newNode(tn.cfg.withDefaults(), fsm.New(tn.cfg.Logger), deps{net: c.net.transport(tn.cfg.BindAddr), stores: st, wrapFSM: wrap})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn.Node, tn.cancel, tn.done = n, cancel, make(chan error, 1)
	go func() { tn.done <- n.Run(ctx) }()
	// Wait until Run has started Raft, so that callers may use the node at once.
	if err := poll(ctxTimeout(c.t, 5*time.Second), time.Millisecond, func() bool { return n.raft.Load() != nil }); err != nil {
		c.t.Fatalf("node %s did not start: %v", id, err)
	}
}

// stop cancels node id's Run and waits for it to return.
func (c *testCluster) stop(id string) {
	c.t.Helper()
	tn := c.nodes[id]
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	tn.cancel = nil
	select {
	case err := <-tn.done:
		if err != nil {
			c.t.Errorf("node %s: Run: %v", id, err)
		}
	case <-time.After(10 * time.Second):
		var stacks strings.Builder
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		c.t.Fatalf("node %s: Run did not return within 10s of cancel; goroutines:\n%s", id, stacks.String())
	}
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, id := range c.ids {
		if tn := c.nodes[id]; tn.cancel != nil {
			out = append(out, tn)
		}
	}
	return out
}

// leader waits until exactly one running node leads and every other running, connected node
// follows it, and returns it.
func (c *testCluster) leader(timeout time.Duration) *testNode {
	c.t.Helper()
	var leader *testNode
	err := poll(ctxTimeout(c.t, timeout), 5*time.Millisecond, func() bool {
		leader = nil
		for _, tn := range c.running() {
			if tn.Status().Role == Leader {
				if leader != nil {
					return false
				}
				leader = tn
			}
		}
		if leader == nil {
			return false
		}
		for _, tn := range c.running() {
			if c.net.isIsolated(tn.cfg.BindAddr) {
				continue
			}
			if st := tn.Status(); st.LeaderID != leader.ID() {
				return false
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("no single leader within %s: %s", timeout, c.describe())
	}
	return leader
}

// follower returns a running follower other than the excluded nodes.
func (c *testCluster) follower(exclude ...*testNode) *testNode {
	c.t.Helper()
	for _, tn := range c.running() {
		if tn.Status().Role == Follower && !containsNode(exclude, tn) {
			return tn
		}
	}
	c.t.Fatalf("no follower: %s", c.describe())
	return nil
}

func containsNode(list []*testNode, n *testNode) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func (c *testCluster) describe() string {
	var b strings.Builder
	for _, id := range c.ids {
		tn := c.nodes[id]
		if tn.Node == nil {
			continue
		}
		st := tn.Status()
		fmt.Fprintf(&b, "\n  %s: %s term %d leader %q commit %d applied %d last %d", id, st.Role, st.Term, st.LeaderID, st.CommitIndex, st.AppliedIndex, st.LastIndex)
	}
	return b.String()
}

// waitServices waits until every listed node has exactly the service names want.
func (c *testCluster) waitServices(timeout time.Duration, want []string, nodes ...*testNode) {
	c.t.Helper()
	if len(nodes) == 0 {
		nodes = c.running()
	}
	for _, tn := range nodes {
		var got []string
		err := poll(ctxTimeout(c.t, timeout), 5*time.Millisecond, func() bool {
			got = tn.View().ServiceNames()
			return equalStrings(got, want)
		})
		if err != nil {
			c.t.Fatalf("node %s has services %v, want %v", tn.ID(), got, want)
		}
	}
}

// waitSame waits until every running node's snapshot encoding is identical.
func (c *testCluster) waitSame(timeout time.Duration) {
	c.t.Helper()
	var diff string
	err := poll(ctxTimeout(c.t, timeout), 10*time.Millisecond, func() bool {
		var first []byte
		for i, tn := range c.running() {
			var b bytes.Buffer
			st := tn.View()
			if _, err := st.WriteTo(&b); err != nil {
				c.t.Fatal(err)
			}
			// The index differs when the last entries are not commands; compare the tables.
			enc := bytes.Replace(b.Bytes(), []byte(fmt.Sprintf(`"index":%d`, st.Index())), nil, 1)
			if i == 0 {
				first = enc
			} else if !bytes.Equal(first, enc) {
				diff = fmt.Sprintf("%s:\n%s\nvs first node:\n%s", tn.ID(), enc, first)
				return false
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("states differ: %s", diff)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ctxTimeout is a context that ends after d or with the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// service returns a valid service named web<i> on its own port.
func service(i int) fsm.Service {
	return fsm.Service{
		Name: fmt.Sprintf("web%d", i),
		VIP:  netip.MustParseAddr("192.0.2.10"),
		Port: uint16(1000 + i),
	}
}

func upsert(i int) fsm.Command { return fsm.UpsertService(service(i)) }

func names(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("web%d", i))
	}
	slices.Sort(out)
	return out
}
