package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/probe"
)

// Event is one thing that happened, in words: the successor of ldirectord.log.
type Event struct {
	// Seq numbers the events of one agent from 1; a client resumes with ?since=Seq.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Kind is "health" (the pool's committed verdict on a real server), "check" (this
	// director's own verdict changing), "leadership", "peer" (a serial link peer's verdict),
	// "member" (a director's gossip state or Raft suffrage), "vip" (this director took a VIP
	// over or released it, with the term and why), "announce" (a burst of gratuitous ARP or
	// neighbour advertisements for a VIP), "drift" (an out-of-band IPVS edit repaired) or
	// "config" (a configuration change committed: op, target and actor).
	Kind    string `json:"kind"`
	Service string `json:"service,omitempty"`
	Real    string `json:"real,omitempty"`
	// Message says what happened and why: "down: connection refused".
	Message string `json:"message"`
}

// String renders the event as `troop events` prints it.
func (e Event) String() string {
	s := e.Time.UTC().Format(time.RFC3339Nano) + " " + e.Kind
	if e.Service != "" {
		s += " " + e.Service
	}
	if e.Real != "" {
		s += " " + e.Real
	}
	return s + " " + e.Message
}

// Events keeps an agent's recent events (a bounded ring) and wakes those following them.
type Events struct {
	log *slog.Logger

	mu sync.Mutex // guards all following fields
	// ring holds the last len(ring) events, oldest first once full.
	ring    []Event
	next    int
	full    bool
	seq     uint64
	changed chan struct{} // closed and replaced at each event
}

// NewEvents keeps the last size events and logs each to log (nil: not logged), as ldirectord
// logged its transitions.
func NewEvents(size int, log *slog.Logger) *Events {
	return &Events{ring: make([]Event, size), changed: make(chan struct{}), log: log}
}

// Publish records an event, stamping its sequence number (and its time if unset).
func (e *Events) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	e.seq++
	ev.Seq = e.seq
	e.ring[e.next] = ev
	e.next = (e.next + 1) % len(e.ring)
	e.full = e.full || e.next == 0
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if e.log != nil {
		e.log.Info(ev.Message, "op", "event", "kind", ev.Kind, "service", ev.Service, "real", ev.Real, "seq", ev.Seq)
	}
}

// Since returns the kept events after seq, oldest first, and a channel closed at the next one.
func (e *Events) Since(seq uint64) ([]Event, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ordered := e.ring[:e.next]
	if e.full {
		ordered = slices.Concat(e.ring[e.next:], e.ring[:e.next])
	}
	i, _ := slices.BinarySearchFunc(ordered, seq+1, func(ev Event, s uint64) int {
		return cmpUint(ev.Seq, s)
	})
	return slices.Clone(ordered[i:]), e.changed
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// FeedHealth starts watching f at once, taking the current health as the baseline, and returns
// the loop that publishes an event for every later change of a real server's committed health,
// until its ctx ends. A batch of transitions yields one event per real server that changed.
func (e *Events) FeedHealth(f *fsm.FSM) (run func(ctx context.Context)) {
	h := &healthFeed{events: e, seen: map[string]map[string]fsm.RealHealth{}}
	w := f.Watch()
	st := f.View()
	for _, name := range st.ServiceNames() {
		h.record(st, name, false)
	}
	return func(ctx context.Context) {
		defer f.Unwatch(w)
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.C:
			}
			names, all := w.Take()
			st := f.View()
			if all {
				names = st.ServiceNames()
			}
			for _, name := range names {
				h.record(st, name, true)
			}
		}
	}
}

// healthFeed remembers the committed health it last saw, per service and real server.
type healthFeed struct {
	events *Events
	seen   map[string]map[string]fsm.RealHealth
}

