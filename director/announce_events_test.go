package director

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventRecorder is a Deps.Events / AnnouncerOptions.Events that keeps what it hears.
type eventRecorder struct {
	mu     sync.Mutex // guards events
	events []string
}

func (r *eventRecorder) add(kind, message string) {
	r.mu.Lock()
	r.events = append(r.events, kind+" "+message)
	r.mu.Unlock()
}

func (r *eventRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor waits (a second at most) until the events are want, in order.
func (r *eventRecorder) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !slices.Equal(r.list(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(r.list(), "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAnnounceBurstEvents(t *testing.T) {
	var ev eventRecorder
	l := newAnnListener()
	c := newAnnClock()
	s := newAnnSender(c)
	a, err := NewNetAnnouncer(AnnouncerOptions{Config: AnnouncerConfig{Repeats: 1}, Sender: s, Listener: l, Clock: c,
		Log: annLogger(t), Events: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	at := &annTest{t: t, clock: c, sender: s, a: a}
	at.run()

	a.Announce("eth0", annVIP4)
	s.take(t, 2)
	ev.waitFor(t, "announce announced 192.0.2.10 on eth0: 2 packets (taking it over)")
	at.expectArmed(DefaultAnnounceInterval)
	l.waitOpened(t, "eth0")
	at.step(DefaultAnnounceInterval, 2) // a repeat is no burst: no event

	// Past the holdoff another host claims the VIP: a burst at once, and its event.
	c.Advance(time.Minute)
	l.inject(t, "eth0", Observed{Kind: ARPReply, SenderIP: annVIP4, TargetIP: annVIP4, LinkAddr: annOtherMAC})
	s.take(t, 2)
	ev.waitFor(t, "announce announced 192.0.2.10 on eth0: 2 packets (taking it over)",
		"announce announced 192.0.2.10 on eth0: 2 packets (another host claimed it)")
	a.Stop(annVIP4)
}
