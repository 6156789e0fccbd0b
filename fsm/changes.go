package fsm

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Change is one committed command that the FSM applied (refused ones are not changes), as the
// agent's "config" events tell it: what was done, to what, and by whom. Health verdicts
// (record_health) are not changes of the configuration and are not reported here.
type Change struct {
	Index uint64
	// Appended is when the leader appended the entry (zero if unknown): a replica that applies
	// it later (replaying its log at start, or catching up) reports the original time.
	Appended time.Time
	Op       Op
	// Actor is the command's Actor: who asked for it ("" if the client gave nothing).
	Actor string
	// Target says in words what the command acted on: "service web", "real 10.0.0.1:80 of
	// service web (weight 5)", "table", "host 10.0.0.1 (disabled)".
	Target string
	// Services are the services whose state the entry changed (Result.Changed).
	Services []string
}

// String renders the change as the "config" event's message.
func (c Change) String() string {
	s := fmt.Sprintf("%s %s", c.Op, c.Target)
	if c.Actor != "" {
		s += " by " + c.Actor
	}
	s += fmt.Sprintf(" (index %d", c.Index)
	if len(c.Services) > 0 && (c.Op == OpApplyTable || c.Op == OpRestore || c.Op == OpSetHostAdmin) {
		s += ", services changed: " + strings.Join(c.Services, ", ")
	}
	return s + ")"
}

// changeFeed fans the FSM's committed changes out to the WatchChanges subscribers.
type changeFeed struct {
	mu   sync.Mutex // guards subs
	subs map[chan Change]struct{}
}

// WatchChanges returns a channel that receives every configuration change this FSM applies
// from now on, on every replica (the leader and followers alike apply the same log), and a
// stop function that ends the subscription and closes the channel. The FSM never blocks on it:
// when the buffer of size entries is full, a change is dropped for this subscriber.
func (f *FSM) WatchChanges(size int) (<-chan Change, func()) {
	ch := make(chan Change, size)
	f.changes.mu.Lock()
	if f.changes.subs == nil {
		f.changes.subs = map[chan Change]struct{}{}
	}
	f.changes.subs[ch] = struct{}{}
	f.changes.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.changes.mu.Lock()
			delete(f.changes.subs, ch)
			f.changes.mu.Unlock()
			close(ch)
		})
	}
}

// noteChange tells the subscribers of c, applied at index with res (a refused one is not).
func (f *FSM) noteChange(index uint64, appended time.Time, c *Command, res Result) {
	if c == nil || res.Err != nil || c.Op == OpRecordHealth {
		return
	}
	f.changes.mu.Lock()
	defer f.changes.mu.Unlock()
	if len(f.changes.subs) == 0 {
		return
	}
	ch := Change{Index: index, Appended: appended, Op: c.Op, Actor: c.Actor, Target: changeTarget(c), Services: res.Changed}
	for sub := range f.changes.subs {
		select {
		case sub <- ch:
		default:
		}
	}
}

// changeTarget says what c acts on, in words. Only names and addresses are used: a command's
// other payload (a token's secret, say) never reaches the events.
func changeTarget(c *Command) string {
	realOf := func() string { return fmt.Sprintf("real %s of service %s", c.RealID, c.Name) }
	switch c.Op {
	case OpUpsertService:
		if c.Service != nil {
			return "service " + c.Service.Name
		}
	case OpDeleteService:
		return "service " + c.Name
	case OpUpsertReal:
		if c.Real != nil {
			return fmt.Sprintf("real %s of service %s", c.Real.ID(), c.Name)
		}
	case OpDeleteReal:
		return realOf()
	case OpSetWeight:
		if c.Weight != nil {
			return fmt.Sprintf("%s (weight %d)", realOf(), *c.Weight)
		}
		return realOf()
	case OpSetAdmin:
		return fmt.Sprintf("%s (%s)", realOf(), c.Admin)
	case OpSetHostAdmin:
		return fmt.Sprintf("host %s (%s)", c.Host, c.Admin)
	case OpApplyTable:
		return "table"
	case OpRestore:
		return "whole state (snapshot)"
	}
	if c.Name != "" {
		return c.Name
	}
	return "-"
}
