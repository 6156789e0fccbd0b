package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/troop-lb/troop/integration/benchresult"
)

// benchTable runs the VM tier's TestBenchTable (integration/bench_table_test.go: the large
// table into real IPVS in Debian's kernel under qemu, Troop beside ipvsadm -R, then an agent
// with that table), one boot per round, and renders what they measured.
func benchTable(ctx context.Context) (string, error) {
	start := time.Now()
	var r benchresult.Table
	var guestKernel string
	for _, round := range []string{"reconciler", "agent", "ipvsadm"} {
		part, kernel, err := benchTableRound(ctx, round)
		if err != nil {
			return "", err
		}
		guestKernel = kernel
		r.Kind, r.Services, r.Reals = part.Kind, part.Services, part.Reals
		r.TroopMS, r.TroopCalls, r.SteadyMS = append(r.TroopMS, part.TroopMS...), max(r.TroopCalls, part.TroopCalls), max(r.SteadyMS, part.SteadyMS)
		r.IpvsadmMS = append(r.IpvsadmMS, part.IpvsadmMS...)
		r.AgentApplyMS, r.ChangeMS = max(r.AgentApplyMS, part.AgentApplyMS), append(r.ChangeMS, part.ChangeMS...)
		r.RSSKB, r.HWMKB, r.BinaryBytes = max(r.RSSKB, part.RSSKB), max(r.HWMKB, part.HWMKB), max(r.BinaryBytes, part.BinaryBytes)
	}
	if len(r.TroopMS) == 0 || len(r.IpvsadmMS) == 0 || len(r.ChangeMS) == 0 {
		return "", fmt.Errorf("VM table benchmark: a round measured nothing: %+v", r)
	}
	return renderTable(r, guestKernel, time.Since(start)), nil
}

// benchTableRound boots the VM for one round of TestBenchTable: a fresh kernel, as one that held
// a large table (even in a namespace since deleted) is slower to program the next.
func benchTableRound(ctx context.Context, round string) (benchresult.Table, string, error) {
	// Under TCG ipvsadm -R alone takes minutes: the guest's default 12 minutes is too short.
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout", "30m", "-run", "^TestVM$", "-v", "./integration")
	cmd.Env = append(os.Environ(), "TROOP_VM=1", "TROOP_BENCH_TABLE="+round, "TROOP_VM_TIMEOUT=25m", "TROOP_VM_RUN=^TestBenchTable$")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r, guestKernel, ok := parseTableOutput(out.Bytes())
	if err != nil || !ok {
		logPath := filepath.Join(os.TempDir(), "troop-bench-table-"+round+".log")
		if werr := os.WriteFile(logPath, out.Bytes(), 0o644); werr != nil {
			logPath = "(not kept: " + werr.Error() + ")"
		}
		return r, "", fmt.Errorf("VM table benchmark, round %s: %v; result found: %v; whole output in %s; tail:\n%s", round, err, ok, logPath, lastLines(out.String(), 40))
	}
	return r, guestKernel, nil
}

// parseTableOutput finds TestBenchTable's result and the guest's kernel in TestVM's output.
func parseTableOutput(out []byte) (r benchresult.Table, guestKernel string, ok bool) {
	guestKernel = scanGuestOutput(out, func(j []byte) {
		var x benchresult.Table
		if json.Unmarshal(j, &x) == nil && x.Kind == "table" {
			r, ok = x, true
		}
	})
	return r, guestKernel, ok
}

