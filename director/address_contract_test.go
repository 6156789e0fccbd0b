package director_test

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/netfake"
)

// addressContract checks what director.Addresses promises, against any implementation: the
// netlink one in a network namespace (root) and netfake's (always), so that the fake stays
// faithful. iface exists and holds none of the test's addresses.
func addressContract(t *testing.T, a director.Addresses, iface string) {
	t.Helper()
	v4 := netip.MustParsePrefix("192.0.2.100/32")
	v4wide := netip.MustParsePrefix("192.0.2.100/24")
	v6 := netip.MustParsePrefix("2001:db8::100/128")
	v6wide := netip.MustParsePrefix("2001:db8::100/64")
	has := func(p netip.Prefix) bool {
		t.Helper()
		list, err := a.List(iface)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if !slices.IsSortedFunc(list, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) }) {
			t.Errorf("List not in address order: %v", list)
		}
		return slices.Contains(list, p)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	must("add IPv4", a.Add(iface, v4, ""))
	must("add IPv4 again (idempotent)", a.Add(iface, v4, ""))
	must("add IPv6", a.Add(iface, v6, ""))
	if !has(v4) || !has(v6) {
		t.Fatalf("VIPs missing after Add")
	}
	// IPv6 identifies an address without its length; IPv4 does not.
	if err := a.Add(iface, v6wide, ""); !errors.Is(err, os.ErrExist) {
		t.Errorf("add %s while %s is there: %v, want an error matching os.ErrExist", v6wide, v6, err)
	} else if !strings.HasPrefix(err.Error(), "add VIP 2001:db8::100/64 on "+iface+": ") {
		t.Errorf("error %q does not name the operation, VIP and interface", err)
	}
	must("add IPv4 with another length", a.Add(iface, v4wide, iface))
	if !has(v4) || !has(v4wide) {
		t.Errorf("IPv4 %s and %s should coexist", v4, v4wide)
	}
	must("remove the wide IPv4", a.Remove(iface, v4wide))
	if !has(v4) || has(v4wide) {
		t.Errorf("removing %s touched %s", v4wide, v4)
	}
	// Removing with the wrong length removes nothing, and is "absent", not an error.
	must("remove IPv6 with another length", a.Remove(iface, v6wide))
	if !has(v6) {
		t.Errorf("%s removed by a Remove of %s", v6, v6wide)
	}
	must("remove IPv4", a.Remove(iface, v4))
	must("remove IPv4 again (absent is success)", a.Remove(iface, v4))
	must("remove IPv6", a.Remove(iface, v6))
	if has(v4) || has(v6) {
		t.Errorf("VIPs left after Remove")
	}

	// Bad input changes nothing.
	for _, tc := range []struct {
		p     netip.Prefix
		label string
	}{
		{v4, "other:troop"},
		{v4, iface + ":a-label-far-too-long"},
		{netip.Prefix{}, ""},
		{netip.MustParsePrefix("::ffff:192.0.2.100/128"), ""},
	} {
		if err := a.Add(iface, tc.p, tc.label); err == nil {
			t.Errorf("Add(%s, %q) succeeded", tc.p, tc.label)
		}
	}
	if has(v4) {
		t.Errorf("a refused Add left %s", v4)
	}

	// An unknown interface is ErrNoInterface, for every operation.
	const missing = "nosuchif0"
	_, lerr := a.List(missing)
	_, herr := a.HardwareAddr(missing)
	for what, err := range map[string]error{
		"Add": a.Add(missing, v4, ""), "Remove": a.Remove(missing, v4), "List": lerr, "HardwareAddr": herr,
	} {
		if !errors.Is(err, director.ErrNoInterface) {
			t.Errorf("%s on a missing interface: %v, want ErrNoInterface", what, err)
		}
	}
}

func TestFakeAddressesContract(t *testing.T) {
	f := netfake.NewAddresses(nil)
	f.AddInterface("eth0", annMAC(1), netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	addressContract(t, f, "eth0")
}

func TestFakeAddressesState(t *testing.T) {
	j := netfake.NewJournal(nil)
	f := netfake.NewAddresses(j)
	ann := netfake.NewAnnouncer(j, f)
	f.AddInterface("eth0", annMAC(1), netip.MustParsePrefix("192.0.2.1/24"))
	f.AddInterface("enp0s31f6abc", annMAC(2))
	vip := netip.MustParsePrefix("192.0.2.10/32")
	for _, step := range []error{
		f.Add("eth0", vip, ""),
		f.Add("eth0", netip.MustParsePrefix("2001:db8::10/128"), ""),
		f.Add("enp0s31f6abc", netip.MustParsePrefix("192.0.2.11/32"), ""),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	ann.Announce("eth0", vip.Addr())
	ann.Announce("eth0", netip.MustParseAddr("192.0.2.99")) // not held: a mistake
	ann.Stop(vip.Addr())
	f.FailNext("remove", errors.New("operation not permitted"))
	if err := f.Remove("eth0", vip); err == nil || err.Error() != "remove VIP 192.0.2.10/32 from eth0: operation not permitted" {
		t.Errorf("FailNext: %v", err)
	}
	if err := f.Remove("eth0", vip); err != nil {
		t.Fatal(err)
	}
	annDiffText(t, "state", f.String(), `enp0s31f6abc 02:00:00:00:00:02
    inet 192.0.2.11/32 enp0s31f6abc:tr
eth0 02:00:00:00:00:01
    inet 192.0.2.1/24 eth0
    inet6 2001:db8::10/128
`)
	annDiffText(t, "journal", j.String(), `add 192.0.2.10/32 to eth0
add 2001:db8::10/128 to eth0
add 192.0.2.11/32 to enp0s31f6abc
announce 192.0.2.10 on eth0
announce 192.0.2.99 on eth0
stop 192.0.2.10
remove 192.0.2.10/32 from eth0: remove VIP 192.0.2.10/32 from eth0: operation not permitted
remove 192.0.2.10/32 from eth0
`)
	annDiffText(t, "announcing", ann.String(), "192.0.2.99 on eth0 (announced 1 times)\n")
	if m := ann.Mistakes(); len(m) != 1 || !strings.Contains(m[0], "192.0.2.99") {
		t.Errorf("mistakes = %q", m)
	}
}

func TestVIPLabel(t *testing.T) {
	for iface, want := range map[string]string{
		"eth0":            "eth0:troop",
		"lo":              "lo:troop",
		"enp0s31f6":       "enp0s31f6:troop",
		"enp0s31f6ab":     "enp0s31f6ab:tro",
		"enp0s31f6abcd":   "enp0s31f6abcd:t",
		"enp0s31f6abcde":  "enp0s31f6abcde", // no room for ":" and a character
		"enp0s31f6abcdef": "enp0s31f6abcdef",
	} {
		got := director.VIPLabel(iface)
		if got != want {
			t.Errorf("VIPLabel(%q) = %q, want %q", iface, got, want)
		}
		if err := director.ValidateLabel(iface, got); err != nil {
			t.Errorf("VIPLabel(%q) = %q is not valid: %v", iface, got, err)
		}
	}
}

func annMAC(n byte) []byte { return []byte{0x02, 0, 0, 0, 0, n} }

func annDiffText(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
	}
}
