package probe

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Timers fire in deadline order as the clock passes them, with Now at their deadline; Reset
// and Stop discard an undelivered value; context deadlines expire with DeadlineExceeded.
func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	a, ac := c.NewTimer(2 * time.Second)
	_, bc := c.NewTimer(time.Second)
	ctx, cancel := c.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || !d.Equal(t0.Add(1500*time.Millisecond)) {
		t.Fatalf("deadline %s %v", d, ok)
	}
	if next, ok := c.Next(); !ok || !next.Equal(t0.Add(time.Second)) || c.Pending() != 3 {
		t.Fatalf("next %s %v, pending %d", next, ok, c.Pending())
	}
	c.Advance(1200 * time.Millisecond)
	if got := <-bc; !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer fired with %s, want its deadline", got)
	}
	if ctx.Err() != nil {
		t.Fatalf("context ended early: %v", ctx.Err())
	}
	c.Advance(300 * time.Millisecond)
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("context ended with %v, want the deadline", ctx.Err())
	}
	c.Advance(time.Second)
	// a fired at +2s; Reset discards its undelivered value, as time.Timer's does.
	if a.Reset(time.Second) {
		t.Fatal("Reset reported a fired timer still pending")
	}
	select {
	case v := <-ac:
		t.Fatalf("stale value %s after Reset", v)
	default:
	}
	if !a.Stop() || a.Stop() {
		t.Fatal("Stop of a pending timer must report true once")
	}
	c.Advance(time.Hour)
	select {
	case v := <-ac:
		t.Fatalf("stopped timer fired at %s", v)
	default:
	}
	// Nothing left to wait: fires at once, like time.Timer.
	_, zc := c.NewTimer(0)
	if got := <-zc; !got.Equal(c.Now()) {
		t.Fatalf("zero timer fired with %s", got)
	}
	ctx0, cancel0 := c.WithTimeout(context.Background(), 0)
	defer cancel0()
	if !errors.Is(ctx0.Err(), context.DeadlineExceeded) {
		t.Fatalf("zero timeout: %v", ctx0.Err())
	}
	// A canceled parent ends the context as Canceled.
	parent, stop := context.WithCancel(context.Background())
	ctx1, cancel1 := c.WithTimeout(parent, time.Second)
	defer cancel1()
	stop()
	<-ctx1.Done()
	if !errors.Is(ctx1.Err(), context.Canceled) {
		t.Fatalf("canceled parent: %v", ctx1.Err())
	}
	cancel1()
	if c.Pending() != 0 {
		t.Fatalf("%d timers pending after cancel", c.Pending())
	}
}
