package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// The ldirectord row of the probe benchmark (issue 10: "ldirectord (Debian's package) checking the
// same 1,000 real servers, side by side"): Debian's ldirectord with negotiate HTTP checks against
// the same server process the engine is measured against. ldirectord programs IPVS through
// ipvsadm, and this host's kernel may have no IPVS, so it runs in a private mount namespace in
// which ipvsadm is a stub that records its arguments and lists an empty table; its checks are
// the real thing. The host's files never change: the bind mounts exist only in that namespace.

const ldirectordPath = "/usr/sbin/ldirectord"

// ldirectordReport is what the ldirectord run measured over its window, or why it did not run.
type ldirectordReport struct {
	// Skipped, when set, is why there is no measurement ("ldirectord not installed").
	Skipped string
	Version string
	Wall    time.Duration
	// Requests is the server process's count: ldirectord keeps none of its own.
	Requests    uint64
	CPU, SysCPU time.Duration
	ServerCPU   time.Duration
	RSS, PSS    uint64
	Procs       int
	// Failed is rendered: see ldirectordFailed.
	Failed string
	// IpvsadmCalls counts the stub's calls in the window: none once every real server is in.
	IpvsadmCalls int
	// Startup is the time from start until every virtual service's checker process runs.
	Startup  time.Duration
	TimeWait int
}

// ldirectordReceive is the negotiate check's receive regexp: the body of probeAnswer.
const ldirectordReceive = "ok"

// ldirectordConfig is an ldirectord.cf for c's real servers, grouped as the engine's table is
// (probePerService real servers per virtual service, on probeVIP), logging to logPath.
func ldirectordConfig(c probeCase, logPath string) string {
	var b strings.Builder
	// A daemon, as Debian runs it, logging to a file (which it opens, appends to and closes for
	// each line) rather than syslog. supervised = yes would keep it in the foreground, but it
	// would log to a block-buffered stdout.
	fmt.Fprintf(&b, "logfile = %q\n", logPath)
	// ldirectord takes whole seconds: 1 s is the closest it gets to the engine's timeout (half
	// the interval). negotiatetimeout is the one negotiate checks use.
	fmt.Fprintf(&b, "checkinterval = %d\nchecktimeout = 1\nnegotiatetimeout = 1\n", ldirectordInterval(c))
	// fork: a child process per virtual service, each checking its real servers one after
	// another and then sleeping checkinterval: ldirectord's fastest mode. quiescent = no
	// removes a failed real server rather than setting its weight to 0, which logs "Deleted".
	b.WriteString("fork = yes\nquiescent = no\nautoreload = no\n")
	for i := 0; i < c.Reals; i += probePerService {
		fmt.Fprintf(&b, "\nvirtual = %s:80\n", probeVIP(i/probePerService))
		for j := i; j < min(i+probePerService, c.Reals); j++ {
			// masq: the only forwarding method with which LVS maps the virtual port (80) to
			// the real servers' own.
			fmt.Fprintf(&b, "\treal = %s:%d masq\n", probeAddr(j), c.Port)
		}
		fmt.Fprintf(&b, "\tprotocol = tcp\n\tscheduler = rr\n\tchecktype = negotiate\n\tservice = http\n\trequest = \"/\"\n\treceive = %q\n", ldirectordReceive)
	}
	return b.String()
}

// ldirectordInterval is c's check interval in whole seconds, which ldirectord takes.
func ldirectordInterval(c probeCase) int { return max(1, int(c.Interval.Round(time.Second).Seconds())) }

// ipvsadmStub is the ipvsadm ldirectord runs in its namespace: it appends its arguments to
// calls and, asked for a listing, prints the header of an empty table as ipvsadm -Ln does.
func ipvsadmStub(calls string) string {
	return fmt.Sprintf(`#!/bin/sh
echo "$*" >> '%s'
for a; do
	case $a in
	-L|-l|--list|-Ln|-nL)
		printf 'IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n'
		break
		;;
	esac
done
exit 0
`, calls)
}

// ensureLdirectord installs Debian's ldirectord when it is missing and this process is root. It
// returns the package's version, or why the row is skipped.
func ensureLdirectord() (version, skipped string) {
	if _, err := os.Stat(ldirectordPath); errors.Is(err, os.ErrNotExist) {
		if os.Geteuid() != 0 {
			return "", "ldirectord not installed"
		}
		if err := aptInstall("ldirectord"); err != nil {
			return "", "installing ldirectord failed: " + err.Error()
		}
	}
	if os.Geteuid() != 0 {
		// The stubbed ipvsadm needs a mount namespace of its own, which takes CAP_SYS_ADMIN.
		return "", "ldirectord needs root here (a private mount namespace for the ipvsadm stub)"
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "ldirectord").Output()
	if err != nil {
		return "(version unknown)", "" // installed some other way; it runs all the same
	}
	return debianUpstreamVersion(string(out)), ""
}

