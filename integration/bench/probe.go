package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/probe"
)

// The probe benchmark runs the health-check engine with the real HTTP checker against HTTP
// servers on loopback. Three processes, so that each one's CPU and memory are its own: this one
// (the bench) starts a server process, which listens on one port of many 127.x.y.z addresses
// (Linux answers all of 127/8 on lo; one listener per address, nothing bound to 0.0.0.0), and an
// engine process, which loads the table into an FSM, runs probe.Engine on it, and reports its
// getrusage, memory and the engine's counters over the measured window as JSON.

// probeRoleEnv makes the bench binary act as one of the probe benchmark's processes.
const probeRoleEnv = "TROOP_BENCH_PROBE_ROLE"

// probeRole runs this process as one of the probe benchmark's children, if it is one: main
// calls it first.
func probeRole() (exitCode int, isChild bool) {
	switch os.Getenv(probeRoleEnv) {
	case "server":
		return probeChild(runProbeServer), true
	case "engine":
		return probeChild(runProbeEngine), true
	}
	return 0, false
}

func probeChild(run func() error) int {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "probe bench:", err)
		return 1
	}
	return 0
}

// probeCase is one run of the probe benchmark.
type probeCase struct {
	Reals       int           `json:"reals"`
	Interval    time.Duration `json:"interval"`
	Concurrency int           `json:"concurrency"`
	// HungEvery makes every n-th real server accept connections and never answer (0: none), so
	// its checks wait out the timeout.
	HungEvery int `json:"hung_every"`
	// Warmup runs before the measured window (the first interval spreads the first checks).
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	Port     uint16        `json:"port"`
	// Type is the check type: http, tcp (the cost of the connection alone) or none (the
	// engine's own cost).
	Type string `json:"type"`
}

// probeReport is what the engine process measured over its window.
type probeReport struct {
	Wall        time.Duration  `json:"wall"`
	Checks      uint64         `json:"checks"`
	Failures    uint64         `json:"failures"`
	Late        uint64         `json:"late"`
	CPU         time.Duration  `json:"cpu"`
	SysCPU      time.Duration  `json:"sys_cpu"`
	RSS         uint64         `json:"rss"`
	PeakRSS     uint64         `json:"peak_rss"`
	HeapInuse   uint64         `json:"heap_inuse"`
	Goroutines  int            `json:"goroutines"`
	P50         time.Duration  `json:"p50"`
	P99         time.Duration  `json:"p99"`
	Reasons     map[string]int `json:"reasons"`
	TimeWait    int            `json:"time_wait"`
	Concurrency int            `json:"concurrency"`
	ServerCPU   time.Duration  `json:"-"`
	// Requests is the server process's count of requests received over the window: the checks
	// seen from the real servers' side.
	Requests uint64 `json:"-"`
}

// probeAddr is the address of real server i: 127.10.0.1, 127.10.0.2, ... (250 per /24).
func probeAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(10 + i/(250*256)), byte(i / 250 % 256), byte(i%250 + 1)})
}

// probePerService is the number of real servers per service in the probe benchmark's table.
const probePerService = 100

// probeServices is the number of services that hold reals real servers.
func probeServices(reals int) int { return (reals + probePerService - 1) / probePerService }

// probeVIP is the address of service s: 198.51.100.1, 198.51.100.2, ... (up to 254 services, 25,400
// real servers).
func probeVIP(s int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + s)}) }

func probeHung(c probeCase, i int) bool { return c.HungEvery > 0 && i%c.HungEvery == c.HungEvery-1 }

