package director

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// RealServer prepares a Linux host as an LVS direct-routing real server, the seed's manual
// steps done idempotently: every VIP on the loopback interface as a host address (/32, /128),
// so the host accepts packets the director forwards to it unchanged, and, for IPv4, the ARP
// sysctls that keep the host from answering or using those addresses in ARP, so that clients
// keep sending to the director:
//
//	net.ipv4.conf.all.arp_ignore = 1    answer ARP only for addresses of the receiving interface
//	net.ipv4.conf.all.arp_announce = 2  never use a VIP as the sender of our own ARP requests
//	net.ipv4.conf.lo.arp_ignore = 1     (the kernel uses the larger of "all" and the receiving
//	net.ipv4.conf.lo.arp_announce = 2    interface's value; lo's are set as the recipe has it)
//
// IPv6 needs no sysctl: Linux answers neighbour solicitations only for addresses of the
// interface they arrive on, so a VIP on lo is never advertised.
//
// Setup sets the sysctls before it adds any address, so a VIP is never on lo while the host
// would still answer ARP for it. The sysctls are per network namespace, as are the addresses.
type RealServer struct {
	// Addresses are the host's (NewNetlinkAddresses in production).
	Addresses Addresses
	// SysctlRoot is the sysctl tree ("/proc/sys"); tests point it at a directory of their own.
	// Files are read and written, never created.
	SysctlRoot string
	// Loopback is the interface that holds the VIPs ("lo").
	Loopback string
}

// arpSysctl is one sysctl Setup ensures.
type arpSysctl struct {
	iface string // "all" or the loopback's name
	name  string // arp_ignore, arp_announce
	want  int
	// alsoOK are other values that suppress ARP for lo's VIPs as well; Setup leaves them.
	alsoOK []int
}

func (s arpSysctl) key() string { return "net.ipv4.conf." + s.iface + "." + s.name }

func (r RealServer) sysctls() []arpSysctl {
	lo := r.Loopback
	// arp_ignore 2 (same subnet too) and 8 (never answer) are stricter than 1; 3 is not
	// (it answers for global-scope addresses wherever they are).
	return []arpSysctl{
		{iface: "all", name: "arp_ignore", want: 1, alsoOK: []int{2, 8}},
		{iface: "all", name: "arp_announce", want: 2},
		{iface: lo, name: "arp_ignore", want: 1, alsoOK: []int{2, 8}},
		{iface: lo, name: "arp_announce", want: 2},
	}
}

func (r RealServer) sysctlPath(s arpSysctl) string {
	return filepath.Join(r.SysctlRoot, "net", "ipv4", "conf", s.iface, s.name)
}

func (r RealServer) readSysctl(s arpSysctl) (int, error) {
	b, err := os.ReadFile(r.sysctlPath(s))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", s.key(), err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %q is not a number", s.key(), strings.TrimSpace(string(b)))
	}
	return v, nil
}

func (r RealServer) writeSysctl(s arpSysctl, v int) error {
	f, err := os.OpenFile(r.sysctlPath(s), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.key(), err)
	}
	_, err = f.WriteString(strconv.Itoa(v) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set %s: %w", s.key(), err)
	}
	return nil
}

