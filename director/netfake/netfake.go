// Package netfake fakes the network side of package director for tests: interface addresses
// (director.Addresses) and VIP announcements (the director's VIPAnnouncer). The fakes behave
// like the kernel where a caller can tell (an unknown interface is director.ErrNoInterface,
// adding what is there succeeds, IPv6 addresses are identified without their prefix length),
// print their state as an operator would read it, and write what they were asked to do, in
// order, to a Journal that several fakes may share, so that a test can check that a VIP's
// announcements stopped before it was removed.
package netfake

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Event is one thing a fake was asked to do.
type Event struct {
	At    time.Time
	Op    string // "add", "remove", "announce", "yield", "stop", "guard"
	Iface string // "" for stop
	// Addr is the prefix (add, remove) or the address (announce, yield, stop).
	Addr string
	Err  error // the error returned, if any
}

// String renders the event as "add 192.0.2.10/32 to eth0", "remove 192.0.2.10/32 from eth0",
// "announce 192.0.2.10 on eth0", "yield 192.0.2.10 on eth0", "stop 192.0.2.10", followed by
// ": <error>" if it failed.
func (e Event) String() string {
	var s string
	switch e.Op {
	case "add":
		s = "add " + e.Addr + " to " + e.Iface
	case "remove":
		s = "remove " + e.Addr + " from " + e.Iface
	case "announce", "yield":
		s = e.Op + " " + e.Addr + " on " + e.Iface
	default:
		s = strings.TrimSpace(e.Op + " " + e.Addr)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Journal is the ordered record of what fakes were asked to do (changes only: add, remove,
// announce, yield, stop). It is safe for concurrent use.
type Journal struct {
	now func() time.Time

	mu      sync.Mutex // guards all following fields
	events  []Event
	changed chan struct{} // closed and replaced at each event
}

// NewJournal returns an empty journal that stamps events with now (nil: time.Now).
func NewJournal(now func() time.Time) *Journal {
	if now == nil {
		now = time.Now
	}
	return &Journal{now: now, changed: make(chan struct{})}
}

func (j *Journal) record(e Event) {
	e.At = j.now()
	j.mu.Lock()
	j.events = append(j.events, e)
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

// Events returns the events so far.
func (j *Journal) Events() []Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Event(nil), j.events...)
}

// Lines returns the events so far as strings (Event.String).
func (j *Journal) Lines() []string {
	var out []string
	for _, e := range j.Events() {
		out = append(out, e.String())
	}
	return out
}

// String renders the events one per line.
func (j *Journal) String() string {
	var b strings.Builder
	for _, l := range j.Lines() {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// Wait blocks until cond holds for the events so far (checked now and after every new event)
// or ctx ends.
func (j *Journal) Wait(ctx context.Context, cond func([]Event) bool) error {
	for {
		j.mu.Lock()
		events, changed := append([]Event(nil), j.events...), j.changed
		j.mu.Unlock()
		if cond(events) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("netfake: condition not met (%w); journal:\n%s", ctx.Err(), j)
		}
	}
}

// Announcer fakes the director's VIPAnnouncer: it records announcements instead of sending
// them. Like the real one it hands a yielded VIP over when another host claims it, which a
// test plays with Claim. It is safe for concurrent use.
type Announcer struct {
	journal *Journal
	addrs   *Addresses

	mu        sync.Mutex // guards all following fields
	active    map[netip.Addr]string
	yielded   map[netip.Addr]*yield
	counts    map[netip.Addr]int
	announced []Announcement
	mistakes  []string
}

// Announcement is one Announce call, as the fake saw it.
type Announcement struct {
	At    time.Time
	Iface string
	VIP   netip.Addr
}

// NewAnnouncer returns a fake announcer recording into j (nil: a journal of its own). With
// addrs set, announcing a VIP that is not on its interface in addrs is recorded as a mistake
// (Mistakes): the real announcer would claim an address this host does not hold.
func NewAnnouncer(j *Journal, addrs *Addresses) *Announcer {
	if j == nil {
		j = NewJournal(nil)
	}
	return &Announcer{journal: j, addrs: addrs, active: map[netip.Addr]string{}, yielded: map[netip.Addr]*yield{}, counts: map[netip.Addr]int{}}
}

// yield is a VIP handed over (Yield) whose new owner has not claimed it yet.
type yield struct {
	iface   string
	claimed chan struct{}
}

// Journal returns the journal the fake records into.
func (a *Announcer) Journal() *Journal { return a.journal }

// Announce records an announcement of vip on iface; vip stays active until Stop or Yield.
// Announcing an active VIP again counts again (the real one starts a new burst); announcing a
// yielded one ends its yield.
func (a *Announcer) Announce(iface string, vip netip.Addr) {
	vip = a.lockFor("announce", iface, vip)
	defer a.mu.Unlock()
	delete(a.yielded, vip)
	a.active[vip] = iface
	a.counts[vip]++
	a.announced = append(a.announced, Announcement{At: a.journal.now(), Iface: iface, VIP: vip})
}

// lockFor journals op (announce or yield) of vip on iface, locks a.mu and, with addrs, notes
// a mistake when vip is not on iface. It returns vip unmapped.
func (a *Announcer) lockFor(op, iface string, vip netip.Addr) netip.Addr {
	vip = vip.Unmap()
	held := a.addrs == nil || a.addrs.holds(iface, vip)
	a.journal.record(Event{Op: op, Iface: iface, Addr: vip.String()})
	a.mu.Lock()
	if !held {
		a.mistakes = append(a.mistakes, fmt.Sprintf("%s %s on %s: the address is not on the interface", op, vip, iface))
	}
	return vip
}

// Yield records the handover of vip on iface: it is no longer active, and the returned channel
// is closed when Claim(vip) plays another host claiming it. The yield ends with Stop, Announce
// or the claim; yielding a VIP already yielded on iface returns the same channel. With addrs
// set, yielding a VIP that is not on its interface is a mistake: the director hands over only
// what it holds.
func (a *Announcer) Yield(iface string, vip netip.Addr) <-chan struct{} {
	vip = a.lockFor("yield", iface, vip)
	defer a.mu.Unlock()
	delete(a.active, vip)
	y := a.yielded[vip]
	if y == nil || y.iface != iface {
		y = &yield{iface: iface, claimed: make(chan struct{})}
		a.yielded[vip] = y
	}
	return y.claimed
}

// Claim plays another host announcing vip, as the real announcer's duplicate watch sees it: a
// yielded VIP's channel is closed and its yield ends. It reports whether vip was yielded. (A
// claim on an active VIP would make the real announcer re-announce; the fake records nothing.)
func (a *Announcer) Claim(vip netip.Addr) bool {
	vip = vip.Unmap()
	a.mu.Lock()
	defer a.mu.Unlock()
	y, ok := a.yielded[vip]
	if !ok {
		return false
	}
	delete(a.yielded, vip)
	close(y.claimed)
	return true
}

// Stop records the end of vip's announcements or yield; a VIP neither is no error.
func (a *Announcer) Stop(vip netip.Addr) {
	vip = vip.Unmap()
	a.journal.record(Event{Op: "stop", Addr: vip.String()})
	a.mu.Lock()
	delete(a.active, vip)
	delete(a.yielded, vip)
	a.mu.Unlock()
}

// Yielded returns the VIPs yielded and not yet claimed, and their interfaces.
func (a *Announcer) Yielded() map[netip.Addr]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr]string, len(a.yielded))
	for k, y := range a.yielded {
		out[k] = y.iface
	}
	return out
}

