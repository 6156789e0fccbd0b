package director_test

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/netfake"
)

// fakeRealServer is a real server whose lo is a fake and whose sysctl tree is a temporary
// directory holding the kernel's defaults (0).
func fakeRealServer(t *testing.T) (director.RealServer, *netfake.Addresses) {
	t.Helper()
	root := t.TempDir()
	for _, iface := range []string{"all", "lo"} {
		dir := filepath.Join(root, "net", "ipv4", "conf", iface)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"arp_ignore", "arp_announce"} {
			writeSysctl(t, root, iface, name, "0")
		}
	}
	f := netfake.NewAddresses(nil)
	f.AddInterface("lo", make([]byte, 6), netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128"))
	return director.RealServer{Addresses: f, SysctlRoot: root, Loopback: "lo"}, f
}

func writeSysctl(t *testing.T, root, iface, name, v string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, "net", "ipv4", "conf", iface, name), []byte(v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sysctlState renders the four sysctls as `sysctl` prints them.
func sysctlState(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	for _, iface := range []string{"all", "lo"} {
		for _, name := range []string{"arp_announce", "arp_ignore"} {
			v, err := os.ReadFile(filepath.Join(root, "net", "ipv4", "conf", iface, name))
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString("net.ipv4.conf." + iface + "." + name + " = " + strings.TrimSpace(string(v)) + "\n")
		}
	}
	return b.String()
}

func lines(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return strings.Join(ss, "\n") + "\n"
}

var rsVIPs = []netip.Addr{netip.MustParseAddr("192.0.2.6"), netip.MustParseAddr("2001:db8::6"), netip.MustParseAddr("192.0.2.6")}

const defaultSysctls = `net.ipv4.conf.all.arp_announce = 0
net.ipv4.conf.all.arp_ignore = 0
net.ipv4.conf.lo.arp_announce = 0
net.ipv4.conf.lo.arp_ignore = 0
`

func TestRealServerSetup(t *testing.T) {
	rs, lo := fakeRealServer(t)
	before := lo.String()

	plan, err := rs.Setup(rsVIPs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := `set net.ipv4.conf.all.arp_ignore 0 → 1
set net.ipv4.conf.all.arp_announce 0 → 2
set net.ipv4.conf.lo.arp_ignore 0 → 1
set net.ipv4.conf.lo.arp_announce 0 → 2
add 192.0.2.6/32 to lo
add 2001:db8::6/128 to lo
`
	annDiffText(t, "dry run", lines(plan), want)
	annDiffText(t, "sysctls after a dry run", sysctlState(t, rs.SysctlRoot), defaultSysctls)
	annDiffText(t, "lo after a dry run", lo.String(), before)

	done, err := rs.Setup(rsVIPs, false)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "setup", lines(done), want) // the sysctls come first: no VIP on lo answers ARP
	annDiffText(t, "sysctls", sysctlState(t, rs.SysctlRoot), `net.ipv4.conf.all.arp_announce = 2
net.ipv4.conf.all.arp_ignore = 1
net.ipv4.conf.lo.arp_announce = 2
net.ipv4.conf.lo.arp_ignore = 1
`)
	annDiffText(t, "lo", lo.String(), `lo 00:00:00:00:00:00
    inet 127.0.0.1/8 lo
    inet 192.0.2.6/32 lo:troop
    inet6 ::1/128
    inet6 2001:db8::6/128
`)

	again, err := rs.Setup(rsVIPs, false)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "setup again", lines(again), `already net.ipv4.conf.all.arp_ignore = 1
already net.ipv4.conf.all.arp_announce = 2
already net.ipv4.conf.lo.arp_ignore = 1
already net.ipv4.conf.lo.arp_announce = 2
already 192.0.2.6/32 on lo
already 2001:db8::6/128 on lo
`)
}

func TestRealServerSetupIPv6AndStricterValues(t *testing.T) {
	rs, _ := fakeRealServer(t)
	done, err := rs.Setup([]netip.Addr{netip.MustParseAddr("2001:db8::6")}, false)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "IPv6 only: no ARP sysctl", lines(done), "add 2001:db8::6/128 to lo\n")

	writeSysctl(t, rs.SysctlRoot, "all", "arp_ignore", "2") // stricter: kept
	writeSysctl(t, rs.SysctlRoot, "lo", "arp_ignore", "3")  // answers for global addresses: fixed
	done, err = rs.Setup([]netip.Addr{netip.MustParseAddr("192.0.2.6")}, false)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "stricter values", lines(done), `already net.ipv4.conf.all.arp_ignore = 2
set net.ipv4.conf.all.arp_announce 0 → 2
set net.ipv4.conf.lo.arp_ignore 3 → 1
set net.ipv4.conf.lo.arp_announce 0 → 2
add 192.0.2.6/32 to lo
`)
}

