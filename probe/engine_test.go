package probe

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

const web1 = "web/192.0.2.21:80"

// A server goes down fall checks after its last success and comes back rise checks after its
// last failure: fall × interval and rise × interval, exactly, on the check's own cadence.
func TestRiseFallThresholds(t *testing.T) {
	const interval = time.Second
	const rise, fall = 3, 2
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(interval, rise, fall, fsm.HealthUp), "192.0.2.21")))
	trs, _ := r.e.Subscribe(16)
	r.start()

	r.advance(interval)
	calls := r.sc.callsOf(web1)
	if len(calls) != 1 {
		t.Fatalf("checks in the first interval: %d, want 1", len(calls))
	}
	first := calls[0]
	s := r.status(web1)
	if s.State != fsm.HealthUp || s.Decided || s.Successes != 1 {
		t.Fatalf("after one success: %+v, want up, undecided, 1 success", s)
	}
	// rise successes confirm the initial state: decided, no transition.
	r.advanceTo(first.Add((rise - 1) * interval))
	if s := r.status(web1); !s.Decided || s.State != fsm.HealthUp || s.Successes != rise {
		t.Fatalf("after %d successes: %+v, want decided up", rise, s)
	}
	if got := collect(trs); len(got) != 0 {
		t.Fatalf("confirming the initial state made transitions: %+v", got)
	}

	lastOK := first.Add((rise - 1) * interval)
	r.sc.fail(web1, "status 503")
	down := lastOK.Add(fall * interval)
	r.advanceTo(down.Add(-time.Nanosecond))
	if s := r.status(web1); s.State != fsm.HealthUp || s.Failures != fall-1 {
		t.Fatalf("a check before fall: %+v, want still up with %d failures", s, fall-1)
	}
	r.advanceTo(down)
	s = r.status(web1)
	if s.State != fsm.HealthDown || !s.Since.Equal(down) || s.Reason != "status 503" {
		t.Fatalf("after %d failures: %+v, want down since %s for status 503", fall, s, down)
	}
	want := Transition{Service: "web", Real: "192.0.2.21:80", From: fsm.HealthUp, To: fsm.HealthDown, Reason: "status 503", At: down}
	if got := collect(trs); len(got) != 1 || got[0] != want {
		t.Fatalf("transitions %+v, want [%+v]", got, want)
	}

	r.sc.heal(web1)
	up := down.Add(rise * interval)
	r.advanceTo(up.Add(-time.Nanosecond))
	if s := r.status(web1); s.State != fsm.HealthDown || s.Successes != rise-1 {
		t.Fatalf("a check before rise: %+v, want still down with %d successes", s, rise-1)
	}
	r.advanceTo(up)
	want = Transition{Service: "web", Real: "192.0.2.21:80", From: fsm.HealthDown, To: fsm.HealthUp, Reason: "status 200", At: up}
	if got := collect(trs); len(got) != 1 || got[0] != want {
		t.Fatalf("transitions %+v, want [%+v]", got, want)
	}
	s = r.status(web1)
	if s.Checks != uint64(rise+fall+rise) || s.Failed != fall || s.Last == nil || !s.Last.Healthy || !s.Last.At.Equal(up) {
		t.Fatalf("counters %+v, want %d checks, %d failed, last healthy at %s", s, rise+fall+rise, fall, up)
	}
	if st := r.e.Stats(); st.Transitions != 2 || st.Checks != s.Checks || st.Failures != fall || st.Up != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A target starts in the committed health when there is one, else in the spec's initial state,
// and rises or falls from there.
func TestStartingState(t *testing.T) {
	for _, tc := range []struct {
		name      string
		initial   fsm.Health
		committed fsm.Health
		want      fsm.Health
		reason    string
	}{
		{"initial up", fsm.HealthUp, "", fsm.HealthUp, "initial state"},
		{"initial down", fsm.HealthDown, "", fsm.HealthDown, "initial state"},
		{"committed down beats initial up", fsm.HealthUp, fsm.HealthDown, fsm.HealthDown, "connection refused"},
		{"committed up beats initial down", fsm.HealthDown, fsm.HealthUp, fsm.HealthUp, "status 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 0)
			r.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, tc.initial), "192.0.2.21")))
			since := t0.Add(-time.Hour)
			if tc.committed != "" {
				r.apply(fsm.RecordHealth(since, []fsm.HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: tc.committed, Reason: tc.reason}}))
			}
			trs, _ := r.e.Subscribe(16)
			r.start()
			s := r.status(web1)
			if s.State != tc.want || s.Decided || s.Reason != tc.reason || s.Checks != 0 {
				t.Fatalf("start: %+v, want %s (%s), undecided", s, tc.want, tc.reason)
			}
			if tc.committed != "" && !s.Since.Equal(since) {
				t.Fatalf("since %s, want the committed %s", s.Since, since)
			}
			// Healthy from the first check: a down start rises after 2 checks.
			r.advance(2 * time.Second)
			s = r.status(web1)
			if s.State != fsm.HealthUp || !s.Decided {
				t.Fatalf("after 2 successes: %+v, want decided up", s)
			}
			got := collect(trs)
			if (tc.want == fsm.HealthDown) != (len(got) == 1) {
				t.Fatalf("transitions %+v", got)
			}
		})
	}
}

