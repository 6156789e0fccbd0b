package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// DefaultConcurrency is how many checks an Engine runs at once when Options.Concurrency is 0.
// A check that gets an answer holds a worker well under a millisecond on loopback, so a few
// dozen workers carry 10,000 checks a second; the bound matters when servers stop answering and
// their checks wait out the timeout: keeping every slot then takes Σ timeout/interval workers
// over the hung targets. Fewer workers do not pile checks up (late runs skip to their next slot,
// counted in Stats.Late) but every target's checks, healthy ones too, come late. Measured
// (docs/benchmarks.md, probe section; 10,000 servers at 1 s / 500 ms, 10 % of them hung): 1024
// workers kept every slot, 256 ran 4,455 checks/s and skipped 45,745 slots in 10 s. An idle
// worker is a parked goroutine.
const DefaultConcurrency = 1024

// Source is the replicated table the engine follows. *fsm.FSM implements it.
type Source interface {
	// View returns the current state, frozen.
	View() *fsm.State
	// Watch returns a Watcher fed by every later change; Unwatch stops it.
	Watch() *fsm.Watcher
	Unwatch(w *fsm.Watcher)
}

// Lookup returns the Checker for a normalized check spec. An error makes every check of the
// spec fail with the error as its reason (the target still shows up in the view).
type Lookup func(spec fsm.HealthCheck) (Checker, error)

// Options are an Engine's settings and collaborators.
type Options struct {
	// Source is the table whose real servers are checked; required.
	Source Source
	// Checkers picks the checker of each spec; nil uses the package's registry (NewChecker).
	Checkers Lookup
	// Concurrency bounds the checks running at once; 0 means DefaultConcurrency.
	Concurrency int
	Clock       Clock        // nil: the system clock
	Log         *slog.Logger // nil: discard
	// Observe, if set, is called with every finished check (a timed-out one as failed, with
	// its timeout as the reason, and its Duration) from the scheduler goroutine: it must not
	// block (metrics).
	Observe func(t Target, res Result)
}

// Engine runs every health check of the table: one target per real server of every service
// that has a check (type none included), except admin-disabled real servers. It keeps the
// targets in step with the table (a changed spec resets the target's state; a removed one is
// stopped, and a check of it still running is cancelled and its result dropped), runs each
// target every interval from a random offset within its first interval, enforces the check's
// timeout as the context deadline, and applies rise/fall damping.
//
// One scheduler goroutine owns a timer heap of the targets and hands due targets to a fixed
// pool of Concurrency workers. A target is out of the heap from the moment it is due until its
// check returns, so a slow check delays only its own next run, never doubles it; a run that
// would start after its slot has passed (all workers busy, or a checker that overran its
// timeout) moves to the next slot of the target's cadence and counts as late.
//
// NewEngine starts nothing. Run does the work until its context ends; View, Status, Stats and
// Subscribe may be called from any goroutine at any time.
type Engine struct {
	src     Source
	lookup  Lookup
	clock   Clock
	log     *slog.Logger
	workers int
	observe func(Target, Result)

	started atomic.Bool
	// jobs hands due targets to the workers; results hands them back (it has room for every
	// worker, so a worker never waits on it, even after the scheduler has stopped).
	jobs    chan *target
	results chan *target
	// waitReq is for tests: see waitFor.
	waitReq chan waitReq[schedState]

	// Owned by the scheduler goroutine.
	heap     timerHeap
	ready    fifo
	inflight int
	seq      uint64
	waiters  []waitReq[schedState]

	mu sync.Mutex // guards all following fields
	// targets by ID, and by service name then ID.
	targets   map[string]*target
	byService map[string]map[string]*target
	// checkers holds each service's checker with the spec it was built for: the targets of a
	// service share it (a Checker is safe for concurrent use and bound to its spec).
	checkers map[string]specChecker
	counters counters
	// dirty holds the IDs whose verdict or committed health changed since the committer last
	// took them; dirtyC signals that it is not empty.
	dirty  map[string]struct{}
	dirtyC chan struct{}

	subMu sync.Mutex // guards subs and sending to them
	// subs is nil once Run has returned.
	subs map[*subscriber]struct{}
	// dropped counts transitions a full subscriber channel lost.
	dropped atomic.Uint64
}

type counters struct {
	checks, failures, late, transitions uint64
}

