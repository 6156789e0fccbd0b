// Package integration holds Troop's end-to-end tests: real agent processes, and (in later tiers)
// network namespaces and a VM with real IPVS. This file needs no root: three agents on
// 127.0.0.1 with the configs of deploy/examples/loopback.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// troopBinary returns the troop binary to run: $TROOP_BIN (make test sets it), or one built now.
func troopBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TROOP_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "troop")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/troop").CombinedOutput()
	if err != nil {
		t.Fatalf("build troop: %v\n%s", err, out)
	}
	return bin
}

// pool is three troop agents on loopback, started from deploy/examples/loopback.
type pool struct {
	t    *testing.T
	bin  string
	dir  string
	proc map[string]*exec.Cmd
}

var loopbackAPI = map[string]string{
	"d1": "http://127.0.0.1:9710",
	"d2": "http://127.0.0.1:9720",
	"d3": "http://127.0.0.1:9730",
}

func startPool(t *testing.T) *pool {
	t.Helper()
	for _, port := range []string{"9710", "9711", "9712", "9720", "9721", "9722", "9730", "9731", "9732"} {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken (is a deploy/lab/loopback.sh pool running?): %v", port, err)
		}
		l.Close()
	}
	p := &pool{t: t, bin: troopBinary(t), dir: t.TempDir(), proc: map[string]*exec.Cmd{}}
	t.Cleanup(p.stopAll)
	for _, n := range []string{"d1", "d2", "d3"} {
		p.start(n)
	}
	return p
}

func (p *pool) start(node string) {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.dir, node+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, "agent",
		"-config", filepath.Join("..", "deploy", "examples", "loopback", node+".hcl"),
		"-data-dir", filepath.Join(p.dir, node))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", node, err)
	}
	p.proc[node] = cmd
}

// kill stops a director the way a crash does: SIGKILL, no leave, no goodbye.
func (p *pool) kill(node string) {
	p.t.Helper()
	cmd := p.proc[node]
	cmd.Process.Kill()
	cmd.Wait()
	delete(p.proc, node)
}

