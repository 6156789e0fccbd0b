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
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/fsm"
)

// A change committed through the API becomes a "config" event naming the op, the target and the
// actor the client gave; changes appended before the agent started are not repeated.
func TestConfigEventsNameTheActor(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	b := apitest.NewBackend(log)
	ev := api.NewEvents(100, nil)
	changes, stop := b.FSM().WatchChanges(16)
	fed := make(chan struct{})
	go func() { defer close(fed); ev.FeedConfig(changes, time.Now().Add(-time.Minute)) }()

	srv := api.NewServer(b, log)
	srv.SetEvents(ev)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := api.NewClient(ts.URL, nil).WithActor("alice")
	ctx := context.Background()
	if _, err := c.PutService(ctx, fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80,
		Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetWeight(ctx, "web", "192.0.2.21:80", 7); err != nil {
		t.Fatal(err)
	}
	// A replayed entry, appended long before the agent started, is not an event again.
	old, _ := fsm.EncodeCommand(fsm.DeleteService("web"))
	b.FSM().ApplyAt(99, old, time.Now().Add(-time.Hour))
	stop()
	<-fed

	got, _ := ev.Since(0)
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Kind+" "+e.Service+" "+e.Message)
	}
	want := []string{
		"config web upsert_service service web by alice (index 1)",
		"config web set_weight real 192.0.2.21:80 of service web (weight 7) by alice (index 2)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