// target is one real server of one service under check.
type target struct {
	Target
	id       string
	realID   string
	checker  Checker
	interval time.Duration
	timeout  time.Duration

	// Owned by the scheduler goroutine.
	heapIdx int // index in the heap, -1 when out of it
	seq     uint64
	// due is the slot of the current (or next) run.
	due     time.Time
	removed bool

	// Written by the worker before it hands the target back, read by the scheduler after.
	res        Result
	start, end time.Time
	timedOut   bool

	runMu sync.Mutex // guards cancel and stopped, shared by the scheduler and the worker
	// cancel ends the running check's context.
	cancel  context.CancelFunc
	stopped bool

	// st is guarded by Engine.mu.
	st status
}

// status is a target's damping state and counters.
type status struct {
	state fsm.Health
	// decided is set once rise successes or fall failures in a row reached or confirmed state
	// since the target was created.
	decided bool
	since   time.Time
	reason  string
	// committed is the FSM's health of the real server, as the engine last read it.
	committed  fsm.Health
	succ, fail int
	checks     uint64
	failed     uint64
	last       Result
	lastAt     time.Time
	running    bool
	next       time.Time
}

// NewEngine returns an engine; it starts nothing.
func NewEngine(o Options) (*Engine, error) {
	if o.Source == nil {
		return nil, errors.New("probe engine: Source is required")
	}
	if o.Concurrency < 0 {
		return nil, fmt.Errorf("probe engine: concurrency %d must not be negative", o.Concurrency)
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Checkers == nil {
		o.Checkers = NewChecker
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Engine{
		src: o.Source, lookup: o.Checkers, clock: o.Clock, log: o.Log, workers: o.Concurrency, observe: o.Observe,
		heap:      timerHeap{base: o.Clock.Now()},
		jobs:      make(chan *target),
		results:   make(chan *target, o.Concurrency),
		waitReq:   make(chan waitReq[schedState]),
		targets:   map[string]*target{},
		byService: map[string]map[string]*target{},
		checkers:  map[string]specChecker{},
		dirty:     map[string]struct{}{},
		dirtyC:    make(chan struct{}, 1),
		subs:      map[*subscriber]struct{}{},
	}, nil
}

// ErrStarted is returned by a second call of Run.
var ErrStarted = errors.New("already started")

// Run checks until ctx ends, then stops every check (cancelling those running), waits for its
// goroutines, closes the subscribers' channels and returns nil. It may be called once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return fmt.Errorf("probe engine run: %w", ErrStarted)
	}
	w := e.src.Watch()
	defer e.src.Unwatch(w)
	var wg sync.WaitGroup
	for range e.workers {
		wg.Go(func() { e.work(ctx) })
	}
	e.schedule(ctx, w)
	close(e.jobs)
	wg.Wait()
	e.closeSubscribers()
	return nil
}

// schedule is the scheduler goroutine: it follows the table, moves due targets from the heap
// to the ready queue, feeds the workers, and books results.
func (e *Engine) schedule(ctx context.Context, w *fsm.Watcher) {
	timer, tick := e.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time // the due time the timer is set for; zero when stopped
	e.syncAll(e.src.View())
	for {
		now := e.clock.Now()
		for e.heap.len() > 0 && !e.heap.minDue().After(now) {
			e.ready.push(e.heap.pop())
		}
		switch {
		case e.heap.len() > 0 && !armed.Equal(e.heap.minDue()):
			armed = e.heap.minDue()
			timer.Reset(armed.Sub(now))
		case e.heap.len() == 0 && !armed.IsZero():
			armed = time.Time{}
			timer.Stop()
		}
		for e.ready.len() > 0 && e.ready.peek().removed {
			e.ready.pop()
		}
		if len(e.waiters) > 0 {
			e.answerWaiters(w, now)
		}
		var jobs chan *target
		var head *target
		if e.ready.len() > 0 {
			jobs, head = e.jobs, e.ready.peek()
		}
		select {
		case <-ctx.Done():
			e.stopAll()
			return
		case jobs <- head:
			e.ready.pop()
			e.inflight++
		case t := <-e.results:
			e.inflight--
			e.complete(t)
		case <-tick:
			armed = time.Time{}
		case <-w.C:
			names, all := w.Take()
			st := e.src.View()
			if all {
				e.syncAll(st)
			} else {
				for _, name := range names {
					e.syncService(st, name)
				}
			}
		case req := <-e.waitReq:
			e.waiters = append(e.waiters, req)
		}
	}
}

