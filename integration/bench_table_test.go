package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/integration/benchresult"
	"github.com/troop-lb/troop/integration/lvs"
)

// The large table of issue 10: 10,000 TCP services × 10 DR real servers (110,000 kernel objects).
const (
	tableBenchServices = 10_000
	tableBenchReals    = 10
	tableBenchChanges  = 200
)

func tableBenchServiceList() []fsm.Service {
	services := make([]fsm.Service, tableBenchServices)
	for i := range services {
		s := fsm.Service{
			Name: fmt.Sprintf("svc%05d", i), Scheduler: "rr",
			VIP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 80,
		}
		for j := range tableBenchReals {
			s.Reals = append(s.Reals, fsm.Real{Address: netip.AddrFrom4([4]byte{172, 16, byte(j), byte(i % 250)}), Forwarding: fsm.DR})
		}
		services[i] = s
	}
	return services
}

// ipvsadmRules is the table in ipvsadm -S's format, for ipvsadm -R.
func ipvsadmRules(services []fsm.Service) string {
	var b strings.Builder
	for _, s := range services {
		vs := netip.AddrPortFrom(s.VIP, s.Port)
		fmt.Fprintf(&b, "-A -t %s -s rr\n", vs)
		for _, r := range s.Reals {
			fmt.Fprintf(&b, "-a -t %s -r %s -g -w 1\n", vs, netip.AddrPortFrom(r.Address, s.Port))
		}
	}
	return b.String()
}

