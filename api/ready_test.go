package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// readyDataplane is a dataplane whose status the test sets.
type readyDataplane struct {
	mu sync.Mutex
	st director.Status
}

func (d *readyDataplane) set(st director.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st = st
}

func (d *readyDataplane) Status() director.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

func (d *readyDataplane) KernelView() ([]director.KernelService, error) { return nil, nil }

func getReady(t *testing.T, h http.Handler) (int, api.Readiness) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/agent/ready", nil))
	var r api.Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	if (rec.Code == http.StatusOK) != r.Ready {
		t.Fatalf("status %d with ready %v", rec.Code, r.Ready)
	}
	return rec.Code, r
}

func TestReadiness(t *testing.T) {
	b := apitest.NewBackend(nil)
	if _, err := b.Apply(t.Context(), fsm.UpsertService(fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: fsm.TCP})); err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(b, nil)
	dp := &readyDataplane{}
	dp.set(director.Status{IPVS: "enabled"})
	srv.SetDataplane(dp)

	// Restarted, it knows the leader but not yet the commit index: not caught up (at index 0).
	b.SetCommitUnknown(true)
	if code, r := getReady(t, srv); code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(r.Reasons, ";"), "commit index not learned") {
		t.Fatalf("before the commit index is known: %d %+v", code, r)
	}
	b.SetCommitUnknown(false)
	// IPVS has not matched the table yet.
	if code, r := getReady(t, srv); code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(r.Reasons, ";"), "IPVS last matched the table at index 0") {
		t.Fatalf("before IPVS matched: %d %+v", code, r)
	}
	dp.set(director.Status{IPVS: "enabled", SyncedIndex: b.View().Index()})
	if code, r := getReady(t, srv); code != http.StatusOK {
		t.Fatalf("caught up and matched: %d %+v", code, r)
	}
	// A failing reconcile or a lost leader makes it unready again.
	dp.set(director.Status{IPVS: "enabled", SyncedIndex: b.View().Index(), LastError: "create service: EINVAL"})
	if code, r := getReady(t, srv); code != http.StatusServiceUnavailable || !strings.Contains(r.Reasons[0], "EINVAL") {
		t.Fatalf("with a failing reconcile: %d %+v", code, r)
	}
	dp.set(director.Status{IPVS: "enabled", SyncedIndex: b.View().Index()})
	b.SetLeaderless(true)
	if code, r := getReady(t, srv); code != http.StatusServiceUnavailable || r.Reasons[0] != "no leader known" {
		t.Fatalf("without a leader: %d %+v", code, r)
	}
	b.SetLeaderless(false)
	// Without IPVS (VIP-only mode) the table sync is not waited for.
	dp.set(director.Status{IPVS: "disabled"})
	if code, r := getReady(t, srv); code != http.StatusOK {
		t.Fatalf("VIP-only: %d %+v", code, r)
	}
}

func TestClientReady(t *testing.T) {
	b := apitest.NewBackend(nil)
	hs := httptest.NewServer(api.NewServer(b, nil))
	defer hs.Close()
	c := api.NewClient(hs.URL, nil)
	if r, err := c.Ready(t.Context()); err != nil || !r.Ready {
		t.Fatalf("ready: %+v, %v", r, err)
	}
	b.SetLeaderless(true)
	if r, err := c.Ready(t.Context()); err != nil || r.Ready || len(r.Reasons) == 0 {
		t.Fatalf("not ready is an answer: %+v, %v", r, err)
	}
}