// work is a worker: it runs the checks the scheduler hands it until jobs is closed.
func (e *Engine) work(ctx context.Context) {
	for t := range e.jobs {
		e.run(ctx, t)
		e.results <- t
	}
}

// run runs one check of t with its timeout and records the outcome in t.
func (e *Engine) run(ctx context.Context, t *target) {
	// Marked here, not by the scheduler after the hand-over, so that whoever the check itself
	// wakes (a test's checker, say) finds it running.
	e.mu.Lock()
	t.st.running = true
	e.mu.Unlock()
	cctx, cancel := e.clock.WithTimeout(ctx, t.timeout)
	defer cancel()
	t.runMu.Lock()
	stopped := t.stopped
	t.cancel = cancel
	t.runMu.Unlock()
	t.start = e.clock.Now()
	if stopped {
		t.res = Result{Reason: "stopped"}
	} else {
		t.res = e.check(cctx, t)
	}
	t.end = e.clock.Now()
	// The deadline decides, whatever the checker said: a check that outlived its timeout
	// failed, even if the checker ignored its context and came back with an answer.
	t.timedOut = errors.Is(cctx.Err(), context.DeadlineExceeded)
	t.runMu.Lock()
	t.cancel = nil
	t.runMu.Unlock()
}

// check calls the checker, turning a panic into a failed check.
func (e *Engine) check(ctx context.Context, t *target) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("checker panicked", "op", "check", "service", t.Service, "real", t.realID, "err", p)
			res = Result{Reason: fmt.Sprintf("checker panicked: %v", p)}
		}
	}()
	return t.checker.Check(ctx, t.Target)
}

// complete books a finished check of t and puts t back in the heap for its next slot.
func (e *Engine) complete(t *target) {
	if t.removed {
		return
	}
	res := t.res
	if t.timedOut {
		res.Healthy, res.Reason = false, timeoutReason(t.timeout)
	}
	res.Duration = t.end.Sub(t.start)
	if e.observe != nil {
		e.observe(t.Target, res)
	}
	now := e.clock.Now()
	next, late := nextSlot(t.due, t.interval, now)
	t.due = next
	e.mu.Lock()
	tr, changed := t.st.record(res, t.end, t.Check.Rise, t.Check.Fall)
	t.st.running = false
	t.st.next = next
	e.counters.checks++
	if !res.Healthy {
		e.counters.failures++
	}
	e.counters.late += late
	if changed {
		e.markDirty(t.id)
	}
	if tr != nil {
		e.counters.transitions++
	}
	e.mu.Unlock()
	e.heap.push(t)
	if tr != nil {
		tr.Service, tr.Real = t.Service, t.realID
		e.log.Info("check state changed", "op", "check", "service", t.Service, "real", t.realID,
			"from", tr.From, "to", tr.To, "reason", tr.Reason)
		e.publish(*tr)
	}
}

// nextSlot returns the first slot of the cadence (due + k·interval, k ≥ 1) not before now, and
// how many slots were skipped to get there.
func nextSlot(due time.Time, interval time.Duration, now time.Time) (time.Time, uint64) {
	next := due.Add(interval)
	if !next.Before(now) {
		return next, 0
	}
	k := (now.Sub(next) + interval - 1) / interval
	return next.Add(k * interval), uint64(k)
}

// record books one result at time at: consecutive counts, then rise/fall. It returns the
// transition if the state changed, and whether the verdict the committer looks at (state and
// decided) changed.
func (s *status) record(res Result, at time.Time, rise, fall int) (*Transition, bool) {
	s.checks++
	s.last, s.lastAt = res, at
	var to fsm.Health
	if res.Healthy {
		s.succ, s.fail = s.succ+1, 0
		if s.succ < rise {
			return nil, false
		}
		to = fsm.HealthUp
	} else {
		s.failed++
		s.succ, s.fail = 0, s.fail+1
		if s.fail < fall {
			return nil, false
		}
		to = fsm.HealthDown
	}
	if s.state == to {
		if s.decided {
			return nil, false
		}
		// Confirmed: the verdict stands on this engine's own checks from now on.
		s.decided, s.reason = true, res.Reason
		return nil, true
	}
	tr := &Transition{From: s.state, To: to, Reason: res.Reason, At: at}
	s.state, s.decided, s.since, s.reason = to, true, at, res.Reason
	return tr, true
}