func TestRealServerTeardown(t *testing.T) {
	rs, lo := fakeRealServer(t)
	other := netip.MustParseAddr("192.0.2.7")
	if _, err := rs.Setup(append(rsVIPs, other), false); err != nil {
		t.Fatal(err)
	}

	done, err := rs.Teardown(rsVIPs, false, false)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "teardown", lines(done), "remove 192.0.2.6/32 from lo\nremove 2001:db8::6/128 from lo\n")

	// Another VIP still needs the sysctls: restoring them is refused, step by step.
	done, err = rs.Teardown(rsVIPs, true, true)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "restore while another VIP is on lo", lines(done), `already absent 192.0.2.6/32 from lo
already absent 2001:db8::6/128 from lo
keep net.ipv4.conf.all.arp_ignore = 1: lo still holds 192.0.2.7/32
keep net.ipv4.conf.all.arp_announce = 2: lo still holds 192.0.2.7/32
keep net.ipv4.conf.lo.arp_ignore = 1: lo still holds 192.0.2.7/32
keep net.ipv4.conf.lo.arp_announce = 2: lo still holds 192.0.2.7/32
`)

	writeSysctl(t, rs.SysctlRoot, "lo", "arp_ignore", "2") // an operator's value: left alone
	plan, err := rs.Teardown([]netip.Addr{other}, true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := `remove 192.0.2.7/32 from lo
set net.ipv4.conf.all.arp_ignore 1 → 0
set net.ipv4.conf.all.arp_announce 2 → 0
keep net.ipv4.conf.lo.arp_ignore = 2: not the value Troop sets
set net.ipv4.conf.lo.arp_announce 2 → 0
`
	annDiffText(t, "restore planned (dry run)", lines(plan), want)
	if !strings.Contains(lo.String(), "192.0.2.7/32") {
		t.Errorf("the dry run removed the VIP")
	}
	done, err = rs.Teardown([]netip.Addr{other}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "restore", lines(done), want)
	annDiffText(t, "sysctls restored", sysctlState(t, rs.SysctlRoot), `net.ipv4.conf.all.arp_announce = 0
net.ipv4.conf.all.arp_ignore = 0
net.ipv4.conf.lo.arp_announce = 0
net.ipv4.conf.lo.arp_ignore = 2
`)
	annDiffText(t, "lo", lo.String(), "lo 00:00:00:00:00:00\n    inet 127.0.0.1/8 lo\n    inet6 ::1/128\n")
}

func TestRealServerErrors(t *testing.T) {
	rs, lo := fakeRealServer(t)
	for _, vips := range [][]netip.Addr{
		nil,
		{netip.Addr{}},
		{netip.MustParseAddr("127.0.0.2")},
		{netip.MustParseAddr("::1")},
		{netip.MustParseAddr("fe80::1")},
		{netip.MustParseAddr("224.0.0.1")},
		{netip.MustParseAddr("192.0.2.6"), netip.MustParseAddr("0.0.0.0")},
	} {
		if done, err := rs.Setup(vips, false); err == nil || len(done) != 0 {
			t.Errorf("Setup(%v) = %q, %v; want an error before any step", vips, done, err)
		}
	}
	annDiffText(t, "sysctls after refused input", sysctlState(t, rs.SysctlRoot), defaultSysctls)

	lo.FailNext("add", errors.New("operation not permitted"))
	done, err := rs.Setup([]netip.Addr{netip.MustParseAddr("192.0.2.6")}, false)
	if err == nil || err.Error() != "add VIP 192.0.2.6/32 on lo: operation not permitted" {
		t.Errorf("error = %v", err)
	}
	if len(done) != 4 { // the sysctls were set before the address failed
		t.Errorf("steps done before the error: %q", done)
	}

	if err := os.Remove(filepath.Join(rs.SysctlRoot, "net", "ipv4", "conf", "lo", "arp_announce")); err != nil {
		t.Fatal(err)
	}
	_, err = rs.Setup([]netip.Addr{netip.MustParseAddr("192.0.2.6")}, false)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "net.ipv4.conf.lo.arp_announce") {
		t.Errorf("missing sysctl: %v", err)
	}

	noLo := rs
	noLo.Loopback = "lo0"
	if _, err := noLo.Teardown([]netip.Addr{netip.MustParseAddr("2001:db8::6")}, false, false); !errors.Is(err, director.ErrNoInterface) {
		t.Errorf("missing loopback: %v", err)
	}
}