// benchProbe runs the probe benchmark; quick runs only the 1,000-server row and ldirectord's.
func benchProbe(quick bool) (string, error) {
	interval := time.Second
	base := probeCase{Type: "http", Interval: interval, Warmup: 3 * interval, Duration: 10 * time.Second}
	type row struct {
		name string
		c    probeCase
	}
	var rows []row
	add := func(name string, edit func(*probeCase)) {
		c := base
		c.Reals = 10_000
		edit(&c)
		rows = append(rows, row{name, c})
	}
	// The first row is the one ldirectord's follows: the same real servers and interval.
	add("1,000 servers", func(c *probeCase) { c.Reals = 1000 })
	add("10,000 servers", func(*probeCase) {})
	add("10,000 servers", func(c *probeCase) { c.Concurrency = 64 })
	add("10,000 servers, 10 % hung", func(c *probeCase) { c.HungEvery = 10 })
	add("10,000 servers, 10 % hung", func(c *probeCase) { c.HungEvery, c.Concurrency = 10, 256 })
	add("10,000 servers", func(c *probeCase) { c.Type = "tcp" })
	add("10,000 servers", func(c *probeCase) { c.Type = "none" })
	if quick {
		rows = rows[:1]
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Health checks (probe engine, HTTP on loopback)\n\n")
	fmt.Fprintf(&b, "Measured %s on %s; %s, %s, %d CPUs, kernel %s. `make bench` rewrites this section.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostname(), cpuModel(), runtime.Version(), runtime.NumCPU(), kernel())
	fmt.Fprintf(&b, "`probe.Engine` with the package's `http` checker (GET /, a new connection per check: keep-alive off) against "+
		"real servers on 127.10.x.y, one listener per address, served by a separate process (a minimal HTTP responder). The engine runs "+
		"in a process of its own, loading the table (services of 100 real servers) into an `fsm.FSM`; each run checks every server every %s "+
		"(timeout %s, the default for that interval), warms up for %s (the first checks spread over the first interval) and is "+
		"measured for %s. Engine CPU is that process's getrusage user+sys over the window divided by the wall time, in cores (the "+
		"kernel's share in brackets); the server process's is shown apart; both share the machine's %d CPUs. Check time is each "+
		"target's last check, p50/p99. \"Hung\" servers accept and never answer, so their checks wait out the timeout; late checks are "+
		"slots skipped because every worker was busy (the engine sheds them rather than let them pile up). For scale, two rows "+
		"run other checkers on the same table: `tcp` (connect and close: the cost of the connection alone) and `none` (no I/O: "+
		"the engine's own cost). Requests/s at the servers is the server process's own count of the requests it received. The "+
		"second row is Debian's ldirectord checking the same 1,000 servers (see below the table).\n\n",
		interval, time.Duration(min(fsm.DefaultCheckTimeout, interval/2)), base.Warmup, base.Duration, runtime.NumCPU())
	b.WriteString("| run | checker | concurrency | checks/s (target) | requests/s at the servers | failed | late | engine CPU, cores (kernel) | server CPU | RSS / peak | heap | goroutines | check p50 / p99 | TIME_WAIT |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var notes []string
	var compared *probeReport
	var ld *ldirectordReport
	byChecker := map[string]*probeReport{} // the first 10,000-server row of each checker
	for i, r := range rows {
		rep, err := runProbeCase(r.c)
		if err != nil {
			return "", fmt.Errorf("%s, %s: %w", r.name, r.c.Type, err)
		}
		if r.c.Reals == 10_000 && r.c.HungEvery == 0 && byChecker[r.c.Type] == nil {
			byChecker[r.c.Type] = rep
		}
		secs := rep.Wall.Seconds()
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f (%d) | %.0f | %d | %d | %.2f (%.2f) | %.2f | %s / %s | %s | %d | %s / %s | %d |\n",
			r.name, r.c.Type, rep.Concurrency, float64(rep.Checks)/secs, int(float64(r.c.Reals)/r.c.Interval.Seconds()),
			float64(rep.Requests)/secs, rep.Failures, rep.Late, rep.CPU.Seconds()/secs, rep.SysCPU.Seconds()/secs, rep.ServerCPU.Seconds()/secs,
			mib(rep.RSS), mib(rep.PeakRSS), mib(rep.HeapInuse), rep.Goroutines, msf(rep.P50), msf(rep.P99), rep.TimeWait)
		if len(rep.Reasons) > 0 {
			reasons := slices.SortedFunc(maps.Keys(rep.Reasons), func(a, b string) int { return rep.Reasons[b] - rep.Reasons[a] })
			var parts []string
			for _, why := range reasons[:min(3, len(reasons))] {
				parts = append(parts, fmt.Sprintf("%q × %d", why, rep.Reasons[why]))
			}
			notes = append(notes, fmt.Sprintf("- %s, %s, concurrency %d: failing at the end: %s.", r.name, r.c.Type, rep.Concurrency, strings.Join(parts, ", ")))
		}
		if i == 0 {
			compared = rep
			if ld, err = runLdirectord(r.c); err != nil {
				return "", fmt.Errorf("%s, ldirectord: %w", r.name, err)
			}
			b.WriteString(ldirectordRow(r.name, r.c, ld))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	b.WriteString(ldirectordNote(rows[0].c, compared, ld))
	if h := byChecker["http"]; h != nil {
		b.WriteString(probeVerdict(h, byChecker["tcp"], byChecker["none"]))
	}
	fmt.Fprintf(&b, "\nTIME_WAIT is the kernel's count (/proc/net/sockstat) at the end of the run. The checker's side closes first, so "+
		"at 10,000 checks/s the prober's sockets fill the table up to net.ipv4.tcp_max_tw_buckets (%s here); past it the kernel "+
		"skips TIME_WAIT for new closes (\"time wait bucket table overflow\"), which costs nothing here. Ephemeral ports never "+
		"ran short: every real server is its own destination address, and a source port is reused across destinations "+
		"(a single address:port checked more than about 28,000 / 60 s ≈ 470 times a second would run out).\n", sysctl("net/ipv4/tcp_max_tw_buckets"))
	return b.String(), nil
}

func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func mib(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func msf(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// runProbeCase starts the server and the engine processes for c and returns the report.
func runProbeCase(c probeCase) (*probeReport, error) {
	exe, env, srv, err := startProbeServer(&c)
	if err != nil {
		return nil, err
	}
	defer srv.close()

	eng := exec.Command(exe)
	eng.Env = append(env, probeRoleEnv+"=engine")
	eng.Stderr = os.Stderr
	engOut, err := eng.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := eng.Start(); err != nil {
		return nil, err
	}
	defer eng.Process.Kill()
	rd := bufio.NewReader(engOut)
	var at0 serverSample
	var rep probeReport
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			eng.Wait()
			return nil, fmt.Errorf("engine process: %w", err)
		}
		if line == "start\n" {
			if at0, err = srv.sample(); err != nil {
				return nil, err
			}
			continue
		}
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			return nil, fmt.Errorf("engine process said %q: %w", line, err)
		}
		break
	}
	at1, err := srv.sample()
	if err != nil {
		return nil, err
	}
	rep.ServerCPU, rep.Requests = at1.cpu-at0.cpu, at1.requests-at0.requests
	if err := eng.Wait(); err != nil {
		return nil, fmt.Errorf("engine process: %w", err)
	}
	return &rep, nil
}

// probeServer is the real servers' process of one run. It answers each line on its stdin with
// the number of requests it has received so far, and exits when its stdin ends.
type probeServer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// serverSample is the server process's CPU time and request count at one moment.
type serverSample struct {
	cpu      time.Duration
	requests uint64
}

// startProbeServer picks a free port for c, starts the server process for it and waits until it
// listens on every address. It returns the bench executable and the environment that hands c to
// the other processes of the run.
func startProbeServer(c *probeCase) (exe string, env []string, srv *probeServer, err error) {
	if exe, err = os.Executable(); err != nil {
		return "", nil, nil, err
	}
	if c.Port, err = freePort(); err != nil {
		return "", nil, nil, err
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return "", nil, nil, err
	}
	env = append(os.Environ(), "TROOP_BENCH_PROBE_CASE="+string(spec))
	cmd := exec.Command(exe)
	cmd.Env = append(env, probeRoleEnv+"=server")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe() // the server exits when it reads EOF: when this process ends
	if err != nil {
		return "", nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, fmt.Errorf("start the server process: %w", err)
	}
	srv = &probeServer{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if line, err := srv.out.ReadString('\n'); err != nil || line != "ready\n" {
		srv.close()
		return "", nil, nil, fmt.Errorf("server process: %q, %v", line, err)
	}
	return exe, env, srv, nil
}

func (s *probeServer) sample() (serverSample, error) {
	cpu, err := procCPU(s.cmd.Process.Pid)
	if err != nil {
		return serverSample{}, fmt.Errorf("server process CPU: %w", err)
	}
	if _, err := fmt.Fprintln(s.in); err != nil {
		return serverSample{}, fmt.Errorf("ask the server process for its count: %w", err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return serverSample{}, fmt.Errorf("read the server process's count: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return serverSample{}, fmt.Errorf("server process said %q: %w", line, err)
	}
	return serverSample{cpu: cpu, requests: n}, nil
}

func (s *probeServer) close() {
	s.in.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func freePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// procStat is what the benchmark reads from /proc/<pid>/stat.
type procStat struct {
	session int
	// user and sys are the process's own CPU time; childUser and childSys that of its children
	// it has waited for (cutime, cstime), which leave no /proc entry of their own.
	user, sys, childUser, childSys time.Duration
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// Fields after the command (which may hold spaces) start after the last ')': f[0] is the
	// state, field 3 of proc(5).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command", pid, len(f))
	}
	var n [5]int64
	var errs []error
	for i, field := range []int{3, 11, 12, 13, 14} { // session, utime, stime, cutime, cstime
		var err error
		n[i], err = strconv.ParseInt(f[field], 10, 64)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const ticks = 100 // USER_HZ on Linux
	d := func(t int64) time.Duration { return time.Duration(t) * time.Second / ticks }
	return procStat{session: int(n[0]), user: d(n[1]), sys: d(n[2]), childUser: d(n[3]), childSys: d(n[4])}, nil
}

// procCPU returns a process's user+sys CPU time from /proc/pid/stat.
func procCPU(pid int) (time.Duration, error) {
	st, err := readProcStat(pid)
	return st.user + st.sys, err
}

// sessionUse is the resources of every process in one session at one moment.
type sessionUse struct {
	procs int
	// cpu and sys include the children each process has waited for, so that the CPU of short-lived
	// processes (ldirectord's ipvsadm calls) is counted once they are gone.
	cpu, sys time.Duration
	// rss counts the pages processes share (after a fork) once in each; pss splits them.
	rss, pss uint64
}

// sessionUsage sums the CPU time and memory of the processes in session sid.
func sessionUsage(sid int) (sessionUse, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return sessionUse{}, err
	}
	var u sessionUse
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // it ended since the directory was read
		}
		if err != nil {
			return sessionUse{}, err
		}
		if st.session != sid {
			continue
		}
		u.procs++
		u.cpu += st.user + st.sys + st.childUser + st.childSys
		u.sys += st.sys + st.childSys
		u.rss += procKB("/proc/"+e.Name()+"/status", "VmRSS")
		u.pss += procKB("/proc/"+e.Name()+"/smaps_rollup", "Pss")
	}
	return u, nil
}

func probeCaseFromEnv() (probeCase, error) {
	var c probeCase
	err := json.Unmarshal([]byte(os.Getenv("TROOP_BENCH_PROBE_CASE")), &c)
	return c, err
}

// runProbeServer serves every real server of the case until stdin ends: one listener per
// address, a fixed 200 answer (hung servers answer nothing and wait for the client to leave). It
// answers each line on stdin with the number of requests received so far, so that checks are
// also counted where they arrive, whoever makes them.
func runProbeServer() error {
	c, err := probeCaseFromEnv()
	if err != nil {
		return err
	}
	var ls []net.Listener
	var requests atomic.Uint64
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range c.Reals {
		l, err := net.Listen("tcp", netip.AddrPortFrom(probeAddr(i), c.Port).String())
		if err != nil {
			return fmt.Errorf("listen on real server %d: %w", i, err)
		}
		ls = append(ls, l)
		hung := probeHung(c, i)
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				go serveProbeConn(conn, hung, &requests)
			}
		}()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(requests.Load())
	}
	return in.Err()
}

var probeAnswer = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")

// serveProbeConn reads one request's head, counts it and answers 200, closing the connection
// first.
func serveProbeConn(conn net.Conn, hung bool, requests *atomic.Uint64) {
	defer conn.Close()
	buf := make([]byte, 2048)
	n := 0
	for !strings.Contains(string(buf[:n]), "\r\n\r\n") {
		if n == len(buf) {
			return
		}
		m, err := conn.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
	}
	requests.Add(1)
	if hung {
		io.Copy(io.Discard, conn) // until the checker gives up and closes
		return
	}
	conn.Write(probeAnswer)
}

// runProbeEngine runs the engine on the case's table and prints "start" when the measured
// window begins and the report as one JSON line when it ends.
func runProbeEngine() error {
	c, err := probeCaseFromEnv()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := fsm.New(log)
	var t fsm.Table
	for i := 0; i < c.Reals; i += probePerService {
		s := fsm.Service{Name: fmt.Sprintf("web%05d", i/probePerService), VIP: probeVIP(i / probePerService),
			Port: c.Port, Check: &fsm.HealthCheck{Type: c.Type, Interval: fsm.Duration(c.Interval)}}
		for j := i; j < min(i+probePerService, c.Reals); j++ {
			s.Reals = append(s.Reals, fsm.Real{Address: probeAddr(j)})
		}
		t.Services = append(t.Services, s)
	}
	cmd, err := fsm.EncodeCommand(fsm.ApplyTable(t))
	if err != nil {
		return err
	}
	if res := f.Apply(1, cmd); res.Err != nil {
		return fmt.Errorf("load the table: %w", res.Err)
	}
	e, err := probe.NewEngine(probe.Options{Source: f, Concurrency: c.Concurrency, Log: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	time.Sleep(c.Warmup)
	// TROOP_BENCH_PROBE_CPUPROFILE=file writes a CPU profile of the measured window.
	if path := os.Getenv("TROOP_BENCH_PROBE_CPUPROFILE"); path != "" {
		pf, err := os.Create(path)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
	}
	s0, w0 := e.Stats(), time.Now()
	u0, sys0 := rusageCPU()
	fmt.Println("start")
	time.Sleep(c.Duration)
	s1, w1 := e.Stats(), time.Now()
	u1, sys1 := rusageCPU()
	pprof.StopCPUProfile()

	rep := probeReport{Wall: w1.Sub(w0), Checks: s1.Checks - s0.Checks, Failures: s1.Failures - s0.Failures,
		Late: s1.Late - s0.Late, CPU: u1 - u0, SysCPU: sys1 - sys0, Goroutines: runtime.NumGoroutine(), Concurrency: s1.Concurrency,
		Reasons: map[string]int{}}
	var durs []time.Duration
	for _, ts := range e.View() {
		if ts.Last == nil {
			continue
		}
		durs = append(durs, time.Duration(ts.Last.Duration))
		if !ts.Last.Healthy {
			rep.Reasons[ts.Last.Reason]++
		}
	}
	if len(durs) > 0 {
		slices.Sort(durs)
		rep.P50, rep.P99 = durs[len(durs)/2], durs[min(len(durs)-1, len(durs)*99/100)]
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rep.HeapInuse = m.HeapInuse
	rep.RSS, rep.PeakRSS = procKB("/proc/self/status", "VmRSS"), procKB("/proc/self/status", "VmHWM")
	rep.TimeWait = sockstatTW()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// rusageCPU returns this process's CPU time, user+sys and sys alone.
func rusageCPU() (all, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// procKB returns a "kB" field of a /proc file such as /proc/self/status in bytes, 0 if the
// process or the field is gone.
func procKB(path, key string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// sockstatTW returns the TCP sockets in TIME_WAIT in this network namespace.
func sockstatTW() int {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "TCP:"); ok {
			f := strings.Fields(rest)
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "tw" {
					n, _ := strconv.Atoi(f[i+1])
					return n
				}
			}
		}
	}
	return -1
}

// probeVerdict states whether the engine met issue 10's target at 10,000 HTTP real servers
// (10,000 checks/s in under one core), and where its CPU went when it did not, from the rows
// of the other checkers (nil when not run).
func probeVerdict(http, tcp, none *probeReport) string {
	cores := func(r *probeReport) float64 { return r.CPU.Seconds() / r.Wall.Seconds() }
	met := cores(http) < 1 && float64(http.Checks)/http.Wall.Seconds() >= 9_900
	verdict := "**missed**"
	if met {
		verdict = "met"
	}
	s := fmt.Sprintf("\nTarget (issue 10): 10,000 checks per second in under one core: %s. The engine used %.2f cores for %.0f checks/s, %.2f of them in the kernel.",
		verdict, cores(http), float64(http.Checks)/http.Wall.Seconds(), http.SysCPU.Seconds()/http.Wall.Seconds())
	if !met && tcp != nil && none != nil {
		s += fmt.Sprintf(" Most of it is the kernel's work for a new TCP connection per check: connecting and closing alone (the `tcp` row) cost %.2f cores, the engine's own work without I/O (the `none` row) %.2f."+
			" Levers: close check connections with a reset (SO_LINGER 0, as keepalived's TCP_CHECK and HAProxy's HTTP checks do), which spares the FIN exchange and TIME_WAIT but makes real servers log a reset per check, which their users have asked to turn off (haproxy/haproxy#560, acassen/keepalived#2560), so it would be an option; or keep one connection per real server open between checks, which tests less (a server that stopped accepting connections would go unnoticed).",
			cores(tcp), cores(none))
	}
	return s + "\n"
}
