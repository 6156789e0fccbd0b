package integration

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// Scenario 4: a long-lived TCP connection through the VIP survives a leader crash, because the
// IPVS connection-sync daemon (master on the leader, backup on the others) gave the new leader
// the connection's entry.
func TestLVSConnectionSurvivesCrash(t *testing.T) {
	const port = 7000
	table := lvs.WebService("") + lvs.Service("echo", port, "dr", lvs.TCPCheck,
		fmt.Sprintf("%s:%d", lvs.RealAddr(1), port), fmt.Sprintf("%s:%d", lvs.RealAddr(2), port))
	p := newLVSPool(t, lvs.Config{}, table)
	for _, r := range p.Reals() {
		if err := p.ServeEcho(r, port); err != nil {
			t.Fatal(err)
		}
	}
	vipPort := fmt.Sprintf("%s:%d", lvs.VIP, port)
	p.waitIPVS(p.leader, vipPort, 10*time.Second, "echo reals up", func(m map[string]int) bool { return len(m) == 2 })

	conn, err := p.Dial(p.ctx, vipPort)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	exchange := func(i int) (server string, took time.Duration) {
		t.Helper()
		start := time.Now()
		conn.SetDeadline(start.Add(15 * time.Second))
		if _, err := fmt.Fprintf(conn, "line %d\n", i); err != nil {
			t.Fatalf("write line %d: %v", i, err)
		}
		reply, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v (the connection did not survive)", i, err)
		}
		server, rest, _ := strings.Cut(strings.TrimSpace(reply), " ")
		if rest != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d echoed as %q", i, reply)
		}
		return server, time.Since(start)
	}
	server, _ := exchange(0)
	for i := 1; i < 5; i++ { // the connection is synced at its 3rd packet
		exchange(i)
	}
	local := conn.LocalAddr().String()
	for _, d := range p.Directors() {
		if d == p.leader {
			continue
		}
		p.waitFor(10*time.Second, "the connection synced to "+d, func() bool {
			out, _ := p.Exec(p.ctx, d, "ipvsadm", "-Lnc")
			return strings.Contains(out, local)
		})
	}
	old := p.leader
	if err := p.Crash(p.ctx, old); err != nil {
		t.Fatal(err)
	}
	var stall time.Duration
	for i := 5; i < 25; i++ {
		s, took := exchange(i)
		if s != server {
			t.Fatalf("line %d answered by %s, the connection was on %s", i, s, server)
		}
		stall = max(stall, took)
		time.Sleep(100 * time.Millisecond)
	}
	p.leader = p.waitLeader()
	if p.leader == old {
		t.Fatalf("leader still %s", old)
	}
	t.Logf("the connection to %s survived %s's crash (new leader %s); longest round trip during the failover %s",
		server, old, p.leader, stall.Round(time.Millisecond))
}

// Scenario 5: every real server down brings in the fallback server; one recovering takes it out.
func TestLVSFallback(t *testing.T) {
	p := newLVSPool(t, lvs.Config{}, lvs.WebService(lvs.FallbackBlock))
	vipPort := lvs.VIP + ":80"
	sorry := lvs.FallbackAddr + ":80"
	for _, r := range p.Reals() {
		if err := p.StopServing(r, 80); err != nil {
			t.Fatal(err)
		}
	}
	in := p.waitIPVS(p.leader, vipPort, 10*time.Second, "fallback in", func(m map[string]int) bool { return len(m) == 1 && m[sorry] > 0 })
	p.waitServedBy(webURL, []string{lvs.FallbackName}, 5*time.Second)
	for range 5 {
		if s, err := p.Get(p.ctx, webURL, 2*time.Second); err != nil || s != lvs.FallbackName {
			t.Fatalf("with every real down: answered by %q (%v), want the fallback", s, err)
		}
	}
	if err := p.Serve("r1", 80); err != nil {
		t.Fatal(err)
	}
	r1 := lvs.RealAddr(1) + ":80"
	out := p.waitIPVS(p.leader, vipPort, 10*time.Second, "fallback out", func(m map[string]int) bool { return len(m) == 1 && m[r1] > 0 })
	for range 5 {
		if s, err := p.Get(p.ctx, webURL, 2*time.Second); err != nil || s != "r1" {
			t.Fatalf("after r1 recovered: answered by %q (%v), want r1", s, err)
		}
	}
	t.Logf("fallback installed %s after both reals stopped, removed %s after r1 came back", in.Round(time.Millisecond), out.Round(time.Millisecond))
}