// An undecided target takes a verdict committed later (another director led and decided);
// a decided one keeps its own.
func TestUndecidedTargetFollowsCommittedHealth(t *testing.T) {
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, fsm.HealthUp), "192.0.2.21", "192.0.2.22")))
	r.start()
	r.apply(fsm.RecordHealth(t0, []fsm.HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: fsm.HealthDown, Reason: "timeout after 500ms"}}))
	r.settle()
	if s := r.status(web1); s.State != fsm.HealthDown || s.Decided || s.Committed != fsm.HealthDown || s.Reason != "timeout after 500ms" {
		t.Fatalf("undecided target after a committed down: %+v", s)
	}
	r.advance(2 * time.Second) // both healthy here: decided up
	r.apply(fsm.RecordHealth(t0, []fsm.HealthTransition{{Service: "web", Real: "192.0.2.22:80", State: fsm.HealthDown}}))
	r.settle()
	if s := r.status("web/192.0.2.22:80"); s.State != fsm.HealthUp || !s.Decided || s.Committed != fsm.HealthDown {
		t.Fatalf("decided target after a committed down: %+v, want its own decided up", s)
	}
}

// The first check of each target falls at a random point of its first interval, spread evenly,
// and each target then keeps its own cadence.
func TestJitterSpreadsFirstChecks(t *testing.T) {
	const n, interval, buckets = 4000, 10 * time.Second, 10
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("v6", check(interval, 2, 2, fsm.HealthUp), manyReals(n)...)))
	r.start()
	view := r.e.View()
	if len(view) != n {
		t.Fatalf("%d targets, want %d", len(view), n)
	}
	var count [buckets]int
	next := map[string]time.Time{}
	for _, s := range view {
		off := s.Next.Sub(t0)
		if off < 0 || off >= interval {
			t.Fatalf("%s first due at +%s, outside the first interval", s.ID, off)
		}
		count[off*buckets/interval]++
		next[s.ID] = s.Next
	}
	// 400 expected per bucket, σ = 19: a uniform draw stays within ±100 (5.3σ) in all 10
	// buckets but once in millions of runs.
	for i, c := range count {
		if c < 300 || c > 500 {
			t.Errorf("bucket %d (+%ds) holds %d first checks, want about %d: %v", i, i, c, n/buckets, count)
		}
	}
	r.advance(2 * interval)
	for id, at := range next {
		calls := r.sc.callsOf(id)
		if len(calls) != 2 || !calls[0].Equal(at) || !calls[1].Equal(at.Add(interval)) {
			t.Fatalf("%s checked at %v, want at %s and one interval later", id, calls, at)
		}
	}
}

