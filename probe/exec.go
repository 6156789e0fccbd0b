package probe

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/troop-lb/troop/fsm"
)

// execChecker runs a program, ldirectord's external check: command (no shell) with four
// arguments appended: the VIP ("" for a firewall-mark service without one), the service port
// (0 under a firewall mark), the real server's address and its port. Exit status 0 is healthy.
//
// The environment is not the agent's (it may hold credentials, and a check must behave the same
// on every director): PATH (the agent's, or a standard one), TROOP_VIP, TROOP_PORT, TROOP_REAL,
// TROOP_REAL_PORT, TROOP_CHECK_PORT (where the check is aimed: the check's port, else the real
// server's) and TROOP_SERVICE. It runs in "/" with stdin from /dev/null.
//
// The program leads its own process group. At the timeout the whole group is killed (SIGKILL),
// and so is whatever the program left behind when it exits, so that nothing a check started
// outlives it. A program that starts its own session escapes this; don't.
type execChecker struct {
	timeout time.Duration
	argv    []string
}

// execPath is PATH for a check when the agent has none.
const execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execOutput bounds what is kept of a check's stdout and stderr; the rest is read and dropped
// so the program never blocks on a full pipe.
const execOutput = 4 << 10

// execWaitDelay bounds how long Wait waits for stdout and stderr to close after the program
// exits or is killed: a process outside the group can hold them open.
const execWaitDelay = 100 * time.Millisecond

func newExecChecker(spec fsm.HealthCheck) (*execChecker, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, specError("command", "", "is required for an exec check")
	}
	return &execChecker{timeout: time.Duration(spec.Timeout), argv: spec.Command}, nil
}

// Check implements Checker. Reasons: "exit status 0" (healthy) and "exit status 2", each
// followed by ": " and the first line of stderr (else stdout), trimmed and bounded;
// "timeout after 1s (killed)"; "signal: killed"; `cannot run "/usr/bin/x": no such file or
// directory`.
func (c *execChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	vip := ""
	if t.VIP.IsValid() {
		vip = t.VIP.String()
	}
	servicePort := strconv.Itoa(int(t.ServicePort))
	real, realPort := t.Real.Addr().String(), strconv.Itoa(int(t.Real.Port()))
	args := append(append([]string(nil), c.argv[1:]...), vip, servicePort, real, realPort)
	cmd := exec.CommandContext(ctx, c.argv[0], args...)
	path := os.Getenv("PATH")
	if path == "" {
		path = execPath
	}
	cmd.Env = []string{
		"PATH=" + path,
		"TROOP_VIP=" + vip,
		"TROOP_PORT=" + servicePort,
		"TROOP_REAL=" + real,
		"TROOP_REAL_PORT=" + realPort,
		"TROOP_CHECK_PORT=" + strconv.Itoa(int(t.Addr().Port())),
		"TROOP_SERVICE=" + t.Service,
	}
	cmd.Dir = "/"
	var stdout, stderr boundedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return result(start, false, "cannot run "+strconv.Quote(c.argv[0])+": "+startErrText(err))
	}
	// Wait for the program to exit (the exec package's watcher kills the group at ctx's end)
	// without reaping it: while it is a zombie its PID, the group's ID, cannot be reused, so
	// killing the group cannot hit anyone else. Then leftovers (a background child) go too.
	waitExited(cmd.Process.Pid)
	killGroup(cmd)
	err := cmd.Wait()
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return result(start, false, "canceled (killed)")
		}
		return result(start, false, timeoutReason(c.timeout)+" (killed)")
	}
	ps := cmd.ProcessState
	if ps == nil {
		return result(start, false, errText(err))
	}
	reason := ps.String() // "exit status 2", "signal: killed"
	line := firstLine(stderr.Bytes())
	if line == "" {
		line = firstLine(stdout.Bytes())
	}
	if line != "" {
		reason += ": " + line
	}
	return result(start, ps.Success(), reason)
}

// waitExited blocks until the process has exited, leaving it to be reaped by cmd.Wait.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// killGroup kills the check's process group (ID = the leader's PID).
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// startErrText is why a program could not start: "no such file or directory", "permission
// denied", "executable file not found in $PATH".
func startErrText(err error) string {
	var pe *fs.PathError
	var ee *exec.Error
	switch {
	case errors.As(err, &ee):
		return ee.Err.Error()
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

// firstLine is the first non-blank line of out, trimmed and bounded.
func firstLine(out []byte) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return clip(line, 120)
		}
	}
	return ""
}

// boundedBuffer keeps the first execOutput bytes written to it and drops the rest, reporting
// every write as complete so the writer never blocks or sees EPIPE.
type boundedBuffer struct{ b bytes.Buffer }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := execOutput - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *boundedBuffer) Bytes() []byte { return w.b.Bytes() }
