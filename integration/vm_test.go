package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/integration/vm"
)

// The VM tier: this package's TestLVS* scenarios and the director package's kernel contract
// tests need a kernel with IPVS, which the host here lacks, so TestVM boots Debian's stock kernel
// under qemu with the project's static binaries and runs them there, one subtest per guest test. `make integration` sets TROOP_VM=1.
func TestVM(t *testing.T) {
	if os.Getenv("TROOP_VM") == "" {
		t.Skip("VM tier: `make integration` (part of `make test`) runs it; set TROOP_VM=1 to run it here")
	}
	// TROOP_VM_TIMEOUT (a Go duration) bounds the guest's tests; the boot gets two minutes more.
	guestTimeout := 12 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("TROOP_VM_TIMEOUT")); err == nil && d > 0 {
		guestTimeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout+2*time.Minute)
	defer cancel()
	cache := os.Getenv("TROOP_VM_CACHE")
	if cache == "" {
		cache = "/var/cache/troop-vm"
		if os.Geteuid() != 0 {
			cache = filepath.Join(os.TempDir(), "troop-vm-cache")
		}
	}
	assets, err := vm.Prepare(ctx, cache, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	guestTests := filepath.Join(dir, "integration.test")
	directorTests := filepath.Join(dir, "director.test")
	for _, build := range [][]string{
		{"test", "-c", "-o", guestTests, "."},
		{"test", "-c", "-o", directorTests, "../director"},
	} {
		if err := vm.GoStatic(ctx, build...); err != nil {
			t.Fatal(err)
		}
	}
	troop := os.Getenv("TROOP_BIN")
	if troop == "" {
		troop = filepath.Join(dir, "troop")
		if err := vm.GoStatic(ctx, "build", "-o", troop, "../cmd/troop"); err != nil {
			t.Fatal(err)
		}
	}
	// The "older" build of the rolling upgrade: it lacks the newest entry type.
	troopOld := filepath.Join(dir, "troop-old")
	if err := vm.GoStatic(ctx, "build", "-tags", "troop_protocol1", "-o", troopOld, "../cmd/troop"); err != nil {
		t.Fatal(err)
	}
	// By default: the director package's contract tests against the real kernel (IPVS and the
	// sync daemons), then every scenario. TROOP_VM_RUN picks scenarios alone.
	pattern, directorPattern := os.Getenv("TROOP_VM_RUN"), ""
	if pattern == "" {
		pattern, directorPattern = "^TestLVS", "^Test(IPVS|SyncDaemons)Kernel$"
	}
	job := vm.Job{
		Script: `status=0
if [ -n "$TROOP_VM_DIRECTOR_RUN" ]; then
	/bin/director.test -test.v -test.count 1 -test.timeout 2m -test.run "$TROOP_VM_DIRECTOR_RUN" || status=1
fi
/bin/integration.test -test.v -test.count 1 -test.timeout "$TROOP_GUEST_TIMEOUT" -test.run "$TROOP_VM_RUN" || status=1
exit $status
`,
		Files: map[string]string{"/bin/troop": troop, "/bin/troop-old": troopOld, "/bin/integration.test": guestTests, "/bin/director.test": directorTests},
		Env: []string{"TROOP_BIN=/bin/troop", "TROOP_OLD_BIN=/bin/troop-old", "TROOP_REQUIRE_IPVS=1", "TROOP_VM_RUN=" + pattern,
			"TROOP_VM_DIRECTOR_RUN=" + directorPattern, "TROOP_FAILOVER_RUNS=" + os.Getenv("TROOP_FAILOVER_RUNS"),
			"TROOP_BENCH_TABLE=" + os.Getenv("TROOP_BENCH_TABLE"),
			// The keepalived comparison runs only when the bench asks for it (it takes minutes).
			"TROOP_BENCH_KEEPALIVED=" + os.Getenv("TROOP_BENCH_KEEPALIVED"), "TROOP_GUEST_TIMEOUT=" + guestTimeout.String()},
	}
	consoleLog := filepath.Join(dir, "console.log")
	f, err := os.Create(consoleLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	// The console goes to the log and, live, to stderr: a long run shows its progress.
	exit, err := assets.Run(ctx, job, dir, io.MultiWriter(f, prefixWriter{w: os.Stderr, prefix: "vm| "}))
	t.Logf("guest (kernel %s) ran %q in %s: exit %d", assets.KernelVersion, pattern, time.Since(start).Round(time.Second), exit)
	console, _ := os.ReadFile(consoleLog)
	results := vm.ParseTestOutput(string(console))
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			switch r.Status {
			case "PASS":
			case "SKIP":
				t.Skip(strings.Join(r.Output, "\n"))
			default:
				t.Errorf("failed in the guest:\n%s", strings.Join(r.Output, "\n"))
			}
		})
	}
	if err != nil || exit != 0 || len(results) == 0 {
		t.Fatalf("guest run: exit %d, %v, %d tests; console tail:\n%s", exit, err, len(results), tail(string(console), 40))
	}
}

// testWriter sends each write to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// prefixWriter prefixes each write (the console arrives a line at a time).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b)
	return len(b), err
}
