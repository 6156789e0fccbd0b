//go:build linux

package director

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"

	"github.com/troop-lb/troop/fsm"
)

// NewIPVS opens the kernel's IPVS table over generic netlink (cloudflare/ipvs).
//
// The netlink socket is opened in the network namespace of the calling OS thread and stays bound
// to it: every later call acts on that namespace's table, whichever thread makes it. To program
// another namespace, call NewIPVS on a goroutine locked (runtime.LockOSThread) to a thread that
// has entered it. NewIPVS fails when the kernel has no IPVS (the "IPVS" generic netlink family
// is missing until the ip_vs module is loaded) or the caller lacks CAP_NET_ADMIN; the kernel
// checks the latter on each command, not here.
//
// The result is safe for concurrent use. Close it to release the socket.
func NewIPVS() (IPVS, error) {
	c, err := ipvs.New()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open IPVS: generic netlink family %q not found (is the ip_vs module loaded?): %w", "IPVS", err)
		}
		return nil, fmt.Errorf("open IPVS: %w", err)
	}
	// A listing of a large table is one long dump, and a netlink socket answers one request at
	// a time: listings get a socket of their own, so that writes never wait behind one.
	lister, err := ipvs.New()
	if err != nil {
		closeClient(c)
		return nil, fmt.Errorf("open IPVS: %w", err)
	}
	k := newIPVS(c, closerOf(c))
	k.lister, k.listerCloser = lister, closerOf(lister)
	return k, nil
}

// closerOf returns the Close of the netlink client behind c (ipvs.Client lacks one), or nil.
func closerOf(c ipvs.Client) io.Closer {
	closer, _ := c.(io.Closer)
	return closer
}

func closeClient(c ipvs.Client) {
	if closer := closerOf(c); closer != nil {
		closer.Close()
	}
}

// ipvsSysctls are set on every director, as keepalived's documentation asks LVS operators to.
// expire_nodest_conn: a connection whose real server was removed is expired at its next packet
// instead of having its packets dropped until it times out, so a client that reuses the port is
// scheduled afresh rather than left hanging. expire_quiescent_template: persistence templates
// pointing at a real at weight 0 expire too, so a quiesced real takes no new clients.
var ipvsSysctls = []struct{ name, value string }{
	{"expire_nodest_conn", "1"},
	{"expire_quiescent_template", "1"},
}

// TuneIPVS sets ipvsSysctls in the calling thread's network namespace (needs CAP_NET_ADMIN).
func TuneIPVS() error {
	var errs []error
	for _, s := range ipvsSysctls {
		if err := os.WriteFile("/proc/sys/net/ipv4/vs/"+s.name, []byte(s.value+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("set net.ipv4.vs.%s = %s: %w", s.name, s.value, err))
		}
	}
	return errors.Join(errs...)
}

// newIPVS wraps an opened client, which also serves listings; tests pass their own ipvs.Client.
func newIPVS(c ipvs.Client, closer io.Closer) *kernelIPVS {
	return &kernelIPVS{c: c, lister: c, closer: closer}
}

// kernelIPVS implements IPVS on cloudflare/ipvs, translating Troop's values both ways. It is
// safe for concurrent use: a Services listing on lister runs beside the other calls on c.
type kernelIPVS struct {
	c      ipvs.Client
	lister ipvs.Client
	closer io.Closer // may be nil
	// listerCloser closes lister when it is a client of its own (nil otherwise).
	listerCloser io.Closer

	closeOnce sync.Once
	closeErr  error
}

var _ IPVS = (*kernelIPVS)(nil)