func (p *pool) stopAll() {
	for n := range p.proc {
		p.kill(n)
	}
	if p.t.Failed() {
		for _, n := range []string{"d1", "d2", "d3"} {
			b, _ := os.ReadFile(filepath.Join(p.dir, n+".log"))
			p.t.Logf("--- log of %s ---\n%s", n, tail(string(b), 40))
		}
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// cli runs a troop CLI verb against node's API and returns stdout, failing the test on error.
func (p *pool) cli(node string, args ...string) string {
	p.t.Helper()
	out, err := p.try(node, args...)
	if err != nil {
		p.t.Fatalf("troop %s on %s: %v\n%s", strings.Join(args, " "), node, err, out)
	}
	return out
}

func (p *pool) try(node string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Flags may follow the arguments.
	full := append(slices.Clone(args), "-address", loopbackAPI[node])
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p.bin, full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String() + stderr.String(), err
}

type status struct {
	Role     string `json:"role"`
	LeaderID string `json:"leader_id"`
	Term     uint64 `json:"term"`
}

func (p *pool) status(node string) (status, error) {
	out, err := p.try(node, "status", "-json")
	if err != nil {
		return status{}, fmt.Errorf("%v: %s", err, out)
	}
	var s struct {
		Status status `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return status{}, fmt.Errorf("parse status %q: %v", out, err)
	}
	return s.Status, nil
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaderOf waits until every listed node agrees on one leader among them, and returns it.
func (p *pool) leaderOf(nodes ...string) string {
	p.t.Helper()
	var leader string
	eventually(p.t, 15*time.Second, "one agreed leader among "+strings.Join(nodes, ","), func() error {
		leader = ""
		for _, n := range nodes {
			s, err := p.status(n)
			if err != nil {
				return err
			}
			if s.LeaderID == "" {
				return fmt.Errorf("%s sees no leader", n)
			}
			if leader != "" && s.LeaderID != leader {
				return fmt.Errorf("%s sees leader %s, others %s", n, s.LeaderID, leader)
			}
			leader = s.LeaderID
		}
		if !slices.Contains(nodes, leader) {
			return fmt.Errorf("the leader %s is not among them", leader)
		}
		return nil
	})
	return leader
}

// hasService checks that node's local table has service name with the given real servers.
func (p *pool) hasService(node, name string, reals ...string) error {
	out, err := p.try(node, "service", "show", name, "-json")
	if err != nil {
		return fmt.Errorf("%s: %v: %s", node, err, out)
	}
	var svc struct {
		Name  string `json:"name"`
		Reals []struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"reals"`
	}
	if err := json.Unmarshal([]byte(out), &svc); err != nil {
		return fmt.Errorf("%s: parse %q: %v", node, out, err)
	}
	var got []string
	for _, r := range svc.Reals {
		got = append(got, fmt.Sprintf("%s:%d", r.Address, r.Port))
	}
	if strings.Join(got, ",") != strings.Join(reals, ",") {
		return fmt.Errorf("%s: service %s has reals %v, want %v", node, name, got, reals)
	}
	return nil
}

func TestLoopbackPool(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the loopback pool test runs on Linux")
	}
	p := startPool(t)
	all := []string{"d1", "d2", "d3"}
	leader := p.leaderOf(all...)
	var follower string
	for _, n := range all {
		if n != leader {
			follower = n
			break
		}
	}

	// A write sent to a follower is forwarded to the leader and replicated everywhere.
	p.cli(follower, "service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-scheduler", "rr")
	p.cli(follower, "real", "add", "web", "192.0.2.21:80")
	for _, n := range all {
		eventually(t, 5*time.Second, "service web on "+n, func() error { return p.hasService(n, "web", "192.0.2.21:80") })
	}

	// Bad input is refused with a message naming the field, and changes nothing.
	if out, err := p.try(follower, "real", "add", "web", "2001:db8::21"); err == nil || !strings.Contains(out, "2001:db8::21") {
		t.Errorf("adding an IPv6 real to an IPv4 service: err %v, output %q; want a refusal naming the address", err, out)
	}

	// The example configs gossip: every agent lists the three, alive.
	for _, n := range all {
		eventually(t, 10*time.Second, "three alive members on "+n, func() error {
			out, err := p.try(n, "members")
			if err != nil || strings.Count(out, " alive ") != 3 {
				return fmt.Errorf("troop members (%v):\n%s", err, out)
			}
			return nil
		})
	}

	// The leader dies; the others elect a new one and keep taking writes.
	p.kill(leader)
	var rest []string
	for _, n := range all {
		if n != leader {
			rest = append(rest, n)
		}
	}
	newLeader := p.leaderOf(rest...)
	p.cli(rest[0], "real", "add", "web", "192.0.2.22:80")
	for _, n := range rest {
		eventually(t, 5*time.Second, "second real on "+n, func() error {
			return p.hasService(n, "web", "192.0.2.21:80", "192.0.2.22:80")
		})
	}

	// The old leader comes back from its data dir as a follower and catches up.
	p.start(leader)
	eventually(t, 15*time.Second, leader+" back as a follower of "+newLeader, func() error {
		s, err := p.status(leader)
		if err != nil {
			return err
		}
		if s.Role != "follower" || s.LeaderID != newLeader {
			return fmt.Errorf("%s is %s following %q", leader, s.Role, s.LeaderID)
		}
		return p.hasService(leader, "web", "192.0.2.21:80", "192.0.2.22:80")
	})

	// A graceful stop (SIGTERM) of the leader hands leadership over before the process exits,
	// so the pool does not wait out an election timeout, and the process exits cleanly.
	cmd := p.proc[newLeader]
	stopped := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("%s did not exit cleanly on SIGTERM: %v", newLeader, err)
	}
	delete(p.proc, newLeader)
	var others []string
	for _, n := range all {
		if n != newLeader {
			others = append(others, n)
		}
	}
	// Without a handover the others would still name the stopped node their leader now,
	// until their election timeout runs out.
	if s, err := p.status(others[0]); err != nil || s.LeaderID == newLeader || s.LeaderID == "" {
		t.Errorf("right after %s stopped, %s names leader %q (err %v); want a survivor it handed over to", newLeader, others[0], s.LeaderID, err)
	}
	handedTo := p.leaderOf(others...)
	t.Logf("SIGTERM to leader %s: %s leads %s later", newLeader, handedTo, time.Since(stopped).Round(time.Millisecond))
	p.cli(handedTo, "real", "add", "web", "192.0.2.23:80")
}