// A checker that blocks until its context ends is cut off at the timeout and reported as a
// timeout; one that ignores its context is reported as a timeout when it returns, its target is
// not checked again meanwhile, and the slots it overran are skipped.
func TestTimeoutEnforced(t *testing.T) {
	const interval, timeout = 2 * time.Second, time.Second
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(interval, 2, 2, fsm.HealthUp), "192.0.2.21")))
	var ctxErr atomic.Value
	started := make(chan struct{}, 1)
	r.sc.setBlock(func(ctx context.Context, _ Target) *Result {
		// Before started: the test moves the clock once it hears of the check.
		if d, ok := ctx.Deadline(); !ok || !d.Equal(r.clk.Now().Add(timeout)) {
			t.Errorf("check deadline %s (set %v), want now + %s", d, ok, timeout)
		}
		started <- struct{}{}
		<-ctx.Done()
		ctxErr.Store(ctx.Err())
		return &Result{Healthy: true, Reason: "answered late"}
	})
	r.start()
	due := r.status(web1).Next
	r.clk.AdvanceTo(due)
	<-started
	r.clk.Advance(timeout - time.Nanosecond)
	if s := r.status(web1); !s.Running || s.Checks != 0 {
		t.Fatalf("before the timeout: %+v, want running, no result", s)
	}
	r.clk.Advance(time.Nanosecond)
	r.settle()
	if err, _ := ctxErr.Load().(error); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("checker saw %v, want the deadline", err)
	}
	s := r.status(web1)
	if s.Last == nil || s.Last.Healthy || s.Last.Reason != "timeout after 1s" || s.Last.Duration != fsm.Duration(timeout) || s.Failures != 1 {
		t.Fatalf("after the timeout: %+v last %+v, want a failed check: timeout after 1s, 1s", s, s.Last)
	}
	if !s.Next.Equal(due.Add(interval)) {
		t.Fatalf("next check at %s, want %s", s.Next, due.Add(interval))
	}

	// Now a checker that ignores its context and returns only when released.
	release := make(chan struct{})
	r.sc.setBlock(func(context.Context, Target) *Result {
		started <- struct{}{}
		<-release
		return &Result{Healthy: true, Reason: "status 200"}
	})
	due = s.Next
	r.clk.AdvanceTo(due)
	<-started
	r.clk.AdvanceTo(due.Add(3*interval + time.Millisecond))
	r.engineWait(func(s schedState) bool { return s.inflight == 1 && s.ready == 0 && !s.due })
	if n := len(r.sc.callsOf(web1)); n != 2 {
		t.Fatalf("%d checks started while one overran, want 2 (no pile-up)", n)
	}
	if st := r.e.Stats(); st.Running != 1 {
		t.Fatalf("stats %+v, want 1 running", st)
	}
	close(release)
	r.settle()
	s = r.status(web1)
	if s.Last.Healthy || s.Last.Reason != "timeout after 1s" || s.Failures != 2 {
		t.Fatalf("overrun check: %+v last %+v, want a timeout", s, s.Last)
	}
	if want := due.Add(4 * interval); !s.Next.Equal(want) {
		t.Fatalf("next check at %s, want the next slot of the cadence %s", s.Next, want)
	}
	if st := r.e.Stats(); st.Late != 3 {
		t.Fatalf("late %d, want the 3 slots skipped", st.Late)
	}
	if s.State != fsm.HealthDown {
		t.Fatalf("two timeouts in a row with fall 2: %s, want down", s.State)
	}
}

// No more checks run at once than the concurrency allows; the others wait their turn.
func TestConcurrencyBound(t *testing.T) {
	const n, limit = 30, 3
	r := newRig(t, limit)
	r.apply(fsm.UpsertService(service("v6", check(time.Second, 2, 2, fsm.HealthUp), manyReals(n)...)))
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	started := make(chan struct{}, n)
	// The checker ignores its context: the fake clock steps through every timer on its way to the
	// target time, so a check started at an early slot times out before the clock gets there, and
	// only a checker that keeps the worker busy holds the count of running checks.
	r.sc.setBlock(func(context.Context, Target) *Result {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	})
	r.start()
	r.clk.AdvanceTo(t0.Add(time.Second - time.Nanosecond))
	for range limit {
		<-started
	}
	r.engineWait(func(s schedState) bool { return s.inflight == limit && s.ready == n-limit && !s.due })
	if got := r.sc.max(); got != limit {
		t.Fatalf("%d checks ran at once, want %d", got, limit)
	}
	if st := r.e.Stats(); st.Running != limit || st.Concurrency != limit {
		t.Fatalf("stats %+v", st)
	}
	releaseOnce()
	r.settle()
	if got := r.sc.total(); got != n {
		t.Fatalf("%d checks, want %d", got, n)
	}
	r.advance(3 * time.Second)
	if got, want := r.sc.total(), 4*n; got != want {
		t.Fatalf("%d checks after 3 more intervals, want %d", got, want)
	}
	if got := r.sc.max(); got > limit {
		t.Fatalf("%d checks ran at once, want at most %d", got, limit)
	}
}

