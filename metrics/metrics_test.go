package metrics_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/metrics"
	"github.com/troop-lb/troop/metrics/metricstest"
	"github.com/troop-lb/troop/probe"
)

type fakeNode struct{ st cluster.Status }

func (n fakeNode) Status() cluster.Status    { return n.st }
func (n fakeNode) Members() []cluster.Member { return []cluster.Member{{ID: "a", Gossip: "alive"}} }

type fakeDirector struct {
	st   director.Status
	n    director.Counters
	view []director.KernelService
}

func (d fakeDirector) Status() director.Status                       { return d.st }
func (d fakeDirector) Counters() director.Counters                   { return d.n }
func (d fakeDirector) KernelView() ([]director.KernelService, error) { return d.view, nil }

type fakeAnnouncer []director.AnnounceStats

func (a fakeAnnouncer) Stats() []director.AnnounceStats { return a }

// scrape renders m as the text format and returns its series and values.
func scrape(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return metricstest.Parse(t, rec.Body)
}

func expect(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
}

func TestCollectorReadsTheAgentsParts(t *testing.T) {
	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: netip.MustParseAddr("192.0.2.10"), Port: 80}
	real1 := director.Destination{DestinationKey: director.DestinationKey{Address: netip.MustParseAddr("192.0.2.21"), Port: 80},
		Weight: 3, ActiveConns: 7, InactiveConns: 2,
		Stats: director.Stats{Connections: 100, PacketsIn: 1000, PacketsOut: 900, BytesIn: 64000, BytesOut: 128000, CPS: 4, PPSIn: 40, PPSOut: 30, BPSIn: 4000, BPSOut: 8000}}
	d := fakeDirector{
		st: director.Status{IPVS: "enabled", Leader: true, VIPs: []string{"192.0.2.10/32 on eth0"}, SyncedIndex: 9},
		n:  director.Counters{Takeovers: 3, Releases: 2, DriftRepairs: 5, ReconcileErrors: 1},
		view: []director.KernelService{{Name: "web", Key: key.String(), Kernel: &director.Service{ServiceKey: key},
			Destinations: []director.KernelDestination{{Key: real1.DestinationKey.String(), Kernel: &real1}}}},
	}
	m := metrics.New(nil)
	if err := m.Watch(metrics.Sources{
		Node:      fakeNode{cluster.Status{Role: cluster.Leader, Term: 4, CommitIndex: 12, AppliedIndex: 11, Peers: []cluster.Peer{{ID: "a", Voter: true}, {ID: "w", Voter: false}}}},
		Director:  d,
		Announcer: fakeAnnouncer{{VIP: netip.MustParseAddr("192.0.2.10"), Sent: 12, Conflicts: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	m.ObserveReconcile(director.Report{Duration: 3 * time.Millisecond}, nil)
	m.ObserveApply(fsm.OpSetWeight, 2*time.Millisecond, nil)
	m.ObserveCheck(probe.Target{Check: fsm.HealthCheck{Type: "tcp"}}, probe.Result{Reason: "connection refused", Duration: time.Millisecond})
	m.ObserveCheck(probe.Target{Check: fsm.HealthCheck{Type: "http"}}, probe.Result{Healthy: true, Reason: "status 200"})
	leadership := make(chan cluster.Leadership, 4)
	leadership <- cluster.Leadership{LeaderID: "a", Term: 2}
	leadership <- cluster.Leadership{Term: 3} // an election
	leadership <- cluster.Leadership{LeaderID: "b", Term: 3}
	leadership <- cluster.Leadership{LeaderID: "b", Term: 3}
	close(leadership)
	m.WatchLeadership(leadership)

	l := `{real="192.0.2.21:80",service="web",vip="tcp/192.0.2.10:80"}`
	lin := `{direction="in",real="192.0.2.21:80",service="web",vip="tcp/192.0.2.10:80"}`
	lout := `{direction="out",real="192.0.2.21:80",service="web",vip="tcp/192.0.2.10:80"}`
	expect(t, scrape(t, m), map[string]float64{
		"troop_raft_leader": 1, "troop_raft_term": 4, "troop_raft_commit_index": 12, "troop_raft_applied_index": 11,
		`troop_raft_peers{suffrage="voter"}`: 1, `troop_raft_peers{suffrage="nonvoter"}`: 1, `troop_members{gossip="alive"}`: 1,
		"troop_leadership_changes_total": 1, "troop_raft_apply_duration_seconds_count": 1,
		"troop_vips_held": 1, "troop_director_leading": 1, "troop_vip_takeovers_total": 3, "troop_vip_releases_total": 2,
		`troop_announcements_sent_total{vip="192.0.2.10"}`: 12, `troop_duplicate_vip_sightings_total{vip="192.0.2.10"}`: 1,
		"troop_reconcile_drift_repairs_total": 5, "troop_reconcile_errors_total": 1, "troop_reconcile_duration_seconds_count": 1,
		`troop_health_check_duration_seconds_count{type="tcp"}`: 1, `troop_health_check_duration_seconds_count{type="http"}`: 1,
		`troop_health_check_failures_total{reason="refused"}`: 1,
		"troop_ipvs_connections_active" + l:                   7, "troop_ipvs_connections_inactive" + l: 2, "troop_ipvs_weight" + l: 3,
		"troop_ipvs_connections_total" + l: 100, "troop_ipvs_rate_cps" + l: 4,
		"troop_ipvs_packets_total" + lin: 1000, "troop_ipvs_packets_total" + lout: 900,
		"troop_ipvs_bytes_total" + lin: 64000, "troop_ipvs_bytes_total" + lout: 128000,
		"troop_ipvs_rate_pps" + lin: 40, "troop_ipvs_rate_bps" + lout: 8000,
	})
}

// Without IPVS (VIP-only mode, a kernel without it) the IPVS and reconcile series are absent,
// not zero; without a dataplane (a witness) so are the VIP series.
func TestSeriesAbsentWithoutIPVS(t *testing.T) {
	m := metrics.New(nil)
	if err := m.Watch(metrics.Sources{Node: fakeNode{}, Director: fakeDirector{st: director.Status{IPVS: "disabled"}}}); err != nil {
		t.Fatal(err)
	}
	got := scrape(t, m)
	for name := range got {
		if strings.HasPrefix(name, "troop_ipvs_") || strings.HasPrefix(name, "troop_reconcile_drift") {
			t.Errorf("%s exported without IPVS", name)
		}
	}
	if _, ok := got["troop_vips_held"]; !ok {
		t.Error("troop_vips_held missing with a dataplane")
	}
	w := metrics.New(nil)
	if err := w.Watch(metrics.Sources{Node: fakeNode{}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := scrape(t, w)["troop_vips_held"]; ok {
		t.Error("troop_vips_held exported without a dataplane")
	}
}

func TestReasonClass(t *testing.T) {
	for reason, want := range map[string]string{
		"timeout after 1s":                       "timeout",
		"connection refused":                     "refused",
		"connection reset by peer":               "reset",
		"no route to host":                       "unreachable",
		"TLS: the server answered in plain HTTP": "tls",
		"status 503 (want 200-299)":              "status",
		`"Test Page" not found in body`:          "mismatch",
		"connection closed by the server":        "closed",
		"exit status 2":                          "other",
	} {
		if got := metrics.ReasonClass(reason); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", reason, got, want)
		}
	}
}