// stopAll cancels every running check at shutdown.
func (e *Engine) stopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.targets {
		t.stop()
	}
}

// stop cancels t's running check, if any, and keeps a worker about to start it from doing so.
func (t *target) stop() {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	t.stopped = true
	if t.cancel != nil {
		t.cancel()
	}
}

// syncAll brings every target in step with st.
func (e *Engine) syncAll(st *fsm.State) {
	names := st.ServiceNames()
	for _, name := range names {
		e.syncService(st, name)
	}
	e.mu.Lock()
	var gone []string
	for name := range e.byService {
		if _, ok := slices.BinarySearch(names, name); !ok {
			gone = append(gone, name)
		}
	}
	e.mu.Unlock()
	for _, name := range gone {
		e.syncService(st, name)
	}
}

// syncService brings the targets of service name in step with st: adds the new ones, resets
// the changed ones, stops the removed ones, and notes changed committed health.
func (e *Engine) syncService(st *fsm.State, name string) {
	want := desired(st, name)
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	have := e.byService[name]
	for id, t := range have {
		if nt, ok := want[id]; !ok || !sameTarget(t.Target, nt) {
			e.removeLocked(t)
		}
	}
	for id, nt := range want {
		h := st.Health(name, fsm.RealID(nt.Real.Addr(), nt.Real.Port()))
		if t, ok := e.targets[id]; ok {
			t.st.noteCommitted(h, e, id)
			continue
		}
		e.addLocked(nt, h, now)
	}
}

// noteCommitted records the FSM's health h of the target. An undecided target takes it as its
// state: it is the best verdict there is until this engine's own checks reach rise or fall.
func (s *status) noteCommitted(h fsm.RealHealth, e *Engine, id string) {
	if h.State == s.committed {
		return
	}
	s.committed = h.State
	e.markDirty(id)
	if !s.decided && h.State != fsm.HealthUnknown && h.State != s.state {
		s.state, s.since, s.reason = h.State, h.Since, h.Reason
	}
}

// desired returns the targets service name should have in st, by ID.
func desired(st *fsm.State, name string) map[string]Target {
	svc, ok := st.Service(name)
	if !ok || svc.Check == nil {
		return nil
	}
	want := make(map[string]Target, len(svc.Reals))
	for _, r := range svc.Reals {
		if r.Admin == fsm.Disabled {
			continue
		}
		t := Target{Service: name, VIP: svc.VIP, ServicePort: svc.Port,
			Real: netip.AddrPortFrom(r.Address, r.Port), Check: *svc.Check}
		want[t.ID()] = t
	}
	return want
}

// addLocked creates a target starting in the committed health h, or the spec's initial state
// when none was committed, first due at a random point of its first interval. e.mu is held.
func (e *Engine) addLocked(nt Target, h fsm.RealHealth, now time.Time) {
	interval := time.Duration(nt.Check.Interval)
	if interval <= 0 {
		interval = fsm.DefaultCheckInterval
	}
	timeout := time.Duration(nt.Check.Timeout)
	if timeout <= 0 || timeout >= interval {
		timeout = min(fsm.DefaultCheckTimeout, interval/2)
	}
	c := e.checkerFor(nt)
	e.seq++
	t := &target{Target: nt, id: nt.ID(), realID: fsm.RealID(nt.Real.Addr(), nt.Real.Port()),
		checker: c, interval: interval, timeout: timeout, heapIdx: -1, seq: e.seq,
		due: now.Add(time.Duration(rand.Int64N(int64(interval))))}
	t.st = status{state: nt.Check.InitialState, since: now, reason: "initial state", committed: h.State}
	if t.st.state != fsm.HealthDown {
		t.st.state = fsm.HealthUp
	}
	if h.State == fsm.HealthUp || h.State == fsm.HealthDown {
		t.st.state, t.st.since, t.st.reason = h.State, h.Since, h.Reason
	}
	t.st.next = t.due
	e.targets[t.id] = t
	if e.byService[nt.Service] == nil {
		e.byService[nt.Service] = map[string]*target{}
	}
	e.byService[nt.Service][t.id] = t
	e.markDirty(t.id)
	e.heap.push(t)
}

