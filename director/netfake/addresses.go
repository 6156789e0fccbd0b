package netfake

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/troop-lb/troop/director"
)

// Addresses fakes director.Addresses: per-interface address lists with the kernel's rules.
// It is safe for concurrent use.
type Addresses struct {
	journal *Journal

	mu    sync.Mutex // guards all following fields
	links map[string]*link
	fail  map[string]error // op -> error for its next call
}

type link struct {
	mac   net.HardwareAddr
	addrs []entry
}

type entry struct {
	p     netip.Prefix
	label string // IPv4 only
}

var _ director.Addresses = (*Addresses)(nil)

// NewAddresses returns a fake with no interfaces, recording into j (nil: a journal of its own).
func NewAddresses(j *Journal) *Addresses {
	if j == nil {
		j = NewJournal(nil)
	}
	return &Addresses{journal: j, links: map[string]*link{}, fail: map[string]error{}}
}

// Journal returns the journal the fake records into.
func (f *Addresses) Journal() *Journal { return f.journal }

// AddInterface creates (or resets) interface name with a hardware address and addresses that
// are not Troop's (IPv4 ones labelled with the interface's name, as the kernel does).
func (f *Addresses) AddInterface(name string, mac net.HardwareAddr, addrs ...netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := &link{mac: slices.Clone(mac)}
	for _, p := range addrs {
		e := entry{p: p}
		if p.Addr().Is4() {
			e.label = name
		}
		l.addrs = append(l.addrs, e)
	}
	sortEntries(l.addrs)
	f.links[name] = l
}

// RemoveInterface makes name vanish with its addresses, as when a device is deleted.
func (f *Addresses) RemoveInterface(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.links, name)
}

// FailNext makes the next call of op ("add", "remove", "list" or "hardware") fail with err,
// wrapped as the real implementation wraps errors, without changing anything.
func (f *Addresses) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

func (f *Addresses) takeFailLocked(op string) error {
	err := f.fail[op]
	delete(f.fail, op)
	return err
}

func (f *Addresses) linkLocked(iface string) (*link, error) {
	l := f.links[iface]
	if l == nil {
		return nil, fmt.Errorf("%w: %q", director.ErrNoInterface, iface)
	}
	return l, nil
}

// sameAddress is the kernel's identity of addresses: IPv4 by address and prefix length, IPv6
// by address alone.
func sameAddress(a, b netip.Prefix) bool {
	if a.Addr() != b.Addr() {
		return false
	}
	return a.Addr().Is6() || a.Bits() == b.Bits()
}

// Add implements director.Addresses.
func (f *Addresses) Add(iface string, p netip.Prefix, label string) (err error) {
	defer func() { f.journal.record(Event{Op: "add", Iface: iface, Addr: p.String(), Err: err}) }()
	wrap := func(err error) error { return fmt.Errorf("add VIP %s on %s: %w", p, iface, err) }
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailLocked("add"); err != nil {
		return wrap(err)
	}
	if err := director.CheckPrefix(p); err != nil {
		return wrap(err)
	}
	if label == "" {
		label = director.VIPLabel(iface)
	}
	if err := director.ValidateLabel(iface, label); err != nil {
		return wrap(err)
	}
	l, err := f.linkLocked(iface)
	if err != nil {
		return wrap(err)
	}
	for _, e := range l.addrs {
		if e.p == p {
			return nil
		}
		if sameAddress(e.p, p) {
			return wrap(fmt.Errorf("%s is there with another prefix length: %w", p.Addr(), syscall.EEXIST))
		}
	}
	e := entry{p: p}
	if p.Addr().Is4() {
		e.label = label
	}
	l.addrs = append(l.addrs, e)
	sortEntries(l.addrs)
	return nil
}

// Remove implements director.Addresses.
func (f *Addresses) Remove(iface string, p netip.Prefix) (err error) {
	defer func() { f.journal.record(Event{Op: "remove", Iface: iface, Addr: p.String(), Err: err}) }()
	wrap := func(err error) error { return fmt.Errorf("remove VIP %s from %s: %w", p, iface, err) }
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailLocked("remove"); err != nil {
		return wrap(err)
	}
	if err := director.CheckPrefix(p); err != nil {
		return wrap(err)
	}
	l, err := f.linkLocked(iface)
	if err != nil {
		return wrap(err)
	}
	l.addrs = slices.DeleteFunc(l.addrs, func(e entry) bool { return e.p == p })
	return nil
}

// List implements director.Addresses.
func (f *Addresses) List(iface string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailLocked("list"); err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
	}
	l, err := f.linkLocked(iface)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
	}
	out := make([]netip.Prefix, 0, len(l.addrs))
	for _, e := range l.addrs {
		out = append(out, e.p)
	}
	return out, nil
}

// HardwareAddr implements director.Addresses.
func (f *Addresses) HardwareAddr(iface string) (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFailLocked("hardware"); err != nil {
		return nil, fmt.Errorf("hardware address of %s: %w", iface, err)
	}
	l, err := f.linkLocked(iface)
	if err != nil {
		return nil, fmt.Errorf("hardware address of %s: %w", iface, err)
	}
	return slices.Clone(l.mac), nil
}

// holds reports whether vip is on iface, with any prefix length.
func (f *Addresses) holds(iface string, vip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[iface]
	if l == nil {
		return false
	}
	return slices.ContainsFunc(l.addrs, func(e entry) bool { return e.p.Addr() == vip })
}

// Labels returns the label of each IPv4 address of iface (for tests of labelling).
func (f *Addresses) Labels(iface string) map[netip.Prefix]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Prefix]string{}
	if l := f.links[iface]; l != nil {
		for _, e := range l.addrs {
			if e.label != "" {
				out[e.p] = e.label
			}
		}
	}
	return out
}

// String renders every interface as `ip addr` would, in name order:
//
//	eth0 02:00:00:00:00:01
//	    inet 192.0.2.1/24 eth0
//	    inet 192.0.2.10/32 eth0:troop
//	    inet6 2001:db8::10/128
func (f *Addresses) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.links))
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		l := f.links[n]
		fmt.Fprintf(&b, "%s %s\n", n, l.mac)
		for _, e := range l.addrs {
			if e.p.Addr().Is4() {
				fmt.Fprintf(&b, "    inet %s %s\n", e.p, e.label)
			} else {
				fmt.Fprintf(&b, "    inet6 %s\n", e.p)
			}
		}
	}
	return b.String()
}

func sortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(a.p.Addr().Compare(b.p.Addr()), cmp.Compare(a.p.Bits(), b.p.Bits()))
	})
}

func sortAddrs(as []netip.Addr) { slices.SortFunc(as, netip.Addr.Compare) }