// Services lists every virtual service. cloudflare/ipvs reports an empty table as a bare
// os.ErrNotExist; that is an empty list here.
func (k *kernelIPVS) Services() ([]Service, error) {
	ks, err := k.lister.Services()
	if err == os.ErrNotExist { // identity, not errors.Is: an ENOENT errno would be a real error
		return []Service{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	out := make([]Service, 0, len(ks))
	for _, s := range ks {
		svc, err := serviceFromKernel(s)
		if err != nil {
			return nil, fmt.Errorf("list IPVS services: %w", err)
		}
		out = append(out, svc)
	}
	return out, nil
}

// Destinations lists the real servers of a service. The kernel's destination dump answers an
// empty list both for a service without destinations and for a missing one, so an empty answer
// costs one more call (GET_SERVICE) to tell them apart: ESRCH for a missing service.
func (k *kernelIPVS) Destinations(key ServiceKey) ([]Destination, error) {
	ks, err := serviceKeyToKernel(key)
	if err != nil {
		return nil, fmt.Errorf("list IPVS destinations of %s: %w", key, err)
	}
	kd, err := k.c.Destinations(ks)
	if err == os.ErrNotExist {
		if _, err := k.c.Service(ks); err != nil {
			return nil, fmt.Errorf("list IPVS destinations of %s: %w", key, err)
		}
		return []Destination{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list IPVS destinations of %s: %w", key, err)
	}
	out := make([]Destination, 0, len(kd))
	for _, d := range kd {
		out = append(out, destinationFromKernel(d))
	}
	return out, nil
}

// CreateService adds a virtual service.
func (k *kernelIPVS) CreateService(s Service) error {
	ks, err := serviceToKernel(s)
	if err == nil {
		err = k.c.CreateService(ks)
	}
	if err != nil {
		return fmt.Errorf("create IPVS service %s: %w", s.ServiceKey, err)
	}
	return nil
}

// UpdateService replaces a service's scheduler, flags, timeout and netmask.
func (k *kernelIPVS) UpdateService(s Service) error {
	ks, err := serviceToKernel(s)
	if err == nil {
		err = k.c.UpdateService(ks)
	}
	if err != nil {
		return fmt.Errorf("update IPVS service %s: %w", s.ServiceKey, err)
	}
	return nil
}

// RemoveService deletes a service and its destinations.
func (k *kernelIPVS) RemoveService(key ServiceKey) error {
	ks, err := serviceKeyToKernel(key)
	if err == nil {
		err = k.c.RemoveService(ks)
	}
	if err != nil {
		return fmt.Errorf("remove IPVS service %s: %w", key, err)
	}
	return nil
}

// CreateDestination adds a real server to a service.
func (k *kernelIPVS) CreateDestination(key ServiceKey, d Destination) error {
	ks, kd, err := destinationArgs(key, d)
	if err == nil {
		err = k.c.CreateDestination(ks, kd)
	}
	if err != nil {
		return fmt.Errorf("create IPVS destination %s in %s: %w", d.DestinationKey, key, err)
	}
	return nil
}

// UpdateDestination replaces a real server's forwarding method, weight and thresholds.
func (k *kernelIPVS) UpdateDestination(key ServiceKey, d Destination) error {
	ks, kd, err := destinationArgs(key, d)
	if err == nil {
		err = k.c.UpdateDestination(ks, kd)
	}
	if err != nil {
		return fmt.Errorf("update IPVS destination %s in %s: %w", d.DestinationKey, key, err)
	}
	return nil
}

// RemoveDestination deletes a real server from a service.
func (k *kernelIPVS) RemoveDestination(key ServiceKey, dk DestinationKey) error {
	ks, err := serviceKeyToKernel(key)
	var kd ipvs.Destination
	if err == nil {
		kd, err = destinationKeyToKernel(dk)
	}
	if err == nil {
		err = k.c.RemoveDestination(ks, kd)
	}
	if err != nil {
		return fmt.Errorf("remove IPVS destination %s from %s: %w", dk, key, err)
	}
	return nil
}

// Close releases the netlink sockets. It may be called more than once.
func (k *kernelIPVS) Close() error {
	k.closeOnce.Do(func() {
		var errs []error
		for _, c := range []io.Closer{k.closer, k.listerCloser} {
			if c != nil {
				errs = append(errs, c.Close())
			}
		}
		if err := errors.Join(errs...); err != nil {
			k.closeErr = fmt.Errorf("close IPVS: %w", err)
		}
	})
	return k.closeErr
}

func destinationArgs(key ServiceKey, d Destination) (ipvs.Service, ipvs.Destination, error) {
	ks, err := serviceKeyToKernel(key)
	if err != nil {
		return ipvs.Service{}, ipvs.Destination{}, err
	}
	kd, err := destinationToKernel(d)
	return ks, kd, err
}

// refuse is an error the implementation returns without asking the kernel; it wraps the errno
// the kernel would most likely have answered, so callers branch on it the same way.
func refuse(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errno)
}

// Kernel values (include/uapi/linux/ip_vs.h).
const (
	svcFlagHashed = uint32(ipvs.ServiceHashed) // IP_VS_SVC_F_HASHED, kernel-internal
)

func familyToKernel(f fsm.Family) (ipvs.AddressFamily, bool) {
	switch f {
	case fsm.IPv4:
		return ipvs.INET, true
	case fsm.IPv6:
		return ipvs.INET6, true
	}
	return 0, false
}

func familyFromKernel(f ipvs.AddressFamily) (fsm.Family, error) {
	switch f {
	case ipvs.INET:
		return fsm.IPv4, nil
	case ipvs.INET6:
		return fsm.IPv6, nil
	}
	return "", fmt.Errorf("unknown address family %d", f)
}

func addrFamily(a netip.Addr) fsm.Family {
	if a.Is4() {
		return fsm.IPv4
	}
	return fsm.IPv6
}

func protocolToKernel(p fsm.Protocol) (ipvs.Protocol, bool) {
	switch p {
	case fsm.TCP:
		return ipvs.TCP, true
	case fsm.UDP:
		return ipvs.UDP, true
	case fsm.SCTP:
		return ipvs.SCTP, true
	}
	return 0, false
}

func protocolFromKernel(p ipvs.Protocol) fsm.Protocol {
	switch p {
	case ipvs.TCP:
		return fsm.TCP
	case ipvs.UDP:
		return fsm.UDP
	case ipvs.SCTP:
		return fsm.SCTP
	}
	// The genetlink interface accepts any protocol number; show it rather than hide the service.
	return fsm.Protocol(fmt.Sprintf("proto-%d", uint16(p)))
}

// serviceKeyToKernel builds the identifying part of a kernel service.
func serviceKeyToKernel(k ServiceKey) (ipvs.Service, error) {
	if k.FWMark != 0 {
		fam := k.Family
		if fam == "" && k.Address.IsValid() {
			fam = addrFamily(k.Address)
		}
		af, ok := familyToKernel(fam)
		if !ok {
			return ipvs.Service{}, refuse(syscall.EAFNOSUPPORT, "firewall-mark service needs a family (ipv4 or ipv6), got %q", k.Family)
		}
		return ipvs.Service{FWMark: k.FWMark, Family: af}, nil
	}
	if !k.Address.IsValid() {
		return ipvs.Service{}, refuse(syscall.EINVAL, "service has neither an address nor a firewall mark")
	}
	fam := addrFamily(k.Address)
	if k.Family != "" && k.Family != fam {
		return ipvs.Service{}, refuse(syscall.EINVAL, "service address %s is not %s", k.Address, k.Family)
	}
	proto, ok := protocolToKernel(k.Protocol)
	if !ok {
		return ipvs.Service{}, refuse(syscall.EINVAL, "unknown protocol %q (want tcp, udp or sctp)", k.Protocol)
	}
	af, _ := familyToKernel(fam)
	return ipvs.Service{Address: k.Address, Port: k.Port, Protocol: proto, Family: af}, nil
}

// serviceToKernel builds a full kernel service. The kernel refuses a service without a netmask
// (EINVAL), so one is always sent: the host mask unless the service is persistent and asks for
// another prefix length.
func serviceToKernel(s Service) (ipvs.Service, error) {
	ks, err := serviceKeyToKernel(s.ServiceKey)
	if err != nil {
		return ipvs.Service{}, err
	}
	ks.Scheduler = string(s.Scheduler)
	ks.Timeout = s.Timeout
	var flags uint32
	if s.Persistent {
		flags |= FlagPersistent
	}
	schedBits, ok := SchedFlagBits(s.SchedFlags)
	if !ok {
		return ipvs.Service{}, refuse(syscall.EINVAL, "unknown scheduler flag in %q", s.SchedFlags)
	}
	flags |= schedBits
	ks.Flags = ipvs.Flags(flags)
	bits := 32
	if ks.Family == ipvs.INET6 {
		bits = 128
	}
	ones := bits
	if s.Persistent && s.Netmask != 0 {
		if s.Netmask < 0 || s.Netmask > bits {
			return ipvs.Service{}, refuse(syscall.EINVAL, "netmask /%d is not a prefix length 1-%d", s.Netmask, bits)
		}
		ones = s.Netmask
	}
	ks.Netmask = netmask.MaskFrom(ones, bits)
	return ks, nil
}

// serviceFromKernel translates what the kernel lists. The kernel-internal "hashed" flag and the
// one-packet flag (ipvsadm -o, which Troop does not model) are dropped.
func serviceFromKernel(ks ipvs.ServiceExtended) (Service, error) {
	fam, err := familyFromKernel(ks.Family)
	if err != nil {
		return Service{}, err
	}
	s := Service{ServiceKey: ServiceKey{Family: fam}}
	if ks.FWMark != 0 {
		s.FWMark = ks.FWMark
	} else {
		s.Protocol = protocolFromKernel(ks.Protocol)
		s.Address = ks.Address
		s.Port = ks.Port
	}
	s.Scheduler = fsm.Scheduler(ks.Scheduler)
	flags := uint32(ks.Flags) &^ svcFlagHashed
	s.Persistent = flags&FlagPersistent != 0
	s.SchedFlags = SchedFlagsFromBits(s.Scheduler, flags)
	s.Timeout = ks.Timeout
	s.Netmask = ks.Netmask.Bits()
	s.Stats = statsFromKernel(ks.Stats, ks.Stats64)
	return s, nil
}

func destinationKeyToKernel(k DestinationKey) (ipvs.Destination, error) {
	if !k.Address.IsValid() {
		return ipvs.Destination{}, refuse(syscall.EINVAL, "destination has no address")
	}
	af, _ := familyToKernel(addrFamily(k.Address))
	return ipvs.Destination{Address: k.Address, Port: k.Port, Family: af}, nil
}

// destinationToKernel builds a full kernel destination. Weights travel as u32 and the kernel
// reads them as int, refusing negatives with ERANGE; a weight that would wrap is refused here the
// same way.
func destinationToKernel(d Destination) (ipvs.Destination, error) {
	kd, err := destinationKeyToKernel(d.DestinationKey)
	if err != nil {
		return ipvs.Destination{}, err
	}
	switch d.Forwarding {
	case fsm.DR:
		kd.FwdMethod = ipvs.DirectRoute
	case fsm.NAT:
		kd.FwdMethod = ipvs.Masquerade
	case fsm.TUN:
		kd.FwdMethod = ipvs.Tunnel
		kd.TunnelType = ipvs.IPIP
	default:
		return ipvs.Destination{}, refuse(syscall.EINVAL, "unknown forwarding method %q (want dr, nat or tun)", d.Forwarding)
	}
	if d.Weight < 0 || d.Weight > math.MaxInt32 {
		return ipvs.Destination{}, refuse(syscall.ERANGE, "weight %d is outside 0-%d", d.Weight, math.MaxInt32)
	}
	kd.Weight = uint32(d.Weight)
	kd.UpperThreshold = d.UpperThreshold
	kd.LowerThreshold = d.LowerThreshold
	return kd, nil
}

func destinationFromKernel(kd ipvs.DestinationExtended) Destination {
	d := Destination{
		DestinationKey: DestinationKey{Address: kd.Address, Port: kd.Port},
		Weight:         int(int32(kd.Weight)),
		UpperThreshold: kd.UpperThreshold,
		LowerThreshold: kd.LowerThreshold,
		ActiveConns:    kd.ActiveConnections,
		InactiveConns:  kd.InactiveConnections,
		Stats:          statsFromKernel(kd.Stats, kd.Stats64),
	}
	switch kd.FwdMethod {
	case ipvs.DirectRoute:
		d.Forwarding = fsm.DR
	case ipvs.Masquerade:
		d.Forwarding = fsm.NAT
	case ipvs.Tunnel:
		switch kd.TunnelType {
		case ipvs.IPIP:
			d.Forwarding = fsm.TUN
		case ipvs.GUE:
			d.Forwarding = "tun-gue"
		case ipvs.GRE:
			d.Forwarding = "tun-gre"
		default:
			d.Forwarding = fsm.Forwarding(fmt.Sprintf("tun-%d", kd.TunnelType))
		}
	case ipvs.Local:
		d.Forwarding = "local"
	case ipvs.Bypass:
		d.Forwarding = "bypass"
	default:
		d.Forwarding = fsm.Forwarding(fmt.Sprintf("fwd-%d", kd.FwdMethod))
	}
	return d
}

// statsFromKernel prefers the 64-bit counters (kernels since 4.1 send both).
func statsFromKernel(s32, s64 ipvs.Stats) Stats {
	s := s64
	if s == (ipvs.Stats{}) {
		s = s32
	}
	return Stats{
		Connections: s.Connections,
		PacketsIn:   s.IncomingPackets,
		PacketsOut:  s.OutgoingPackets,
		BytesIn:     s.IncomingBytes,
		BytesOut:    s.OutgoingBytes,
		CPS:         s.ConnectionRate,
		PPSIn:       s.IncomingPacketRate,
		PPSOut:      s.OutgoingPacketRate,
		BPSIn:       s.IncomingByteRate,
		BPSOut:      s.OutgoingByteRate,
	}
}