// debianUpstreamVersion turns a Debian version (1:4.12.0-2) into the upstream one (4.12.0).
func debianUpstreamVersion(v string) string {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ":"); ok {
		v = after
	}
	if i := strings.LastIndexByte(v, '-'); i > 0 {
		v = v[:i]
	}
	return v
}

// aptInstall installs pkg without its recommendations, running apt-get update first only if the
// package lists do not know it.
func aptInstall(pkg string) error {
	fmt.Fprintf(os.Stderr, "bench: installing Debian's %s (apt-get install --no-install-recommends %[1]s: the Perl daemon, ipvsadm and the Perl modules its checks use)\n", pkg)
	install := func() (string, error) {
		var out bytes.Buffer
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stderr, &out), io.MultiWriter(os.Stderr, &out)
		err := cmd.Run()
		return out.String(), err
	}
	out, err := install()
	if err != nil && (strings.Contains(out, "Unable to locate package") || strings.Contains(out, "has no installation candidate")) {
		fmt.Fprintln(os.Stderr, "bench: the package lists do not know", pkg+"; apt-get update")
		update := exec.Command("apt-get", "update")
		update.Stdout, update.Stderr = os.Stderr, os.Stderr
		if err := update.Run(); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
		_, err = install()
	}
	if err != nil {
		return fmt.Errorf("apt-get install %s: %w", pkg, err)
	}
	return nil
}

// runLdirectord runs ldirectord against a server process for c's real servers: it waits until
// a checker process runs for every virtual service, warms up for c.Warmup and measures for
// c.Duration. Every process in ldirectord's mount namespace is killed and its files removed when
// it returns.
func runLdirectord(c probeCase) (*ldirectordReport, error) {
	version, skipped := ensureLdirectord()
	if skipped != "" {
		return &ldirectordReport{Skipped: skipped}, nil
	}
	dir, err := os.MkdirTemp("", "troop-bench-ldirectord-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	_, _, srv, err := startProbeServer(&c)
	if err != nil {
		return nil, err
	}
	defer srv.close()

	logPath, calls := filepath.Join(dir, "ldirectord.log"), filepath.Join(dir, "ipvsadm.calls")
	cf, stub, run := filepath.Join(dir, "troop-bench.cf"), filepath.Join(dir, "ipvsadm"), filepath.Join(dir, "run")
	if err := errors.Join(os.WriteFile(cf, []byte(ldirectordConfig(c, logPath)), 0o644),
		os.WriteFile(stub, []byte(ipvsadmStub(calls)), 0o755), os.WriteFile(calls, nil, 0o644), os.Mkdir(run, 0o755)); err != nil {
		return nil, fmt.Errorf("ldirectord's files in %s: %w", dir, err)
	}
	targets, err := ipvsadmPaths()
	if err != nil {
		return nil, err
	}
	// ldirectord keeps its pid file at /var/run/ldirectord.<config>.pid, a fixed path: the
	// namespace gets a /var/run of its own, run in the temp dir.
	varRun, err := filepath.EvalSymlinks("/var/run")
	if err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "ldirectord.out")) // what it says before it daemonizes
	if err != nil {
		return nil, err
	}
	defer out.Close()

	// Go makes the new mount namespace private (no mount propagates to the host's) before the
	// shell runs; the shell mounts and then becomes ldirectord, which daemonizes as Debian's
	// systemd unit runs it.
	script := `set -e
stub=$1 run=$2 varrun=$3 cf=$4
shift 4
for t; do mount --bind "$stub" "$t"; done
mount --bind "$run" "$varrun"
exec ` + ldirectordPath + ` "$cf" start`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh", stub, run, varRun, cf}, targets...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Unshareflags: syscall.CLONE_NEWNS}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ldirectord in a mount namespace: %w", err)
	}
	// The process lives on until ldirectord daemonizes, well after Start returns.
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("ldirectord's mount namespace: %w", err)
	}
	defer killNamespace(ns)
	said := func() string { b, _ := os.ReadFile(out.Name()); return lastLines(string(b), 20) }
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("ldirectord did not daemonize (%w); it said:\n%s", err, said())
	}
	var pid int
	err = poll(time.Minute, func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(run, "ldirectord."+filepath.Base(cf)+".pid"))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0, err
	})
	if err != nil {
		return nil, fmt.Errorf("ldirectord's pid file: %w; it said:\n%s", err, said())
	}
	daemon, err := readProcStat(pid)
	if err != nil {
		return nil, fmt.Errorf("ldirectord's daemon: %w", err)
	}
	// Before forking its checkers, the daemon checks every real server once, one at a time.
	err = poll(5*time.Minute, func() (bool, error) {
		if err := syscall.Kill(pid, 0); err != nil {
			return false, fmt.Errorf("ldirectord's daemon %d is gone: %w", pid, err)
		}
		b, err := os.ReadFile(logPath)
		return strings.Count(string(b), "Spawned child ") >= probeServices(c.Reals), err
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("waiting for ldirectord's checker processes: %w; its log ends:\n%s", err, lastLines(string(b), 20))
	}
	rep := &ldirectordReport{Version: version, Startup: time.Since(start)}
	time.Sleep(c.Warmup)
	at0, err := sampleLdirectord(daemon.session, srv, logPath, calls)
	if err != nil {
		return nil, err
	}
	time.Sleep(c.Duration)
	at1, err := sampleLdirectord(daemon.session, srv, logPath, calls)
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return nil, fmt.Errorf("ldirectord's daemon %d ended during the window (%w); its log ends:\n%s", pid, err, lastLines(string(at1.log), 20))
	}
	rep.Wall, rep.Requests = at1.at.Sub(at0.at), at1.srv.requests-at0.srv.requests
	rep.CPU, rep.SysCPU, rep.ServerCPU = at1.use.cpu-at0.use.cpu, at1.use.sys-at0.use.sys, at1.srv.cpu-at0.srv.cpu
	rep.RSS, rep.PSS, rep.Procs, rep.IpvsadmCalls = at1.use.rss, at1.use.pss, at1.use.procs, at1.calls-at0.calls
	rep.Failed = ldirectordFailed(at0.log, at1.log[len(at0.log):], c.Reals)
	rep.TimeWait = sockstatTW()
	return rep, nil
}