// record notes service name's health in st, publishing what changed if publish is set.
func (h *healthFeed) record(st *fsm.State, name string, publish bool) {
	svc, ok := st.Service(name)
	if !ok {
		delete(h.seen, name)
		return
	}
	// Only verdicts are kept: a table of many reals without checks costs nothing here.
	now := map[string]fsm.RealHealth{}
	for _, r := range svc.Reals {
		rh := st.Health(name, r.ID())
		if rh.State != fsm.HealthUnknown {
			now[r.ID()] = rh
		}
		before, had := h.seen[name][r.ID()]
		if publish && rh.State != fsm.HealthUnknown && (!had || before.State != rh.State) {
			msg := string(rh.State)
			if rh.Reason != "" {
				msg += ": " + rh.Reason
			}
			h.events.Publish(Event{Time: rh.Since, Kind: "health", Service: name, Real: r.ID(), Message: msg})
		}
	}
	if len(now) == 0 {
		delete(h.seen, name)
		return
	}
	h.seen[name] = now
}

// FeedChecks publishes this director's own verdict changes (kind "check") until the channel
// closes: the pool's verdict is the leader's, but each director's view shows asymmetric reach.
func (e *Events) FeedChecks(node string, ch <-chan probe.Transition) {
	for tr := range ch {
		msg := fmt.Sprintf("%s as seen from %s", tr.To, node)
		if tr.Reason != "" {
			msg += ": " + tr.Reason
		}
		e.Publish(Event{Time: tr.At, Kind: "check", Service: tr.Service, Real: tr.Real, Message: msg})
	}
}

// Publisher returns a function that publishes an event of a kind with a message, for the
// packages that may not import api (director.Deps.Events, director.AnnouncerOptions.Events).
func (e *Events) Publisher() func(kind, message string) {
	return func(kind, message string) { e.Publish(Event{Kind: kind, Message: message}) }
}

// FeedConfig publishes each configuration change ch carries (fsm.FSM.WatchChanges) as a
// "config" event until ch closes: every director applies the committed log, so every agent's
// stream has them. Changes the leader appended before notBefore (the agent's start: entries
// replayed from its own log, already reported when they were made) are left out; a change's
// event carries the time the leader appended it.
func (e *Events) FeedConfig(ch <-chan fsm.Change, notBefore time.Time) {
	for c := range ch {
		if !c.Appended.IsZero() && c.Appended.Before(notBefore) {
			continue
		}
		ev := Event{Time: c.Appended, Kind: "config", Message: c.String()}
		if len(c.Services) == 1 {
			ev.Service = c.Services[0]
		}
		e.Publish(ev)
	}
}

// FeedLeadership publishes this node's leadership changes until the channel closes.
func (e *Events) FeedLeadership(node string, ch <-chan cluster.Leadership) {
	var last cluster.Leadership
	for l := range ch {
		switch {
		case l.IsLeader && (!last.IsLeader || l.Term != last.Term):
			e.Publish(Event{Kind: "leadership", Message: fmt.Sprintf("%s became the leader (term %d)", node, l.Term)})
		case !l.IsLeader && last.IsLeader:
			e.Publish(Event{Kind: "leadership", Message: fmt.Sprintf("%s is no longer the leader (term %d, leader now %q)", node, l.Term, l.LeaderID)})
		}
		last = l
	}
}

// SetEvents makes GET /v1/events serve ev.
func (s *Server) SetEvents(ev *Events) { s.events = ev }

// getEvents answers with this agent's events after ?since=N, one JSON object per line; with
// ?follow it keeps the response open and streams new events as they happen.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) error {
	if s.events == nil {
		return &Error{StatusCode: http.StatusNotFound, Message: "this agent keeps no events"}
	}
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("since", v, "since must be an event sequence number")
		}
		since = n
	}
	follow, err := queryFlag(r, "follow")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	for {
		evs, changed := s.events.Since(since)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return nil // the client went away
			}
			since = ev.Seq
		}
		if !follow {
			return nil
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return nil
		}
	}
}

// Events reads the agent's events after since and calls fn for each, oldest first; with follow
// it then waits for new ones until ctx ends or the connection drops.
func (c *Client) Events(ctx context.Context, since uint64, follow bool, fn func(Event)) error {
	flags := []string{"since=" + strconv.FormatUint(since, 10)}
	if follow {
		flags = append(flags, "follow")
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", flags, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read events from %s: %w", c.base, err)
		}
		fn(ev)
	}
}