// removeLocked stops t: out of the heap, its queued run skipped, its running check cancelled
// and its result dropped. e.mu is held.
func (e *Engine) removeLocked(t *target) {
	t.removed = true
	if t.heapIdx >= 0 {
		e.heap.remove(t.heapIdx)
	}
	t.stop()
	delete(e.targets, t.id)
	if m := e.byService[t.Service]; m != nil {
		delete(m, t.id)
		if len(m) == 0 {
			delete(e.byService, t.Service)
			delete(e.checkers, t.Service)
		}
	}
	delete(e.dirty, t.id)
}

// markDirty tells the committer that id's verdict or committed health changed. e.mu is held.
func (e *Engine) markDirty(id string) {
	e.dirty[id] = struct{}{}
	select {
	case e.dirtyC <- struct{}{}:
	default:
	}
}

// sameTarget reports whether two targets check the same thing the same way.
func sameTarget(a, b Target) bool {
	if a.Service != b.Service || a.VIP != b.VIP || a.ServicePort != b.ServicePort || a.Real != b.Real {
		return false
	}
	return reflect.DeepEqual(a.Check, b.Check)
}

// specChecker is a checker and the spec it was built for.
type specChecker struct {
	spec fsm.HealthCheck
	c    Checker
}

// checkerFor returns the checker of nt's spec, built once per service and spec. A spec the
// lookup refuses gets a checker that fails every check with the error. e.mu is held.
func (e *Engine) checkerFor(nt Target) Checker {
	if sc, ok := e.checkers[nt.Service]; ok && reflect.DeepEqual(sc.spec, nt.Check) {
		return sc.c
	}
	c, err := e.lookup(nt.Check)
	if err != nil {
		e.log.Warn("health check cannot run here; its checks fail", "op", "check", "service", nt.Service, "err", err)
		c = failing{reason: err.Error()}
	}
	e.checkers[nt.Service] = specChecker{spec: nt.Check, c: c}
	return c
}

// failing is the checker of a spec no checker accepts.
type failing struct{ reason string }

func (f failing) Check(context.Context, Target) Result { return Result{Reason: f.reason} }

// fifo is the queue of due targets waiting for a worker.
type fifo struct {
	items []*target
	head  int
}

func (q *fifo) len() int       { return len(q.items) - q.head }
func (q *fifo) peek() *target  { return q.items[q.head] }
func (q *fifo) push(t *target) { q.items = append(q.items, t) }
func (q *fifo) pop() (t *target) {
	t, q.items[q.head] = q.items[q.head], nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return t
}

// waitReq asks a loop (the engine's scheduler, the committer) to send its state on reply once
// cond holds of it. Tests use it to let the loops settle after moving a fake clock.
type waitReq[S any] struct {
	cond  func(S) bool
	reply chan S
}

// answer replies to the requests whose condition s meets and returns the others.
func answer[S any](reqs []waitReq[S], s S) []waitReq[S] {
	return slices.DeleteFunc(reqs, func(r waitReq[S]) bool {
		if r.cond(s) {
			r.reply <- s
			return true
		}
		return false
	})
}

// waitFor sends a request to a loop through ch and waits for its answer or ctx's end.
func waitFor[S any](ctx context.Context, ch chan<- waitReq[S], cond func(S) bool) (S, error) {
	r := waitReq[S]{cond: cond, reply: make(chan S, 1)}
	var zero S
	select {
	case ch <- r:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case s := <-r.reply:
		return s, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// schedState is what the scheduler knows of its own progress.
type schedState struct {
	targets  int
	ready    int
	inflight int
	// due is set when a target's slot has come but it was not yet moved to ready.
	due bool
	// watch is set when a table change is waiting to be read.
	watch bool
}

// settled says the scheduler has nothing to do until the clock moves.
func (s schedState) settled() bool { return s.ready == 0 && s.inflight == 0 && !s.due && !s.watch }

func (e *Engine) answerWaiters(w *fsm.Watcher, now time.Time) {
	e.mu.Lock()
	n := len(e.targets)
	e.mu.Unlock()
	e.waiters = answer(e.waiters, schedState{targets: n, ready: e.ready.len(), inflight: e.inflight,
		due: e.heap.len() > 0 && !e.heap.minDue().After(now), watch: len(w.C) > 0})
}