// Scenario 6: drift. A service and a real server deleted with ipvsadm behind Troop's back come
// back within the reconcile interval, on the leader and on a follower.
func TestLVSDriftRepaired(t *testing.T) {
	const interval = time.Second
	p := newLVSPool(t, lvs.Config{ReconcileInterval: interval}, lvs.WebService(""))
	vipPort := lvs.VIP + ":80"
	r1 := lvs.RealAddr(1) + ":80"
	follower := p.Directors()[0]
	if follower == p.leader {
		follower = p.Directors()[1]
	}
	for _, d := range []string{p.leader, follower} {
		if _, err := p.Exec(p.ctx, d, "ipvsadm", "-D", "-t", vipPort); err != nil {
			t.Fatal(err)
		}
		back := p.waitIPVS(d, vipPort, interval+time.Second, "service restored on "+d, func(m map[string]int) bool { return len(m) == 2 })
		if _, err := p.Exec(p.ctx, d, "ipvsadm", "-d", "-t", vipPort, "-r", r1); err != nil {
			t.Fatal(err)
		}
		realBack := p.waitIPVS(d, vipPort, interval+time.Second, "real restored on "+d, func(m map[string]int) bool { return m[r1] == 1 })
		t.Logf("%s: deleted service restored after %s, deleted real after %s (reconcile interval %s)",
			d, back.Round(time.Millisecond), realBack.Round(time.Millisecond), interval)
	}
	p.waitServedBy(webURL, p.Reals(), 10*time.Second)
}

// Scenario 7: a NAT service and a tunnel service serve traffic alongside the DR one.
func TestLVSForwardingVariety(t *testing.T) {
	const natPort, tunPort = 8080, 8081
	natReal := lvs.RealAddr(3)
	table := lvs.WebService("") +
		lvs.Service("nat", natPort, "nat", lvs.HTTPCheck, natReal+":80") +
		lvs.Service("tun", tunPort, "tun", lvs.HTTPCheck,
			fmt.Sprintf("%s:%d", lvs.RealAddr(1), tunPort), fmt.Sprintf("%s:%d", lvs.RealAddr(2), tunPort))
	p := newLVSPool(t, lvs.Config{Reals: 3}, table)
	// NAT: replies return through the director, which forwards them (an LVS-NAT director needs
	// ip_forward; same-subnet NAT also needs redirects off). The NAT real sends them there: no
	// VIP on its lo, and a route to the client via the VIP.
	for _, d := range p.Directors() {
		for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"} {
			if _, err := p.Exec(p.ctx, d, "sysctl", "-w", kv); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := [][]string{
		{p.Bin(), "realserver", "teardown", "-vip", lvs.VIP},
		{"sysctl", "-w", "net.ipv4.conf.all.accept_redirects=0"},
		{"ip", "route", "add", lvs.ClientAddr + "/32", "via", lvs.VIP},
	}
	for _, s := range steps {
		if _, err := p.Exec(p.ctx, "r3", s...); err != nil {
			t.Fatal(err)
		}
	}
	// TUN: r1 and r2 take IPIP-encapsulated packets on tunl0 (the VIP is already on their lo);
	// the decapsulated packet arrives on tunl0 from a client routed via eth0, so no rp_filter.
	for _, r := range []string{"r1", "r2"} {
		for _, s := range [][]string{
			{"ip", "link", "set", "tunl0", "up"},
			{"sysctl", "-w", "net.ipv4.conf.all.rp_filter=0"},
			{"sysctl", "-w", "net.ipv4.conf.tunl0.rp_filter=0"},
		} {
			if _, err := p.Exec(p.ctx, r, s...); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Serve(r, tunPort); err != nil {
			t.Fatal(err)
		}
	}
	natURL := fmt.Sprintf("http://%s:%d/index.html", lvs.VIP, natPort)
	tunURL := fmt.Sprintf("http://%s:%d/index.html", lvs.VIP, tunPort)
	p.waitServedBy(natURL, []string{"r3"}, 15*time.Second)
	p.waitServedBy(tunURL, []string{"r1", "r2"}, 15*time.Second)
	out, err := p.IPVS(p.ctx, p.leader)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Masq", "Tunnel", "Route"} {
		if !strings.Contains(out, want) {
			t.Errorf("leader's IPVS has no %s destination:\n%s", want, out)
		}
	}
	for _, u := range []string{webURL, natURL, tunURL} {
		for range 4 {
			if _, err := p.Get(p.ctx, u, 2*time.Second); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	}
	t.Logf("DR, NAT and TUN services all served through %s", p.leader)
}
