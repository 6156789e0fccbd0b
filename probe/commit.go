package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Committer defaults.
const (
	// DefaultCommitWindow is how often at most the leader records health: one record_health
	// entry per window carries every verdict that differs from the table. It adds at most this
	// much to the time a failed server takes to leave IPVS (fall × interval before it).
	DefaultCommitWindow = 200 * time.Millisecond
	// DefaultApplyTimeout bounds one proposal; a proposal that fails is retried next window.
	DefaultApplyTimeout = 5 * time.Second
)

// Applier commits a command through Raft. *cluster.Node implements it (see api.Backend.Apply
// for the contract: it returns once this node has applied the entry; Result.Err means the
// leader's FSM refused it).
type Applier interface {
	Apply(ctx context.Context, c fsm.Command) (fsm.Result, error)
}

// LeaderWatcher delivers this node's Raft leadership. *cluster.Node implements it; the
// committer relies on its contract: each value is the whole truth, values coalesce, and a
// closed channel means "not leader".
type LeaderWatcher interface {
	WatchLeadership(ctx context.Context) <-chan cluster.Leadership
}

// Viewer returns the table as this node has applied it. *fsm.FSM and *cluster.Node implement it.
type Viewer interface {
	View() *fsm.State
}

// CommitterOptions are a Committer's settings and collaborators.
type CommitterOptions struct {
	// Engine supplies the local verdicts; required. An engine feeds one committer.
	Engine *Engine
	// Table is the committed table the verdicts are compared with; required.
	Table Viewer
	// Applier proposes the record_health entries; required.
	Applier Applier
	// Leadership says when this node leads; required.
	Leadership LeaderWatcher
	// Window is the shortest time between two entries; 0 means DefaultCommitWindow.
	Window time.Duration
	// ApplyTimeout bounds one proposal; 0 means DefaultApplyTimeout.
	ApplyTimeout time.Duration
	Clock        Clock        // nil: the system clock
	Log          *slog.Logger // nil: discard
}

// Committer records the pool's health in Raft from the engine's verdicts while this node is the
// leader. Every director runs an engine; only the leader's verdicts become the pool's.
//
// How it decides: on becoming leader (and again at every new term) it compares every target's
// verdict with the committed health; afterwards only targets whose verdict or committed health
// changed (the engine marks them). A difference is proposed only when the verdict is decided —
// reached or confirmed by rise successes or fall failures of this engine's own checks. A target
// still in the state it started in (the committed health, or the spec's initial state for a new
// server) proposes nothing, so a leader that starts while a server is failing does not write
// the server back up before its own checks have said so. The differences found in a window go
// out as one fsm.RecordHealth entry; nothing is proposed when there are none, and never more
// than one entry per Window, however often servers flap (rise and fall bound how often a
// verdict can change at all). A failed proposal is retried, with the verdicts of that moment,
// one window later. Losing leadership cancels a proposal in flight and stops proposing.
type Committer struct {
	engine       *Engine
	table        Viewer
	applier      Applier
	leadership   LeaderWatcher
	window       time.Duration
	applyTimeout time.Duration
	clock        Clock
	log          *slog.Logger

	// waitReq is for tests: see waitFor.
	waitReq chan waitReq[commitState]

	mu    sync.Mutex // guards stats
	stats CommitterStats
}

// commitState is what the committer's loop knows of its own progress.
type commitState struct {
	leader, armed, inflight bool
	// dirty and lead are set when the engine's marks or a leadership value wait to be read.
	dirty, lead bool
}

// settled says the committer has nothing to do until the clock moves.
func (s commitState) settled() bool { return !s.inflight && !s.dirty && !s.lead }

