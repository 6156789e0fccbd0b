package probe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// fakeLeader hands out leadership values with cluster.Node's contract: one unread value at
// most, the newest replacing it; closing means "not leader".
type fakeLeader struct {
	ch chan cluster.Leadership
}

func newFakeLeader() *fakeLeader {
	l := &fakeLeader{ch: make(chan cluster.Leadership, 1)}
	l.ch <- cluster.Leadership{}
	return l
}

func (l *fakeLeader) WatchLeadership(context.Context) <-chan cluster.Leadership { return l.ch }

func (l *fakeLeader) set(leader bool, term uint64) {
	select {
	case <-l.ch:
	default:
	}
	l.ch <- cluster.Leadership{IsLeader: leader, Term: term}
}

// applier applies proposals to the rig's FSM as the leader would, and records them.
type applier struct {
	r *rig

	mu sync.Mutex // guards all following fields
	// entries are the committed proposals, calls every proposal with its fake time.
	entries []entry
	calls   []entry
	// failNext proposals fail with "no quorum".
	failNext int
	// hook, when set, runs first; an error it returns is the proposal's.
	hook func(ctx context.Context) error
}

type entry struct {
	at  time.Time
	cmd fsm.Command
}

func (a *applier) Apply(ctx context.Context, c fsm.Command) (fsm.Result, error) {
	a.mu.Lock()
	a.calls = append(a.calls, entry{a.r.clk.Now(), c})
	fail := a.failNext > 0
	if fail {
		a.failNext--
	}
	hook := a.hook
	a.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return fsm.Result{}, err
		}
	}
	if fail {
		return fsm.Result{}, errors.New("no quorum")
	}
	res, err := a.r.applyResult(c)
	if err == nil && res.Err == nil {
		a.mu.Lock()
		a.entries = append(a.entries, entry{a.r.clk.Now(), c})
		a.mu.Unlock()
	}
	return res, err
}

func (a *applier) committed() []entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.entries)
}

func (a *applier) proposals() []entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// withCommitter adds a committer with the given window to the rig (before start).
func withCommitter(r *rig, window time.Duration) (*fakeLeader, *applier) {
	r.t.Helper()
	l, a := newFakeLeader(), &applier{r: r}
	c, err := NewCommitter(CommitterOptions{Engine: r.e, Table: r.f, Applier: a, Leadership: l,
		Window: window, Clock: r.clk, Log: discard()})
	if err != nil {
		r.t.Fatal(err)
	}
	r.c = c
	return l, a
}

// render writes an entry's transitions as "real=state(reason)" in order.
func render(e entry) string {
	var parts []string
	for _, t := range e.cmd.Health {
		parts = append(parts, fmt.Sprintf("%s/%s=%s(%s)", t.Service, t.Real, t.State, t.Reason))
	}
	return strings.Join(parts, " ")
}

// Verdicts that change within one window go out together, as one entry; nothing goes out
// while the verdicts match the table.
func TestCommitterBatchesOneEntryPerWindow(t *testing.T) {
	const window = 5 * time.Second
	r := newRig(t, 0)
	reals := []string{"192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}
	r.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, fsm.HealthUp), reals...)))
	l, a := withCommitter(r, window)
	l.set(true, 2)
	r.start()

	// Every target is decided up by t0+2s; the window opened when they were created.
	r.advanceTo(t0.Add(window))
	got := a.committed()
	if len(got) != 1 || !got[0].at.Equal(t0.Add(window)) {
		t.Fatalf("entries %v, want one at +%s", got, window)
	}
	want := "web/192.0.2.21:80=up(status 200) web/192.0.2.22:80=up(status 200) web/192.0.2.23:80=up(status 200) web/192.0.2.24:80=up(status 200) web/192.0.2.25:80=up(status 200)"
	if s := render(got[0]); s != want {
		t.Fatalf("entry %s, want %s", s, want)
	}
	if !got[0].cmd.Time.Equal(t0.Add(window)) || got[0].cmd.Op != fsm.OpRecordHealth {
		t.Fatalf("entry %+v, want record_health at the cut", got[0].cmd)
	}

	for _, ip := range reals {
		r.sc.fail("web/"+ip+":80", "connection refused")
	}
	r.advanceTo(t0.Add(2 * window))
	got = a.committed()
	if len(got) != 2 || !got[1].at.Equal(t0.Add(2*window)) {
		t.Fatalf("entries %v, want a second one at +%s", got, 2*window)
	}
	if s := render(got[1]); strings.Count(s, "=down(connection refused)") != 5 {
		t.Fatalf("second entry %s, want the 5 servers down", s)
	}
	st := r.f.View()
	if h := st.Health("web", "192.0.2.23:80"); h.State != fsm.HealthDown || h.Reason != "connection refused" {
		t.Fatalf("committed %+v", h)
	}
	r.advance(10 * window)
	if n := len(a.proposals()); n != 2 {
		t.Fatalf("%d proposals, want none while the verdicts match the table", n)
	}
	if s := r.c.Stats(); s.Entries != 2 || s.Recorded != 10 || !s.Leader || s.Term != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// Only the leader proposes; a follower keeps checking, and becomes a warm leader.
