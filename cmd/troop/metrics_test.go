package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/metrics/metricstest"
)

// startDevAgent runs a -dev agent in this process on ephemeral ports until the test ends and
// returns its API's base URL.
func startDevAgent(t *testing.T, id string) string {
	t.Helper()
	ac := config.Agent{NodeID: id, API: config.API{Address: "127.0.0.1:0"}, Raft: config.Raft{Address: "127.0.0.1:0"}}
	o := agentOptions{dev: true}
	a, err := newAgent(ac, o, newLogger(io.Discard, "error"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + a.ln.Addr().String()
}

// scrape reads GET /metrics as series ("name{labels}") and their values.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return metricstest.Parse(t, resp.Body)
}

// The metrics of a running agent: Raft's view, the apply and health-check histograms fed as
// things happen, the committed health, and Raft's own series through go-metrics.
func TestAgentMetrics(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer web.Close()
	realAddr := netip.MustParseAddrPort(strings.TrimPrefix(web.URL, "http://"))

	base := startDevAgent(t, "m1")
	c := api.NewClient(base, nil).WithActor("metrics-test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svc := fsm.Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80,
		Check: &fsm.HealthCheck{Type: "http", Port: realAddr.Port(), Path: "/", Interval: fsm.Duration(100 * time.Millisecond), Timeout: fsm.Duration(50 * time.Millisecond), Rise: 1, Fall: 1},
		Reals: []fsm.Real{{Address: realAddr.Addr()}}}
	var lastErr error
	for {
		_, err := c.PutService(ctx, svc)
		if err == nil {
			break
		}
		if ctx.Err() != nil || !(strings.Contains(err.Error(), "leader") || strings.Contains(err.Error(), "not running")) {
			t.Fatalf("put service: %v (before: %v)", err, lastErr)
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond) // not running, or no leader yet
	}

	want := map[string]func(float64) bool{
		"troop_raft_leader":                                      func(v float64) bool { return v == 1 },
		"troop_raft_term":                                        func(v float64) bool { return v >= 1 },
		"troop_raft_commit_index":                                func(v float64) bool { return v >= 1 },
		"troop_raft_applied_index":                               func(v float64) bool { return v >= 1 },
		`troop_raft_peers{suffrage="voter"}`:                     func(v float64) bool { return v == 1 },
		"troop_raft_apply_duration_seconds_count":                func(v float64) bool { return v >= 1 },
		"troop_leadership_changes_total":                         func(v float64) bool { return v == 0 },
		`troop_health_check_duration_seconds_count{type="http"}`: func(v float64) bool { return v > 0 },
		`troop_real_servers{state="up"}`:                         func(v float64) bool { return v == 1 },
		`troop_health_check_targets{state="up"}`:                 func(v float64) bool { return v == 1 },
		"troop_health_checks_total":                              func(v float64) bool { return v > 0 },
		"troop_vips_held":                                        func(v float64) bool { return v == 0 }, // no interface in -dev
		"troop_vip_takeovers_total":                              func(v float64) bool { return v == 0 },
		"troop_fsm_halted":                                       func(v float64) bool { return v == 0 },
		"raft_state_leader":                                      func(v float64) bool { return v >= 1 }, // Raft's own, via go-metrics
	}
	var got map[string]float64
	for {
		got = scrape(t, base)
		bad := 0
		for name, ok := range want {
			if v, has := got[name]; !has || !ok(v) {
				bad++
			}
		}
		if bad == 0 {
			break
		}
		if ctx.Err() != nil {
			for name, ok := range want {
				if v, has := got[name]; !has || !ok(v) {
					t.Errorf("%s = %v (present %v): not as expected", name, v, has)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without IPVS (this machine may have it or not; -dev never programs a kernel table it does
	// not find) the per-real series are absent rather than zero.
	if _, ok := got[`troop_health_check_failures_total{reason="refused"}`]; ok {
		t.Error("a failure counted against a healthy loopback server")
	}

	// The change is a "config" event naming its actor.
	var config []string
	if err := c.Events(ctx, 0, false, func(e api.Event) {
		if e.Kind == "config" {
			config = append(config, e.Message)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(config) != 1 || !strings.HasPrefix(config[0], "upsert_service service web by metrics-test (index ") {
		t.Errorf("config events = %q, want the upsert by metrics-test", config)
	}
}

// Each agent has its own registry: two in one process both serve their metrics.
func TestAgentMetricsPerAgentRegistry(t *testing.T) {
	a, b := startDevAgent(t, "m1"), startDevAgent(t, "m2")
	for _, base := range []string{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for scrape(t, base)["troop_raft_leader"] != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: troop_raft_leader never 1", base)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
