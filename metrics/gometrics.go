package metrics

import (
	"fmt"
	"sync"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
)

// Raft and memberlist send their metrics through the process-wide global of
// github.com/hashicorp/go-metrics (they import it directly, not its compat package; go.mod
// replaces it with v0.6.1, which keeps its own global). That global can hold one sink, so the
// process installs one relay, once, and each agent's GoMetrics adds its own Prometheus sink to
// it. With several agents in one process (tests) each registry then sees every agent's raft_*
// and memberlist_* series: the library metrics carry no node label. troop_* series are per
// agent.
var relay = &relaySink{sinks: map[*gmprom.PrometheusSink]struct{}{}}

var installRelay = sync.OnceValue(func() error {
	conf := gometrics.DefaultConfig("")
	// No hostname prefix (raft_apply, not host_raft_apply) and no runtime metrics of
	// go-metrics' own: the Go collector exports those.
	conf.EnableHostname, conf.EnableRuntimeMetrics = false, false
	_, err := gometrics.NewGlobal(conf, relay)
	return err
})

// GoMetrics adds raft_* and memberlist_* (what Raft and memberlist send through
// hashicorp/go-metrics) to m's registry until the returned stop is called.
func (m *Metrics) GoMetrics() (stop func(), err error) {
	if err := installRelay(); err != nil {
		return nil, fmt.Errorf("install the go-metrics relay: %w", err)
	}
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
		Registerer: m.reg,
		// Unique per agent: the sink registers a collector under this name.
		Name: fmt.Sprintf("troop_gometrics_%p", m),
	})
	if err != nil {
		return nil, fmt.Errorf("go-metrics prometheus sink: %w", err)
	}
	relay.add(sink)
	var once sync.Once
	return func() {
		once.Do(func() {
			relay.remove(sink)
			m.reg.Unregister(sink)
		})
	}, nil
}

// relaySink passes go-metrics' calls to every agent's sink.
type relaySink struct {
	mu    sync.RWMutex // guards sinks
	sinks map[*gmprom.PrometheusSink]struct{}
}

func (r *relaySink) add(s *gmprom.PrometheusSink) {
	r.mu.Lock()
	r.sinks[s] = struct{}{}
	r.mu.Unlock()
}

func (r *relaySink) remove(s *gmprom.PrometheusSink) {
	r.mu.Lock()
	delete(r.sinks, s)
	r.mu.Unlock()
}

func (r *relaySink) each(fn func(*gmprom.PrometheusSink)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for s := range r.sinks {
		fn(s)
	}
}

func (r *relaySink) SetGauge(key []string, val float32) {
	r.each(func(s *gmprom.PrometheusSink) { s.SetGauge(key, val) })
}

func (r *relaySink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.each(func(s *gmprom.PrometheusSink) { s.SetGaugeWithLabels(key, val, labels) })
}

func (r *relaySink) SetPrecisionGauge(key []string, val float64) {
	r.each(func(s *gmprom.PrometheusSink) { s.SetPrecisionGauge(key, val) })
}

func (r *relaySink) SetPrecisionGaugeWithLabels(key []string, val float64, labels []gometrics.Label) {
	r.each(func(s *gmprom.PrometheusSink) { s.SetPrecisionGaugeWithLabels(key, val, labels) })
}

func (r *relaySink) EmitKey(key []string, val float32) {
	r.each(func(s *gmprom.PrometheusSink) { s.EmitKey(key, val) })
}

func (r *relaySink) IncrCounter(key []string, val float32) {
	r.each(func(s *gmprom.PrometheusSink) { s.IncrCounter(key, val) })
}

func (r *relaySink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.each(func(s *gmprom.PrometheusSink) { s.IncrCounterWithLabels(key, val, labels) })
}

func (r *relaySink) AddSample(key []string, val float32) {
	r.each(func(s *gmprom.PrometheusSink) { s.AddSample(key, val) })
}

func (r *relaySink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.each(func(s *gmprom.PrometheusSink) { s.AddSampleWithLabels(key, val, labels) })
}

func (r *relaySink) Shutdown() {}