// Targets follow the table: added, reset on a changed spec, stopped when removed or disabled,
// and nothing is left running once Run returns.
func TestTargetsFollowTable(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t, 8)
	c := check(time.Second, 1, 1, fsm.HealthUp)
	r.apply(fsm.UpsertService(service("web", c, "192.0.2.21", "192.0.2.22", "192.0.2.23")))
	r.apply(fsm.UpsertService(fsm.Service{Name: "nocheck", VIP: netip.MustParseAddr("192.0.2.2"), Port: 80,
		Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.31")}}}))
	r.start()
	ids := func() string { return strings.Join(r.ids(), " ") }
	if got, want := ids(), "web/192.0.2.21:80 web/192.0.2.22:80 web/192.0.2.23:80"; got != want {
		t.Fatalf("targets %q, want %q (a service without a check has none)", got, want)
	}
	r.advance(time.Second)

	r.apply(fsm.UpsertReal("web", fsm.Real{Address: netip.MustParseAddr("192.0.2.24")}))
	r.settle()
	if n := len(r.sc.specs); n != 1 {
		t.Fatalf("%d checkers built for one service's spec, want 1 shared by its targets", n)
	}
	if s := r.status("web/192.0.2.24:80"); s.Checks != 0 || s.Next.Before(r.clk.Now()) || !s.Next.Before(r.clk.Now().Add(time.Second)) {
		t.Fatalf("added real: %+v, want a fresh target due within an interval", s)
	}
	r.advance(time.Second)

	// A changed spec resets every target of the service.
	c2 := *c
	c2.Path = "/healthz"
	r.apply(fsm.UpsertService(service("web", &c2, "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24")))
	r.settle()
	for _, s := range r.e.View() {
		if s.Checks != 0 || s.Decided {
			t.Fatalf("target after a spec change: %+v, want reset", s)
		}
	}
	if n := len(r.sc.specs); n != 2 {
		t.Fatalf("%d checkers built, want one more for the changed spec", n)
	}
	if last := r.sc.specs[len(r.sc.specs)-1]; last.Path != "/healthz" {
		t.Fatalf("checker built for %+v, want the new spec", last)
	}
	// An unchanged spec (a weight change) keeps the state.
	r.advance(time.Second)
	r.apply(fsm.SetWeight("web", "192.0.2.21:80", 5))
	r.settle()
	if s := r.status(web1); s.Checks != 1 {
		t.Fatalf("after a weight change: %+v, want its check kept", s)
	}

	r.apply(fsm.DeleteReal("web", "192.0.2.22:80"))
	r.apply(fsm.SetAdmin("web", "192.0.2.23:80", fsm.Disabled))
	r.apply(fsm.SetAdmin("web", "192.0.2.24:80", fsm.Draining))
	r.settle()
	if got, want := ids(), "web/192.0.2.21:80 web/192.0.2.24:80"; got != want {
		t.Fatalf("targets %q, want %q (deleted and disabled reals are not checked; draining ones are)", got, want)
	}
	gone := map[string]int{"web/192.0.2.22:80": 0, "web/192.0.2.23:80": 0}
	for id := range gone {
		gone[id] = len(r.sc.callsOf(id))
	}
	r.advance(5 * time.Second)
	for id, n := range gone {
		if got := len(r.sc.callsOf(id)); got != n {
			t.Fatalf("%s checked %d times after it was removed", id, got-n)
		}
	}
	r.apply(fsm.SetAdmin("web", "192.0.2.23:80", fsm.Enabled))
	r.settle()
	if s := r.status("web/192.0.2.23:80"); s.Checks != 0 {
		t.Fatalf("re-enabled real: %+v, want a fresh target", s)
	}

	r.apply(fsm.DeleteService("web"))
	r.settle()
	if got := ids(); got != "" {
		t.Fatalf("targets %q after the service was deleted", got)
	}
	n := r.sc.total()
	r.advance(5 * time.Second)
	if got := r.sc.total(); got != n {
		t.Fatalf("%d checks after every target was removed", got-n)
	}
	r.stop()
	checkGoroutines(t, before)
}

// Removing a target cancels its running check and drops the result.
func TestRemovalCancelsRunningCheck(t *testing.T) {
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 1, 1, fsm.HealthUp), "192.0.2.21", "192.0.2.22")))
	var ctxErr atomic.Value
	started := make(chan struct{}, 1)
	r.sc.setBlock(func(ctx context.Context, tg Target) *Result {
		if tg.ID() != web1 {
			return nil
		}
		started <- struct{}{}
		<-ctx.Done()
		ctxErr.Store(ctx.Err())
		return &Result{Reason: "canceled"}
	})
	trs, _ := r.e.Subscribe(4)
	r.start()
	r.clk.AdvanceTo(r.status(web1).Next)
	<-started
	r.apply(fsm.DeleteReal("web", "192.0.2.21:80"))
	r.settle()
	if err, _ := ctxErr.Load().(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("the running check saw %v, want it canceled", err)
	}
	if _, ok := r.e.Status(web1); ok {
		t.Fatal("removed target still in the view")
	}
	if st := r.e.Stats(); st.Failures != 0 || st.Transitions != 0 {
		t.Fatalf("stats %+v: the canceled check's result was booked", st)
	}
	if got := collect(trs); len(got) != 0 {
		t.Fatalf("transitions %+v", got)
	}
}

