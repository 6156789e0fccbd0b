package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// keepRunning leaves the pool up after the walkthrough. The agents run on by themselves; the
// real servers' HTTP servers live in this process, so each is handed to a copy of this program
// (-serve NODE) in its namespace, in a session of its own, which outlives `make lab`.
func (l *lab) keepRunning(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// `go run` deletes its build when this process ends: the servers run from a copy.
	bin := filepath.Join(dir, "troop-lab")
	if err := copyFile(self, bin); err != nil {
		return err
	}
	for _, n := range append(l.p.Reals(), lvs.FallbackName) {
		if err := l.p.StopServing(n, 80); err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(dir, n+"-http.log"))
		if err != nil {
			return err
		}
		cmd := exec.Command("ip", "netns", "exec", string(l.p.Node(n).NS), bin, "-serve", n)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("serve %s: %w", n, err)
		}
		cmd.Process.Release()
	}
	seen := map[string]bool{}
	if err := l.waitFor(10*time.Second, func() bool {
		if s, err := l.p.Get(l.ctx, pageURL, time.Second); err == nil {
			seen[s] = true
		}
		return seen["r1"] && seen["r2"]
	}); err != nil {
		return fmt.Errorf("the kept pool's real servers: answered by %v: %w", seen, err)
	}
	pre, client := l.p.Prefix(), string(l.p.Node(lvs.ClientName).NS)
	l.heading("The pool keeps running (KEEP=1)")
	l.say("leader %s; directors d1 d2 d3 at %s, %s, %s (API port 9700); logs and configs in %s",
		l.leader, lvs.DirectorAddr(1), lvs.DirectorAddr(2), lvs.DirectorAddr(3), dir)
	l.say("every host is a network namespace: ip netns list | grep %s-", pre)
	l.say("")
	l.say("ip netns exec %s curl -s %s", client, pageURL)
	l.say("ip netns exec %s %s status -address http://%s:9700", client, l.p.Bin(), lvs.DirectorAddr(1))
	l.say("ip netns exec %s-%s ipvsadm -Ln", pre, l.leader)
	l.say("")
	l.say("remove it: go run ./integration/lab -down %s && rm -rf %s", pre, dir)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// serveForever is -serve: node's test page on port 80 of the namespace it was started in.
func serveForever(node string) error {
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, lvs.Page(node)) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	return srv.Serve(ln)
}

var poolPrefix = regexp.MustCompile(`^tp[0-9]+$`)

// removePool is -down: it kills every process in the namespaces prefix-* (the agents and the
// real servers of a kept pool) and deletes the namespaces, the hub last.
func removePool(ctx context.Context, prefix string, out io.Writer) error {
	if !poolPrefix.MatchString(prefix) {
		return fmt.Errorf("-down %q: a lab pool's prefix looks like tp1234", prefix)
	}
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return fmt.Errorf("-down %s: %w", prefix, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") && e.Name() != prefix+"-hub" {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("-down %s: no namespace named %s-*", prefix, prefix)
	}
	names = append(names, prefix+"-hub")
	killed := 0
	for _, ns := range names {
		pids, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // let the killed processes leave their namespaces
	for _, ns := range names {
		if b, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			fmt.Fprintf(out, "ip netns del %s: %v: %s", ns, err, b)
		}
	}
	fmt.Fprintf(out, "removed pool %s: %d processes killed, %d namespaces deleted\n", prefix, killed, len(names))
	return nil
}
