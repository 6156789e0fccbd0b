package director_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/director"
)

// TestRealServerInNetns runs the real-server helper on a real server R in a namespace of its own
// (net.ipv4.conf.* are per namespace, so the host's stay as they are) and checks what it is
// for: a client C on the same bridge gets no ARP answer for a VIP on R's lo.
func TestRealServerInNetns(t *testing.T) {
	l := newNSLab(t)
	r := l.node("R", "192.0.2.20/24", "2001:db8::20/64")
	c := l.node("C", "192.0.2.50/24", "2001:db8::50/64")
	rs := director.RealServer{Addresses: r.addresses(), SysctlRoot: "/proc/sys", Loopback: "lo"}
	const hostKey = "/proc/sys/net/ipv4/conf/all/arp_ignore"
	hostBefore, err := os.ReadFile(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	sysctls := func() string {
		var b strings.Builder
		r.in(func() {
			for _, k := range []string{"all/arp_ignore", "all/arp_announce", "lo/arp_ignore", "lo/arp_announce"} {
				v, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + k)
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString(k + "=" + strings.TrimSpace(string(v)) + " ")
			}
		})
		return strings.TrimSpace(b.String())
	}

	// The problem the sysctls solve: a VIP on lo with the kernel's defaults answers ARP.
	loose := netip.MustParseAddr("192.0.2.7")
	r.ip("addr", "add", "192.0.2.7/32", "dev", "lo")
	if err := c.reach(loose, 2*time.Second); err != nil {
		t.Fatalf("with arp_ignore 0 R should answer ARP for a VIP on lo: %v", err)
	}
	r.ip("addr", "del", "192.0.2.7/32", "dev", "lo")

	vips := []netip.Addr{netip.MustParseAddr("192.0.2.6"), netip.MustParseAddr("2001:db8::6")}
	var done []string
	r.in(func() { done, err = rs.Setup(vips, false) }) // /proc/sys is the calling thread's namespace's
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "setup", lines(done), `set net.ipv4.conf.all.arp_ignore 0 → 1
set net.ipv4.conf.all.arp_announce 0 → 2
set net.ipv4.conf.lo.arp_ignore 0 → 1
set net.ipv4.conf.lo.arp_announce 0 → 2
add 192.0.2.6/32 to lo
add 2001:db8::6/128 to lo
`)
	annDiffText(t, "R's sysctls", sysctls(), "all/arp_ignore=1 all/arp_announce=2 lo/arp_ignore=1 lo/arp_announce=2")
	if out := r.ip("-o", "addr", "show", "dev", "lo"); !strings.Contains(out, "192.0.2.6/32 scope global lo:troop") || !strings.Contains(out, "2001:db8::6/128") {
		t.Errorf("R's lo:\n%s", out)
	}
	if hostAfter, _ := os.ReadFile(hostKey); string(hostAfter) != string(hostBefore) {
		t.Errorf("the host's arp_ignore changed from %q to %q", hostBefore, hostAfter)
	}

	// C asks for the VIPs and gets no answer: clients keep reaching them through the director.
	for _, vip := range vips {
		if err := c.reach(vip, time.Second); err == nil {
			mac, _ := c.neighbour(vip)
			t.Errorf("R answered for %s on its lo (C's entry: %s)", vip, mac)
		}
	}

	r.in(func() { done, err = rs.Setup(vips, false) })
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range done {
		if !strings.HasPrefix(d, "already ") {
			t.Errorf("second setup did %q", d)
		}
	}

	r.in(func() { done, err = rs.Teardown(vips, false, true) })
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "teardown -restore-arp", lines(done), `remove 192.0.2.6/32 from lo
remove 2001:db8::6/128 from lo
set net.ipv4.conf.all.arp_ignore 1 → 0
set net.ipv4.conf.all.arp_announce 2 → 0
set net.ipv4.conf.lo.arp_ignore 1 → 0
set net.ipv4.conf.lo.arp_announce 2 → 0
`)
	annDiffText(t, "R's sysctls restored", sysctls(), "all/arp_ignore=0 all/arp_announce=0 lo/arp_ignore=0 lo/arp_announce=0")
	if out := r.ip("-o", "addr", "show", "dev", "lo"); strings.Contains(out, "192.0.2.6") || strings.Contains(out, "2001:db8::6/") {
		t.Errorf("VIPs left on R's lo:\n%s", out)
	}
}
