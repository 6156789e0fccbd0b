package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

func TestWriteThroughAnyNodeIsVisibleOnAll(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	ctx := ctxTimeout(t, 10*time.Second)

	followers := 0
	for i, id := range c.ids {
		tn := c.nodes[id]
		if tn != leader {
			followers++
		}
		res, err := tn.Apply(ctx, upsert(i+1))
		if err != nil {
			t.Fatalf("apply through %s: %v", id, err)
		}
		if res.Err != nil || res.Index == 0 || !slices.Equal(res.Changed, []string{fmt.Sprintf("web%d", i+1)}) {
			t.Fatalf("apply through %s: result %+v", id, res)
		}
	}
	if followers != 2 {
		t.Fatalf("wrote through %d followers, want 2", followers)
	}
	c.waitServices(5*time.Second, names(1, 3))
	c.waitSame(5 * time.Second)
}

func TestLeaderFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	old := c.leader(5 * time.Second)
	writers := []*testNode{c.follower(), nil}
	writers[1] = c.follower(writers[0])

	// Two writers, each through one follower, write until told to stop.
	var (
		mu      sync.Mutex
		acked   []string
		unknown int
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		failed  []error
		count   [2]int
	)
	stopWriters := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	// Registered after the cluster's, so it runs first: no writer outlives a failed test.
	t.Cleanup(stopWriters)
	for w, tn := range writers {
		wg.Go(func() {
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := 1000*(w+1) + i
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := tn.Apply(ctx, upsert(n))
				cancel()
				switch {
				case err == nil && res.Err == nil:
					mu.Lock()
					acked = append(acked, fmt.Sprintf("web%d", n))
					count[w]++
					mu.Unlock()
				case errors.Is(err, ErrUnknownOutcome):
					mu.Lock()
					unknown++
					mu.Unlock()
				default:
					mu.Lock()
					failed = append(failed, fmt.Errorf("writer through %s, write %d: %v (result %+v)", tn.ID(), n, err, res))
					mu.Unlock()
					return
				}
			}
		})
	}
	acks := func() (int, [2]int) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), count
	}
	waitAcks := func(min int) {
		t.Helper()
		if err := poll(ctxTimeout(t, 10*time.Second), 5*time.Millisecond, func() bool {
			_, per := acks()
			return per[0] >= min && per[1] >= min
		}); err != nil {
			n, per := acks()
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("writers stalled at %d acks (%v), writer errors %v: %s", n, per, failed, c.describe())
		}
	}

	waitAcks(20)
	_, before := acks()
	killed := time.Now()
	c.stop(old.ID())
	leader := c.leader(5 * time.Second)
	t.Logf("new leader %s after %s", leader.ID(), time.Since(killed).Round(time.Millisecond))
	if leader == old {
		t.Fatal("the stopped node is still leader")
	}
	// Writes continue through both survivors.
	waitAcks(before[0] + 20)
	waitAcks(before[1] + 20)
	stopWriters()
	for _, err := range failed {
		t.Error(err)
	}

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged, %d with unknown outcome", len(acked), unknown)
	for _, tn := range c.running() {
		st := tn.Node
		if err := poll(ctxTimeout(t, 5*time.Second), 5*time.Millisecond, func() bool {
			v := st.View()
			for _, name := range acked {
				if _, ok := v.Service(name); !ok {
					return false
				}
			}
			return true
		}); err != nil {
			for _, name := range acked {
				if _, ok := st.View().Service(name); !ok {
					t.Errorf("node %s lost acknowledged write %s", st.ID(), name)
				}
			}
		}
	}
	c.waitSame(5 * time.Second)
}