func renderTable(r benchresult.Table, guestKernel string, took time.Duration) string {
	sum := func(v []float64) (s float64) {
		for _, x := range v {
			s += x
		}
		return s
	}
	join := func(v []float64) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf("%.0f ms", x))
		}
		return strings.Join(s, ", ")
	}
	troopMean, ipvsadmMean := sum(r.TroopMS)/float64(len(r.TroopMS)), sum(r.IpvsadmMS)/float64(len(r.IpvsadmMS))
	ratio := troopMean / ipvsadmMean
	c := slices.Sorted(slices.Values(r.ChangeMS))
	q := func(p float64) float64 { return c[max(0, int(math.Ceil(p*float64(len(c))))-1)] }
	p50, p99 := q(0.5), q(0.99)
	rssMB, hwmMB := float64(r.RSSKB)/1024, float64(r.HWMKB)/1024
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## A large table in real IPVS: Troop and ipvsadm -R, one-real change, footprint (VM tier)\n\n")
	fmt.Fprintf(&b, "Measured %s on %s; %s, %s in all. Guest: Debian's kernel %s under qemu TCG (2 vCPUs, no KVM: every figure is several times what the same kernel does on hardware, for Troop and ipvsadm alike), each round in a VM boot and a network namespace of its own (integration/bench_table_test.go, `TestBenchTable`). `make bench` rewrites this section.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostname(), cpuModel(), took.Round(time.Second), guestKernel)
	fmt.Fprintf(&b, "The table: %s TCP services × %d real servers (DR, weight 1, scheduler rr), %s kernel objects. Programming it into an empty IPVS, once each: Troop's reconciler (`director.Reconciler.Sync` over the kernel's IPVS through generic netlink, in the test process) and `ipvsadm -R` of the same table in `ipvsadm -S`'s format (the time includes starting ipvsadm). Then `troop agent -dev` gets the whole table by `PUT /v1/table`; a one-real change is `PUT /v1/services/{name}/reals/{id}/weight` until a netlink read of that service shows the new weight (polled every 0.2 ms), %d changes over services spread across the table, while the agent's full comparison runs every 5 s beside them (its listing of the kernel's services runs in the background, and it yields to waiting changes between services). Each round has a VM boot and a namespace of its own: a kernel that held a large table programs the next one several times slower. Seen here: an agent round after the reconciler round in the same boot had 54,000 of the 110,000 objects in after 5 minutes, whether the reconciler's namespace was still there or deleted, against the whole table in 80 s in a boot of its own; an earlier version of this benchmark, flushing the table between rounds in one namespace, measured the agent at 242 s and ipvsadm -R at 225 s. Likely causes in this kernel: IPVS keeps deleted destinations in a trash list that it walks for every destination it adds, and the hash table of virtual services is shared by all namespaces.\n\n",
		thousands(r.Services), r.Reals, thousands(r.Services*(1+r.Reals)), len(r.ChangeMS))
	b.WriteString("| measurement | result | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| Troop's reconciler, empty → full table | %s (%s IPVS calls) | | |\n", join(r.TroopMS), thousands(r.TroopCalls))
	fmt.Fprintf(&b, "| `ipvsadm -R`, empty → full table | %s | | |\n", join(r.IpvsadmMS))
	fmt.Fprintf(&b, "| ratio Troop / ipvsadm -R (means) | %.2f× | within 1.1× | %s |\n", ratio, verdict(ratio <= 1.1))
	fmt.Fprintf(&b, "| Troop, full comparison of the loaded table, nothing to do | %.0f ms | | |\n", r.SteadyMS)
	fmt.Fprintf(&b, "| agent: `PUT /v1/table` until the kernel holds all of it | %.0f ms | | |\n", r.AgentApplyMS)
	fmt.Fprintf(&b, "| one-real change, API call to kernel, p50 | %.1f ms | | |\n", p50)
	fmt.Fprintf(&b, "| one-real change, API call to kernel, p99 (max) | %.1f ms (%.1f ms) | under 50 ms | %s |\n", p99, c[len(c)-1], verdict(p99 < 50))
	fmt.Fprintf(&b, "| agent RSS with the table loaded (peak) | %.0f MB (%.0f MB) | under 200 MB | %s |\n", rssMB, hwmMB, verdict(rssMB < 200))
	fmt.Fprintf(&b, "| `troop` binary (static, linux/%s) | %.1f MB | | |\n", "amd64", float64(r.BinaryBytes)/(1<<20))
	if ratio > 1.1 {
		b.WriteString("\nWhy the ratio misses 1.1× in this run: each side ran once, and from boot to boot the same round varies more than the gap between them. In the three runs of 2026-11-27 with a boot per round, ipvsadm -R took 61, 48 and 36 s and Troop's reconciler 47, 39 and 42 s for this table. Both are bound by the kernel's work per object: each object is one netlink request either way, and ipvsadm adds a socket per request. Lever: several rounds of each, alternating, in as many boots, about a minute and a half per round here.\n")
	}
	if p99 >= 50 {
		b.WriteString("\nWhy the one-real change misses 50 ms p99 here: under TCG every step of the path is a few milliseconds (the HTTP call and the Raft apply in the agent, the copy of the FSM's maps of 10,000 services that each view of the state makes, then the reconciler's read of that service's destinations and its one write, each a system call TCG emulates), and the benchmark's own polling every 0.2 ms competes for the guest's two vCPUs. The tail comes from the background work a table of 110,000 kernel objects costs: the agent's full comparison (spaced at three times its own duration, so at most a third of the time) and the kernel's rate estimator, which in this kernel walks every service and destination every 2 s. The same code path without HTTP and Raft, natively, is in the reconcile section above. Levers: a view of the FSM that shares its maps instead of copying them, and a full comparison that reads only services changed in the kernel (IPVS has no change notifications: it would need a cheaper listing).\n")
	}
	if rssMB >= 200 {
		b.WriteString("\nWhy the agent misses 200 MB: a heap profile of an earlier run held about 93 MB in use after the changes (the FSM's table 18 MB, the API's health feed 16 MB, the reconciler's record of the table 14 MB, copies of FSM views 11 MB, the table's entry in -dev's in-memory Raft log 8 MB); the health feed now keeps verdicts only and the reconciler's record leaves out the kernel's counters. Go's collector lets the heap grow to twice what is in use before it collects, and RSS follows that. Levers: a soft memory limit for the agent (`GOMEMLIMIT` in the systemd unit), and FSM views that share their maps.\n")
	}
	if ratio < 1 {
		b.WriteString("\nWhy ipvsadm -R is slower: for every line, ipvsadm's libipvs allocates a new generic-netlink socket, connects it, asks the kernel's genl controller for the IPVS family's id, sends the one command, reads the answer and frees the socket (`ipvs_nl_send_message` in ipvsadm's libipvs/libipvs.c), so each object costs two round trips to the kernel and a socket's setup and teardown. Troop's reconciler resolves the family once and sends every command over one socket. Under TCG a system call is far dearer than on hardware, which widens the gap; the kernel's own work per object is the same for both.\n")
	}
	b.WriteString("\nTargets (issue 10): table programming within 1.1× of `ipvsadm -R` (the kernel is the limit); a one-real change under 50 ms p99 end to end; the agent under 200 MB with the large table. RSS is `VmRSS` of the agent's process after the changes (peak: `VmHWM`), which holds the table in its FSM, in Raft's in-memory log (-dev keeps the log in memory, so the 20 MB table entry stays) and in the reconciler's record of what it applied.\n")
	return b.String()
}

// thousands formats n with commas.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