// TestBenchTable measures, each in a fresh network namespace with the kernel's IPVS:
// programming the large table with Troop's reconciler and with ipvsadm -R (once each), and a
// `troop agent -dev` given the table through its API: one-real weight changes end to end and its
// RSS. It is a benchmark, not a check: TROOP_BENCH_TABLE=1 runs it (make bench's table section).
func TestBenchTable(t *testing.T) {
	if os.Getenv("TROOP_BENCH_TABLE") == "" {
		t.Skip("benchmark: TROOP_BENCH_TABLE=1 runs it (`make bench`, section table)")
	}
	needIPVS(t)
	troop := os.Getenv("TROOP_BIN")
	if troop == "" {
		t.Skip("TROOP_BIN (a troop binary) is not set")
	}
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}

	services := tableBenchServiceList()
	tb := newBenchTable(t, services)
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte(ipvsadmRules(services)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := tableBenchServices * (1 + tableBenchReals)
	res := benchresult.Table{Kind: "table", Services: tableBenchServices, Reals: tableBenchReals}

	// Each round runs in a network namespace of its own: IPVS keeps deleted destinations in a
	// trash list that it walks for every destination it adds, so a round after a flush in the
	// same namespace would pay for the one before it.
	troopRound := func() {
		b := newBenchNetns(ctx, t, "troop-bench-reconciler")
		defer b.close()
		k := b.ipvs()
		r, err := director.NewReconciler(k, director.NewOwnership(), director.ReconcilerOptions{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		rep, err := r.Sync(ctx, tb)
		took := time.Since(start)
		if err != nil || rep.Services.Created != tableBenchServices || rep.Destinations.Created != tableBenchServices*tableBenchReals {
			t.Fatalf("Troop's reconciler: created %d services, %d destinations: %v", rep.Services.Created, rep.Destinations.Created, err)
		}
		res.TroopMS = append(res.TroopMS, msOf(took))
		res.TroopCalls = rep.Calls
		start = time.Now()
		rep, err = r.Sync(ctx, tb)
		if err != nil || rep.Writes != 0 {
			t.Fatalf("steady-state pass: %d writes, %v", rep.Writes, err)
		}
		res.SteadyMS = msOf(time.Since(start))
		if n := b.kernelObjects(); n != want {
			t.Fatalf("after Troop's reconciler the kernel holds %d objects, want %d", n, want)
		}
	}
	ipvsadmRound := func() {
		b := newBenchNetns(ctx, t, "troop-bench-ipvsadm")
		defer b.close()
		f, err := os.Open(rules)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := b.cmd("ipvsadm", "-R")
		cmd.Stdin = f
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("ipvsadm -R: %v: %s", err, tail(string(out), 10))
		}
		res.IpvsadmMS = append(res.IpvsadmMS, msOf(took))
		if n := b.kernelObjects(); n != want {
			t.Fatalf("after ipvsadm -R the kernel holds %d objects, want %d", n, want)
		}
	}
	agentRun := func() {
		b := newBenchNetns(ctx, t, "troop-bench-agent")
		defer b.close()
		k := b.ipvs()
		ns := b.ns
		// The agent: a single in-memory director (-dev) on the namespace's kernel IPVS.
		agent := b.cmd(troop, "agent", "-dev", "-api-address", "127.0.0.1:8500", "-log-level", "warn")
		agentLog, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		agent.Stdout, agent.Stderr = agentLog, agentLog
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			agent.Process.Signal(syscall.SIGTERM)
			agent.Wait()
			if t.Failed() {
				log, _ := os.ReadFile(agentLog.Name())
				t.Logf("agent log:\n%s", tail(string(log), 40))
			}
		}()
		client := api.NewClient("127.0.0.1:8500", &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}, Timeout: 2 * time.Minute})
		start := time.Now()
		waitFor(t, time.Minute, "the agent applies the table", func() error {
			_, err := client.ApplyTable(ctx, fsm.Table{Services: services})
			return err
		})
		// The agent programs the services in name order: once the last is complete, count them
		// all (a listing of the whole table, too dear to repeat under a slow CPU).
		last := services[len(services)-1]
		lastKey := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: last.VIP, Port: last.Port}
		waitFor(t, 5*time.Minute, "the agent programs the whole table", func() error {
			if ds, _ := k.Destinations(lastKey); len(ds) != tableBenchReals {
				time.Sleep(100 * time.Millisecond)
				return fmt.Errorf("%s has %d of %d real servers", last.Name, len(ds), tableBenchReals)
			}
			if n := b.kernelObjects(); n != want {
				time.Sleep(time.Second)
				return fmt.Errorf("%d of %d objects", n, want)
			}
			return nil
		})
		res.AgentApplyMS = msOf(time.Since(start))
		t.Logf("agent: table applied and programmed in %.0f ms", res.AgentApplyMS)

		for i := range tableBenchChanges {
			s := services[(i*7919)%tableBenchServices]
			real := s.Reals[i%tableBenchReals]
			w := 2 + i%50
			key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: s.VIP, Port: s.Port}
			start := time.Now()
			if _, err := client.SetWeight(ctx, s.Name, netip.AddrPortFrom(real.Address, s.Port).String(), w); err != nil {
				t.Fatalf("set weight: %v", err)
			}
			for {
				ds, err := k.Destinations(key)
				if err != nil {
					t.Fatalf("read %s: %v", key, err)
				}
				if i := slices.IndexFunc(ds, func(d director.Destination) bool { return d.Address == real.Address }); i >= 0 && ds[i].Weight == w {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("%s %s: weight %d not in the kernel after 10 s", key, real.Address, w)
				}
				time.Sleep(200 * time.Microsecond)
			}
			res.ChangeMS = append(res.ChangeMS, msOf(time.Since(start)))
		}
		res.RSSKB, res.HWMKB = procStatusKB(agent.Process.Pid, "VmRSS"), procStatusKB(agent.Process.Pid, "VmHWM")
	}

	// TROOP_BENCH_TABLE names the rounds to run (1: all). make bench boots a VM for each: a
	// kernel that held a large table, even in a namespace since deleted, programs the next one
	// several times slower (seen under TCG; docs/benchmarks.md has the numbers).
	rounds := map[string]func(){"reconciler": troopRound, "agent": agentRun, "ipvsadm": ipvsadmRound}
	for _, name := range []string{"reconciler", "agent", "ipvsadm"} {
		if sel := os.Getenv("TROOP_BENCH_TABLE"); sel == "1" || slices.Contains(strings.Split(sel, ","), name) {
			rounds[name]()
		}
	}
	t.Logf("Troop %v ms (%d IPVS calls), ipvsadm -R %v ms, agent %.0f ms", res.TroopMS, res.TroopCalls, res.IpvsadmMS, res.AgentApplyMS)
	if st, err := os.Stat(troop); err == nil {
		res.BinaryBytes = st.Size()
	}
	if c := slices.Sorted(slices.Values(res.ChangeMS)); len(c) > 0 {
		t.Logf("one-real change: p50 %.1f ms, p99 %.1f ms, max %.1f ms; agent RSS %d kB (peak %d kB)",
			c[len(c)/2], c[len(c)*99/100], c[len(c)-1], res.RSSKB, res.HWMKB)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("troop-bench: %s\n", b)
}