func TestRestartedNodeRecoversFromDiskAndFollows(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{disk: true})
	leader := c.leader(5 * time.Second)
	ctx := ctxTimeout(t, 20*time.Second)
	for i := 1; i <= 10; i++ {
		if _, err := leader.Apply(ctx, upsert(i)); err != nil {
			t.Fatal(err)
		}
	}
	f := c.follower()
	c.waitServices(5*time.Second, names(1, 10), f)
	// A snapshot on disk plus log entries after it: both must come back.
	if err := f.raft.Load().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 11; i <= 12; i++ {
		if _, err := leader.Apply(ctx, upsert(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitServices(5*time.Second, names(1, 12), f)
	lastBefore := f.Status().LastIndex
	c.stop(f.ID())
	for i := 13; i <= 15; i++ {
		if _, err := leader.Apply(ctx, upsert(i)); err != nil {
			t.Fatal(err)
		}
	}

	// Restart it cut off from the others: what it has now came from its disk.
	c.net.Partition(f.cfg.BindAddr)
	c.start(f.ID(), nil)
	if !f.hasState {
		t.Fatal("restarted node found no raft state on disk")
	}
	if got := f.Status().LastIndex; got < lastBefore {
		t.Fatalf("restarted node's last index %d, had %d before", got, lastBefore)
	}
	if got := f.View().ServiceNames(); !slices.Equal(got, names(1, 10)) {
		t.Fatalf("restarted node restored %v from its snapshot, want %v", got, names(1, 10))
	}
	// Isolated, it must not have made itself leader of anything.
	if r := f.Status().Role; r == Leader {
		t.Fatalf("isolated restarted node is %s", r)
	}

	c.net.Heal()
	newLeader := c.leader(5 * time.Second)
	if newLeader == f {
		// Legal in Raft only if f had the longest log, which it cannot: it missed 13..15.
		t.Fatalf("restarted node became leader")
	}
	if st := f.Status(); st.Role != Follower || st.LeaderID != newLeader.ID() {
		t.Fatalf("restarted node: %+v", st)
	}
	c.waitServices(5*time.Second, names(1, 15), f)
	c.waitSame(5 * time.Second)
}

func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{config: func(cfg *Config) {
		cfg.SnapshotThreshold = 20
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.TrailingLogs = 5
	}})
	leader := c.leader(5 * time.Second)
	f := c.follower()
	c.net.Partition(f.cfg.BindAddr)
	behind := f.Status().LastIndex

	ctx := ctxTimeout(t, 20*time.Second)
	const writes = 60
	for i := 1; i <= writes; i++ {
		if _, err := leader.Apply(ctx, upsert(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// Wait until the leader has compacted away the entries the follower needs.
	lr := leader.raft.Load()
	if err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, func() bool {
		var l raft.Log
		return errors.Is(leader.st.logs.GetLog(behind+1, &l), raft.ErrLogNotFound)
	}); err != nil {
		t.Fatalf("leader never compacted index %d: %v", behind+1, lr.Stats())
	}
	if f.adapter.restores.Load() != 0 {
		t.Fatal("follower restored a snapshot before it was reconnected")
	}

	c.net.Heal()
	c.waitServices(10*time.Second, names(1, writes), f)
	if got := f.adapter.restores.Load(); got < 1 {
		t.Fatalf("follower caught up without installing a snapshot (restores = %d)", got)
	}
	// Raft records the installed snapshot just after the FSM has restored it.
	var idx uint64
	if err := poll(ctxTimeout(t, 5*time.Second), 5*time.Millisecond, func() bool {
		idx, _ = strconv.ParseUint(f.raft.Load().Stats()["last_snapshot_index"], 10, 64)
		return idx > behind
	}); err != nil {
		t.Fatalf("follower's last snapshot index %d, was at %d when cut off", idx, behind)
	}
	c.waitSame(5 * time.Second)
}

func TestBadInputThroughFollowerAppendsNothing(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	f := c.follower()
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := leader.Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 1))
	last := leader.Status().LastIndex

	bad := service(2)
	bad.Port = 0
	_, err := f.Apply(ctx, fsm.UpsertService(bad))
	var fe *fsm.FieldError
	if !errors.Is(err, fsm.ErrInvalid) || !errors.As(err, &fe) || fe.Field != `service "web2" port` {
		t.Fatalf("invalid service through follower: %v, want fsm.ErrInvalid naming the port", err)
	}
	_, err = f.Apply(ctx, fsm.DeleteService("nope"))
	if !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("delete of a missing service through follower: %v, want fsm.ErrNotFound", err)
	}
	dup := service(3)
	dup.Port = service(1).Port
	_, err = leader.Apply(ctx, fsm.UpsertService(dup))
	if !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("duplicate kernel key through the leader: %v, want fsm.ErrConflict", err)
	}
	for _, tn := range c.running() {
		if got := tn.Status().LastIndex; got != last {
			t.Errorf("%s: last index %d after refused commands, was %d", tn.ID(), got, last)
		}
	}

	// The leader checks forwarded commands again, and its verdict crosses the wire intact.
	raw, err := fsm.EncodeCommand(fsm.UpsertService(bad))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := call(ctx, f.net, leader.Addr(), &rpcRequest{Op: opApply, Command: raw})
	if !errors.Is(err, fsm.ErrInvalid) || !errors.As(err, &fe) || fe.Field != `service "web2" port` || resp == nil || resp.Result != nil {
		t.Fatalf("forwarded invalid command: %v (response %+v)", err, resp)
	}
	if got := leader.Status().LastIndex; got != last {
		t.Fatalf("leader appended a forwarded invalid command: last index %d, was %d", got, last)
	}
}

