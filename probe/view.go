package probe

import (
	"slices"
	"strings"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// Transition is a change of this director's own verdict on a real server: rise successes or
// fall failures in a row moved it from one state to the other.
type Transition struct {
	Service string     `json:"service"`
	Real    string     `json:"real"`
	From    fsm.Health `json:"from"`
	To      fsm.Health `json:"to"`
	// Reason is the deciding check's ("status 503", "timeout after 1s").
	Reason string `json:"reason,omitempty"`
	// At is when the deciding check ended, on the engine's clock.
	At time.Time `json:"at"`
}

// ID is the target's ID (Target.ID).
func (t Transition) ID() string { return t.Service + "/" + t.Real }

type subscriber struct {
	ch chan Transition
}

// Subscribe returns a channel of this engine's transitions, in order, with room for buf of them
// (at least 1), and a function that ends the subscription and closes the channel. The engine
// never waits for a subscriber: when the channel is full, the oldest undelivered transition is
// dropped to make room for the new one (Stats.Dropped counts them), so a slow reader sees the
// latest verdicts, with gaps, rather than holding up the checks. The channel is also closed
// when Run returns.
func (e *Engine) Subscribe(buf int) (<-chan Transition, func()) {
	s := &subscriber{ch: make(chan Transition, max(buf, 1))}
	e.subMu.Lock()
	if e.subs == nil {
		close(s.ch)
	} else {
		e.subs[s] = struct{}{}
	}
	e.subMu.Unlock()
	return s.ch, func() {
		e.subMu.Lock()
		defer e.subMu.Unlock()
		if _, ok := e.subs[s]; ok {
			delete(e.subs, s)
			close(s.ch)
		}
	}
}

// publish hands tr to every subscriber without blocking.
func (e *Engine) publish(tr Transition) {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	for s := range e.subs {
		// Only publish sends, under subMu, so once one value is taken out the send fits.
		select {
		case s.ch <- tr:
			continue
		default:
		}
		select {
		case <-s.ch:
			e.dropped.Add(1)
		default:
		}
		select {
		case s.ch <- tr:
		default:
			e.dropped.Add(1)
		}
	}
}

func (e *Engine) closeSubscribers() {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	for s := range e.subs {
		close(s.ch)
	}
	e.subs = nil
}

// TargetStatus is this director's own view of one real server: what `troop status -v` shows
// per director, so that a server one director cannot reach stands out.
type TargetStatus struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Real    string `json:"real"`
	Type    string `json:"type"`
	// State is this director's verdict.
	State fsm.Health `json:"state"`
	// Decided is false while State is still the one the target started in (the committed
	// health, or the spec's initial state) and this director's checks have reached neither rise
	// nor fall since; the committer never records an undecided verdict.
	Decided bool `json:"decided"`
	// Since is when State was reached (for a starting state: when it was committed, or when
	// the target was created).
	Since time.Time `json:"since,omitzero"`
	// Reason is the deciding check's reason, or where the starting state came from.
	Reason string `json:"reason,omitempty"`
	// Committed is the pool's verdict as this director last read it from the table.
	Committed fsm.Health `json:"committed"`
	// Successes and Failures are the current run of consecutive results.
	Successes int `json:"successes"`
	Failures  int `json:"failures"`
	// Checks counts the checks run, Failed those that failed, since the target was created.
	Checks uint64 `json:"checks"`
	Failed uint64 `json:"failed"`
	// Last is the latest check's result; nil before the first.
	Last *CheckResult `json:"last,omitempty"`
	// Running is set while a check of the target is running.
	Running bool `json:"running,omitempty"`
	// Next is when the next check is due.
	Next time.Time `json:"next,omitzero"`
}

// CheckResult is one check's outcome and when it ended.
type CheckResult struct {
	Healthy  bool         `json:"healthy"`
	Reason   string       `json:"reason,omitempty"`
	Duration fsm.Duration `json:"duration"`
	At       time.Time    `json:"at"`
}

// View returns the status of every target, ordered by ID.
func (e *Engine) View() []TargetStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]TargetStatus, 0, len(e.targets))
	for _, t := range e.targets {
		out = append(out, t.status())
	}
	slices.SortFunc(out, func(a, b TargetStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Status returns the status of the target with the given ID ("service/real").
func (e *Engine) Status(id string) (TargetStatus, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.targets[id]
	if !ok {
		return TargetStatus{}, false
	}
	return t.status(), true
}

// status renders t; Engine.mu is held.
func (t *target) status() TargetStatus {
	s := TargetStatus{ID: t.id, Service: t.Service, Real: t.realID, Type: t.Check.Type,
		State: t.st.state, Decided: t.st.decided, Since: t.st.since, Reason: t.st.reason,
		Committed: t.st.committed, Successes: t.st.succ, Failures: t.st.fail,
		Checks: t.st.checks, Failed: t.st.failed, Running: t.st.running, Next: t.st.next}
	if s.Checks > 0 {
		s.Last = &CheckResult{Healthy: t.st.last.Healthy, Reason: t.st.last.Reason,
			Duration: fsm.Duration(t.st.last.Duration), At: t.st.lastAt}
	}
	if s.Running {
		s.Next = time.Time{}
	}
	return s
}

// Stats are an engine's totals since it was created, for metrics.
type Stats struct {
	// Targets is the number of real servers under check; Up and Down split them by verdict.
	Targets int `json:"targets"`
	Up      int `json:"up"`
	Down    int `json:"down"`
	// Running is the number of checks running now; Concurrency bounds it.
	Running     int `json:"running"`
	Concurrency int `json:"concurrency"`
	// Checks counts checks run, Failures the failed ones among them.
	Checks   uint64 `json:"checks"`
	Failures uint64 `json:"failures"`
	// Late counts slots skipped because a target's previous check ended after its next slot
	// had passed (all workers busy, or a checker that outlived its timeout).
	Late uint64 `json:"late"`
	// Transitions counts local state changes; Dropped those a slow subscriber missed.
	Transitions uint64 `json:"transitions"`
	Dropped     uint64 `json:"dropped"`
}

// Stats returns the engine's totals.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := Stats{Targets: len(e.targets), Concurrency: e.workers, Checks: e.counters.checks,
		Failures: e.counters.failures, Late: e.counters.late, Transitions: e.counters.transitions}
	for _, t := range e.targets {
		switch t.st.state {
		case fsm.HealthUp:
			s.Up++
		case fsm.HealthDown:
			s.Down++
		}
		if t.st.running {
			s.Running++
		}
	}
	e.mu.Unlock()
	s.Dropped = e.dropped.Load()
	return s
}

// verdict is what the committer needs of one target.
type verdict struct {
	service, real string
	state         fsm.Health
	decided       bool
	reason        string
}

// verdicts returns the verdicts of the targets named in ids (all targets when ids is nil);
// IDs with no target are left out.
func (e *Engine) verdicts(ids map[string]struct{}) []verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	pick := func(t *target) verdict {
		return verdict{service: t.Service, real: t.realID, state: t.st.state, decided: t.st.decided, reason: t.st.reason}
	}
	var out []verdict
	if ids == nil {
		out = make([]verdict, 0, len(e.targets))
		for _, t := range e.targets {
			out = append(out, pick(t))
		}
		return out
	}
	for id := range ids {
		if t, ok := e.targets[id]; ok {
			out = append(out, pick(t))
		}
	}
	return out
}

// takeDirty returns the IDs marked since the last call, and the channel that signals new ones.
func (e *Engine) takeDirty() map[string]struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.dirty) == 0 {
		return nil
	}
	d := e.dirty
	e.dirty = map[string]struct{}{}
	return d
}
