package vm

import (
	"strings"
)

// TestResult is one top-level test of a `go test -v` run inside the guest.
type TestResult struct {
	Name   string
	Status string // "PASS", "FAIL" or "SKIP"; "" if the run ended before the test did
	Output []string
}

// ParseTestOutput reads `-test.v` output (tests run one after another) into its top-level
// tests, each with the lines printed while it ran.
func ParseTestOutput(console string) []TestResult {
	var results []TestResult
	current := -1
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok && !strings.Contains(name, "/") {
			results = append(results, TestResult{Name: name})
			current = len(results) - 1
			continue
		}
		if current < 0 {
			continue
		}
		r := &results[current]
		r.Output = append(r.Output, line)
		for _, status := range []string{"PASS", "FAIL", "SKIP"} {
			// A top-level verdict is not indented; a subtest's is.
			if rest, ok := strings.CutPrefix(line, "--- "+status+": "); ok && strings.HasPrefix(rest, r.Name+" ") {
				r.Status = status
			}
		}
	}
	return results
}