// poll calls done every 100 ms until it reports true or an error, or timeout passes.
func poll(timeout time.Duration, done func() (bool, error)) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if ok, err := done(); ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
	}
}

// killNamespace kills every process in mount namespace ns (the target of a /proc/<pid>/ns/mnt
// link) until none is left: ldirectord's daemon, its checker processes and any ipvsadm call in
// flight, whatever session they are in.
func killNamespace(ns string) {
	for range 100 {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		left := 0
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if link, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err == nil && link == ns {
				syscall.Kill(pid, syscall.SIGKILL)
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ldirectordSample is ldirectord's state at one moment of the window.
type ldirectordSample struct {
	at  time.Time
	use sessionUse
	srv serverSample
	// log is the log up to its last complete line; calls the stub's calls so far.
	log   []byte
	calls int
}

func sampleLdirectord(sid int, srv *probeServer, logPath, calls string) (ldirectordSample, error) {
	s := ldirectordSample{at: time.Now()}
	var err error
	if s.use, err = sessionUsage(sid); err != nil {
		return s, fmt.Errorf("ldirectord's processes: %w", err)
	}
	if s.srv, err = srv.sample(); err != nil {
		return s, err
	}
	log, err1 := os.ReadFile(logPath)
	called, err2 := os.ReadFile(calls)
	if err := errors.Join(err1, err2); err != nil {
		return s, err
	}
	s.log, s.calls = log[:bytes.LastIndexByte(log, '\n')+1], bytes.Count(called, []byte("\n"))
	return s, nil
}

// ldirectordFailed tells the failed checks of a window from ldirectord's log before it and
// during it. ldirectord logs when a real server goes ("Deleted real server: ...", with quiescent
// = no) and comes back ("Added real server: ..."), not each check: with all reals in at the
// start and none deleted in the window no check failed, and each deletion is at least one failed
// check; otherwise it cannot tell ("—").
func ldirectordFailed(before, during []byte, reals int) string {
	up := map[string]bool{}
	for line := range strings.SplitSeq(string(before), "\n") {
		if _, rest, ok := strings.Cut(line, "Added real server: "); ok {
			up[strings.Fields(rest)[0]] = true
		} else if _, rest, ok := strings.Cut(line, "Deleted real server: "); ok {
			delete(up, strings.Fields(rest)[0])
		}
	}
	switch deleted := strings.Count(string(during), "Deleted real server: "); {
	case deleted > 0:
		return fmt.Sprintf("≥ %d", deleted)
	case len(up) == reals:
		return "0"
	default:
		return "—"
	}
}

// ipvsadmPaths returns the files the stub covers: ldirectord runs /sbin/ipvsadm if it is
// executable and /usr/sbin/ipvsadm otherwise (with /sbin a link to /usr/sbin, they are one).
func ipvsadmPaths() ([]string, error) {
	var paths []string
	for _, p := range []string{"/sbin/ipvsadm", "/usr/sbin/ipvsadm"} {
		file, err := filepath.EvalSymlinks(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(paths, file) {
			paths = append(paths, file)
		}
	}
	if len(paths) == 0 {
		return nil, errors.New("no ipvsadm in /sbin or /usr/sbin to stub (ldirectord refuses to start without one)")
	}
	return paths, nil
}

// ldirectordRow is ldirectord's row of the probe table, with "—" in the columns it has no
// figure for.
func ldirectordRow(name string, c probeCase, ld *ldirectordReport) string {
	if ld.Skipped != "" {
		return fmt.Sprintf("| %s | ldirectord negotiate http (fork=yes) | skipped: %s |%s\n", name, ld.Skipped, strings.Repeat(" — |", 11))
	}
	secs := ld.Wall.Seconds()
	perSec := float64(ld.Requests) / secs
	return fmt.Sprintf("| %s | ldirectord %s negotiate http (fork=yes) | %d | %.0f (%d) | %.0f | %s | — | %.2f (%.2f) | %.2f | %s / — | — | — | — | %d |\n",
		name, ld.Version, probeServices(c.Reals), perSec, int(float64(c.Reals)/c.Interval.Seconds()), perSec,
		ld.Failed, ld.CPU.Seconds()/secs, ld.SysCPU.Seconds()/secs, ld.ServerCPU.Seconds()/secs, mib(ld.RSS), ld.TimeWait)
}

// ldirectordNote says how ldirectord ran and compares its CPU with the engine's (troop: the
// engine's row for the same case in the same run).
func ldirectordNote(c probeCase, troop *probeReport, ld *ldirectordReport) string {
	if ld.Skipped != "" {
		return fmt.Sprintf("\nldirectord (Debian's package) was to check the same %s real servers; skipped: %s.\n", thousands(c.Reals), ld.Skipped)
	}
	why := "this host's kernel has no IPVS"
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		why = "it should leave the host's IPVS table alone"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe ldirectord row is Debian's ldirectord %s checking the same %s real servers, grouped the same way (%d virtual "+
		"services of %d): `checktype = negotiate`, `service = http`, GET / expecting %q, `checkinterval = %d`, `negotiatetimeout = 1` "+
		"(whole seconds only: the closest to the engine's %s), `quiescent = no`, and `fork = yes`, ldirectord's fastest mode: one "+
		"checker process per virtual service, which checks its real servers one after another and then sleeps the interval (so a "+
		"round takes the interval plus its checks' time). It ran "+
		"in a private mount namespace in which ipvsadm was a stub that records its arguments and lists an empty table (%d calls in "+
		"the window), because %s, and a /var/run of its own; its checks went over TCP to the same loopback servers. It ran as a "+
		"daemon, as Debian's systemd unit runs it, logging to a file in a temp dir, never syslog. Its warm-up began once every checker process ran, %s after start (before forking, the "+
		"parent checks every real server once, one at a time, calling ipvsadm for each). Its checks/s are the servers' count "+
		"(ldirectord keeps none; a check is one GET); CPU is user+sys of every process in the daemon's session over the window, counting the "+
		"children they waited for (ipvsadm); RSS is VmRSS summed over its %d processes, which counts the pages forked children share "+
		"with the parent once in each (their proportional share, PSS, sums to %s); failed comes from its log, which records real servers removed and re-added, not each check.\n",
		ld.Version, thousands(c.Reals), probeServices(c.Reals), probePerService, ldirectordReceive,
		ldirectordInterval(c), time.Duration(min(fsm.DefaultCheckTimeout, c.Interval/2)), ld.IpvsadmCalls,
		why, ld.Startup.Round(100*time.Millisecond), ld.Procs, mib(ld.PSS))
	troopCores, ldCores := troop.CPU.Seconds()/troop.Wall.Seconds(), ld.CPU.Seconds()/ld.Wall.Seconds()
	troopRate, ldRate := float64(troop.Requests)/troop.Wall.Seconds(), float64(ld.Requests)/ld.Wall.Seconds()
	fmt.Fprintf(&b, "\nAt %s real servers in this run, Troop's engine used %.2f cores for %.0f checks/s and ldirectord %.2f cores for %.0f: "+
		"Troop/ldirectord CPU = %.3f, or %.3f per check (both counted at the servers).\n",
		thousands(c.Reals), troopCores, troopRate, ldCores, ldRate, troopCores/ldCores, (troopCores/troopRate)/(ldCores/ldRate))
	return b.String()
}
