package director_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troop-lb/troop/director"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The namespace tier: network namespaces on a bridge, all created by the test and removed when
// it ends, pass or fail. The bridge lives in a namespace of its own ("hub"), so nothing is
// attached to the host's interfaces; addresses are from 192.0.2.0/24 and 2001:db8::/32.

// nsLab is a bridge in a hub namespace and the nodes on it.
type nsLab struct {
	t      *testing.T
	prefix string
	hub    string
	nodes  []*nsNode
}

// nsNode is a namespace with eth0 on the lab's bridge.
type nsNode struct {
	lab  *nsLab
	name string
	ns   string // namespace name (ip netns)
	path string // its bind mount, for PacketIO
	mac  net.HardwareAddr
}

var labSeq atomic.Int32

// needNetnsRoot gates the namespace tier with a clear message; CI runs as root.
func needNetnsRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace tier: needs root to create network namespaces, veths and a bridge (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tier: iproute2's ip is not installed")
	}
}

func newNSLab(t *testing.T) *nsLab {
	t.Helper()
	needNetnsRoot(t)
	// Unique per test run and per lab: the process ID and a sequence letter.
	l := &nsLab{t: t, prefix: fmt.Sprintf("td%d%c", os.Getpid()%100000, 'a'+rune(labSeq.Add(1)%26))}
	l.hub = l.prefix + "hub"
	t.Cleanup(l.destroy)
	l.run("ip", "netns", "add", l.hub)
	l.run("ip", "-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", l.hub, "link", "set", "br0", "up")
	return l
}

func (l *nsLab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// destroy removes every namespace of the lab; the veths and the bridge go with them.
func (l *nsLab) destroy() {
	for _, n := range l.nodes {
		if out, err := exec.Command("ip", "netns", "del", n.ns).CombinedOutput(); err != nil {
			l.t.Errorf("remove namespace %s: %v: %s", n.ns, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", l.hub).CombinedOutput(); err != nil {
		l.t.Errorf("remove namespace %s: %v: %s", l.hub, err, out)
	}
}

// node adds a namespace with eth0 on the bridge holding addrs (IPv6 ones without duplicate
// address detection, so they are usable at once; eth0 itself keeps DAD on).
func (l *nsLab) node(name string, addrs ...string) *nsNode {
	l.t.Helper()
	n := &nsNode{lab: l, name: name, ns: l.prefix + name}
	n.path = "/var/run/netns/" + n.ns
	l.run("ip", "netns", "add", n.ns)
	l.nodes = append(l.nodes, n)
	peer := l.prefix + name // the hub's end (≤ 15 bytes)
	l.run("ip", "link", "add", peer, "netns", l.hub, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
	l.run("ip", "-n", l.hub, "link", "set", peer, "master", "br0", "up")
	n.ip("link", "set", "lo", "up")
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", "eth0"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		n.ip(args...)
	}
	n.ip("link", "set", "eth0", "up")
	ifi := n.interfaceInfo("eth0")
	n.mac = ifi.HardwareAddr
	return n
}

// ip runs `ip -n NS args...`.
func (n *nsNode) ip(args ...string) string {
	n.lab.t.Helper()
	return n.lab.run(append([]string{"ip", "-n", n.ns}, args...)...)
}

// exec runs a command inside the namespace and returns its output and error.
func (n *nsNode) exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.ns}, args...)...).CombinedOutput()
	return string(out), err
}

