package integration

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// needRoot gates the namespace tier: it creates namespaces, veths and addresses. `make test`
// runs as root on CI, so there it always runs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace tier: needs root to create network namespaces (make test runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tier: iproute2's ip is not installed")
	}
}

// waitFor polls cond until it returns nil, failing the test with its last error after within; it
// returns how long that took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not true after %s: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
