package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// Node is one director's Raft server. New opens its storage and binds its port; Run starts Raft,
// serves peers and bootstraps or joins, until its context ends. The api.Backend methods (Apply,
// View, ConsistentView, Status, TransferLeadership, RemovePeer) and Leave, WatchLeadership may
// be called from any goroutine; all but View, Status and WatchLeadership return ErrNotRunning
// unless Run is running.
type Node struct {
	cfg      Config
	log      *slog.Logger
	hlog     hclog.Logger
	fsm      *fsm.FSM
	adapter  *raftFSM
	rfsm     raft.FSM
	st       *stores
	net      network
	hasState bool
	// leaderWait is how long a call waits for a leader to appear before ErrNoLeader.
	leaderWait time.Duration

	raft atomic.Pointer[raft.Raft]
	// barrierTerm is the last term in which this node, as leader, committed a barrier: its commit
	// index is a valid read index only from then on.
	barrierTerm atomic.Uint64

	lifeMu sync.Mutex // guards life
	life   lifecycle

	// feed carries Leadership to WatchLeadership's channels.
	feed leadershipFeed

	// links are the serial heartbeat links (Config.Serial); Run runs them.
	links []*serialLink
	// fencedTerm is a term in which this node, though Raft may still call it leader, must not
	// act as one: a serial frame said a newer term has another leader (see fenceFrom).
	fencedTerm atomic.Uint64
	// fenced wakes watchLeadership to publish the fence.
	fenced chan struct{}
	// contact is the leader's view of which followers' heartbeats fail.
	contact heartbeatFailures
	// gossip is the memberlist member, while Run runs and Config.Gossip is set.
	gossip atomic.Pointer[gossip]
	// protocols caches other servers' answers on the protocol they speak (checkProtocol).
	protocols protocolCache
	// proposals holds Raft's shutdown until every entry this node proposed has been answered.
	proposals proposalGate
}

type lifecycle int

const (
	created lifecycle = iota
	running
	stopped
)

// deps is what newNode needs besides its config: tests build pools on a memNetwork with them.
type deps struct {
	net    network
	stores *stores
	// wrapFSM, if set, wraps the raft.FSM handed to Raft (tests slow applies down with it).
	wrapFSM func(raft.FSM) raft.FSM
}

