package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ldirectordVirtual is one virtual block of an ldirectord.cf, as ldirectord reads it.
type ldirectordVirtual struct {
	addr    string
	reals   []string
	options map[string]string
}

// parseLdirectordConfig reads an ldirectord.cf the way ldirectord does: "key = value" lines, and
// after each virtual line the indented lines of its block.
func parseLdirectordConfig(t *testing.T, text string) (global map[string]string, virtuals []ldirectordVirtual) {
	t.Helper()
	global = map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %d: no '=': %q", i+1, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		indented := line[0] == '\t' || strings.HasPrefix(line, "    ")
		switch {
		case !indented && key == "virtual":
			virtuals = append(virtuals, ldirectordVirtual{addr: value, options: map[string]string{}})
		case !indented:
			if len(virtuals) > 0 {
				t.Fatalf("line %d: global %q after the first virtual block", i+1, key)
			}
			global[key] = value
		case len(virtuals) == 0:
			t.Fatalf("line %d: indented before any virtual: %q", i+1, line)
		case key == "real":
			v := &virtuals[len(virtuals)-1]
			v.reals = append(v.reals, value)
		default:
			virtuals[len(virtuals)-1].options[key] = value
		}
	}
	return global, virtuals
}

func TestLdirectordConfig(t *testing.T) {
	c := probeCase{Reals: 1000, Interval: time.Second, Port: 18080}
	global, virtuals := parseLdirectordConfig(t, ldirectordConfig(c, "/tmp/x/ldirectord.log"))

	for key, want := range map[string]string{"logfile": `"/tmp/x/ldirectord.log"`, "checkinterval": "1", "checktimeout": "1",
		"negotiatetimeout": "1", "fork": "yes", "quiescent": "no"} {
		if global[key] != want {
			t.Errorf("%s = %q, want %q", key, global[key], want)
		}
	}
	if _, ok := global["supervised"]; ok {
		t.Errorf("supervised is set: ldirectord would log to a buffered stdout")
	}
	if len(virtuals) != 10 {
		t.Fatalf("%d virtual blocks, want 10", len(virtuals))
	}
	_, body, _ := strings.Cut(string(probeAnswer), "\r\n\r\n")
	for s, v := range virtuals {
		if want := probeVIP(s).String() + ":80"; v.addr != want {
			t.Errorf("virtual %d is %s, want %s", s, v.addr, want)
		}
		if len(v.reals) != 100 {
			t.Fatalf("virtual %s has %d reals, want 100", v.addr, len(v.reals))
		}
		for j, r := range v.reals {
			if want := fmt.Sprintf("%s:%d masq", probeAddr(s*100+j), c.Port); r != want {
				t.Fatalf("virtual %s, real %d is %q, want %q", v.addr, j, r, want)
			}
		}
		for key, want := range map[string]string{"checktype": "negotiate", "service": "http", "request": `"/"`, "protocol": "tcp"} {
			if v.options[key] != want {
				t.Errorf("virtual %s: %s = %q, want %q", v.addr, key, v.options[key], want)
			}
		}
		receive, err := strconv.Unquote(v.options["receive"])
		if err != nil {
			t.Fatalf("virtual %s: receive %q: %v", v.addr, v.options["receive"], err)
		}
		if !regexp.MustCompile(receive).MatchString(body) {
			t.Errorf("virtual %s: receive %q does not match the servers' body %q", v.addr, receive, body)
		}
	}
}

func TestLdirectordFailed(t *testing.T) {
	added := func(addrs ...string) string {
		var b strings.Builder
		for _, a := range addrs {
			fmt.Fprintf(&b, "[Fri Nov 27 01:28:05 2026|troop-bench.cf|42] Added real server: %s (192.0.2.1:80) (Weight set to 1)\n", a)
		}
		return b.String()
	}
	deleted := "[Fri Nov 27 01:28:09 2026|troop-bench.cf|43] Deleted real server: 127.10.0.2:80 (192.0.2.1:80)\n"
	for _, tc := range []struct {
		name, before, during, want string
	}{
		{"all up, none deleted", added("127.10.0.1:80", "127.10.0.2:80"), "", "0"},
		{"one deleted in the window", added("127.10.0.1:80", "127.10.0.2:80"), deleted, "≥ 1"},
		{"one never came up", added("127.10.0.1:80"), "", "—"},
		{"deleted before the window, not back", added("127.10.0.1:80", "127.10.0.2:80") + deleted, "", "—"},
		{"deleted and back before the window", added("127.10.0.1:80", "127.10.0.2:80") + deleted + added("127.10.0.2:80"), "", "0"},
	} {
		if got := ldirectordFailed([]byte(tc.before), []byte(tc.during), 2); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDebianUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{"1:4.12.0-2\n": "4.12.0", "4.12.0-2": "4.12.0", "4.12.0": "4.12.0"} {
		if got := debianUpstreamVersion(in); got != want {
			t.Errorf("debianUpstreamVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSessionUsage starts a session of two processes whose shell first burns CPU in a child it
// waits for: sessionUsage finds both and counts the gone child's CPU.
func TestSessionUsage(t *testing.T) {
	burn := `i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done`
	cmd := exec.Command("/bin/sh", "-c", "("+burn+"); sleep 10 & echo ready; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("shell said %q, %v", line, err)
	}
	u, err := sessionUsage(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if u.procs != 2 {
		t.Errorf("%d processes in the session, want 2 (the shell and sleep)", u.procs)
	}
	own, err := procCPU(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// The burn ran in a subshell, gone by now: only the shell's cutime holds it.
	if u.cpu < 10*time.Millisecond || u.cpu <= own {
		t.Errorf("session CPU %s (the shell's own %s): the burning child's CPU is missing", u.cpu, own)
	}
	if u.rss == 0 || u.pss == 0 || u.pss > u.rss {
		t.Errorf("session RSS %d, PSS %d", u.rss, u.pss)
	}
	self, err := readProcStat(cmd.Process.Pid)
	if err != nil || self.session != cmd.Process.Pid {
		t.Errorf("the shell's session is %d (%v), want its pid %d", self.session, err, cmd.Process.Pid)
	}
}