// slowFSM delays every apply, so that a follower's state visibly lags the leader's.
type slowFSM struct {
	raft.FSM
	delay time.Duration
}

func (s slowFSM) Apply(l *raft.Log) any {
	time.Sleep(s.delay)
	return s.FSM.Apply(l)
}

func TestConsistentViewOnFollowerSeesAcknowledgedWrite(t *testing.T) {
	checkGoroutines(t)
	c, leader, slowNode := newSlowFollowerCluster(t)
	other := c.follower(slowNode)
	ctx := ctxTimeout(t, 20*time.Second)

	lagged := 0
	for i := 1; i <= 3; i++ {
		// Written through the other follower and acknowledged ...
		if _, err := other.Apply(ctx, upsert(i)); err != nil {
			t.Fatal(err)
		}
		if _, ok := slowNode.View().Service(fmt.Sprintf("web%d", i)); !ok {
			lagged++
		}
		// ... a consistent read on the slow follower must see it.
		st, err := slowNode.ConsistentView(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.ServiceNames(); !slices.Equal(got, names(1, i)) {
			t.Fatalf("consistent view on follower after write %d: %v", i, got)
		}
	}
	if lagged == 0 {
		t.Log("the slow follower never lagged; this run did not exercise the wait")
	}
	// On the leader too.
	if _, err := slowNode.Apply(ctx, upsert(4)); err != nil {
		t.Fatal(err)
	}
	st, err := leader.ConsistentView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.ServiceNames(); !slices.Equal(got, names(1, 4)) {
		t.Fatalf("consistent view on leader: %v", got)
	}
}

func TestTransferLeadershipAndLeave(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	old := c.leader(5 * time.Second)
	target := c.follower()
	asker := c.follower(target)
	ctx := ctxTimeout(t, 20*time.Second)

	watchOld := old.WatchLeadership(ctx)
	watchTarget := target.WatchLeadership(ctx)

	if err := asker.TransferLeadership(ctx, "nosuch"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("transfer to an unknown peer: %v, want ErrUnknownPeer", err)
	}
	// Asked of a follower, forwarded to the leader.
	if err := asker.TransferLeadership(ctx, target.ID()); err != nil {
		t.Fatal(err)
	}
	if got := c.leader(5 * time.Second); got != target {
		t.Fatalf("leader is %s after transfer to %s", got.ID(), target.ID())
	}
	waitLeadership(t, watchTarget, func(l Leadership) bool { return l.IsLeader && l.LeaderID == target.ID() })
	waitLeadership(t, watchOld, func(l Leadership) bool { return !l.IsLeader && l.LeaderID == target.ID() })

	// The leader leaves: it hands over leadership, then is removed.
	if err := target.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitLeadership(t, watchTarget, func(l Leadership) bool { return !l.IsLeader })
	c.stop(target.ID())
	leader := c.leader(5 * time.Second)
	if leader == target {
		t.Fatal("node that left is still leader")
	}
	for _, tn := range c.running() {
		var ids []string
		for _, p := range tn.Status().Peers {
			ids = append(ids, p.ID)
		}
		if slices.Contains(ids, target.ID()) || len(ids) != 2 {
			t.Errorf("%s: configuration %v after %s left", tn.ID(), ids, target.ID())
		}
	}
	// Two of two voters remain: writes still commit.
	if _, err := asker.Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}

	// A follower leaves.
	f := c.follower()
	if err := f.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if peers := leader.Status().Peers; len(peers) != 1 || peers[0].ID != leader.ID() {
		t.Fatalf("leader's configuration after follower left: %+v", peers)
	}
	c.stop(f.ID())
	if _, err := leader.Apply(ctx, upsert(2)); err != nil {
		t.Fatalf("single remaining server cannot commit: %v", err)
	}
	// The watch ends with Run.
	c.stop(target.ID())
	for range watchTarget {
	}
}