// benchNetns is a network namespace of its own for one round of TestBenchTable.
type benchNetns struct {
	t       *testing.T
	ctx     context.Context
	ns      lvs.Netns
	handles []director.IPVS
}

// newBenchNetns creates the namespace (lo up) once the machine has settled, and deletes it when
// the test ends.
func newBenchNetns(ctx context.Context, t *testing.T, name string) *benchNetns {
	t.Helper()
	settle(t)
	b := &benchNetns{t: t, ctx: ctx, ns: lvs.Netns(name)}
	exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(b.close)
	b.run("ip", "link", "set", "lo", "up")
	return b
}

// close closes the IPVS handles opened in the namespace and deletes it, with its table: a
// table left in a namespace costs CPU all along (the kernel's rate estimator walks every
// service and destination every two seconds), so no round may run beside an earlier one's.
// It may be called more than once.
func (b *benchNetns) close() {
	for _, k := range b.handles {
		k.Close()
	}
	b.handles = nil
	exec.Command("ip", "netns", "del", string(b.ns)).Run()
}

func (b *benchNetns) cmd(args ...string) *exec.Cmd {
	return exec.CommandContext(b.ctx, "ip", append([]string{"netns", "exec", string(b.ns)}, args...)...)
}

func (b *benchNetns) run(args ...string) string {
	b.t.Helper()
	out, err := b.cmd(args...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, tail(string(out), 10))
	}
	return string(out)
}

// ipvs opens the namespace's IPVS, closed with the namespace.
func (b *benchNetns) ipvs() director.IPVS {
	b.t.Helper()
	var k director.IPVS
	if err := b.ns.Do(func() (err error) { k, err = director.NewIPVS(); return err }); err != nil {
		b.t.Fatal(err)
	}
	b.handles = append(b.handles, k)
	return k
}

// kernelObjects counts the services and destinations the namespace's IPVS holds, from
// /proc/net/ip_vs: one read, where ipvsadm -S opens a netlink socket per service and would
// compete for the guest's CPUs with what is being measured.
func (b *benchNetns) kernelObjects() int {
	b.t.Helper()
	n := 0
	sc := bufio.NewScanner(strings.NewReader(b.run("cat", "/proc/net/ip_vs")))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && (f[0] == "TCP" || f[0] == "->") && f[len(f)-1] != "InActConn" {
			n++
		}
	}
	return n
}

// settle waits (at most a minute) until the CPUs have been at least 90 % idle over a second:
// the teardown of a namespace with a large IPVS table goes on in the kernel's workers after
// `ip netns del` returns.
func settle(t *testing.T) {
	t.Helper()
	idle := func() (idle, total uint64) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		for i, f := range strings.Fields(line)[1:] {
			v, _ := strconv.ParseUint(f, 10, 64)
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		return idle, total
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		i0, t0 := idle()
		time.Sleep(time.Second)
		i1, t1 := idle()
		if t1 > t0 && float64(i1-i0) >= 0.9*float64(t1-t0) {
			return
		}
	}
	t.Logf("the machine did not settle within a minute; measuring anyway")
}

// newBenchTable applies the services to a fresh FSM and returns its state.
func newBenchTable(t *testing.T, services []fsm.Service) *fsm.State {
	t.Helper()
	f := fsm.New(slog.New(slog.DiscardHandler))
	b, err := fsm.EncodeCommand(fsm.ApplyTable(fsm.Table{Services: services}))
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Apply(1, b); res.Err != nil {
		t.Fatal(res.Err)
	}
	return f.View()
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// procStatusKB reads one "kB" field of /proc/PID/status (0 when it cannot).
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
