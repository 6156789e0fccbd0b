package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

func newClient(t *testing.T) (*api.Client, *apitest.Backend) {
	t.Helper()
	b := apitest.NewBackend(testLogger(t))
	ts := httptest.NewServer(api.NewServer(b, testLogger(t)))
	t.Cleanup(ts.Close)
	// A bare host:port is taken as http.
	return api.NewClient(strings.TrimPrefix(ts.URL, "http://"), ts.Client()), b
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	c, b := newClient(t)
	mustWrite := func(res api.WriteResult, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return res.Index
	}

	svc := fsm.Service{Name: "web", VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Forwarding: fsm.NAT}
	if i := mustWrite(c.PutService(ctx, svc)); i != 1 {
		t.Errorf("PutService index %d", i)
	}
	mustWrite(c.AddReal(ctx, "web", fsm.Real{Address: netip.MustParseAddr("2001:db8::21")}))
	mustWrite(c.PutReal(ctx, "web", "[2001:db8::22]:8443", fsm.Real{}))
	mustWrite(c.SetWeight(ctx, "web", "2001:db8::21", 7))
	mustWrite(c.SetAdmin(ctx, "web", "[2001:db8::22]:8443", fsm.Draining))
	if i := mustWrite(c.WithActor("bob").DeleteReal(ctx, "web", "[2001:db8::22]:8443")); i != 6 {
		t.Errorf("DeleteReal index %d", i)
	}
	if a := b.Log()[5].Actor; a != "bob" {
		t.Errorf("actor %q, want bob", a)
	}

	got, meta, err := c.Service(ctx, "web", api.ReadOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if meta != (api.ReadMeta{Index: 6, Consistency: api.ConsistencyLeaderVerified}) {
		t.Errorf("meta %+v", meta)
	}
	if r, ok := got.Real("[2001:db8::21]:443"); !ok || r.EffectiveWeight() != 7 || len(got.Reals) != 1 || got.Health["[2001:db8::21]:443"].State != fsm.HealthUnknown {
		t.Errorf("Service: %s", mustJSON(t, got))
	}
	list, meta, err := c.Services(ctx, api.ReadOptions{})
	if err != nil || len(list) != 1 || meta.Consistency != api.ConsistencyLocal {
		t.Errorf("Services: %v %+v %v", list, meta, err)
	}

	table := fsm.Table{Services: []fsm.Service{got.Service, {Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Port: 53, Protocol: fsm.UDP}}}
	plan, err := c.PlanTable(ctx, table, api.ReadOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	wantPlan := "+ service \"dns\" (udp 192.0.2.53:53)\n"
	if fsm.FormatDiff(plan.Diff) != wantPlan || plan.BaseIndex != 6 {
		t.Errorf("PlanTable: %s", mustJSON(t, plan))
	}
	applied, err := c.ApplyTable(ctx, table)
	if err != nil || fsm.FormatDiff(applied.Diff) != wantPlan || applied.Index != 7 {
		t.Errorf("ApplyTable: %s %v", mustJSON(t, applied), err)
	}
	tb, _, err := c.Table(ctx, api.ReadOptions{})
	if err != nil || len(tb.Services) != 2 {
		t.Errorf("Table: %v %v", tb, err)
	}

	var snap bytes.Buffer
	meta, err = c.SaveSnapshot(ctx, &snap, false)
	if err != nil || meta.Index != 7 || !strings.HasPrefix(snap.String(), `{"format":1,"index":7,`) {
		t.Fatalf("SaveSnapshot: %+v %v %s", meta, err, snap.String())
	}
	mustWrite(c.DeleteService(ctx, "dns"))
	restored, err := c.RestoreSnapshot(ctx, &snap)
	if err != nil || fsm.FormatDiff(restored.Diff) != wantPlan || restored.Index != 9 {
		t.Errorf("RestoreSnapshot: %s %v", mustJSON(t, restored), err)
	}

	st, _, err := c.Status(ctx, api.ReadOptions{})
	if err != nil || st.Services != 2 || st.Reals != 1 || st.Role != cluster.Leader {
		t.Errorf("Status: %s %v", mustJSON(t, st), err)
	}
	if err := c.TransferLeadership(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.TransferLeadership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePeer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	peers, _, err := c.Peers(ctx, api.ReadOptions{})
	if err != nil || len(peers) != 2 || !peers[1].Leader || peers[1].ID != "c" {
		t.Errorf("Peers: %v %v", peers, err)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	c, b := newClient(t)
	if _, err := c.PutService(ctx, fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80}); err != nil {
		t.Fatal(err)
	}

	_, err := c.SetWeight(ctx, "web", "192.0.2.99", 1)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound || ae.Field != `service "web" real` || ae.Value != "192.0.2.99:80" ||
		ae.Error() != `service "web" real: "192.0.2.99:80": does not exist` || !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("SetWeight of unknown real: %#v", err)
	}

	_, err = c.PutService(ctx, fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Scheduler: "fast"})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Value != "fast" || !errors.Is(err, fsm.ErrInvalid) {
		t.Errorf("PutService with a bad scheduler: %#v", err)
	}

	_, err = c.PutService(ctx, fsm.Service{Name: "www", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80})
	if !errors.Is(err, fsm.ErrConflict) {
		t.Errorf("PutService of a taken key: %#v", err)
	}

	b.SetLeaderless(true)
	if _, _, err := c.Services(ctx, api.ReadOptions{Consistent: true}); !errors.Is(err, cluster.ErrNoLeader) {
		t.Errorf("consistent read without leader: %#v", err)
	}
	if _, _, err := c.Services(ctx, api.ReadOptions{}); err != nil {
		t.Errorf("local read without leader: %v", err)
	}
}

func TestClientNonAPIError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream connect error", http.StatusBadGateway)
	}))
	defer ts.Close()
	_, _, err := api.NewClient(ts.URL+"/", nil).Status(context.Background(), api.ReadOptions{})
	var ae *api.Error
	want := "GET " + ts.URL + "/v1/status: 502 Bad Gateway: upstream connect error"
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || ae.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