// New validates cfg and opens the node's resources: the Raft store under cfg.DataDir (failing
// within a second with ErrDataDirLocked if another process holds it) and the TCP listener on
// cfg.BindAddr, or in-memory ones in Dev mode. It starts no goroutines; call Run, or Close if
// Run will not be called.
func New(cfg Config, f *fsm.FSM) (*Node, error) {
	if f == nil {
		return nil, errors.New("cluster: nil fsm")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Dev {
		addr := cfg.AdvertiseAddr
		if addr == "" {
			addr = "inmem-" + cfg.NodeID
		}
		return newNode(cfg, f, deps{net: newMemNetwork().transport(addr), stores: memStores()})
	}
	st, err := openDiskStores(cfg.DataDir, newHclog(cfg.Logger, "raft"))
	if err != nil {
		return nil, err
	}
	tcp, err := listenTCP(cfg.BindAddr)
	if err != nil {
		st.close()
		return nil, err
	}
	var layer streamLayer = tcp
	if cfg.TLS != nil {
		layer = newTLSLayer(tcp, cfg.TLS)
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = layer.Addr().String()
	}
	nw, err := newTCPNetwork(layer, adv, cfg.Logger)
	if err != nil {
		layer.Close()
		st.close()
		return nil, err
	}
	return newNode(cfg, f, deps{net: nw, stores: st})
}

// newNode builds a node on the given network and storage, which it owns from then on (closing
// them if it fails). cfg must be validated and have defaults.
func newNode(cfg Config, f *fsm.FSM, d deps) (n *Node, err error) {
	defer func() {
		if err != nil {
			d.net.Close()
			d.stores.close()
		}
	}()
	if cfg.Logger == nil {
		cfg = cfg.withDefaults()
	}
	hasState, err := raft.HasExistingState(d.stores.logs, d.stores.stable, d.stores.snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	for _, p := range cfg.Peers {
		if p.ID == cfg.NodeID && p.Address != d.net.Addr() {
			return nil, &ConfigError{Field: "Peers", Value: p.Address, Reason: fmt.Sprintf("lists node %s at an address other than its advertised address %s", p.ID, d.net.Addr())}
		}
	}
	log := cfg.Logger.With("node", cfg.NodeID)
	n = &Node{
		cfg:        cfg,
		log:        log,
		hlog:       newHclog(log, "raft"),
		fsm:        f,
		adapter:    newRaftFSM(f),
		st:         d.stores,
		net:        d.net,
		hasState:   hasState,
		leaderWait: max(10*cfg.ElectionTimeout, time.Second),
		fenced:     make(chan struct{}, 1),
	}
	for _, sc := range cfg.Serial {
		n.links = append(n.links, newSerialLink(sc, cfg.NodeID, openSerial(sc), n.localView, n.fenceFrom, log))
	}
	n.rfsm = n.adapter
	if d.wrapFSM != nil {
		n.rfsm = d.wrapFSM(n.adapter)
	}
	if err := raft.ValidateConfig(n.raftConfig(nil)); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	return n, nil
}

func (n *Node) raftConfig(notify chan<- bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.NotifyCh = notify
	rc.Logger = n.hlog
	// Unused with a Logger set, but keep it truthful (raft's default is DEBUG).
	rc.LogLevel = n.hlog.GetLevel().String()
	return rc
}

// ID is the node's Raft ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Addr is the node's advertised Raft address (with the actual port when BindAddr's was 0).
func (n *Node) Addr() string { return n.net.Addr() }

// Run starts Raft, serves other nodes' RPCs and bootstraps or joins the pool as configured, then
// waits for ctx to end. It then shuts Raft down (not a graceful leave: call Leave first for that),
// stops every goroutine it started, waits for them, closes the port and the stores, and closes
// every WatchLeadership channel. Run may be called once; it returns an error only if Raft failed
// to start or to shut down.
func (n *Node) Run(ctx context.Context) (err error) {
	n.lifeMu.Lock()
	if n.life != created {
		n.lifeMu.Unlock()
		return errors.New("cluster: Run called twice or after Close")
	}
	n.life = running
	n.lifeMu.Unlock()
	defer func() {
		n.release()
		n.lifeMu.Lock()
		n.life = stopped
		n.lifeMu.Unlock()
	}()

	var g *gossip
	if gc := n.cfg.Gossip; gc != nil {
		if g, err = startGossip(*gc, n.cfg.NodeID, memberMeta{Raft: n.net.Addr(), Version: gc.Version, Protocol: n.cfg.Protocol, Witness: n.cfg.Witness}, n.log); err != nil {
			return err
		}
		n.gossip.Store(g)
		defer g.stop()
	}
	n.net.Start()
	// Raft blocks sending to NotifyCh; watchLeadership reads it until Raft has shut down.
	notify := make(chan bool, 8)
	r, err := raft.NewRaft(n.raftConfig(notify), n.rfsm, n.st.logs, n.st.stable, n.st.snaps, n.net.Transport())
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft.Store(r)
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg, watchWG sync.WaitGroup
	stopWatch := make(chan struct{})
	watchWG.Go(func() { n.watchLeadership(r, notify, obsCh, stopWatch) })
	srv := newRPCServer(n.net.RPCListener(), n.handleRPC, n.log)
	wg.Go(func() { srv.serve(runCtx) })
	wg.Go(func() { n.bootstrap(runCtx, r) })
	if n.cfg.Witness {
		wg.Go(func() { n.handBack(runCtx, r) })
	}
	for _, l := range n.links {
		wg.Go(func() { l.Run(runCtx) })
	}
	if g != nil {
		wg.Go(func() { g.run(runCtx.Done(), func() map[string]bool { return raftServers(r) }) })
		wg.Go(func() { g.probe(runCtx.Done()) })
		wg.Go(func() { n.autopilot(runCtx, r, g) })
	}
	n.log.Info("raft node started", "op", "run", "addr", n.net.Addr(), "existing_state", n.hasState)

	<-ctx.Done()
	cancel()
	n.proposals.closeAndWait()
	// Shutting Raft down first fails every other future an RPC handler may be waiting on.
	serr := r.Shutdown().Error()
	wg.Wait()
	r.DeregisterObserver(obs)
	close(stopWatch)
	watchWG.Wait()
	n.log.Info("raft node stopped", "op", "run")
	if serr != nil {
		return fmt.Errorf("shut down raft: %w", serr)
	}
	return nil
}

// Close releases a node whose Run was never called (its port and stores). After Run it does
// nothing; while Run is running it returns an error: cancel Run's context instead.
func (n *Node) Close() error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	switch n.life {
	case running:
		return errors.New("cluster: Close while Run is running; cancel its context")
	case created:
		n.life = stopped
		n.release()
	}
	return nil
}

// release closes the network and the stores and ends leadership subscriptions.
func (n *Node) release() {
	n.net.Close()
	if err := n.st.close(); err != nil {
		n.log.Error("close raft store failed", "op", "close", "err", err)
	}
	n.feed.close()
}

// running returns the Raft instance if Run is running it.
func (n *Node) running() (*raft.Raft, error) {
	r := n.raft.Load()
	if r == nil || r.State() == raft.Shutdown {
		return nil, ErrNotRunning
	}
	return r, nil
}

// View returns this node's state, which may lag the leader's.
func (n *Node) View() *fsm.State { return n.fsm.View() }

// Apply validates c and returns fsm's error as is (ErrInvalid, ErrNotFound, ErrConflict, ...)
// without proposing anything. Otherwise it commits c through the leader, forwarding it when this
// node is a follower, and returns once this node has applied it too (so a read or a write through
// the same node sees it). The leader validates against its own state before proposing; a
// follower's verdict on its possibly lagging state is only final when no leader can be asked. Across a leader change it retries, while ctx allows, as long as
// the entry certainly was not appended; it waits at most 10 election timeouts for a leader.
//
// On success the result is the leader FSM's: a non-nil Result.Err means the entry was committed
// but refused, and changed nothing. Errors:
//   - fsm's sentinels: bad input, nothing was proposed;
//   - ErrNoLeader: no leader appeared in time; nothing was appended, retry later;
//   - ErrUnknownOutcome: the leader got the entry but was deposed, shut down or cut off before
//     answering; it may yet be committed;
//   - ErrNotRunning: Run is not running.
func (n *Node) Apply(ctx context.Context, c fsm.Command) (res fsm.Result, err error) {
	if observe := n.cfg.ObserveApply; observe != nil {
		start := time.Now()
		defer func() { observe(c.Op, time.Since(start), err) }()
	}
	return n.apply(ctx, c)
}

func (n *Node) apply(ctx context.Context, c fsm.Command) (fsm.Result, error) {
	raw, err := fsm.EncodeCommand(c)
	if err != nil {
		return fsm.Result{}, err
	}
	// Prepare a decoded copy: Prepare normalizes in place and c shares pointers with the caller.
	localErr := n.prepare(raw)
	r, err := n.running()
	if err != nil {
		if localErr != nil {
			return fsm.Result{}, localErr
		}
		return fsm.Result{}, fmt.Errorf("apply %s: %w", c.Op, err)
	}
	if localErr != nil && r.State() == raft.Leader {
		return fsm.Result{}, localErr
	}
	var res fsm.Result
	err = n.retry(ctx, false, func(ctx context.Context) error {
		if r.State() == raft.Leader {
			var err error
			res, err = n.applyLeader(ctx, r, raw)
			return err
		}
		// A follower's state may lag: what it refused (a service created a moment ago through
		// another director "does not exist" here) is decided by the leader's state instead.
		resp, err := n.forward(ctx, r, &rpcRequest{Op: opApply, Command: raw})
		if err != nil {
			return err
		}
		res = resp.Result.decode()
		return nil
	})
	if err != nil {
		if isInputError(err) {
			return fsm.Result{}, err
		}
		if localErr != nil && errors.Is(err, ErrNoLeader) {
			// No leader to ask: the local verdict on the input is the best answer.
			return fsm.Result{}, localErr
		}
		return fsm.Result{}, fmt.Errorf("apply %s: %w", c.Op, err)
	}
	// Read your writes: once Apply returns, reads and writes through this node see the entry.
	if err := n.waitApplied(ctx, r, res.Index); err != nil {
		return res, fmt.Errorf("apply %s: committed at index %d but not yet applied here: %w", c.Op, res.Index, err)
	}
	return res, nil
}

// prepare validates an encoded command against the local state.
func (n *Node) prepare(raw []byte) error {
	cmd, err := fsm.DecodeCommand(raw)
	if err != nil {
		return err
	}
	return n.fsm.Prepare(cmd)
}

// isInputError reports whether err is fsm's verdict on a command.
func isInputError(err error) bool {
	for _, k := range []error{fsm.ErrInvalid, fsm.ErrNotFound, fsm.ErrConflict, fsm.ErrUnknownCommand, fsm.ErrNewerVersion} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// applyLeader validates raw against the leader's state and proposes its normalized form.
func (n *Node) applyLeader(ctx context.Context, r *raft.Raft, raw []byte) (fsm.Result, error) {
	if r.State() != raft.Leader {
		return fsm.Result{}, raft.ErrNotLeader
	}
	cmd, err := fsm.DecodeCommand(raw)
	if err != nil {
		return fsm.Result{}, err
	}
	if h := n.fsm.Halted(); h != nil {
		// Its state is stale and it could not apply what it proposes: step aside instead.
		return fsm.Result{}, fmt.Errorf("leader %s cannot propose: its fsm %s: %w", n.cfg.NodeID, h, fsm.ErrHalted)
	}
	if err := n.checkProtocol(ctx, r, cmd.Op); err != nil {
		return fsm.Result{}, err
	}
	if err := n.fsm.Prepare(cmd); err != nil {
		return fsm.Result{}, err
	}
	data, err := fsm.EncodeCommand(*cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	if err := n.proposals.enter(); err != nil {
		return fsm.Result{}, err
	}
	defer n.proposals.leave()
	f := r.Apply(data, enqueueTimeout(ctx))
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
			// Refused before it was appended.
			return fsm.Result{}, err
		}
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return fsm.Result{}, fmt.Errorf("raft returned %T, not an fsm.Result", f.Response())
	}
	return res, nil
}

// enqueueTimeout is how long raft.Apply may wait to enqueue: the context's remaining time, or
// forever (0) without a deadline.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// ConsistentView returns a state that includes every entry the leader had committed when the
// call started. The leader confirms its leadership with a quorum (raft.VerifyLeader) and
// returns its commit index (after a barrier, once per term); this node then waits until its FSM
// has applied every command up to that index. Errors are ErrNoLeader, ErrNotRunning, or ctx's.
func (n *Node) ConsistentView(ctx context.Context) (*fsm.State, error) {
	r, err := n.running()
	if err != nil {
		return nil, fmt.Errorf("consistent read: %w", err)
	}
	var idx uint64
	err = n.retry(ctx, true, func(ctx context.Context) error {
		if r.State() == raft.Leader {
			var err error
			idx, err = n.readIndexLeader(ctx, r)
			return err
		}
		resp, err := n.forward(ctx, r, &rpcRequest{Op: opReadIndex})
		if err != nil {
			return err
		}
		idx = resp.Index
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consistent read: %w", err)
	}
	if err := n.waitApplied(ctx, r, idx); err != nil {
		return nil, fmt.Errorf("consistent read: %w", err)
	}
	return n.fsm.View(), nil
}

// readIndexLeader returns an index that covers every entry committed before the call, after
// confirming that this node still leads.
func (n *Node) readIndexLeader(ctx context.Context, r *raft.Raft) (uint64, error) {
	if r.State() != raft.Leader {
		return 0, raft.ErrNotLeader
	}
	term := r.CurrentTerm()
	if n.barrierTerm.Load() != term {
		// A new leader's commit index can lag what its predecessor committed until an entry of
		// its own term commits; a barrier commits one (Raft §6.4, and Consul does the same on
		// gaining leadership).
		if err := n.barrier(ctx, r); err != nil {
			return 0, err
		}
		n.barrierTerm.Store(term)
	}
	idx := r.CommitIndex()
	if err := r.VerifyLeader().Error(); err != nil {
		return 0, err
	}
	return idx, nil
}

func (n *Node) barrier(ctx context.Context, r *raft.Raft) error {
	if err := n.proposals.enter(); err != nil {
		return err
	}
	defer n.proposals.leave()
	return r.Barrier(enqueueTimeout(ctx)).Error()
}

// waitApplied waits until the FSM has applied every command entry up to idx.
func (n *Node) waitApplied(ctx context.Context, r *raft.Raft, idx uint64) error {
	// Raft's applied index can move without the FSM hearing of it (no-op and configuration
	// entries), so poll as well as wait for applies.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := n.adapter.changed.wait()
		if n.appliedThrough(r, idx) {
			return nil
		}
		if h := n.fsm.Halted(); h != nil {
			return fmt.Errorf("wait for index %d: this node's fsm %s: %w", idx, h, fsm.ErrHalted)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", idx, n.adapter.applied.Load(), ctx.Err())
		}
	}
}

// appliedThrough reports whether the FSM has applied every command at or below idx. The FSM only
// sees command entries, so its index stops at the last command while Raft's applied index moves
// past no-ops and configuration changes; the entries in between are checked in the log.
func (n *Node) appliedThrough(r *raft.Raft, idx uint64) bool {
	fi := n.adapter.applied.Load()
	if fi >= idx {
		return true
	}
	if r.AppliedIndex() < idx {
		return false
	}
	// Every entry up to idx has been handed to the FSM goroutine; the FSM is done once it has
	// applied the last command among them.
	for i := idx; i > fi; i-- {
		var l raft.Log
		if err := n.st.logs.GetLog(i, &l); err != nil {
			// Compacted: a snapshot covers i and everything below, and it has been restored or
			// taken from this FSM, which has therefore applied it.
			return errors.Is(err, raft.ErrLogNotFound)
		}
		if l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}

// Retry pacing for calls that need the leader.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 200 * time.Millisecond
)

// retry runs fn until it succeeds, fails in a way a retry cannot fix, ctx ends, or no leader
// appears within n.leaderWait. Non-idempotent calls are retried only when nothing was sent or
// the receiver refused before acting.
func (n *Node) retry(ctx context.Context, idempotent bool, fn func(context.Context) error) error {
	start := time.Now()
	backoff := retryMin
	for {
		err := fn(ctx)
		if err == nil || !retryable(err, idempotent) {
			return err
		}
		if ctx.Err() != nil {
			return giveUp(err, ctx.Err(), time.Since(start))
		}
		if time.Since(start)+backoff > n.leaderWait {
			return giveUp(err, nil, time.Since(start))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(err, ctx.Err(), time.Since(start))
		case <-t.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// giveUp reports the last error of a retry loop; a leaderless pool is ErrNoLeader.
func giveUp(last, ctxErr error, waited time.Duration) error {
	if !leaderless(last) {
		if ctxErr != nil && !errors.Is(last, ctxErr) {
			return fmt.Errorf("%w (last attempt: %w)", ctxErr, last)
		}
		return last
	}
	if ctxErr != nil {
		return fmt.Errorf("%w after %s: %w (last attempt: %v)", ErrNoLeader, waited.Round(time.Millisecond), ctxErr, last)
	}
	return fmt.Errorf("%w after %s (last attempt: %v)", ErrNoLeader, waited.Round(time.Millisecond), last)
}

// leaderless reports whether err says that no leader could be reached.
func leaderless(err error) bool {
	var de *dialError
	return errors.Is(err, ErrNoLeader) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.As(err, &de)
}

func retryable(err error, idempotent bool) bool {
	var re *remoteError
	remote := errors.As(err, &re)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case leaderless(err), errors.Is(err, raft.ErrEnqueueTimeout):
		return true
	case errors.Is(err, ErrUnknownOutcome), errors.Is(err, raft.ErrLeadershipLost):
		return idempotent
	case errors.Is(err, raft.ErrRaftShutdown):
		// A stopping leader refuses a proposal before appending it (errStopping; once appended, the
		// outcome is unknown, above), so another leader may take it. This node stopping is final.
		return remote
	case !idempotent:
		return false
	}
	// A broken connection may be retried; another node's considered answer may not.
	var fe *fsm.FieldError
	return !remote && !errors.As(err, &fe) && !isInputError(err) && !errors.Is(err, ErrUnknownPeer)
}

// forward sends req to the leader, following one redirect if the node it believed to be the
// leader knows better.
func (n *Node) forward(ctx context.Context, r *raft.Raft, req *rpcRequest) (*rpcResponse, error) {
	addr, id := r.LeaderWithID()
	if addr == "" {
		return nil, ErrNoLeader
	}
	if string(id) == n.cfg.NodeID {
		// Raft still names this node, but it is no longer leader: an election is under way.
		return nil, raft.ErrNotLeader
	}
	resp, err := call(ctx, n.net, string(addr), req)
	if errors.Is(err, raft.ErrNotLeader) && resp != nil && resp.Leader != "" && resp.Leader != string(addr) && resp.Leader != n.net.Addr() {
		resp, err = call(ctx, n.net, resp.Leader, req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Status reports the node's Raft view. Before Run and after it returns, Role is Shutdown.
func (n *Node) Status() Status {
	st := Status{ID: n.cfg.NodeID, Role: Shutdown, Witness: n.cfg.Witness, Peers: []Peer{}, Serial: n.SerialStatus()}
	if h := n.fsm.Halted(); h != nil {
		st.Halted = h.String()
	}
	r := n.raft.Load()
	if r == nil {
		return st
	}
	st.Role = roleOf(r.State())
	st.Term = r.CurrentTerm()
	addr, id := r.LeaderWithID()
	st.LeaderID, st.LeaderAddr = string(id), string(addr)
	st.CommitIndex = r.CommitIndex()
	st.AppliedIndex = r.AppliedIndex()
	st.LastIndex = r.LastIndex()
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Peers = append(st.Peers, Peer{
				ID:      string(s.ID),
				Address: string(s.Address),
				Voter:   s.Suffrage == raft.Voter,
				Leader:  s.ID == id,
			})
		}
	}
	return st
}

func roleOf(s raft.RaftState) Role {
	switch s {
	case raft.Leader:
		return Leader
	case raft.Candidate:
		return Candidate
	case raft.Follower:
		return Follower
	}
	return Shutdown
}

// server returns the server with the given ID from the latest configuration.
func server(r *raft.Raft, id string) (raft.Server, bool, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, false, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s, true, nil
		}
	}
	return raft.Server{}, false, nil
}

// TransferLeadership hands leadership to the voter id, or to the most up-to-date follower when id
// is empty; a follower forwards the request to the leader. It returns once the old leader has
// stepped down, after waiting (briefly) until this node knows the new one. Errors:
// ErrUnknownPeer, ErrNoLeader, ErrNotRunning, or Raft's refusal (such as a target that did not
// catch up in time).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	what := "transfer leadership"
	if id != "" {
		what += " to " + id
	}
	r, err := n.running()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if id != "" {
		if _, ok, err := server(r, id); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		} else if !ok {
			return fmt.Errorf("%s: %w", what, ErrUnknownPeer)
		}
	}
	_, old := r.LeaderWithID()
	term := r.CurrentTerm()
	err = n.retry(ctx, true, func(ctx context.Context) error {
		if r.State() == raft.Leader {
			return n.transferLeader(r, id)
		}
		if id == "" && old != "" {
			// The leader we would ask is already gone: nothing left to transfer.
			if _, cur := r.LeaderWithID(); cur != old {
				return nil
			}
		}
		_, err := n.forward(ctx, r, &rpcRequest{Op: opTransferLeadership, ID: id})
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	// Wait until this node sees the new leader, so that a caller's next Status shows it.
	wctx, cancel := context.WithTimeout(ctx, n.leaderWait)
	defer cancel()
	_ = poll(wctx, 10*time.Millisecond, func() bool {
		_, cur := r.LeaderWithID()
		if id != "" {
			// A witness hands leadership on at once: two new terms with a leader mean that id
			// led and passed it on.
			return string(cur) == id || (cur != "" && r.CurrentTerm() >= term+2)
		}
		return cur != "" && cur != old
	})
	return nil
}

// transferLeader runs on the leader.
func (n *Node) transferLeader(r *raft.Raft, id string) error {
	if r.State() != raft.Leader {
		return raft.ErrNotLeader
	}
	if id == "" {
		return r.LeadershipTransfer().Error()
	}
	if id == n.cfg.NodeID {
		return nil
	}
	s, ok, err := server(r, id)
	if err != nil {
		return err
	}
	if !ok {
		return ErrUnknownPeer
	}
	if s.Suffrage != raft.Voter {
		return fmt.Errorf("server %s is not a voter", id)
	}
	return r.LeadershipTransferToServer(s.ID, s.Address).Error()
}

// RemovePeer removes server id from the Raft configuration (through the leader). Removing the
// leader itself makes it step down once the change commits. Errors: ErrUnknownPeer,
// ErrNoLeader, ErrNotRunning.
func (n *Node) RemovePeer(ctx context.Context, id string) error {
	r, err := n.running()
	if err != nil {
		return fmt.Errorf("remove peer %s: %w", id, err)
	}
	if _, ok, err := server(r, id); err != nil {
		return fmt.Errorf("remove peer %s: %w", id, err)
	} else if !ok {
		return fmt.Errorf("remove peer %s: %w", id, ErrUnknownPeer)
	}
	if err := n.removeVia(ctx, r, id); err != nil {
		return fmt.Errorf("remove peer %s: %w", id, err)
	}
	return nil
}

// removeVia removes id through the leader, treating "already gone" on a retry as done.
func (n *Node) removeVia(ctx context.Context, r *raft.Raft, id string) error {
	attempt := 0
	return n.retry(ctx, true, func(ctx context.Context) error {
		attempt++
		var err error
		if r.State() == raft.Leader {
			err = n.removeLeader(r, id)
		} else {
			_, err = n.forward(ctx, r, &rpcRequest{Op: opRemovePeer, ID: id})
		}
		if attempt > 1 && errors.Is(err, ErrUnknownPeer) {
			return nil
		}
		return err
	})
}

// removeLeader runs on the leader.
func (n *Node) removeLeader(r *raft.Raft, id string) error {
	if r.State() != raft.Leader {
		return raft.ErrNotLeader
	}
	if _, ok, err := server(r, id); err != nil {
		return err
	} else if !ok {
		return ErrUnknownPeer
	}
	return r.RemoveServer(raft.ServerID(id), 0, 0).Error()
}

// Leave takes this node out of the pool gracefully: a leader first hands leadership to the most
// up-to-date follower, then the leader removes this node from the configuration. Call it before
// cancelling Run's context: once removed, the node no longer votes or starts elections, but it
// keeps running (and reports no leader) until Run ends. The last server of a pool has nowhere
// to go: Leave then does nothing.
func (n *Node) Leave(ctx context.Context) error {
	r, err := n.running()
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	servers := f.Configuration().Servers
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == n.cfg.NodeID }) {
		return nil
	}
	if len(servers) == 1 {
		n.log.Warn("last server of the pool; leaving nothing behind", "op", "leave")
		return nil
	}
	if r.State() == raft.Leader {
		if err := n.TransferLeadership(ctx, ""); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
	}
	err = n.retry(ctx, true, func(ctx context.Context) error {
		if r.State() == raft.Leader {
			// Leadership came back (an election we won again): hand it over once more.
			if err := r.LeadershipTransfer().Error(); err != nil {
				return err
			}
			return raft.ErrNotLeader
		}
		_, err := n.forward(ctx, r, &rpcRequest{Op: opRemovePeer, ID: n.cfg.NodeID})
		if errors.Is(err, ErrUnknownPeer) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	n.log.Info("left the pool", "op", "leave")
	return nil
}

// poll calls cond every interval until it returns true (nil) or ctx ends (ctx's error).
func poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