// Type none is scheduled like any check (its checker says healthy); a spec no checker accepts
// fails every check with the reason, visibly.
func TestNoneAndRefusedSpecs(t *testing.T) {
	r := newRigWith(t, func(o *Options) { o.Checkers = nil }) // the package's registry
	r.apply(fsm.UpsertService(service("none", &fsm.HealthCheck{Type: "none", Rise: 1, Fall: 1}, "192.0.2.21")))
	r.start()
	r.advance(fsm.DefaultCheckInterval)
	if s := r.status("none/192.0.2.21:80"); s.Checks != 1 || !s.Last.Healthy || s.Type != "none" {
		t.Fatalf("none check: %+v", s)
	}

	r2 := newRig(t, 0)
	r2.apply(fsm.UpsertService(service("x", &fsm.HealthCheck{Type: "exec", Command: []string{"/refuse"}, Rise: 1, Fall: 1}, "192.0.2.21")))
	r2.start()
	r2.advance(fsm.DefaultCheckInterval)
	s := r2.status("x/192.0.2.21:80")
	if s.Checks != 1 || s.Last.Healthy || !strings.Contains(s.Last.Reason, "refused by the test") || s.State != fsm.HealthDown {
		t.Fatalf("refused spec: %+v last %+v, want a failed check naming the error", s, s.Last)
	}
}

// A checker that panics fails its check; the engine stays up.
func TestCheckerPanicIsAFailure(t *testing.T) {
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 1, 1, fsm.HealthUp), "192.0.2.21")))
	r.sc.setBlock(func(context.Context, Target) *Result { panic("boom") })
	r.start()
	r.advance(time.Second)
	if s := r.status(web1); s.Last == nil || s.Last.Healthy || s.Last.Reason != "checker panicked: boom" {
		t.Fatalf("%+v", s)
	}
	r.advance(time.Second)
	if n := len(r.sc.callsOf(web1)); n != 2 {
		t.Fatalf("%d checks, want the engine to carry on", n)
	}
}

// A subscriber that does not read loses the oldest transitions, never holds up the engine, and
// its channel closes when Run returns.
func TestSubscriberDropsOldest(t *testing.T) {
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 1, 1, fsm.HealthUp), "192.0.2.21")))
	slow, _ := r.e.Subscribe(1)
	fast, cancel := r.e.Subscribe(16)
	r.start()
	for i := range 4 {
		if i%2 == 0 {
			r.sc.fail(web1, "status 503")
		} else {
			r.sc.heal(web1)
		}
		r.advance(time.Second)
	}
	if got := collect(fast); len(got) != 4 {
		t.Fatalf("fast subscriber got %d transitions, want 4", len(got))
	}
	got := collect(slow)
	if len(got) != 1 || got[0].To != fsm.HealthUp || got[0].From != fsm.HealthDown {
		t.Fatalf("slow subscriber got %+v, want only the latest (down → up)", got)
	}
	if st := r.e.Stats(); st.Dropped != 3 {
		t.Fatalf("dropped %d, want 3", st.Dropped)
	}
	cancel()
	if _, ok := <-fast; ok {
		t.Fatal("canceled subscription still open")
	}
	cancel() // idempotent
	r.stop()
	if _, ok := <-slow; ok {
		t.Fatal("subscription open after Run returned")
	}
	if ch, _ := r.e.Subscribe(1); func() bool { _, ok := <-ch; return ok }() {
		t.Fatal("subscribing after Run returned gave an open channel")
	}
}

func TestRunTwice(t *testing.T) {
	r := newRig(t, 0)
	r.start()
	if err := r.e.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Run: %v, want ErrStarted", err)
	}
}

func TestNextSlot(t *testing.T) {
	for _, tc := range []struct {
		now     time.Duration
		want    time.Duration
		skipped uint64
	}{
		{0, 2 * time.Second, 0},
		{2 * time.Second, 2 * time.Second, 0},
		{2*time.Second + 1, 4 * time.Second, 1},
		{6*time.Second + 1, 8 * time.Second, 3},
		{8 * time.Second, 8 * time.Second, 3},
	} {
		got, skipped := nextSlot(t0, 2*time.Second, t0.Add(tc.now))
		if !got.Equal(t0.Add(tc.want)) || skipped != tc.skipped {
			t.Errorf("nextSlot at +%s = +%s, %d; want +%s, %d", tc.now, got.Sub(t0), skipped, tc.want, tc.skipped)
		}
	}
}