func waitLeadership(t *testing.T, ch <-chan Leadership, cond func(Leadership) bool) Leadership {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var last Leadership
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("leadership channel closed; last value %+v", last)
			}
			last = l
			if cond(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("leadership never matched; last value %+v", last)
		}
	}
}

func TestRemovePeer(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	f := c.follower()
	g := c.follower(f)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := g.RemovePeer(ctx, "nosuch"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("remove unknown peer: %v, want ErrUnknownPeer", err)
	}
	// Through a follower, forwarded to the leader.
	if err := g.RemovePeer(ctx, f.ID()); err != nil {
		t.Fatal(err)
	}
	for _, p := range leader.Status().Peers {
		if p.ID == f.ID() {
			t.Fatalf("removed peer still in configuration: %+v", leader.Status().Peers)
		}
	}
	// The removed node learns the new configuration and stays out of it (it no longer starts
	// elections; Raft does not shut a removed follower down).
	if err := poll(ctx, 5*time.Millisecond, func() bool {
		for _, p := range f.Status().Peers {
			if p.ID == f.ID() {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("removed node's view: %+v", f.Status())
	}
	if _, err := g.Apply(ctx, upsert(1)); err != nil {
		t.Fatalf("write after removal: %v", err)
	}
}

func TestBootstrapExpectFormsOnePool(t *testing.T) {
	checkGoroutines(t)
	addrs := []string{"n1:7946", "n2:7946", "n3:7946"}
	c := newTestCluster(t, 3, clusterOpts{noBootstrap: true, config: func(cfg *Config) {
		cfg.BootstrapExpect = 3
		cfg.Join = addrs
	}})
	leader := c.leader(10 * time.Second)
	for _, tn := range c.running() {
		// A node may know the leader a moment before the configuration entry reaches its log
		// (seen once on a loaded machine).
		_ = poll(ctxTimeout(t, 5*time.Second), 5*time.Millisecond, func() bool { return len(tn.Status().Peers) == 3 })
		st := tn.Status()
		if len(st.Peers) != 3 {
			t.Errorf("%s: configuration %+v", tn.ID(), st.Peers)
		}
		for i, p := range st.Peers {
			if p.ID != c.ids[i] || p.Address != addrs[i] || !p.Voter {
				t.Errorf("%s: peer %d is %+v", tn.ID(), i, p)
			}
		}
	}
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := c.follower().Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 1))
	_ = leader
}

func TestJoinThroughFollower(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 2, clusterOpts{})
	c.leader(5 * time.Second)
	f := c.follower()
	// n3 knows only the follower; the follower points it at the leader.
	cfg := testConfig(t, "n3")
	cfg.Join = []string{f.cfg.BindAddr}
	c.ids = append(c.ids, "n3")
	c.nodes["n3"] = &testNode{cfg: cfg, disk: true}
	c.start("n3", nil)
	if err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, func() bool {
		return len(c.nodes["n3"].Status().Peers) == 3 && c.nodes["n3"].Status().LeaderID != ""
	}); err != nil {
		t.Fatalf("n3 did not join: %s", c.describe())
	}
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := c.nodes["n3"].Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 1))

	// n3 comes back from its disk on another address: joining again replaces its old entry.
	c.stop("n3")
	c.nodes["n3"].cfg.BindAddr = "n3-moved:7946"
	c.start("n3", nil)
	n3 := c.nodes["n3"]
	if !n3.hasState {
		t.Fatal("n3 lost its state")
	}
	if err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, func() bool {
		peers := c.leader(5 * time.Second).Status().Peers
		return len(peers) == 3 && slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == "n3" && p.Address == "n3-moved:7946" })
	}); err != nil {
		t.Fatalf("n3's new address not in the configuration: %s", c.describe())
	}
	if _, err := n3.Apply(ctx, upsert(2)); err != nil {
		t.Fatal(err)
	}
	c.waitServices(5*time.Second, names(1, 2))
}

