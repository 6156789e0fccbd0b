package probe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// guard bounds how long a test waits for the engine's goroutines to act on something that has
// already happened (a clock step, a release). It is a deadlock guard, not a timing: nothing in
// these tests waits for real time to pass.
const guard = 10 * time.Second

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// rig is an engine on a fake clock with scripted checkers, fed by a real FSM.
type rig struct {
	t   *testing.T
	f   *fsm.FSM
	clk *FakeClock

	applyMu sync.Mutex // guards idx and applying to f
	idx     uint64

	sc *script
	e  *Engine
	c  *Committer // set by withCommitter

	cancel context.CancelFunc
	done   chan struct{}
	// committerDone is closed when the committer's Run returns.
	committerDone chan struct{}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRig(t *testing.T, concurrency int) *rig {
	t.Helper()
	return newRigWith(t, func(o *Options) { o.Concurrency = concurrency })
}

// newRigWith lets edit change the engine's options (the rig's script is the default lookup).
func newRigWith(t *testing.T, edit func(*Options)) *rig {
	t.Helper()
	r := &rig{t: t, f: fsm.New(discard()), clk: NewFakeClock(t0), sc: newScript()}
	r.sc.clk = r.clk
	o := Options{Source: r.f, Checkers: r.sc.lookup, Clock: r.clk, Log: discard()}
	edit(&o)
	e, err := NewEngine(o)
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	return r
}

// apply commits c to the FSM as the next log entry; the FSM must accept it.
func (r *rig) apply(c fsm.Command) {
	r.t.Helper()
	res, err := r.applyResult(c)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		r.t.Fatalf("apply %s: %v", c.Op, err)
	}
}

// applyResult commits c as the next log entry; any goroutine may call it.
func (r *rig) applyResult(c fsm.Command) (fsm.Result, error) {
	b, err := fsm.EncodeCommand(c)
	if err != nil {
		return fsm.Result{}, err
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.idx++
	return r.f.Apply(r.idx, b), nil
}

// start runs the engine (and the committer, if any) until the test ends, then checks they
// returned.
func (r *rig) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.e.Run(ctx); err != nil {
			r.t.Errorf("engine Run: %v", err)
		}
	})
	if r.c != nil {
		r.committerDone = make(chan struct{})
		wg.Go(func() {
			defer close(r.committerDone)
			if err := r.c.Run(ctx); err != nil {
				r.t.Errorf("committer Run: %v", err)
			}
		})
	}
	go func() { wg.Wait(); close(r.done) }()
	r.t.Cleanup(r.stop)
	r.settle()
}

// stop ends Run and waits for it.
func (r *rig) stop() {
	r.t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(guard):
		r.t.Fatal("Run did not return after its context ended")
	}
}

// engineWait waits until the scheduler's state meets cond.
func (r *rig) engineWait(cond func(schedState) bool) schedState {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := waitFor(ctx, r.e.waitReq, cond)
	if err != nil {
		now, _ := waitFor(context.Background(), r.e.waitReq, always[schedState])
		r.t.Fatalf("engine did not reach the expected state: %v; it is at %+v", err, now)
	}
	return s
}

func (r *rig) commitWait(cond func(commitState) bool) commitState {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := waitFor(ctx, r.c.waitReq, cond)
	if err != nil {
		r.t.Fatalf("committer did not reach the expected state: %v", err)
	}
	return s
}

func always[S any](S) bool { return true }

// settle waits until the engine and the committer both have nothing to do until the clock
// moves, twice in a row (each can give the other work: a proposal changes the table the
// engine follows, a verdict marks work for the committer).
func (r *rig) settle() {
	r.t.Helper()
	for {
		r.engineWait(schedState.settled)
		c := r.committerRunning()
		if c {
			r.commitWait(commitState.settled)
		}
		if r.engineWait(always).settled() && (!c || r.commitWait(always).settled()) {
			return
		}
	}
}

func (r *rig) committerRunning() bool {
	if r.c == nil || r.committerDone == nil {
		return false
	}
	select {
	case <-r.committerDone:
		return false
	default:
		return true
	}
}

// advance moves the clock by d one event at a time, letting everything settle after each.
func (r *rig) advance(d time.Duration) {
	r.t.Helper()
	r.advanceTo(r.clk.Now().Add(d))
}

