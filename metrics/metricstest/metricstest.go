// Package metricstest reads what a /metrics endpoint serves, for tests.
package metricstest

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Parse reads the Prometheus text format from r into series ("name{labels}") and their values,
// failing t on a line it cannot read.
func Parse(t testing.TB, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	return out
}
