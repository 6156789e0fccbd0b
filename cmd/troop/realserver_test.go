package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/netfake"
	"github.com/vishvananda/netns"
)

// fakeHost is a real server with a fake lo and a sysctl tree in a temporary directory.
func fakeHost(t *testing.T) director.RealServer {
	t.Helper()
	root := t.TempDir()
	for _, iface := range []string{"all", "lo"} {
		dir := filepath.Join(root, "net", "ipv4", "conf", iface)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"arp_ignore", "arp_announce"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lo := netfake.NewAddresses(nil)
	lo.AddInterface("lo", make([]byte, 6), netip.MustParsePrefix("127.0.0.1/8"))
	return director.RealServer{Addresses: lo, SysctlRoot: root, Loopback: "lo"}
}

func TestRealserverOutput(t *testing.T) {
	host := fakeHost(t)
	vips := vipList{netip.MustParseAddr("192.0.2.6"), netip.MustParseAddr("2001:db8::6")}
	var out bytes.Buffer
	if err := runRealserver(&out, host.Setup, vips, true); err != nil {
		t.Fatal(err)
	}
	diffText(t, "setup --dry-run", out.String(), `set net.ipv4.conf.all.arp_ignore 0 → 1
set net.ipv4.conf.all.arp_announce 0 → 2
set net.ipv4.conf.lo.arp_ignore 0 → 1
set net.ipv4.conf.lo.arp_announce 0 → 2
add 192.0.2.6/32 to lo
add 2001:db8::6/128 to lo
Dry run: nothing was changed.
`)
	out.Reset()
	if err := runRealserver(&out, host.Setup, vips, false); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	teardown := func(v []netip.Addr, dry bool) ([]string, error) { return host.Teardown(v, dry, false) }
	if err := runRealserver(&out, teardown, vips[:1], false); err != nil {
		t.Fatal(err)
	}
	diffText(t, "teardown", out.String(), "remove 192.0.2.6/32 from lo\n")

	// A failure prints the steps done before it, then the error.
	out.Reset()
	host.Addresses.(*netfake.Addresses).RemoveInterface("lo")
	err := runRealserver(&out, host.Setup, vips, false)
	if err == nil || !strings.Contains(err.Error(), "no such network interface") {
		t.Errorf("error = %v", err)
	}
	diffText(t, "steps before the failure", out.String(), `already net.ipv4.conf.all.arp_ignore = 1
already net.ipv4.conf.all.arp_announce = 2
already net.ipv4.conf.lo.arp_ignore = 1
already net.ipv4.conf.lo.arp_announce = 2
`)
}

func TestRealserverCommandLine(t *testing.T) {
	c := &cli{t: t}
	errOut := c.fails(exitUsage, "realserver", "setup")
	if !strings.Contains(errOut, "at least one -vip is required") {
		t.Errorf("no -vip: %q", errOut)
	}
	errOut = c.fails(exitUsage, "realserver", "teardown", "--vip", "192.0.2.300")
	if !strings.Contains(errOut, `not an IP address: "192.0.2.300"`) {
		t.Errorf("bad -vip: %q", errOut)
	}
	errOut = c.fails(exitUsage, "realserver", "setup", "--vip", "192.0.2.6", "extra")
	if !strings.Contains(errOut, "takes no arguments") {
		t.Errorf("argument: %q", errOut)
	}
	help := c.ok("realserver", "teardown", "-h")
	for _, flag := range []string{"-vip address", "-dry-run", "-restore-arp"} {
		if !strings.Contains(help, flag) {
			t.Errorf("teardown -h lacks %s:\n%s", flag, help)
		}
	}
	code, _, stderr := c.run("realserver")
	if code != exitUsage || !strings.Contains(stderr, "realserver setup") || !strings.Contains(stderr, "realserver teardown") {
		t.Errorf("troop realserver: exit %d, %q", code, stderr)
	}
}

// TestRealserverDryRunInNetns runs the command itself, as an operator would, in a network
// namespace of its own (fresh sysctls, an empty lo), so the output is known. Root only.
func TestRealserverDryRunInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespace tier: needs root to create a network namespace (make test runs it as root)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // and enters it
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the test's namespace: %v (the thread stays locked and dies)", err)
			return
		}
		runtime.UnlockOSThread()
	}()

	c := &cli{t: t}
	out := c.ok("realserver", "setup", "--vip", "192.0.2.6", "--vip", "2001:db8::6", "--dry-run")
	diffText(t, "troop realserver setup --dry-run", out, `set net.ipv4.conf.all.arp_ignore 0 → 1
set net.ipv4.conf.all.arp_announce 0 → 2
set net.ipv4.conf.lo.arp_ignore 0 → 1
set net.ipv4.conf.lo.arp_announce 0 → 2
add 192.0.2.6/32 to lo
add 2001:db8::6/128 to lo
Dry run: nothing was changed.
`)
	out = c.ok("realserver", "teardown", "--vip", "192.0.2.6", "--dry-run", "--restore-arp")
	diffText(t, "troop realserver teardown --dry-run --restore-arp", out, `already absent 192.0.2.6/32 from lo
keep net.ipv4.conf.all.arp_ignore = 0: not the value Troop sets
keep net.ipv4.conf.all.arp_announce = 0: not the value Troop sets
keep net.ipv4.conf.lo.arp_ignore = 0: not the value Troop sets
keep net.ipv4.conf.lo.arp_announce = 0: not the value Troop sets
Dry run: nothing was changed.
`)
}