// CommitterStats are a committer's counters since it was created, for metrics and status.
type CommitterStats struct {
	// Leader and Term are the leadership the committer acts on.
	Leader bool   `json:"leader"`
	Term   uint64 `json:"term"`
	// Entries counts record_health entries committed, Recorded the transitions they carried.
	Entries  uint64 `json:"entries"`
	Recorded uint64 `json:"recorded"`
	// Errors counts failed proposals; LastError is the latest failure's.
	Errors    uint64    `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
	LastEntry time.Time `json:"last_entry,omitzero"`
}

// NewCommitter returns a committer; it starts nothing.
func NewCommitter(o CommitterOptions) (*Committer, error) {
	switch {
	case o.Engine == nil:
		return nil, errors.New("probe committer: Engine is required")
	case o.Table == nil:
		return nil, errors.New("probe committer: Table is required")
	case o.Applier == nil:
		return nil, errors.New("probe committer: Applier is required")
	case o.Leadership == nil:
		return nil, errors.New("probe committer: Leadership is required")
	case o.Window < 0:
		return nil, fmt.Errorf("probe committer: window %s must not be negative", o.Window)
	}
	if o.Window == 0 {
		o.Window = DefaultCommitWindow
	}
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = DefaultApplyTimeout
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Committer{engine: o.Engine, table: o.Table, applier: o.Applier, leadership: o.Leadership,
		window: o.Window, applyTimeout: o.ApplyTimeout, clock: o.Clock, log: o.Log,
		waitReq: make(chan waitReq[commitState])}, nil
}

// Stats returns the committer's counters.
func (c *Committer) Stats() CommitterStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// outcome is a finished proposal.
type outcome struct {
	term uint64
	ids  map[string]struct{}
	n    int
	err  error
}

// Run follows leadership and proposes until ctx ends or the leadership channel closes (the
// node stopped), then cancels a proposal in flight, waits for it and returns nil.
func (c *Committer) Run(ctx context.Context) error {
	lead := c.leadership.WatchLeadership(ctx)
	timer, tick := c.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		leader bool
		term   uint64
		// leaderCtx ends when this term's leadership does.
		leaderCtx   context.Context
		stopLeading = func() {}
		// pending are the targets to compare at the next window; all means every target.
		pending  map[string]struct{}
		all      bool
		armed    bool
		inflight bool
		results  = make(chan outcome, 1)
		wg       sync.WaitGroup
		waiters  []waitReq[commitState]
	)
	defer func() {
		stopLeading()
		wg.Wait()
	}()
	arm := func() {
		if leader && !armed && !inflight && (all || len(pending) > 0) {
			timer.Reset(c.window)
			armed = true
		}
	}
	setLeader := func(l bool, t uint64) {
		c.mu.Lock()
		c.stats.Leader, c.stats.Term = l, t
		c.mu.Unlock()
	}
	for {
		if len(waiters) > 0 {
			waiters = answer(waiters, commitState{leader: leader, armed: armed, inflight: inflight,
				dirty: len(c.engine.dirtyC) > 0, lead: len(lead) > 0})
		}
		select {
		case <-ctx.Done():
			return nil
		case req := <-c.waitReq:
			waiters = append(waiters, req)
		case l, ok := <-lead:
			if !ok {
				l.IsLeader = false
			}
			switch {
			case l.IsLeader && (!leader || l.Term != term):
				stopLeading()
				leaderCtx, stopLeading = leading(ctx)
				leader, term = true, l.Term
				// Another node may have led since: compare everything.
				all, pending = true, nil
				c.engine.takeDirty()
				c.log.Info("recording health as the leader", "op", "commit", "term", term)
				setLeader(true, term)
				arm()
			case !l.IsLeader && leader:
				leader = false
				stopLeading()
				stopLeading = func() {}
				all, pending = false, nil
				if armed {
					timer.Stop()
					armed = false
				}
				c.log.Info("no longer leader; health recording stopped", "op", "commit", "term", term)
				setLeader(false, l.Term)
			}
			if !ok {
				return nil
			}
		case <-c.engine.dirtyC:
			d := c.engine.takeDirty()
			if !leader {
				continue
			}
			if pending == nil {
				pending = d
			} else {
				for id := range d {
					pending[id] = struct{}{}
				}
			}
			arm()
		case <-tick:
			armed = false
			if !leader {
				continue
			}
			ts, ids := c.differences(all, pending)
			all, pending = false, nil
			if len(ts) == 0 {
				continue
			}
			inflight = true
			at := c.clock.Now()
			pctx, t := leaderCtx, term
			wg.Go(func() {
				actx, cancel := c.clock.WithTimeout(pctx, c.applyTimeout)
				defer cancel()
				res, err := c.applier.Apply(actx, fsm.RecordHealth(at, ts))
				if err == nil && res.Err != nil {
					err = fmt.Errorf("leader refused the entry: %w", res.Err)
				}
				results <- outcome{term: t, ids: ids, n: len(ts), err: err}
			})
		case out := <-results:
			inflight = false
			c.finished(out, leader && out.term == term)
			if out.err != nil && leader && out.term == term {
				// Retry next window, with the verdicts of that moment.
				if pending == nil {
					pending = out.ids
				} else {
					for id := range out.ids {
						pending[id] = struct{}{}
					}
				}
			}
			arm()
		}
	}
}

// leading returns the context of one term's leadership and the function that ends it (Run
// ends it when the leadership ends, and on return).
func leading(ctx context.Context) (context.Context, func()) {
	return context.WithCancel(ctx)
}

// finished books a proposal's outcome; current says it belongs to the present leadership.
func (c *Committer) finished(out outcome, current bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if out.err == nil {
		c.stats.Entries++
		c.stats.Recorded += uint64(out.n)
		c.stats.LastEntry = c.clock.Now()
		return
	}
	c.stats.Errors++
	msg := out.err.Error()
	if current && (msg != c.stats.LastError || c.stats.Errors%25 == 1) {
		c.log.Warn("recording health failed; retrying next window", "op", "commit", "err", out.err)
	}
	c.stats.LastError = msg
}

// differences compares the decided verdicts of the pending targets (all of them when all is
// set) with the committed table, and returns the transitions to record and the targets they
// are for.
func (c *Committer) differences(all bool, pending map[string]struct{}) ([]fsm.HealthTransition, map[string]struct{}) {
	if !all && len(pending) == 0 {
		return nil, nil
	}
	st := c.table.View()
	var vs []verdict
	if all {
		vs = c.engine.verdicts(nil)
	} else {
		vs = c.engine.verdicts(pending)
	}
	var ts []fsm.HealthTransition
	ids := map[string]struct{}{}
	for _, v := range vs {
		if !v.decided || st.Health(v.service, v.real).State == v.state {
			continue
		}
		ts = append(ts, fsm.HealthTransition{Service: v.service, Real: v.real, State: v.state, Reason: v.reason})
		ids[v.service+"/"+v.real] = struct{}{}
	}
	slices.SortFunc(ts, func(a, b fsm.HealthTransition) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Real, b.Real))
	})
	return ts, ids
}