func TestCommitterProposesOnlyOnTheLeader(t *testing.T) {
	const window = 200 * time.Millisecond
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, fsm.HealthUp), "192.0.2.21", "192.0.2.22")))
	l, a := withCommitter(r, window)
	r.start()
	r.sc.fail(web1, "status 503")
	r.advance(10 * time.Second)
	if n := len(a.proposals()); n != 0 {
		t.Fatalf("a follower proposed %d entries", n)
	}
	if s := r.status(web1); s.State != fsm.HealthDown || !s.Decided || s.Checks < 9 {
		t.Fatalf("follower's view %+v, want checks running and a decided down", s)
	}
	l.set(true, 3)
	r.settle()
	became := r.clk.Now()
	r.advance(window)
	got := a.committed()
	if len(got) != 1 || !got[0].at.Equal(became.Add(window)) {
		t.Fatalf("entries %v, want one a window after taking the lead", got)
	}
	if s, want := render(got[0]), "web/192.0.2.21:80=down(status 503) web/192.0.2.22:80=up(status 200)"; s != want {
		t.Fatalf("entry %s, want %s", s, want)
	}
}

// A failed proposal is retried one window later with the verdicts of that moment.
func TestCommitterRetriesAfterError(t *testing.T) {
	const window = 200 * time.Millisecond
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 1, 1, fsm.HealthUp), "192.0.2.21")))
	l, a := withCommitter(r, window)
	a.failNext = 1
	l.set(true, 2)
	r.start()
	r.sc.fail(web1, "status 503")
	r.advance(time.Second + window) // down after its first check, proposed a window later
	failedAt := a.proposals()[0].at
	r.advanceTo(failedAt.Add(window))
	calls := a.proposals()
	if len(calls) != 2 || !calls[1].at.Equal(failedAt.Add(window)) {
		t.Fatalf("proposals %v, want a retry one window after the failure at %s", calls, failedAt)
	}
	if render(calls[0]) != render(calls[1]) || render(calls[1]) != "web/192.0.2.21:80=down(status 503)" {
		t.Fatalf("retry %s, first %s", render(calls[1]), render(calls[0]))
	}
	if h := r.f.View().Health("web", "192.0.2.21:80"); h.State != fsm.HealthDown {
		t.Fatalf("committed %+v after the retry", h)
	}
	if s := r.c.Stats(); s.Errors != 1 || s.Entries != 1 || s.LastError != "no quorum" {
		t.Fatalf("stats %+v", s)
	}
	r.advance(10 * window)
	if n := len(a.proposals()); n != 2 {
		t.Fatalf("%d proposals after the retry succeeded, want 2", n)
	}
}