func (r *rig) advanceTo(end time.Time) {
	r.t.Helper()
	for {
		next, ok := r.clk.Next()
		if !ok || next.After(end) {
			break
		}
		r.clk.AdvanceTo(next)
		r.settle()
	}
	r.clk.AdvanceTo(end)
	r.settle()
}

// status returns the engine's view of one target.
func (r *rig) status(id string) TargetStatus {
	r.t.Helper()
	s, ok := r.e.Status(id)
	if !ok {
		r.t.Fatalf("no target %s; have %v", id, r.ids())
	}
	return s
}

func (r *rig) ids() []string {
	var ids []string
	for _, s := range r.e.View() {
		ids = append(ids, s.ID)
	}
	return ids
}

// script is a scripted checker: each target is healthy or not as the test says, and every
// call is recorded with the fake time it started.
type script struct {
	clk *FakeClock

	mu sync.Mutex // guards all following fields
	// unhealthy lists the target IDs that fail; everything else passes.
	unhealthy map[string]string
	calls     map[string][]time.Time
	// block, when set, is called by Check (outside mu) before it answers.
	block      func(ctx context.Context, t Target) *Result
	running    int
	maxRunning int
	specs      []fsm.HealthCheck
}

func newScript() *script {
	return &script{unhealthy: map[string]string{}, calls: map[string][]time.Time{}}
}

func (s *script) lookup(spec fsm.HealthCheck) (Checker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs = append(s.specs, spec)
	if spec.Type == "exec" && len(spec.Command) > 0 && spec.Command[0] == "/refuse" {
		return nil, fmt.Errorf("check command: %q: refused by the test", spec.Command[0])
	}
	return s, nil
}

func (s *script) Check(ctx context.Context, t Target) Result {
	s.mu.Lock()
	s.calls[t.ID()] = append(s.calls[t.ID()], s.clk.Now())
	s.running++
	s.maxRunning = max(s.maxRunning, s.running)
	block := s.block
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	if block != nil {
		if res := block(ctx, t); res != nil {
			return *res
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason, bad := s.unhealthy[t.ID()]; bad {
		return Result{Reason: reason, Duration: time.Millisecond}
	}
	return Result{Healthy: true, Reason: "status 200", Duration: time.Millisecond}
}

func (s *script) fail(id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unhealthy[id] = reason
}

func (s *script) heal(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.unhealthy, id)
}

func (s *script) setBlock(f func(ctx context.Context, t Target) *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block = f
}

// callsOf returns the start times of the checks of id.
func (s *script) callsOf(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls[id])
}

func (s *script) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += len(c)
	}
	return n
}

func (s *script) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRunning
}

// check is a test check spec: http, the given interval, timeout half of it, rise and fall.
func check(interval time.Duration, rise, fall int, initial fsm.Health) *fsm.HealthCheck {
	return &fsm.HealthCheck{Type: "http", Interval: fsm.Duration(interval), Timeout: fsm.Duration(interval / 2),
		Rise: rise, Fall: fall, InitialState: initial}
}

// service returns a service on VIP 192.0.2.1:80 (or 2001:db8::1 when a real is IPv6) with the
// given check and real servers (addresses, port 80).
func service(name string, c *fsm.HealthCheck, reals ...string) fsm.Service {
	s := fsm.Service{Name: name, VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Check: c}
	if strings.HasPrefix(name, "v6") {
		s.VIP = netip.MustParseAddr("2001:db8::1")
	}
	for _, a := range reals {
		s.Reals = append(s.Reals, fsm.Real{Address: netip.MustParseAddr(a)})
	}
	return s
}

// manyReals returns n IPv6 real-server addresses in 2001:db8:1::/64.
func manyReals(n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte((i + 1) >> 8), 15: byte(i + 1)}).String()
	}
	return out
}

// collect reads every transition already delivered on ch.
func collect(ch <-chan Transition) []Transition {
	var out []Transition
	for {
		select {
		case tr, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, tr)
		default:
			return out
		}
	}
}

// checkGoroutines fails the test if more goroutines run than before, once those that are
// ending have had a moment to go (as tailscale's tstest.ResourceCheck does).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left running (%d before):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // the leak check only: goroutines that were told to stop are exiting
	}
}
