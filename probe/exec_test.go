package probe

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("exec checks are tested with /bin/sh scripts, and there is no /bin/sh")
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func execSpec(argv ...string) fsm.HealthCheck {
	return testSpec("exec", func(c *fsm.HealthCheck) { c.Command = argv })
}

func TestExecExitStatus(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer leakCheck(t)()
	for _, tc := range []struct {
		name, body string
		healthy    bool
		reason     string
	}{
		{"ok", "exit 0\n", true, "exit status 0"},
		{"ok with a word", "echo '  all good  '\n", true, "exit status 0: all good"},
		{"stderr", "echo 'on stdout'\necho '' >&2\necho '  backend down: 503  ' >&2\necho more >&2\nexit 2\n", false, "exit status 2: backend down: 503"},
		{"stdout only", "printf '\\n\\nsecond line\\n'\nexit 1\n", false, "exit status 1: second line"},
		{"silent", "exit 3\n", false, "exit status 3"},
		{"long line", "printf '%0300d\\n' 0 >&2\nexit 2\n", false, "exit status 2: " + strings.Repeat("0", 117) + "…"},
		{"killed by a signal", "kill -9 $$\n", false, "signal: killed"},
		{"lots of output", "i=0; while [ $i -lt 2000 ]; do echo 'line of output to fill the pipe'; i=$((i+1)); done\nexit 0\n", true, "exit status 0: line of output to fill the pipe"},
	} {
		script := writeScript(t, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.body)
		spec := execSpec(script)
		r := checkOnce(t, mustChecker(t, spec), testTarget("198.51.100.7:8080", spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
	}
	for _, tc := range []struct {
		argv0, reason string
	}{
		{filepath.Join(dir, "missing"), `cannot run "` + dir + `/missing": no such file or directory`},
		{notExec, `cannot run "` + notExec + `": permission denied`},
		{"troop-no-such-check", `cannot run "troop-no-such-check": executable file not found in $PATH`},
	} {
		spec := execSpec(tc.argv0)
		wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget("198.51.100.7:8080", spec)), false, tc.reason)
	}
}

func TestExecArgumentsAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := writeScript(t, dir, "record", `
for a in "$@"; do echo "arg=$a"; done > `+out+`
env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=' | sed 's/^/env=/' >> `+out+`
echo "cwd=$(pwd)" >> `+out+`
`)
	defer leakCheck(t)()
	read := func() []string {
		t.Helper()
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return sortedLines(string(b))
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = execPath
	}

	spec := execSpec(script, "--url", "http://x/ with spaces")
	spec.Port = 8443
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget("198.51.100.7:8080", spec)), true, "exit status 0")
	want := sortedLines(strings.Join([]string{
		"arg=--url", "arg=http://x/ with spaces", "arg=192.0.2.1", "arg=80", "arg=198.51.100.7", "arg=8080",
		"env=PATH=" + path, "env=TROOP_VIP=192.0.2.1", "env=TROOP_PORT=80", "env=TROOP_REAL=198.51.100.7",
		"env=TROOP_REAL_PORT=8080", "env=TROOP_CHECK_PORT=8443", "env=TROOP_SERVICE=web", "cwd=/",
	}, "\n"))
	if got := read(); !slices.Equal(got, want) {
		t.Errorf("the program got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A firewall-mark service without a VIP, IPv6 real server without a port.
	spec = execSpec(script)
	target := testTarget("[2001:db8::7]:0", spec)
	target.VIP, target.ServicePort, target.Service = netip.Addr{}, 0, "mail"
	wantResult(t, checkOnce(t, mustChecker(t, spec), target), true, "exit status 0")
	want = sortedLines(strings.Join([]string{
		"arg=", "arg=0", "arg=2001:db8::7", "arg=0",
		"env=PATH=" + path, "env=TROOP_VIP=", "env=TROOP_PORT=0", "env=TROOP_REAL=2001:db8::7",
		"env=TROOP_REAL_PORT=0", "env=TROOP_CHECK_PORT=0", "env=TROOP_SERVICE=mail", "cwd=/",
	}, "\n"))
	if got := read(); !slices.Equal(got, want) {
		t.Errorf("the program got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// alive says the process runs (a zombie, dead but not yet reaped by init, is not alive).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// childPID reads the PID a script wrote, waiting briefly for it.
func childPID(t *testing.T, file string) int {
	t.Helper()
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script wrote no PID to %s", file)
		}
	}
}

// wantGone fails the test unless the process is gone within a moment.
func wantGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s (PID %d) still runs after the check returned", what, pid)
			return
		}
	}
}

func TestExecTimeoutKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	// The child holds stdout open, so a check that killed only the script would wait for it.
	script := writeScript(t, dir, "hang", "sleep 30 &\necho $! > "+pidFile+"\necho 'still thinking'\nwait\n")
	defer leakCheck(t)()
	spec := execSpec(script)
	// Timed from before checkOnce sets its deadline: the checker's own Duration starts a moment
	// after the deadline's clock did.
	begin := time.Now()
	r := checkOnce(t, mustChecker(t, spec), testTarget("198.51.100.7:8080", spec))
	wantResult(t, r, false, "timeout after 200ms (killed)")
	if took := time.Since(begin); took < testTimeout {
		t.Errorf("killed after %v, before the timeout", took)
	}
	wantGone(t, childPID(t, pidFile), "the script's child")
}

func TestExecLeftoversKilled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	// A script that leaves a background child behind, holding its stdout, and exits.
	script := writeScript(t, dir, "leave", "sleep 30 &\necho $! > "+pidFile+"\necho done\nexit 0\n")
	defer leakCheck(t)()
	spec := execSpec(script)
	r := checkOnce(t, mustChecker(t, spec), testTarget("198.51.100.7:8080", spec))
	wantResult(t, r, true, "exit status 0: done")
	if r.Duration >= testTimeout {
		t.Errorf("the check waited %v for the left-over child", r.Duration)
	}
	wantGone(t, childPID(t, pidFile), "the script's left-over child")
}

func TestExecConcurrent(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "args", `[ "$3" = 198.51.100.7 ] && [ "$TROOP_REAL_PORT" = "$4" ] || exit 1`+"\n")
	defer leakCheck(t)()
	spec := execSpec(script)
	c := mustChecker(t, spec)
	results := make(chan Result, 20)
	for i := range 20 {
		go func() {
			results <- checkOnce(t, c, testTarget("198.51.100.7:"+strconv.Itoa(8000+i), spec))
		}()
	}
	for range 20 {
		if r := <-results; !r.Healthy {
			t.Errorf("concurrent check: %q", r.Reason)
		}
	}
}