// A leader change while a server is failing does not flap it: the new leader's target starts
// in the committed down, and the leader writes nothing until its own checks decide. If they
// decide up, that is recorded (the new leader reaches the server); not before rise successes.
func TestCommitterLeaderChangeDoesNotFlap(t *testing.T) {
	const window = 200 * time.Millisecond
	for _, reachable := range []bool{false, true} {
		t.Run(fmt.Sprintf("reachable=%v", reachable), func(t *testing.T) {
			r := newRig(t, 0)
			r.apply(fsm.UpsertService(service("web", check(time.Second, 3, 3, fsm.HealthUp), "192.0.2.21")))
			// The old leader's verdict.
			r.apply(fsm.RecordHealth(t0.Add(-time.Minute), []fsm.HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: fsm.HealthDown, Reason: "connection refused"}}))
			l, a := withCommitter(r, window)
			if !reachable {
				r.sc.fail(web1, "connection refused")
			}
			l.set(true, 5) // this agent just started and leads at once: its engine is cold
			r.start()
			r.advance(time.Second)
			first := r.sc.callsOf(web1)[0]
			r.advanceTo(first.Add(2*time.Second + window)) // three checks, then a window
			if n := len(a.proposals()); n != 0 && !reachable {
				t.Fatalf("%d proposals, want none: the new leader agrees with the table", n)
			}
			if !reachable {
				r.advance(time.Minute)
				if n := len(a.proposals()); n != 0 {
					t.Fatalf("%d proposals, want none", n)
				}
				return
			}
			got := a.committed()
			if len(got) != 1 || render(got[0]) != "web/192.0.2.21:80=up(status 200)" {
				t.Fatalf("entries %v, want one up", got)
			}
			if decided := first.Add(2 * time.Second); got[0].at.Before(decided) {
				t.Fatalf("up recorded at %s, before the third success at %s", got[0].at, decided)
			}
		})
	}
}

// The committer's rule, on the engine's targets: only decided verdicts that differ from the
// table are proposed. An undecided "up" (the initial state of a leader's cold engine that has
// not yet read the committed down) never overwrites a committed "down".
func TestCommitterDifferences(t *testing.T) {
	r := newRig(t, 0)
	reals := []string{"192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25", "192.0.2.26"}
	r.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, fsm.HealthUp), reals...)))
	// The engine's targets as they stand; the committed table below, seen by the committer.
	r.start()
	r.stop()
	set := func(ip string, state fsm.Health, decided bool) {
		r.e.mu.Lock()
		defer r.e.mu.Unlock()
		tg := r.e.targets["web/"+ip+":80"]
		tg.st.state, tg.st.decided, tg.st.reason = state, decided, "why "+ip
	}
	set("192.0.2.21", fsm.HealthUp, false)   // committed down: undecided, kept
	set("192.0.2.22", fsm.HealthUp, true)    // committed down: decided up, proposed
	set("192.0.2.23", fsm.HealthDown, true)  // committed down: same, nothing
	set("192.0.2.24", fsm.HealthUp, true)    // never committed: proposed
	set("192.0.2.25", fsm.HealthUp, false)   // never committed: undecided, kept
	set("192.0.2.26", fsm.HealthDown, false) // committed up: undecided, kept
	table := fsm.New(discard())
	tr := &rig{t: t, f: table}
	tr.apply(fsm.UpsertService(service("web", check(time.Second, 2, 2, fsm.HealthUp), reals...)))
	var hs []fsm.HealthTransition
	for _, ip := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
		hs = append(hs, fsm.HealthTransition{Service: "web", Real: ip + ":80", State: fsm.HealthDown})
	}
	hs = append(hs, fsm.HealthTransition{Service: "web", Real: "192.0.2.26:80", State: fsm.HealthUp})
	tr.apply(fsm.RecordHealth(t0, hs))
	c, err := NewCommitter(CommitterOptions{Engine: r.e, Table: table, Applier: &applier{r: r}, Leadership: newFakeLeader()})
	if err != nil {
		t.Fatal(err)
	}
	ts, ids := c.differences(true, nil)
	got := render(entry{cmd: fsm.Command{Health: ts}})
	if want := "web/192.0.2.22:80=up(why 192.0.2.22) web/192.0.2.24:80=up(why 192.0.2.24)"; got != want {
		t.Fatalf("differences %s, want %s", got, want)
	}
	if len(ids) != 2 {
		t.Fatalf("ids %v", ids)
	}
	ts, _ = c.differences(false, map[string]struct{}{"web/192.0.2.21:80": {}, "web/192.0.2.24:80": {}, "web/192.0.2.99:80": {}})
	if got := render(entry{cmd: fsm.Command{Health: ts}}); got != "web/192.0.2.24:80=up(why 192.0.2.24)" {
		t.Fatalf("differences of the pending targets %s", got)
	}
}

