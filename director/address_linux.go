package director

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetlinkAddresses are the addresses of the kernel's interfaces, read and written through
// rtnetlink (vishvananda/netlink). It is safe for concurrent use.
//
// Network namespace: with a nil handle each call opens its netlink socket in the network
// namespace of the calling OS thread, which for an agent is the host's (a goroutine that has
// not locked its thread into another namespace runs in the process's). With a handle from
// netlink.NewHandleAt every call works in that handle's namespace, from any thread; the caller
// keeps and closes the handle.
type NetlinkAddresses struct {
	h *netlink.Handle
}

// NewNetlinkAddresses returns the kernel's addresses through h (nil: the calling thread's
// network namespace, at each call).
func NewNetlinkAddresses(h *netlink.Handle) *NetlinkAddresses {
	if h == nil {
		// The zero Handle opens a socket per request in the calling thread's namespace,
		// exactly what the package-level netlink functions do.
		h = &netlink.Handle{}
	}
	return &NetlinkAddresses{h: h}
}

var _ Addresses = (*NetlinkAddresses)(nil)

func (n *NetlinkAddresses) link(iface string) (netlink.Link, error) {
	l, err := n.h.LinkByName(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("%w: %q", ErrNoInterface, iface)
		}
		return nil, fmt.Errorf("look up %q: %w", iface, err)
	}
	return l, nil
}

// toNetlink converts p to the library's form; IPv6 addresses skip duplicate address detection.
func toNetlink(p netip.Prefix, label string) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is4() {
		a.Label = label
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Add implements Addresses.
func (n *NetlinkAddresses) Add(iface string, p netip.Prefix, label string) error {
	wrap := func(err error) error { return fmt.Errorf("add VIP %s on %s: %w", p, iface, err) }
	if err := CheckPrefix(p); err != nil {
		return wrap(err)
	}
	if label == "" {
		label = VIPLabel(iface)
	}
	if err := ValidateLabel(iface, label); err != nil {
		return wrap(err)
	}
	l, err := n.link(iface)
	if err != nil {
		return wrap(err)
	}
	err = n.h.AddrAdd(l, toNetlink(p, label))
	if errors.Is(err, syscall.EEXIST) {
		// IPv6 identifies an address without its prefix length: EEXIST may mean "there with
		// another length", which is not what the caller asked for.
		have, lerr := n.list(l)
		if lerr != nil {
			return wrap(lerr)
		}
		if slices.Contains(have, p) {
			return nil
		}
		return wrap(fmt.Errorf("%s is there with another prefix length: %w", p.Addr(), err))
	}
	if err != nil {
		return wrap(err)
	}
	return nil
}

// Remove implements Addresses.
func (n *NetlinkAddresses) Remove(iface string, p netip.Prefix) error {
	wrap := func(err error) error { return fmt.Errorf("remove VIP %s from %s: %w", p, iface, err) }
	if err := CheckPrefix(p); err != nil {
		return wrap(err)
	}
	l, err := n.link(iface)
	if err != nil {
		return wrap(err)
	}
	// The label must not be sent: the kernel would then only delete an address with that label.
	err = n.h.AddrDel(l, toNetlink(p, ""))
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return wrap(err)
	}
	return nil
}

// List implements Addresses.
func (n *NetlinkAddresses) List(iface string) ([]netip.Prefix, error) {
	l, err := n.link(iface)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
	}
	ps, err := n.list(l)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
	}
	return ps, nil
}

func (n *NetlinkAddresses) list(l netlink.Link) ([]netip.Prefix, error) {
	var addrs []netlink.Addr
	var err error
	// A dump racing with a change comes back "interrupted"; a retry gets a consistent one.
	for range 3 {
		addrs, err = n.h.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	sortPrefixes(out)
	return out, nil
}

// HardwareAddr implements Addresses.
func (n *NetlinkAddresses) HardwareAddr(iface string) (net.HardwareAddr, error) {
	l, err := n.link(iface)
	if err != nil {
		return nil, fmt.Errorf("hardware address of %s: %w", iface, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// sortPrefixes orders prefixes as List promises: by address (IPv4 first), then length.
func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
}
