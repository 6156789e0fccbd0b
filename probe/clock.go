package probe

import (
	"context"
	"time"
)

// Clock is the engine's and the committer's time: the system's, or a FakeClock in tests. Every
// wait the engine does goes through it, including a check's timeout, so a test moves time by
// hand and never sleeps.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d has passed.
	NewTimer(d time.Duration) (Timer, <-chan time.Time)
	// WithTimeout is context.WithTimeout on this clock: the context's Err is
	// context.DeadlineExceeded once d has passed on the clock.
	WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

// Timer controls a timer made by a Clock. As with time.Timer since Go 1.23, Reset and Stop
// discard a value the channel has not delivered yet.
type Timer interface {
	// Reset makes the timer fire d from now; it reports whether it was still pending.
	Reset(d time.Duration) bool
	// Stop cancels the timer; it reports whether it was still pending.
	Stop() bool
}

// SystemClock is the real time.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) (Timer, <-chan time.Time) {
	t := time.NewTimer(d)
	return t, t.C
}

// WithTimeout is context.WithTimeout.
func (SystemClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d)
}