// Losing leadership cancels the proposal in flight and stops proposing; a closed leadership
// channel (the node stopped) ends Run.
func TestCommitterStopsWhenLeadershipIsLost(t *testing.T) {
	const window = 5 * time.Second
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(time.Second, 1, 1, fsm.HealthUp), "192.0.2.21", "192.0.2.22")))
	l, a := withCommitter(r, window)
	inApply := make(chan struct{}, 1)
	ended := make(chan error, 1)
	a.hook = func(ctx context.Context) error {
		inApply <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	l.set(true, 2)
	r.start()
	r.advance(window - time.Millisecond) // both decided up; the window opened at t0
	r.clk.AdvanceTo(t0.Add(window))
	<-inApply // the proposal hangs (no quorum, say)
	l.set(false, 3)
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the proposal in flight ended with %v, want canceled", err)
	}
	a.mu.Lock()
	a.hook = nil
	a.mu.Unlock()
	r.settle()
	if s := r.c.Stats(); s.Leader || s.Term != 3 {
		t.Fatalf("stats %+v, want not leader", s)
	}
	r.sc.fail(web1, "status 503")
	n := len(a.proposals())
	r.advance(10 * time.Second)
	if got := len(a.proposals()); got != n {
		t.Fatalf("%d proposals after leadership was lost", got-n)
	}
	if s := r.status(web1); s.State != fsm.HealthDown {
		t.Fatalf("the engine stopped checking: %+v", s)
	}
	close(l.ch)
	select {
	case <-r.committerDone:
	case <-time.After(guard):
		t.Fatal("Run did not return when the leadership channel closed")
	}
}

// A flapping server cannot flood the log: at most one entry per window, whatever rise and fall
// let through, and only when the verdict differs from the table.
func TestCommitterFlappingServerIsBounded(t *testing.T) {
	const window, interval, run = 200 * time.Millisecond, 50 * time.Millisecond, 10 * time.Second
	r := newRig(t, 0)
	r.apply(fsm.UpsertService(service("web", check(interval, 1, 1, fsm.HealthUp), "192.0.2.21")))
	l, a := withCommitter(r, window)
	flip := rand.New(rand.NewPCG(1, 2)) // one target: its checks never overlap
	r.sc.setBlock(func(context.Context, Target) *Result {
		if flip.IntN(2) == 0 {
			return &Result{Reason: "status 503"}
		}
		return &Result{Healthy: true, Reason: "status 200"}
	})
	l.set(true, 2)
	r.start()
	r.advance(run)
	if st := r.e.Stats(); st.Transitions < 50 {
		t.Fatalf("%d local transitions, want the server flapping at every check", st.Transitions)
	}
	got := a.committed()
	if max := int(run/window) + 1; len(got) > max || len(got) < 2 {
		t.Fatalf("%d entries in %s, want 2–%d", len(got), run, max)
	}
	t.Logf("%d local transitions in %s became %d entries", r.e.Stats().Transitions, run, len(got))
	for i := 1; i < len(got); i++ {
		if d := got[i].at.Sub(got[i-1].at); d < window {
			t.Fatalf("entries %d and %d %s apart, less than the window", i-1, i, d)
		}
	}
	for _, e := range got {
		if len(e.cmd.Health) != 1 {
			t.Fatalf("entry %s", render(e))
		}
	}
}

func TestNewCommitterRequires(t *testing.T) {
	r := newRig(t, 0)
	full := CommitterOptions{Engine: r.e, Table: r.f, Applier: &applier{r: r}, Leadership: newFakeLeader()}
	for name, edit := range map[string]func(*CommitterOptions){
		"Engine":     func(o *CommitterOptions) { o.Engine = nil },
		"Table":      func(o *CommitterOptions) { o.Table = nil },
		"Applier":    func(o *CommitterOptions) { o.Applier = nil },
		"Leadership": func(o *CommitterOptions) { o.Leadership = nil },
		"window":     func(o *CommitterOptions) { o.Window = -time.Second },
	} {
		o := full
		edit(&o)
		if _, err := NewCommitter(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
	c, err := NewCommitter(full)
	if err != nil || c.window != DefaultCommitWindow || c.applyTimeout != DefaultApplyTimeout {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}

// The agent wires the real types in.
var (
	_ Source        = (*fsm.FSM)(nil)
	_ Viewer        = (*fsm.FSM)(nil)
	_ Viewer        = (*cluster.Node)(nil)
	_ Applier       = (*cluster.Node)(nil)
	_ LeaderWatcher = (*cluster.Node)(nil)
)
