package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cluster/serialtest"
	"github.com/troop-lb/troop/integration/lvs"
)

// Issue 6, done-when (b), with real agents: d1 and d2 share a serial link (a pty null-modem
// cable: ptys are not network-namespaced, so the agents in their namespaces open its ends). With
// d1 leading, only the network between d1 and d2 is cut (d3 still reaches both, so d1 keeps its
// quorum): both ends must say "network cut" in the status API and in their peer events, never
// "dead"; healed, both say "alive" again. For contrast, killing d2 makes d1 say "dead".
// The follower's verdict comes within heartbeat_timeout of the cut; the leader's only when a
// heartbeat to d2 fails, which over dropped packets is Raft's transport I/O timeout (10 s,
// raftIOTimeout in cluster/mux.go), hence the generous wait.
func TestSerialTellsNetworkCutFromDead(t *testing.T) {
	needRoot(t)
	devA, devB := serialtest.NullModem(t)
	const key = "troop-serial-test-key-0123456789"
	link := func(peer, dev string) string {
		return fmt.Sprintf("serial {\n  peer      = %q\n  device    = %q\n  keepalive = \"100ms\"\n  deadtime  = \"500ms\"\n  key       = %q\n}\n", peer, dev, key)
	}
	p := newPool(t, lvs.Config{DirectorExtra: map[string]string{"d1": link("d2", devA), "d2": link("d1", devB)}})

	// The verdict needs one end to lead: a leader judges a follower by its failing heartbeats, a
	// follower judges the leader by its last contact. With d3 leading, d1 and d2 would both keep
	// their contact with d3 and have none to lose with each other.
	if p.leader != "d1" {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		err := p.API(p.leader).TransferLeadership(ctx, "d1")
		cancel()
		if err != nil {
			t.Fatalf("transfer leadership from %s to d1: %v", p.leader, err)
		}
	}
	events := map[string]*peerEvents{"d1": p.followPeerEvents("d1"), "d2": p.followPeerEvents("d2")}
	view := map[string]string{"d1": "d2", "d2": "d1"} // whose verdict each director gives
	peer := func(d string) (cluster.SerialStatus, error) {
		st, err := p.Status(p.ctx, d)
		if err != nil {
			return cluster.SerialStatus{}, err
		}
		for _, s := range st.Serial {
			if s.Peer == view[d] {
				return s, nil
			}
		}
		return cluster.SerialStatus{}, fmt.Errorf("%s lists no serial link to %s: %+v", d, view[d], st.Serial)
	}
	both := func(want func(d string, s cluster.SerialStatus) error) func() error {
		return func() error {
			for _, d := range []string{"d1", "d2"} {
				s, err := peer(d)
				if err != nil {
					return err
				}
				if err := want(d, s); err != nil {
					return err
				}
			}
			return nil
		}
	}
	is := func(verdict, contact, state string) func(d string, s cluster.SerialStatus) error {
		return func(d string, s cluster.SerialStatus) error {
			if s.Verdict != verdict || s.RaftContact != contact || s.State != state {
				return fmt.Errorf("%s on %s: %s (raft contact %s, link %s, error %q); want %s (raft contact %s, link %s)",
					d, s.Peer, s.Verdict, s.RaftContact, s.State, s.Error, verdict, contact, state)
			}
			return nil
		}
	}
	waitFor(t, 15*time.Second, "d1 leads and d1 and d2 see each other alive over Raft and the serial link", func() error {
		if st, err := p.Status(p.ctx, "d1"); err != nil || st.Role != cluster.Leader {
			return fmt.Errorf("d1 is not the leader: %+v %v", st.Role, err)
		}
		return both(is(cluster.PeerAlive, cluster.ContactOK, cluster.LinkUp))()
	})
	for d, ev := range events {
		// The stream may lag the status: the last peer event must be the alive one before the mark.
		waitFor(t, 5*time.Second, d+"'s peer events say alive", func() error {
			msgs := ev.messagesSinceMark()
			if len(msgs) == 0 || !strings.HasPrefix(msgs[len(msgs)-1], view[d]+": "+cluster.PeerAlive+" ") {
				return fmt.Errorf("peer events: %q", msgs)
			}
			return nil
		})
		ev.mark()
	}

	// Cut only d1–d2. Meanwhile every status read must not say dead.
	if err := p.Isolate(p.ctx, "d1", "d2"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	seen := map[string]time.Duration{}
	calledDead := map[string]bool{}
	waitFor(t, 30*time.Second, "d1 and d2 say network cut", func() error {
		var errs []error
		for _, d := range []string{"d1", "d2"} {
			s, err := peer(d)
			if err == nil && s.Verdict == cluster.PeerDead && !calledDead[d] {
				calledDead[d] = true
				t.Errorf("%s called %s dead %s after the network alone was cut (raft contact %s, link %s)", d, s.Peer, time.Since(cut), s.RaftContact, s.State)
			}
			if err == nil {
				err = is(cluster.PeerNetworkCut, cluster.ContactLost, cluster.LinkUp)(d, s)
			}
			if _, ok := seen[d]; !ok && err == nil {
				seen[d] = time.Since(cut)
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	t.Logf("network cut verdicts after the cut: d1 (leader, on d2) %s, d2 (follower, on d1) %s",
		seen["d1"].Round(time.Millisecond), seen["d2"].Round(time.Millisecond))
	if st, err := p.Status(p.ctx, "d1"); err != nil || st.Role != cluster.Leader {
		t.Errorf("d1 is %s (%v) with only d2 cut off; d3 keeps its quorum, want leader", st.Role, err)
	}
	for d, ev := range events {
		want := view[d] + ": " + cluster.PeerNetworkCut + " "
		waitFor(t, 5*time.Second, d+"'s peer events say "+want, func() error {
			if ev.sinceMark(want) == 0 {
				return fmt.Errorf("events since the cut: %q", ev.messagesSinceMark())
			}
			return nil
		})
	}

	if err := p.Heal(p.ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	waitFor(t, 30*time.Second, "d1 and d2 see each other alive again", both(is(cluster.PeerAlive, cluster.ContactOK, cluster.LinkUp)))
	t.Logf("alive again %s after the heal", time.Since(healed).Round(time.Millisecond))
	for d, ev := range events {
		if n := ev.sinceMark(": " + cluster.PeerDead + " "); n > 0 {
			t.Errorf("%s published a dead verdict while only the network was cut: %q", d, ev.messagesSinceMark())
		}
		waitFor(t, 5*time.Second, d+"'s peer events say alive again", func() error {
			msgs := ev.messagesSinceMark()
			if len(msgs) == 0 || !strings.HasPrefix(msgs[len(msgs)-1], view[d]+": "+cluster.PeerAlive+" ") {
				return fmt.Errorf("events since the cut: %q", msgs)
			}
			return nil
		})
	}

	// For contrast: d2 dies. d1 leads, its heartbeats to d2 fail and the cable falls silent.
	if st, err := p.Status(p.ctx, "d1"); err != nil || st.Role != cluster.Leader {
		t.Fatalf("d1 is %s (%v) before d2 is killed; want leader", st.Role, err)
	}
	events["d1"].mark()
	if err := p.Kill("d2"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 30*time.Second, "d1 says d2 is dead", func() error {
		s, err := peer("d1")
		if err != nil {
			return err
		}
		return is(cluster.PeerDead, cluster.ContactLost, cluster.LinkDown)("d1", s)
	})
	t.Logf("dead verdict %s after the kill", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "d1's peer events say d2: dead", func() error {
		if events["d1"].sinceMark("d2: "+cluster.PeerDead+" ") == 0 {
			return fmt.Errorf("events since the kill: %q", events["d1"].messagesSinceMark())
		}
		return nil
	})
}

// peerEvents collects one agent's "peer" events, followed from the client.
type peerEvents struct {
	mu   sync.Mutex
	msgs []string
	from int // mark: the index messagesSinceMark starts at
}

// followPeerEvents follows director d's event stream until the test ends (or the agent dies).
func (p *lvsPool) followPeerEvents(d string) *peerEvents {
	ev := &peerEvents{}
	c := p.API(d)
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	p.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		c.Events(ctx, 0, true, func(e api.Event) {
			if e.Kind != "peer" {
				return
			}
			ev.mu.Lock()
			ev.msgs = append(ev.msgs, e.Message)
			ev.mu.Unlock()
		})
	}()
	return ev
}

// mark makes the events so far old.
func (ev *peerEvents) mark() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.from = len(ev.msgs)
}

func (ev *peerEvents) messagesSinceMark() []string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]string(nil), ev.msgs[ev.from:]...)
}

// sinceMark counts the events since the mark whose message contains s.
func (ev *peerEvents) sinceMark(s string) int {
	n := 0
	for _, m := range ev.messagesSinceMark() {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}
