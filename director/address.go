package director

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Addresses are the IP addresses of the network interfaces of one network namespace, as
// `ip addr` shows them. The leader puts its VIPs on an interface with Add and takes them off
// with Remove; a real server puts them on lo. NetlinkAddresses is the Linux implementation and
// netfake.Addresses the fake one.
//
// An address is identified as the kernel identifies it: an IPv4 address by address and prefix
// length (192.0.2.10/32 and 192.0.2.10/24 are two addresses), an IPv6 address by address alone.
// An unknown interface is an error matching ErrNoInterface. Errors name the operation, the
// address and the interface ("add VIP 192.0.2.10/32 on eth0: ...").
type Addresses interface {
	// Add puts p on iface. label names IPv4 addresses as `ip addr` shows them ("eth0:troop");
	// "" means VIPLabel(iface), and a label must be iface itself or start with iface and a
	// colon, 15 bytes at most (ValidateLabel). IPv6 addresses get no label and skip duplicate
	// address detection (IFA_F_NODAD) so that they are usable at once, not "tentative" for a
	// second or more. p already there is success, whatever its label; the address there with
	// another prefix length is an error (an IPv6 one matching os.ErrExist).
	Add(iface string, p netip.Prefix, label string) error
	// Remove takes p (address and prefix length) off iface. p absent is success.
	Remove(iface string, p netip.Prefix) error
	// List returns every address of iface, Troop's or not: IPv4 first, in address order, each
	// with its own prefix length and not masked (192.0.2.10/24, as `ip addr` prints it), so
	// that a prefix given to Add is found in it as it was given.
	List(iface string) ([]netip.Prefix, error)
	// HardwareAddr returns iface's link-layer address (the MAC that announcements carry).
	HardwareAddr(iface string) (net.HardwareAddr, error)
}

// ErrNoInterface is the error (wrapped) for an interface that does not exist.
var ErrNoInterface = errors.New("no such network interface")

// labelMax is the longest interface address label Linux keeps: IFNAMSIZ (16) less the NUL.
const labelMax = 15

// labelSuffix marks Troop's VIPs in `ip addr` output, as the seed's "lo:0" aliases were marked.
const labelSuffix = ":troop"

// VIPLabel returns the label Troop gives the IPv4 VIPs it adds to iface: "eth0:troop", cut to
// the kernel's 15 bytes for long interface names ("enp0s31f6abc:tr"), or iface itself when no
// room is left for a colon and one character (a 14- or 15-byte name).
func VIPLabel(iface string) string {
	l := iface + labelSuffix
	switch {
	case len(l) <= labelMax:
		return l
	case len(iface)+2 > labelMax:
		return iface
	}
	return l[:labelMax]
}

// ValidateLabel checks an IPv4 address label as iproute2 does: iface itself, or iface, a colon
// and more, 15 bytes at most.
func ValidateLabel(iface, label string) error {
	switch {
	case len(label) > labelMax:
		return fmt.Errorf("label %q is longer than %d bytes", label, labelMax)
	case label != iface && !strings.HasPrefix(label, iface+":"):
		return fmt.Errorf("label %q must be %q or start with %q", label, iface, iface+":")
	}
	return nil
}

// CheckPrefix refuses what no interface can hold: an invalid prefix, a zoned or IPv4-mapped
// address (ambiguous as to family), a prefix length beyond the family's. Implementations of
// Addresses (the fake included) refuse these before asking the kernel.
func CheckPrefix(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix %q", p)
	case a.Zone() != "":
		return fmt.Errorf("address %s has a zone", a)
	case a.Is4In6():
		return fmt.Errorf("address %s is IPv4-mapped: give it as IPv4", a)
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("address %s cannot be put on an interface", a)
	}
	return nil
}

// HostPrefix returns a as a one-address prefix: /32 for IPv4, /128 for IPv6.
func HostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}
