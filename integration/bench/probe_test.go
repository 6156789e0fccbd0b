package main

import (
	"strings"
	"testing"
	"time"
)

// The health-check target's verdict: met under one core at 10,000 checks/s; missed above, with
// the connection's share from the tcp and none rows.
func TestProbeVerdict(t *testing.T) {
	rep := func(cpu, sys float64, checks uint64) *probeReport {
		return &probeReport{Wall: 10 * time.Second, Checks: checks, CPU: time.Duration(cpu * 10 * float64(time.Second)), SysCPU: time.Duration(sys * 10 * float64(time.Second))}
	}
	if got := probeVerdict(rep(0.98, 0.6, 100_000), nil, nil); !strings.Contains(got, "in under one core: met. The engine used 0.98 cores for 10000 checks/s, 0.60 of them in the kernel.") {
		t.Errorf("met: %s", got)
	}
	got := probeVerdict(rep(1.1, 0.72, 99_990), rep(0.82, 0.5, 99_980), rep(0.14, 0.05, 99_980))
	for _, want := range []string{"**missed**", "1.10 cores for 9999 checks/s", "(the `tcp` row) cost 0.82 cores", "(the `none` row) 0.14"} {
		if !strings.Contains(got, want) {
			t.Errorf("missed: %q lacks %q", got, want)
		}
	}
	if got := probeVerdict(rep(0.9, 0.5, 50_000), nil, nil); !strings.Contains(got, "**missed**") {
		t.Errorf("half the checks under one core counted as met: %s", got)
	}
}