// in runs fn on an OS thread inside the namespace.
func (n *nsNode) in(fn func()) {
	t := n.lab.t
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("leave namespace %s: %v (the thread stays locked and dies with its goroutine)", n.ns, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func (n *nsNode) interfaceInfo(name string) *net.Interface {
	var ifi *net.Interface
	n.in(func() {
		var err error
		if ifi, err = net.InterfaceByName(name); err != nil {
			n.lab.t.Fatal(err)
		}
	})
	return ifi
}

// addresses returns the netlink Addresses of the namespace, through a handle opened in it.
func (n *nsNode) addresses() *director.NetlinkAddresses {
	t := n.lab.t
	t.Helper()
	ns, err := netns.GetFromName(n.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return director.NewNetlinkAddresses(h)
}

// neighbour returns the link-layer address and state of the node's neighbour entry for addr
// on eth0 ("" if it has none).
func (n *nsNode) neighbour(addr netip.Addr) (mac, state string) {
	n.lab.t.Helper()
	fam := "-4"
	if addr.Is6() {
		fam = "-6"
	}
	f := strings.Fields(n.ip(fam, "neigh", "show", addr.String(), "dev", "eth0"))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return mac, state
}

// waitNeighbour waits until the node's entry for addr points at mac, and returns how long it
// took; the node sends nothing meanwhile.
func (n *nsNode) waitNeighbour(addr netip.Addr, mac net.HardwareAddr, limit time.Duration) time.Duration {
	n.lab.t.Helper()
	start := time.Now()
	for {
		got, state := n.neighbour(addr)
		if got == mac.String() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			n.lab.t.Fatalf("%s's neighbour entry for %s is %s %s after %s, want %s", n.name, addr, got, state, limit, mac)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reach makes the node send a UDP datagram to addr (port 9, discard) so that it resolves
// addr's link-layer address, and waits up to limit for a resolved neighbour entry. (No ping:
// the tier needs nothing but ip.)
func (n *nsNode) reach(addr netip.Addr, limit time.Duration) error {
	n.lab.t.Helper()
	n.in(func() {
		c, err := net.Dial("udp", netip.AddrPortFrom(addr, 9).String())
		if err != nil {
			n.lab.t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("troop")); err != nil {
			n.lab.t.Fatal(err)
		}
	})
	start := time.Now()
	for {
		mac, state := n.neighbour(addr)
		if mac != "" {
			return nil
		}
		if time.Since(start) > limit {
			return fmt.Errorf("%s has no link-layer address for %s after %s (entry state %q)", n.name, addr, limit, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetlinkAddressesInNetns(t *testing.T) {
	l := newNSLab(t)
	a := l.node("A", "192.0.2.1/24")
	addrs := a.addresses()

	t.Run("contract", func(t *testing.T) { addressContract(t, addrs, "eth0") })

	vip4 := netip.MustParsePrefix("192.0.2.100/32")
	vip6 := netip.MustParsePrefix("2001:db8::100/128")
	if err := addrs.Add("eth0", vip4, ""); err != nil {
		t.Fatal(err)
	}
	if err := addrs.Add("eth0", vip6, ""); err != nil {
		t.Fatal(err)
	}
	// Usable at once: a socket can bind the IPv6 VIP right away, which a tentative address
	// (duplicate address detection under way) refuses with EADDRNOTAVAIL.
	a.in(func() {
		c, err := net.ListenPacket("udp6", netip.AddrPortFrom(vip6.Addr(), 0).String())
		if err != nil {
			t.Fatalf("bind the IPv6 VIP at once: %v", err)
		}
		c.Close()
	})
	// eth0 does run DAD: an address added without NODAD is tentative, and cannot be bound
	// (DAD takes a second or more; this runs within milliseconds).
	a.ip("addr", "add", "2001:db8::200/128", "dev", "eth0")
	a.in(func() {
		if c, err := net.ListenPacket("udp6", "[2001:db8::200]:0"); err == nil {
			c.Close()
			t.Log("note: an address added with DAD could be bound at once; the check above proves less")
		}
	})
	show6 := a.ip("-6", "-o", "addr", "show", "dev", "eth0")
	for _, line := range strings.Split(show6, "\n") {
		switch {
		case strings.Contains(line, "2001:db8::100/128") && strings.Contains(line, "tentative"):
			t.Errorf("the VIP is tentative: %s", line)
		case strings.Contains(line, "2001:db8::200/128") && !strings.Contains(line, "tentative"):
			t.Logf("note: the address added with DAD was already past it: %s", line)
		}
	}
	if !strings.Contains(a.ip("-4", "-o", "addr", "show", "dev", "eth0"), "192.0.2.100/32 scope global eth0:troop") {
		t.Errorf("IPv4 VIP without its label:\n%s", a.ip("-4", "addr", "show", "dev", "eth0"))
	}
	hw, err := addrs.HardwareAddr("eth0")
	if err != nil || !bytes.Equal(hw, a.mac) {
		t.Errorf("HardwareAddr = %s, %v; want %s", hw, err, a.mac)
	}

	// Long interface names: the label is cut to the kernel's 15 bytes, or is the name itself.
	// (A veth pair: this kernel has no dummy device.)
	a.ip("link", "add", "abcdefghijkl", "type", "veth", "peer", "name", "abcdefghijklmno")
	for name, label := range map[string]string{"abcdefghijkl": "abcdefghijkl:tr", "abcdefghijklmno": "abcdefghijklmno"} {
		if err := addrs.Add(name, netip.MustParsePrefix("192.0.2.101/32"), ""); err != nil {
			t.Fatal(err)
		}
		if out := a.ip("-4", "-o", "addr", "show", "dev", name); !strings.Contains(out, "192.0.2.101/32 scope global "+label+"\\") {
			t.Errorf("%s: want label %s:\n%s", name, label, out)
		}
	}
}