// checkVIPs validates vips before anything is done, and returns them as host prefixes without
// duplicates, in the order given.
func checkVIPs(vips []netip.Addr) ([]netip.Prefix, error) {
	if len(vips) == 0 {
		return nil, errors.New("no VIP given")
	}
	var out []netip.Prefix
	for _, v := range vips {
		switch {
		case !v.IsValid():
			return nil, errors.New("invalid VIP (empty address)")
		case v.Zone() != "":
			return nil, fmt.Errorf("VIP %s: has a zone", v)
		case v.Unmap().IsLoopback() || v.IsUnspecified() || v.IsMulticast() || v.IsLinkLocalUnicast():
			return nil, fmt.Errorf("VIP %s: a loopback, unspecified, multicast or link-local address cannot be a VIP", v)
		}
		p := HostPrefix(v)
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Setup makes the host a real server for vips: the ARP sysctls (when a VIP is IPv4), then
// each VIP on the loopback interface. It returns what it did, one line per step ("set
// net.ipv4.conf.all.arp_ignore 0 → 1", "add 192.0.2.6/32 to lo", "already 192.0.2.6/32 on
// lo"); with dryRun it changes nothing and returns what it would do. On error it returns the
// steps done before it. Running it again changes nothing.
func (r RealServer) Setup(vips []netip.Addr, dryRun bool) ([]string, error) {
	ps, err := checkVIPs(vips)
	if err != nil {
		return nil, err
	}
	var done []string
	if slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().Is4() }) {
		for _, s := range r.sysctls() {
			cur, err := r.readSysctl(s)
			if err != nil {
				return done, err
			}
			if cur == s.want || slices.Contains(s.alsoOK, cur) {
				done = append(done, fmt.Sprintf("already %s = %d", s.key(), cur))
				continue
			}
			if !dryRun {
				if err := r.writeSysctl(s, s.want); err != nil {
					return done, err
				}
			}
			done = append(done, fmt.Sprintf("set %s %d → %d", s.key(), cur, s.want))
		}
	}
	have, err := r.Addresses.List(r.Loopback)
	if err != nil {
		return done, err
	}
	for _, p := range ps {
		if slices.Contains(have, p) {
			done = append(done, fmt.Sprintf("already %s on %s", p, r.Loopback))
			continue
		}
		if !dryRun {
			if err := r.Addresses.Add(r.Loopback, p, ""); err != nil {
				return done, err
			}
		}
		done = append(done, fmt.Sprintf("add %s to %s", p, r.Loopback))
	}
	return done, nil
}

// Teardown removes vips from the loopback interface. The ARP sysctls stay as they are unless
// restoreARP is set, because other VIPs (another pool's, one added by hand) may still need
// them, and they do no harm to a host with no VIP. With restoreARP, each sysctl that has
// Troop's value is set back to the kernel's default (0), but only when no other IPv4 address
// besides 127.0.0.0/8 remains on the loopback interface; otherwise the step says which
// address keeps it. Lines and dryRun are as for Setup ("remove 192.0.2.6/32 from lo",
// "already absent 192.0.2.6/32 from lo", "set net.ipv4.conf.all.arp_ignore 1 → 0",
// "keep net.ipv4.conf.all.arp_ignore = 1: lo still holds 192.0.2.7/32").
func (r RealServer) Teardown(vips []netip.Addr, dryRun, restoreARP bool) ([]string, error) {
	ps, err := checkVIPs(vips)
	if err != nil {
		return nil, err
	}
	have, err := r.Addresses.List(r.Loopback)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, p := range ps {
		if !slices.Contains(have, p) {
			done = append(done, fmt.Sprintf("already absent %s from %s", p, r.Loopback))
			continue
		}
		if !dryRun {
			if err := r.Addresses.Remove(r.Loopback, p); err != nil {
				return done, err
			}
		}
		done = append(done, fmt.Sprintf("remove %s from %s", p, r.Loopback))
	}
	if !restoreARP {
		return done, nil
	}
	var keeper netip.Prefix // an IPv4 VIP still on lo, if any
	for _, p := range have {
		if p.Addr().Is4() && !p.Addr().IsLoopback() && !slices.Contains(ps, p) {
			keeper = p
			break
		}
	}
	for _, s := range r.sysctls() {
		cur, err := r.readSysctl(s)
		if err != nil {
			return done, err
		}
		switch {
		case cur != s.want:
			done = append(done, fmt.Sprintf("keep %s = %d: not the value Troop sets", s.key(), cur))
		case keeper.IsValid():
			done = append(done, fmt.Sprintf("keep %s = %d: %s still holds %s", s.key(), cur, r.Loopback, keeper))
		default:
			if !dryRun {
				if err := r.writeSysctl(s, 0); err != nil {
					return done, err
				}
			}
			done = append(done, fmt.Sprintf("set %s %d → 0", s.key(), cur))
		}
	}
	return done, nil
}
