// Package metrics exports an agent's state and events as Prometheus metrics (GET /metrics).
//
// Troop's own series are named troop_*. Most are read at scrape time from what the agent
// already keeps (the Raft node's status, the director's status, counters and kernel view, the
// announcer's and the health checker's stats, the committed health); the rest are counted or
// timed where things happen, through the Observe* methods that the agent hands to the
// cluster, director and probe packages as hooks. Raft's and memberlist's own metrics (raft_*,
// memberlist_*), which they send through hashicorp/go-metrics, appear too (see GoMetrics).
//
// Each agent has its own Registry, so that tests run several agents in one process.
package metrics

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/probe"
)

// Node is what the metrics read from the Raft node (cluster.Node).
type Node interface {
	Status() cluster.Status
	Members() []cluster.Member
}

// Director is what the metrics read from the director (director.Director).
type Director interface {
	Status() director.Status
	Counters() director.Counters
	KernelView() ([]director.KernelService, error)
}

// Announcer is what the metrics read from the announcer (director.NetAnnouncer).
type Announcer interface {
	Stats() []director.AnnounceStats
}

// Checks is what the metrics read from the health-check engine (probe.Engine).
type Checks interface {
	Stats() probe.Stats
}

// Sources are what the collector reads at scrape time. Node is required; a nil Director,
// Announcer, Checks or FSM leaves its series out (a witness, an agent without a dataplane).
type Sources struct {
	Node      Node
	FSM       *fsm.FSM
	Director  Director
	Announcer Announcer
	Checks    Checks
}

// Metrics is one agent's registry and the instruments its parts feed. Create it with New;
// the Observe* methods are safe for concurrent use and never block.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	applyDuration     prometheus.Histogram
	leadershipChanges prometheus.Counter
	reconcileDuration prometheus.Histogram
	checkDuration     *prometheus.HistogramVec
	checkFailures     *prometheus.CounterVec
}

// New returns an agent's metrics with Troop's event-fed instruments and Go's process and
// runtime collectors registered. log (nil: discard) hears of series that could not be read.
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "troop_raft_apply_duration_seconds",
			Help: "Time a change applied through this agent took end to end: validation, forwarding to the leader, commit and the local apply.",
			// From a local commit (sub-millisecond) to an election's worth of retrying.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		leadershipChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "troop_leadership_changes_total",
			Help: "Changes of the Raft leader this agent saw (failovers and handovers), not counting the first leader it learned of.",
		}),
		reconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "troop_reconcile_duration_seconds",
			Help:    "Duration of IPVS reconcile passes (full and incremental).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "troop_health_check_duration_seconds",
			Help:    "Duration of this agent's health checks, by check type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"type"}),
		checkFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troop_health_check_failures_total",
			Help: "Failed health checks run by this agent, by kind of reason (timeout, refused, reset, unreachable, tls, status, mismatch, closed, other).",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.applyDuration, m.leadershipChanges, m.reconcileDuration, m.checkDuration, m.checkFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the agent's registry, for GoMetrics and tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Watch registers the collector that reads src at every scrape.
func (m *Metrics) Watch(src Sources) error {
	return m.reg.Register(&collector{src: src, log: m.log})
}

// Handler serves the registry in Prometheus' text (or negotiated) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveApply is cluster.Config.ObserveApply.
func (m *Metrics) ObserveApply(_ fsm.Op, took time.Duration, _ error) {
	m.applyDuration.Observe(took.Seconds())
}

// ObserveReconcile is director.Deps.OnReconcile.
func (m *Metrics) ObserveReconcile(rep director.Report, _ error) {
	m.reconcileDuration.Observe(rep.Duration.Seconds())
}

// ObserveCheck is probe.Options.Observe.
func (m *Metrics) ObserveCheck(t probe.Target, res probe.Result) {
	m.checkDuration.WithLabelValues(string(t.Check.Type)).Observe(res.Duration.Seconds())
	if !res.Healthy {
		m.checkFailures.WithLabelValues(ReasonClass(res.Reason)).Inc()
	}
}

// WatchLeadership counts the leader changes ch carries (cluster.Node.WatchLeadership) until it
// closes: each time a leader is known that differs, by ID or term, from the last one known.
func (m *Metrics) WatchLeadership(ch <-chan cluster.Leadership) {
	var lastID string
	var lastTerm uint64
	for l := range ch {
		if l.LeaderID == "" {
			continue // an election: the change is counted when it has a winner
		}
		if lastID != "" && (l.LeaderID != lastID || l.Term != lastTerm) {
			m.leadershipChanges.Inc()
		}
		lastID, lastTerm = l.LeaderID, l.Term
	}
}

// ReasonClass sorts a probe.Result's reason into a few kinds, the reason label of
// troop_health_check_failures_total: the reasons themselves name bodies, statuses and
// addresses, too many values for a label.
func ReasonClass(reason string) string {
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "timeout"), strings.Contains(r, "timed out"):
		return "timeout"
	case strings.Contains(r, "refused"):
		return "refused"
	case strings.Contains(r, "reset"):
		return "reset"
	case strings.Contains(r, "unreachable"), strings.Contains(r, "no route"):
		return "unreachable"
	case strings.HasPrefix(r, "tls"):
		return "tls"
	case strings.HasPrefix(r, "status"), strings.HasPrefix(r, "rcode"):
		return "status"
	case strings.Contains(r, "not found"), strings.Contains(r, "matched"), strings.Contains(r, "mismatch"):
		return "mismatch"
	case strings.Contains(r, "closed"), strings.Contains(r, "eof"):
		return "closed"
	case r == "canceled":
		return "canceled"
	}
	return "other"
}
