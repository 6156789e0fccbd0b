// Package benchresult holds what the VM tier's benchmark tests print on their `troop-bench:`
// lines and `make bench` (integration/bench) reads back: one type for both sides.
package benchresult

// Table is TestBenchTable's result (integration/bench_table_test.go), rendered by make bench's
// table section.
type Table struct {
	Kind     string `json:"kind"`
	Services int    `json:"services"`
	Reals    int    `json:"reals"`
	// Programming the table into empty IPVS: Troop's reconciler, and ipvsadm -R.
	TroopMS   []float64 `json:"troop_ms"`
	IpvsadmMS []float64 `json:"ipvsadm_ms"`
	// TroopCalls is the IPVS calls of one Troop programming run; SteadyMS a full comparison of
	// the loaded table with nothing to do (what the agent pays every reconcile interval).
	TroopCalls int     `json:"troop_calls"`
	SteadyMS   float64 `json:"steady_ms"`
	// The agent: PUT /v1/table of the whole table until the kernel holds all of it, then one-real
	// weight changes (API call until the kernel shows the weight).
	AgentApplyMS float64   `json:"agent_apply_ms"`
	ChangeMS     []float64 `json:"change_ms"`
	RSSKB        int64     `json:"rss_kb"`
	HWMKB        int64     `json:"hwm_kb"`
	BinaryBytes  int64     `json:"binary_bytes"`
}