// Active returns the VIPs being announced and their interfaces.
func (a *Announcer) Active() map[netip.Addr]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr]string, len(a.active))
	for k, v := range a.active {
		out[k] = v
	}
	return out
}

// Count returns how many times vip was announced.
func (a *Announcer) Count(vip netip.Addr) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[vip.Unmap()]
}

// Announcements returns every Announce call, in order.
func (a *Announcer) Announcements() []Announcement {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Announcement(nil), a.announced...)
}

// Mistakes returns the announcements of VIPs that were not on their interface (with addrs).
func (a *Announcer) Mistakes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.mistakes...)
}

// String renders the active announcements and the yields, one per line in address order:
// "192.0.2.10 on eth0 (announced 2 times)", "192.0.2.11 on eth0 (yielded)".
func (a *Announcer) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var vips []netip.Addr
	for v := range a.active {
		vips = append(vips, v)
	}
	for v := range a.yielded {
		vips = append(vips, v)
	}
	sortAddrs(vips)
	var b strings.Builder
	for _, v := range vips {
		if y, ok := a.yielded[v]; ok {
			fmt.Fprintf(&b, "%s on %s (yielded)\n", v, y.iface)
			continue
		}
		fmt.Fprintf(&b, "%s on %s (announced %d times)\n", v, a.active[v], a.counts[v])
	}
	return b.String()
}