func TestNoLeaderWithoutQuorum(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	leader := c.leader(5 * time.Second)
	f := c.follower()
	for _, tn := range c.running() {
		if tn != f {
			c.stop(tn.ID())
		}
	}
	_ = leader
	start := time.Now()
	_, err := f.Apply(ctxTimeout(t, 10*time.Second), upsert(1))
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("apply without quorum: %v, want ErrNoLeader", err)
	}
	if waited := time.Since(start); waited > 2*f.leaderWait {
		t.Fatalf("apply without quorum waited %s", waited)
	}
	// A short deadline ends the wait early, still as ErrNoLeader.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := f.ConsistentView(ctx); !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("consistent read without quorum: %v, want ErrNoLeader and DeadlineExceeded", err)
	}
}

// TestDeposedLeaderStepsDownFirst partitions the leader and checks the order the director
// relies on to avoid two VIP owners: the old leader's watch says "not leader" before any other
// node's says "leader".
func TestDeposedLeaderStepsDownFirst(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{})
	old := c.leader(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type event struct {
		node string
		l    Leadership
		at   time.Time
	}
	events := make(chan event, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, tn := range c.running() {
		ch := tn.WatchLeadership(ctx)
		wg.Go(func() {
			for l := range ch {
				select {
				case events <- event{tn.ID(), l, time.Now()}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	// Drain the current values.
	time.Sleep(50 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}

	cut := time.Now()
	c.net.Partition(old.cfg.BindAddr)
	var stepDown, elected time.Time
	timeout := time.After(10 * time.Second)
	for stepDown.IsZero() || elected.IsZero() {
		select {
		case e := <-events:
			switch {
			case e.node == old.ID() && !e.l.IsLeader && stepDown.IsZero():
				stepDown = e.at
			case e.node != old.ID() && e.l.IsLeader && elected.IsZero():
				elected = e.at
			}
		case <-timeout:
			t.Fatalf("step-down at %v, new leader at %v: %s", stepDown, elected, c.describe())
		}
	}
	t.Logf("old leader stepped down after %s, new leader after %s", stepDown.Sub(cut).Round(time.Millisecond), elected.Sub(cut).Round(time.Millisecond))
	if !stepDown.Before(elected) {
		t.Fatalf("a new leader appeared %s before the old one stepped down", stepDown.Sub(elected))
	}
}

// A follower whose FSM lags does not refuse a command that is valid on the leader's state, and
// once Apply returns through it, its own state shows the write (read your writes).
func TestLaggingFollowerDefersToLeaderAndReadsItsWrites(t *testing.T) {
	checkGoroutines(t)
	_, leader, slowNode := newSlowFollowerCluster(t)
	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := leader.Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}
	if _, ok := slowNode.View().Service("web1"); ok {
		t.Log("the slow follower already had web1; this run did not exercise the lag")
	}
	// web1 does not exist yet on n3, but it does on the leader, which decides.
	res, err := slowNode.Apply(ctx, fsm.UpsertReal("web1", fsm.Real{Address: netip.MustParseAddr("192.0.2.99")}))
	if err != nil || res.Err != nil {
		t.Fatalf("real add through a lagging follower: %v / %v", err, res.Err)
	}
	s, ok := slowNode.View().Service("web1")
	if !ok {
		t.Fatal("the follower's own state lacks web1 after Apply returned through it")
	}
	if _, ok := s.Real("192.0.2.99:1001"); !ok {
		t.Fatalf("the follower's own state lacks the real it just added: %+v", s.Reals)
	}
	// Still, what the leader refuses is refused.
	if _, err := slowNode.Apply(ctx, fsm.DeleteService("nope")); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("deleting a missing service through a follower: err = %v, want ErrNotFound", err)
	}
}

// newSlowFollowerCluster starts three nodes of which n3 applies each entry 150 ms late and stays
// a follower; the leader and the other follower make a fast quorum.
func newSlowFollowerCluster(t *testing.T) (c *testCluster, leader, slowNode *testNode) {
	t.Helper()
	slow := func(f raft.FSM) raft.FSM { return slowFSM{FSM: f, delay: 150 * time.Millisecond} }
	c = newTestCluster(t, 3, clusterOpts{
		wrapFSM: map[string]func(raft.FSM) raft.FSM{"n3": slow},
		config: func(cfg *Config) {
			if cfg.NodeID == "n3" {
				// Keep n3 a follower: it cannot start an election before the others.
				cfg.HeartbeatTimeout, cfg.ElectionTimeout = 2*time.Second, 2*time.Second
			}
		},
	})
	leader = c.leader(10 * time.Second)
	if leader.ID() == "n3" {
		t.Fatal("slow node became leader")
	}
	return c, leader, c.nodes["n3"]
}

// heldFSM applies nothing until released is closed.
type heldFSM struct {
	raft.FSM
	released <-chan struct{}
}

func (h heldFSM) Apply(l *raft.Log) any {
	<-h.released
	return h.FSM.Apply(l)
}

// Raft drops a committed entry still queued for its FSM when it shuts down; a leader stopped with
// proposals in flight must still answer each of them and return from Run.
func TestStoppingLeaderAnswersEveryProposalInFlight(t *testing.T) {
	checkGoroutines(t)
	released := make(chan struct{})
	release := sync.OnceFunc(func() { close(released) })
	t.Cleanup(release)
	held := func(f raft.FSM) raft.FSM { return heldFSM{FSM: f, released: released} }
	c := newTestCluster(t, 3, clusterOpts{wrapFSM: map[string]func(raft.FSM) raft.FSM{"n1": held, "n2": held, "n3": held}})
	leader := c.leader(5 * time.Second)
	base := leader.Status().LastIndex

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	propose := func(from, to int) {
		for i := from; i <= to; i++ {
			wg.Go(func() {
				_, err := leader.Apply(ctxTimeout(t, 20*time.Second), upsert(i))
				errs <- err
			})
		}
		if err := poll(ctxTimeout(t, 5*time.Second), time.Millisecond, func() bool {
			return leader.Status().CommitIndex >= base+uint64(to)
		}); err != nil {
			t.Fatalf("entries up to %d not committed: %s", to, c.describe())
		}
	}
	// The first entry holds the FSM goroutine; the others commit in a later batch and queue behind it.
	propose(1, 1)
	propose(2, 8)

	time.AfterFunc(100*time.Millisecond, release)
	start := time.Now()
	c.stop(leader.ID())
	t.Logf("leader stopped in %s", time.Since(start).Round(time.Millisecond))
	answered := make(chan struct{})
	go func() {
		wg.Wait()
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("a proposal to the stopped leader was never answered")
	}
	close(errs)
	for err := range errs {
		// Applied, or cut short by the stop: any answer but a hang.
		if err != nil && !errors.Is(err, ErrUnknownOutcome) {
			t.Errorf("apply through the stopping leader: %v", err)
		}
	}
}
