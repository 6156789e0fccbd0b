package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

func TestEventsRingAndSince(t *testing.T) {
	ev := api.NewEvents(3, nil)
	for i := range 5 {
		ev.Publish(api.Event{Kind: "health", Message: string(rune('a' + i))})
	}
	got, _ := ev.Since(0)
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if strings.Join(msgs, "") != "cde" || got[0].Seq != 3 {
		t.Errorf("kept %v (first seq %d), want c d e from seq 3", msgs, got[0].Seq)
	}
	if got, _ := ev.Since(4); len(got) != 1 || got[0].Message != "e" {
		t.Errorf("since 4: %+v", got)
	}
}

// Committed health transitions become events with their reasons, streamed to a follower.
func TestEventsFollowHealth(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	f := fsm.New(log)
	index := uint64(0)
	apply := func(c fsm.Command) {
		t.Helper()
		b, _ := fsm.EncodeCommand(c)
		index++
		if res := f.Apply(index, b); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(fsm.UpsertService(fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80,
		Check: &fsm.HealthCheck{Type: "tcp"},
		Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}, {Address: netip.MustParseAddr("192.0.2.22")}}}))

	ev := api.NewEvents(100, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fed := make(chan struct{})
	feed := ev.FeedHealth(f)
	go func() { defer close(fed); feed(ctx) }()
	leadership := make(chan cluster.Leadership, 2)
	leadership <- cluster.Leadership{IsLeader: true, Term: 2}
	leadership <- cluster.Leadership{IsLeader: false, Term: 3, LeaderID: "b"}
	close(leadership)
	ev.FeedLeadership("a", leadership)

	srv := api.NewServer(nil, log)
	srv.SetEvents(ev)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := api.NewClient(ts.URL, nil)

	got := make(chan api.Event, 10)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go c.Events(followCtx, 0, true, func(e api.Event) { got <- e })

	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	apply(fsm.RecordHealth(at, []fsm.HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: fsm.HealthDown, Reason: "connection refused"}}))
	deadline := time.After(5 * time.Second)
	var lines []string
	for len(lines) < 3 {
		select {
		case e := <-got:
			lines = append(lines, e.String())
		case <-deadline:
			t.Fatalf("events so far: %q", lines)
		}
	}
	want := []string{
		"leadership a became the leader (term 2)",
		`leadership a is no longer the leader (term 3, leader now "b")`,
		"2026-11-26T12:00:00Z health web 192.0.2.21:80 down: connection refused",
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("event %d = %q, want …%q", i, lines[i], w)
		}
	}
	cancel()
	<-fed
}
