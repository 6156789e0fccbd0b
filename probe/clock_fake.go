package probe

import (
	"context"
	"slices"
	"sync"
	"time"
)

// FakeClock is a Clock that moves only when told to (Advance, AdvanceTo), in the manner of
// tailscale's tstest.Clock. Timers fire, and WithTimeout contexts expire, in deadline order
// while it advances, with Now set to each one's deadline as it fires. It is safe for concurrent
// use. Firing only hands a value to a timer's channel (room for one, like time.Timer); it does
// not wait for the reader, so a test that needs the reader to have acted must wait for that
// itself.
type FakeClock struct {
	mu      sync.Mutex // guards all following fields
	now     time.Time
	pending []*fakeTimer
	seq     uint64
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

type fakeTimer struct {
	c        *FakeClock
	deadline time.Time
	seq      uint64 // creation order breaks deadline ties
	ch       chan time.Time
	fn       func() // set instead of ch for context deadlines
	armed    bool
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer firing d after the fake now.
func (c *FakeClock) NewTimer(d time.Duration) (Timer, <-chan time.Time) {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.arm(t, d)
	c.mu.Unlock()
	return t, t.ch
}

// arm schedules t d from now; c.mu is held. A timer with nothing left to wait fires at once,
// as time.Timer does; a context deadline's fn is left for the caller to run without c.mu
// (arm reports that it is due).
func (c *FakeClock) arm(t *fakeTimer, d time.Duration) (due bool) {
	c.seq++
	t.deadline, t.seq = c.now.Add(max(d, 0)), c.seq
	if d > 0 {
		t.armed = true
		c.pending = append(c.pending, t)
		return false
	}
	if t.ch != nil {
		select {
		case t.ch <- c.now:
		default:
		}
	}
	return true
}

// disarm removes t from the pending timers; c.mu is held. It reports whether t was pending.
func (c *FakeClock) disarm(t *fakeTimer) bool {
	if !t.armed {
		return false
	}
	t.armed = false
	if i := slices.Index(c.pending, t); i >= 0 {
		c.pending = slices.Delete(c.pending, i, i+1)
	}
	return true
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.c.disarm(t)
	t.drain()
	t.c.arm(t, d)
	return was
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.c.disarm(t)
	t.drain()
	return was
}

// drain discards an undelivered value, as time.Timer does since Go 1.23.
func (t *fakeTimer) drain() {
	if t.ch == nil {
		return
	}
	select {
	case <-t.ch:
	default:
	}
}

// WithTimeout returns a context that expires with context.DeadlineExceeded once the fake
// clock reaches now+d, or ends with parent.
func (c *FakeClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancel(parent)
	ctx := &fakeDeadlineCtx{Context: inner}
	t := &fakeTimer{c: c}
	t.fn = func() {
		ctx.mu.Lock()
		if inner.Err() == nil {
			ctx.expired = true
		}
		ctx.mu.Unlock()
		cancel()
	}
	c.mu.Lock()
	due := c.arm(t, d)
	ctx.deadline = t.deadline
	c.mu.Unlock()
	if due {
		t.fn()
	}
	return ctx, func() {
		c.mu.Lock()
		c.disarm(t)
		c.mu.Unlock()
		cancel()
	}
}

// fakeDeadlineCtx is a context whose deadline is on a FakeClock.
type fakeDeadlineCtx struct {
	context.Context
	deadline time.Time

	mu      sync.Mutex // guards expired
	expired bool
}

func (c *fakeDeadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *fakeDeadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expired {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// Advance moves the clock forward by d, firing what falls due on the way.
func (c *FakeClock) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }

// AdvanceTo moves the clock to t (if later than now), firing what falls due on the way in
// deadline order.
func (c *FakeClock) AdvanceTo(t time.Time) {
	for {
		c.mu.Lock()
		next := c.earliest()
		if next == nil || next.deadline.After(t) {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		if next.deadline.After(c.now) {
			c.now = next.deadline
		}
		c.disarm(next)
		now := c.now
		if next.ch != nil {
			select {
			case next.ch <- now:
			default:
			}
		}
		c.mu.Unlock()
		if next.fn != nil {
			next.fn()
		}
	}
}

// earliest returns the pending timer due first; c.mu is held.
func (c *FakeClock) earliest() *fakeTimer {
	var e *fakeTimer
	for _, t := range c.pending {
		if e == nil || t.deadline.Before(e.deadline) || (t.deadline.Equal(e.deadline) && t.seq < e.seq) {
			e = t
		}
	}
	return e
}

// Next returns the earliest pending deadline (timers and contexts), if any.
func (c *FakeClock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.earliest(); e != nil {
		return e.deadline, true
	}
	return time.Time{}, false
}

// Pending is the number of armed timers and unexpired WithTimeout contexts.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
