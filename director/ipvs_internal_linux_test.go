//go:build linux

package director

import (
	"errors"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"pgregory.net/rapid"

	"github.com/troop-lb/troop/fsm"
)

// These tests check the translation between Troop's values and cloudflare/ipvs's, and what
// kernelIPVS makes of the client's answers, with a scripted ipvs.Client below the seam that
// newIPVS opens. cloudflare/ipvs's own netlink encoding is tested by cloudflare/ipvs.

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// scriptedClient is an ipvs.Client that records calls and answers from its fields.
type scriptedClient struct {
	calls []string
	// services answers Services; nil answers os.ErrNotExist as cloudflare/ipvs does for an empty
	// table.
	services []ipvs.ServiceExtended
	dests    []ipvs.DestinationExtended
	// serviceErr answers Service (a GET_SERVICE); err answers every other call.
	serviceErr error
	err        error

	gotService ipvs.Service
	gotDest    ipvs.Destination
	closed     int
}

func (c *scriptedClient) Info() (ipvs.Info, error)     { panic("unused") }
func (c *scriptedClient) Config() (ipvs.Config, error) { panic("unused") }
func (c *scriptedClient) SetConfig(ipvs.Config) error  { panic("unused") }
func (c *scriptedClient) record(name string, s ipvs.Service, d ipvs.Destination) error {
	c.calls = append(c.calls, name)
	c.gotService, c.gotDest = s, d
	return c.err
}

func (c *scriptedClient) Services() ([]ipvs.ServiceExtended, error) {
	c.calls = append(c.calls, "Services")
	if c.err != nil {
		return nil, c.err
	}
	if c.services == nil {
		return nil, os.ErrNotExist
	}
	return c.services, nil
}

func (c *scriptedClient) Service(s ipvs.Service) (ipvs.ServiceExtended, error) {
	c.calls = append(c.calls, "Service")
	c.gotService = s
	return ipvs.ServiceExtended{Service: s}, c.serviceErr
}

func (c *scriptedClient) Destinations(s ipvs.Service) ([]ipvs.DestinationExtended, error) {
	c.calls = append(c.calls, "Destinations")
	c.gotService = s
	if c.err != nil {
		return nil, c.err
	}
	if c.dests == nil {
		return nil, os.ErrNotExist
	}
	return c.dests, nil
}

func (c *scriptedClient) CreateService(s ipvs.Service) error {
	return c.record("CreateService", s, ipvs.Destination{})
}
func (c *scriptedClient) UpdateService(s ipvs.Service) error {
	return c.record("UpdateService", s, ipvs.Destination{})
}
func (c *scriptedClient) RemoveService(s ipvs.Service) error {
	return c.record("RemoveService", s, ipvs.Destination{})
}
func (c *scriptedClient) CreateDestination(s ipvs.Service, d ipvs.Destination) error {
	return c.record("CreateDestination", s, d)
}
func (c *scriptedClient) UpdateDestination(s ipvs.Service, d ipvs.Destination) error {
	return c.record("UpdateDestination", s, d)
}
func (c *scriptedClient) RemoveDestination(s ipvs.Service, d ipvs.Destination) error {
	return c.record("RemoveDestination", s, d)
}
func (c *scriptedClient) Close() error { c.closed++; return nil }

// opError is what mdlayher/netlink returns for a kernel error: an *OpError around the errno.
func opError(errno syscall.Errno) error { return &netlink.OpError{Op: "receive", Err: errno} }

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8::10")
	rs4  = netip.MustParseAddr("192.0.2.21")
	rs6  = netip.MustParseAddr("2001:db8::21")
)

func TestServiceToKernel(t *testing.T) {
	tests := []struct {
		name string
		in   Service
		want ipvs.Service
	}{{
		name: "tcp, not persistent: host mask, no flags",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "wrr", Netmask: 24, Timeout: 0},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "wrr", Netmask: netmask.MaskFrom(32, 32)},
	}, {
		name: "udp persistent with a /24",
		in:   Service{ServiceKey: ServiceKey{Family: fsm.IPv4, Protocol: fsm.UDP, Address: vip4, Port: 53}, Scheduler: "rr", Persistent: true, Timeout: 300, Netmask: 24},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.UDP, Address: vip4, Port: 53, Scheduler: "rr", Flags: ipvs.ServicePersistent, Timeout: 300, Netmask: netmask.MaskFrom(24, 32)},
	}, {
		name: "sctp persistent, netmask 0 is the host mask",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.SCTP, Address: vip4, Port: 9}, Scheduler: "lc", Persistent: true, Timeout: 60},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.SCTP, Address: vip4, Port: 9, Scheduler: "lc", Flags: ipvs.ServicePersistent, Timeout: 60, Netmask: netmask.MaskFrom(32, 32)},
	}, {
		name: "ipv6 service gets a /128",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip6, Port: 443}, Scheduler: "wlc"},
		want: ipvs.Service{Family: ipvs.INET6, Protocol: ipvs.TCP, Address: vip6, Port: 443, Scheduler: "wlc", Netmask: netmask.MaskFrom(128, 128)},
	}, {
		name: "ipv6 persistent /64",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip6, Port: 443}, Scheduler: "wlc", Persistent: true, Timeout: 30, Netmask: 64},
		want: ipvs.Service{Family: ipvs.INET6, Protocol: ipvs.TCP, Address: vip6, Port: 443, Scheduler: "wlc", Flags: ipvs.ServicePersistent, Timeout: 30, Netmask: netmask.MaskFrom(64, 128)},
	}, {
		name: "fwmark drops protocol, address and port",
		in:   Service{ServiceKey: ServiceKey{Family: fsm.IPv6, FWMark: 7, Protocol: fsm.TCP, Address: vip6, Port: 80}, Scheduler: "rr"},
		want: ipvs.Service{Family: ipvs.INET6, FWMark: 7, Scheduler: "rr", Netmask: netmask.MaskFrom(128, 128)},
	}, {
		name: "fwmark takes the family from an address",
		in:   Service{ServiceKey: ServiceKey{FWMark: 1, Address: vip4}, Scheduler: "rr"},
		want: ipvs.Service{Family: ipvs.INET, FWMark: 1, Scheduler: "rr", Netmask: netmask.MaskFrom(32, 32)},
	}, {
		name: "sh flags are SCHED1 and SCHED2",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHPort, fsm.FlagSHFallback}},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "sh", Flags: 0x8 | 0x10, Netmask: netmask.MaskFrom(32, 32)},
	}, {
		name: "mh flags are the same bits",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "mh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagMHFallback, fsm.FlagMHPort}, Persistent: true, Timeout: 10},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "mh", Flags: 0x1 | 0x8 | 0x10, Timeout: 10, Netmask: netmask.MaskFrom(32, 32)},
	}, {
		name: "flag-3",
		in:   Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "rr", SchedFlags: []fsm.SchedulerFlag{"flag-3"}},
		want: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "rr", Flags: 0x20, Netmask: netmask.MaskFrom(32, 32)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serviceToKernel(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, addrCmp, cmp.Comparer(func(a, b netmask.Mask) bool { return a == b })); diff != "" {
				t.Errorf("serviceToKernel(%+v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestServiceToKernelRefuses(t *testing.T) {
	tcp80 := ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}
	tests := []struct {
		name string
		in   Service
		want syscall.Errno
	}{
		{"no address", Service{ServiceKey: ServiceKey{Protocol: fsm.TCP, Port: 80}, Scheduler: "rr"}, syscall.EINVAL},
		{"address of the other family", Service{ServiceKey: ServiceKey{Family: fsm.IPv6, Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "rr"}, syscall.EINVAL},
		{"no protocol", Service{ServiceKey: ServiceKey{Address: vip4, Port: 80}, Scheduler: "rr"}, syscall.EINVAL},
		{"unknown protocol", Service{ServiceKey: ServiceKey{Protocol: "icmp", Address: vip4, Port: 80}, Scheduler: "rr"}, syscall.EINVAL},
		{"fwmark without family", Service{ServiceKey: ServiceKey{FWMark: 3}, Scheduler: "rr"}, syscall.EAFNOSUPPORT},
		{"fwmark with a bad family", Service{ServiceKey: ServiceKey{FWMark: 3, Family: "ipx"}, Scheduler: "rr"}, syscall.EAFNOSUPPORT},
		{"unknown flag", Service{ServiceKey: tcp80, Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{"sh-sticky"}}, syscall.EINVAL},
		{"netmask too long", Service{ServiceKey: tcp80, Scheduler: "rr", Persistent: true, Netmask: 33}, syscall.EINVAL},
		{"negative netmask", Service{ServiceKey: tcp80, Scheduler: "rr", Persistent: true, Netmask: -1}, syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &scriptedClient{}
			err := newIPVS(c, c).CreateService(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateService(%+v) = %v, want %v", tt.in, err, tt.want)
			}
			if len(c.calls) != 0 {
				t.Errorf("refused locally, yet the kernel was asked: %v", c.calls)
			}
		})
	}
}

func TestDestinationToKernel(t *testing.T) {
	tests := []struct {
		in   Destination
		want ipvs.Destination
	}{
		{Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, Weight: 1},
			ipvs.Destination{Address: rs4, Port: 80, Family: ipvs.INET, FwdMethod: ipvs.DirectRoute, Weight: 1}},
		{Destination{DestinationKey: DestinationKey{rs4, 8080}, Forwarding: fsm.NAT, Weight: 65535, UpperThreshold: 100, LowerThreshold: 10},
			ipvs.Destination{Address: rs4, Port: 8080, Family: ipvs.INET, FwdMethod: ipvs.Masquerade, Weight: 65535, UpperThreshold: 100, LowerThreshold: 10}},
		{Destination{DestinationKey: DestinationKey{rs6, 0}, Forwarding: fsm.TUN, Weight: math.MaxInt32},
			ipvs.Destination{Address: rs6, Family: ipvs.INET6, FwdMethod: ipvs.Tunnel, TunnelType: ipvs.IPIP, Weight: math.MaxInt32}},
		// Read-only fields are not sent.
		{Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, ActiveConns: 5, InactiveConns: 6, Stats: Stats{Connections: 9}},
			ipvs.Destination{Address: rs4, Port: 80, Family: ipvs.INET, FwdMethod: ipvs.DirectRoute}},
	}
	for _, tt := range tests {
		got, err := destinationToKernel(tt.in)
		if err != nil {
			t.Fatalf("destinationToKernel(%+v): %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got, addrCmp); diff != "" {
			t.Errorf("destinationToKernel(%+v) (-want +got):\n%s", tt.in, diff)
		}
	}

	refused := []struct {
		in   Destination
		want syscall.Errno
	}{
		{Destination{Forwarding: fsm.DR}, syscall.EINVAL},
		{Destination{DestinationKey: DestinationKey{rs4, 80}}, syscall.EINVAL},
		{Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: "gate"}, syscall.EINVAL},
		{Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, Weight: -1}, syscall.ERANGE},
		{Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, Weight: math.MaxInt32 + 1}, syscall.ERANGE},
	}
	for _, tt := range refused {
		c := &scriptedClient{}
		err := newIPVS(c, c).CreateDestination(ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}, tt.in)
		if !errors.Is(err, tt.want) || len(c.calls) != 0 {
			t.Errorf("CreateDestination(%+v) = %v after calls %v, want %v without calls", tt.in, err, c.calls, tt.want)
		}
	}
}

func TestFromKernel(t *testing.T) {
	// What the kernel lists: the hashed flag set, 64-bit counters beside 32-bit ones.
	ks := ipvs.ServiceExtended{
		Service: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "sh",
			Flags: 0x1 | 0x2 | 0x8 | 0x10 | 0x4, Timeout: 300, Netmask: netmask.MaskFrom(24, 32)},
		Stats:   ipvs.Stats{Connections: 1},
		Stats64: ipvs.Stats{Connections: 1 << 40, IncomingPackets: 2, OutgoingPackets: 3, IncomingBytes: 4, OutgoingBytes: 5, ConnectionRate: 6, IncomingPacketRate: 7, OutgoingPacketRate: 8, IncomingByteRate: 9, OutgoingByteRate: 10},
	}
	got, err := serviceFromKernel(ks)
	if err != nil {
		t.Fatal(err)
	}
	want := Service{
		ServiceKey: ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: vip4, Port: 80},
		Scheduler:  "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHFallback, fsm.FlagSHPort},
		Persistent: true, Timeout: 300, Netmask: 24,
		Stats: Stats{Connections: 1 << 40, PacketsIn: 2, PacketsOut: 3, BytesIn: 4, BytesOut: 5, CPS: 6, PPSIn: 7, PPSOut: 8, BPSIn: 9, BPSOut: 10},
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("serviceFromKernel (-want +got):\n%s", diff)
	}

	// A kernel without 64-bit counters; flags of another scheduler; a non-prefix IPv4 mask.
	ks = ipvs.ServiceExtended{
		Service: ipvs.Service{Family: ipvs.INET6, FWMark: 9, Scheduler: "wrr", Flags: 0x2 | 0x8 | 0x20, Netmask: netmask.MaskFrom(128, 128)},
		Stats:   ipvs.Stats{Connections: 7},
	}
	got, _ = serviceFromKernel(ks)
	want = Service{ServiceKey: ServiceKey{Family: fsm.IPv6, FWMark: 9}, Scheduler: "wrr", SchedFlags: []fsm.SchedulerFlag{"flag-1", "flag-3"}, Netmask: 128, Stats: Stats{Connections: 7}}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("serviceFromKernel (-want +got):\n%s", diff)
	}
	got, _ = serviceFromKernel(ipvs.ServiceExtended{Service: ipvs.Service{Family: ipvs.INET, Protocol: 99, Address: vip4, Scheduler: "rr", Netmask: netmask.MaskFrom4([4]byte{255, 0, 255, 0})}})
	if got.Netmask != -1 || got.Protocol != "proto-99" {
		t.Errorf("odd service read as netmask %d protocol %q, want -1 and proto-99", got.Netmask, got.Protocol)
	}
	if _, err := serviceFromKernel(ipvs.ServiceExtended{Service: ipvs.Service{Family: 7}}); err == nil {
		t.Error("a service of family 7 was accepted")
	}

	for fwd, want := range map[[2]int]fsm.Forwarding{
		{int(ipvs.DirectRoute), 0}: fsm.DR, {int(ipvs.Masquerade), 0}: fsm.NAT, {int(ipvs.Tunnel), int(ipvs.IPIP)}: fsm.TUN,
		{int(ipvs.Tunnel), int(ipvs.GUE)}: "tun-gue", {int(ipvs.Tunnel), int(ipvs.GRE)}: "tun-gre",
		{int(ipvs.Local), 0}: "local", {int(ipvs.Bypass), 0}: "bypass", {6, 0}: "fwd-6",
	} {
		d := destinationFromKernel(ipvs.DestinationExtended{Destination: ipvs.Destination{Address: rs4, FwdMethod: ipvs.ForwardType(fwd[0]), TunnelType: ipvs.TunnelType(fwd[1])}})
		if d.Forwarding != want {
			t.Errorf("forwarding %v read as %q, want %q", fwd, d.Forwarding, want)
		}
	}
	d := destinationFromKernel(ipvs.DestinationExtended{
		Destination:       ipvs.Destination{Address: rs6, Port: 443, Family: ipvs.INET6, FwdMethod: ipvs.DirectRoute, Weight: 3, UpperThreshold: 50, LowerThreshold: 5},
		ActiveConnections: 11, InactiveConnections: 12, PersistentConnections: 13,
		Stats64: ipvs.Stats{Connections: 14},
	})
	wantD := Destination{DestinationKey: DestinationKey{rs6, 443}, Forwarding: fsm.DR, Weight: 3, UpperThreshold: 50, LowerThreshold: 5, ActiveConns: 11, InactiveConns: 12, Stats: Stats{Connections: 14}}
	if diff := cmp.Diff(wantD, d, addrCmp); diff != "" {
		t.Errorf("destinationFromKernel (-want +got):\n%s", diff)
	}
}

// drawService draws a service the way a writer may pass it: Family possibly empty, read-only
// fields set, protocol and address set on a firewall-mark key.
func drawService(t *rapid.T) Service {
	is6 := rapid.Bool().Draw(t, "ipv6")
	var addr netip.Addr
	if is6 {
		addr = netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "addr6")))
		if addr.Is4In6() {
			addr = netip.IPv6Unspecified() // keep the drawn family
		}
	} else {
		addr = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "addr4")))
	}
	s := Service{ServiceKey: ServiceKey{
		Protocol: rapid.SampledFrom(fsm.Protocols).Draw(t, "protocol"),
		Address:  addr,
		Port:     rapid.Uint16().Draw(t, "port"),
	}}
	if rapid.Bool().Draw(t, "fwmark") {
		s.FWMark = rapid.Uint32Range(1, math.MaxUint32).Draw(t, "mark")
	}
	if rapid.Bool().Draw(t, "setFamily") || s.FWMark != 0 && rapid.Bool().Draw(t, "noAddr") {
		s.Family = addrFamily(addr)
		if s.FWMark != 0 && rapid.Bool().Draw(t, "dropAddr") {
			s.Address = netip.Addr{}
		}
	}
	s.Scheduler = rapid.SampledFrom(fsm.Schedulers).Draw(t, "scheduler")
	s.SchedFlags = rapid.SliceOfDistinct(rapid.SampledFrom([]fsm.SchedulerFlag{fsm.FlagSHFallback, fsm.FlagSHPort, fsm.FlagMHFallback, fsm.FlagMHPort, "flag-1", "flag-2", "flag-3"}), func(f fsm.SchedulerFlag) fsm.SchedulerFlag { return f }).Draw(t, "flags")
	s.Persistent = rapid.Bool().Draw(t, "persistent")
	s.Timeout = rapid.Uint32().Draw(t, "timeout")
	bits := 32
	if is6 {
		bits = 128
	}
	s.Netmask = rapid.IntRange(0, bits).Draw(t, "netmask")
	s.Stats = Stats{Connections: rapid.Uint64().Draw(t, "conns")}
	return s
}

// canonicalService is what IPVS should list after drawn was written: canonical key, host mask
// unless persistent with a prefix, flags named after the scheduler, no counters.
func canonicalService(s Service) Service {
	fam := s.Family
	if fam == "" {
		fam = addrFamily(s.Address)
	}
	out := Service{ServiceKey: ServiceKey{Family: fam, Protocol: s.Protocol, Address: s.Address, Port: s.Port}, Scheduler: s.Scheduler, Persistent: s.Persistent, Timeout: s.Timeout}
	if s.FWMark != 0 {
		out.ServiceKey = ServiceKey{Family: fam, FWMark: s.FWMark}
	}
	var bits uint32
	for _, f := range s.SchedFlags {
		bits |= schedFlagBits[f]
	}
	out.SchedFlags = SchedFlagsFromBits(s.Scheduler, bits)
	out.Netmask = 32
	if fam == fsm.IPv6 {
		out.Netmask = 128
	}
	if s.Persistent && s.Netmask != 0 {
		out.Netmask = s.Netmask
	}
	return out
}

func TestServiceRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawService(t)
		ks, err := serviceToKernel(s)
		if err != nil {
			t.Fatalf("serviceToKernel(%+v): %v", s, err)
		}
		// The kernel adds its hashed flag to what it stores.
		ks.Flags |= ipvs.ServiceHashed
		got, err := serviceFromKernel(ipvs.ServiceExtended{Service: ks})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(canonicalService(s), got, addrCmp, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip of %+v (-want +got):\n%s", s, diff)
		}
		// What was read back writes the same kernel service again.
		again, err := serviceToKernel(got)
		if err != nil {
			t.Fatal(err)
		}
		ks.Flags &^= ipvs.ServiceHashed
		if again != ks {
			t.Fatalf("rewriting %+v gives %+v, want %+v", got, again, ks)
		}
	})
}

func TestDestinationRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var addr netip.Addr
		if rapid.Bool().Draw(t, "ipv6") {
			addr = netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "addr6")))
		} else {
			addr = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "addr4")))
		}
		d := Destination{
			DestinationKey: DestinationKey{addr, rapid.Uint16().Draw(t, "port")},
			Forwarding:     rapid.SampledFrom(fsm.Forwardings).Draw(t, "fwd"),
			Weight:         rapid.IntRange(0, math.MaxInt32).Draw(t, "weight"),
			UpperThreshold: rapid.Uint32().Draw(t, "upper"),
			LowerThreshold: rapid.Uint32().Draw(t, "lower"),
		}
		kd, err := destinationToKernel(d)
		if err != nil {
			t.Fatal(err)
		}
		got := destinationFromKernel(ipvs.DestinationExtended{Destination: kd})
		if diff := cmp.Diff(d, got, addrCmp); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestKernelIPVSEmptyTable(t *testing.T) {
	c := &scriptedClient{}
	got, err := newIPVS(c, c).Services()
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Services() of an empty table = %#v, %v; want an empty list", got, err)
	}
	// A real ENOENT is an error, not an empty table.
	c = &scriptedClient{err: opError(syscall.ENOENT)}
	if _, err := newIPVS(c, c).Services(); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Services() with ENOENT = %v", err)
	}
}

func TestKernelIPVSServices(t *testing.T) {
	c := &scriptedClient{services: []ipvs.ServiceExtended{
		{Service: ipvs.Service{Family: ipvs.INET, Protocol: ipvs.TCP, Address: vip4, Port: 80, Scheduler: "wrr", Flags: ipvs.ServiceHashed, Netmask: netmask.MaskFrom(32, 32)}},
		{Service: ipvs.Service{Family: ipvs.INET6, FWMark: 3, Scheduler: "rr", Flags: ipvs.ServiceHashed | ipvs.ServicePersistent, Timeout: 60, Netmask: netmask.MaskFrom(64, 128)}},
	}}
	got, err := newIPVS(c, c).Services()
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{
		{ServiceKey: ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: vip4, Port: 80}, Scheduler: "wrr", Netmask: 32},
		{ServiceKey: ServiceKey{Family: fsm.IPv6, FWMark: 3}, Scheduler: "rr", Persistent: true, Timeout: 60, Netmask: 64},
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Services() (-want +got):\n%s", diff)
	}
}

func TestKernelIPVSDestinations(t *testing.T) {
	key := ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}

	// A service without destinations: the dump is empty, GET_SERVICE finds it.
	c := &scriptedClient{}
	got, err := newIPVS(c, c).Destinations(key)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Destinations of an empty service = %#v, %v", got, err)
	}
	if want := []string{"Destinations", "Service"}; !slices.Equal(c.calls, want) {
		t.Errorf("calls %v, want %v", c.calls, want)
	}

	// A missing service: the dump is empty too, GET_SERVICE answers ESRCH.
	c = &scriptedClient{serviceErr: opError(syscall.ESRCH)}
	_, err = newIPVS(c, c).Destinations(key)
	if !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("Destinations of a missing service = %v, want ESRCH", err)
	}
	if want := "list IPVS destinations of TCP 192.0.2.10:80: netlink receive: no such process"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// Destinations: one call, translated.
	c = &scriptedClient{dests: []ipvs.DestinationExtended{
		{Destination: ipvs.Destination{Address: rs4, Port: 80, Family: ipvs.INET, FwdMethod: ipvs.DirectRoute, Weight: 1}, ActiveConnections: 4, InactiveConnections: 2},
	}}
	got, err = newIPVS(c, c).Destinations(ServiceKey{Family: fsm.IPv4, FWMark: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []Destination{{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, Weight: 1, ActiveConns: 4, InactiveConns: 2}}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Destinations (-want +got):\n%s", diff)
	}
	if c.gotService != (ipvs.Service{Family: ipvs.INET, FWMark: 5}) || len(c.calls) != 1 {
		t.Errorf("asked for %+v with calls %v", c.gotService, c.calls)
	}
}

func TestKernelIPVSErrors(t *testing.T) {
	key := ServiceKey{Protocol: fsm.TCP, Address: vip4, Port: 80}
	svc := Service{ServiceKey: key, Scheduler: "wrr"}
	dst := Destination{DestinationKey: DestinationKey{rs4, 80}, Forwarding: fsm.DR, Weight: 1}
	tests := []struct {
		errno   syscall.Errno
		is      error
		call    func(IPVS) error
		message string
	}{
		{syscall.EEXIST, os.ErrExist, func(k IPVS) error { return k.CreateService(svc) },
			"create IPVS service TCP 192.0.2.10:80: netlink receive: file exists"},
		{syscall.ESRCH, syscall.ESRCH, func(k IPVS) error { return k.UpdateService(svc) },
			"update IPVS service TCP 192.0.2.10:80: netlink receive: no such process"},
		{syscall.ESRCH, syscall.ESRCH, func(k IPVS) error { return k.RemoveService(key) },
			"remove IPVS service TCP 192.0.2.10:80: netlink receive: no such process"},
		{syscall.EEXIST, os.ErrExist, func(k IPVS) error { return k.CreateDestination(key, dst) },
			"create IPVS destination 192.0.2.21:80 in TCP 192.0.2.10:80: netlink receive: file exists"},
		{syscall.ENOENT, os.ErrNotExist, func(k IPVS) error { return k.UpdateDestination(key, dst) },
			"update IPVS destination 192.0.2.21:80 in TCP 192.0.2.10:80: netlink receive: no such file or directory"},
		{syscall.ENOENT, os.ErrNotExist, func(k IPVS) error { return k.RemoveDestination(key, dst.DestinationKey) },
			"remove IPVS destination 192.0.2.21:80 from TCP 192.0.2.10:80: netlink receive: no such file or directory"},
		{syscall.EINVAL, syscall.EINVAL, func(k IPVS) error { _, err := k.Services(); return err },
			"list IPVS services: netlink receive: invalid argument"},
		{syscall.EPERM, os.ErrPermission, func(k IPVS) error { return k.CreateService(svc) },
			"create IPVS service TCP 192.0.2.10:80: netlink receive: operation not permitted"},
	}
	for _, tt := range tests {
		c := &scriptedClient{err: opError(tt.errno)}
		err := tt.call(newIPVS(c, c))
		if !errors.Is(err, tt.errno) || !errors.Is(err, tt.is) {
			t.Errorf("%q: errors.Is(%v) fails", tt.message, tt.errno)
		}
		if err == nil || err.Error() != tt.message {
			t.Errorf("error %q, want %q", err, tt.message)
		}
	}
}

func TestKernelIPVSWrites(t *testing.T) {
	c := &scriptedClient{}
	k := newIPVS(c, c)
	key := ServiceKey{Family: fsm.IPv6, FWMark: 42}
	if err := k.UpdateService(Service{ServiceKey: key, Scheduler: "mh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagMHPort}}); err != nil {
		t.Fatal(err)
	}
	if want := (ipvs.Service{Family: ipvs.INET6, FWMark: 42, Scheduler: "mh", Flags: 0x10, Netmask: netmask.MaskFrom(128, 128)}); c.gotService != want {
		t.Errorf("UpdateService sent %+v, want %+v", c.gotService, want)
	}
	if err := k.UpdateDestination(key, Destination{DestinationKey: DestinationKey{rs4, 0}, Forwarding: fsm.TUN, Weight: 7}); err != nil {
		t.Fatal(err)
	}
	if want := (ipvs.Destination{Address: rs4, Family: ipvs.INET, FwdMethod: ipvs.Tunnel, Weight: 7}); c.gotDest != want {
		t.Errorf("UpdateDestination sent %+v, want %+v", c.gotDest, want)
	}
	if err := k.RemoveDestination(key, DestinationKey{rs6, 9}); err != nil {
		t.Fatal(err)
	}
	if want := (ipvs.Destination{Address: rs6, Port: 9, Family: ipvs.INET6}); c.gotDest != want {
		t.Errorf("RemoveDestination sent %+v, want %+v", c.gotDest, want)
	}
	if err := k.RemoveService(key); err != nil {
		t.Fatal(err)
	}
	if want := (ipvs.Service{Family: ipvs.INET6, FWMark: 42}); c.gotService != want {
		t.Errorf("RemoveService sent %+v, want %+v", c.gotService, want)
	}
	if want := []string{"UpdateService", "UpdateDestination", "RemoveDestination", "RemoveService"}; !slices.Equal(c.calls, want) {
		t.Errorf("calls %v, want %v", c.calls, want)
	}
}

func TestKernelIPVSClose(t *testing.T) {
	c := &scriptedClient{}
	k := newIPVS(c, c)
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if c.closed != 1 {
		t.Errorf("closed the client %d times, want once", c.closed)
	}
	// A client without Close is fine too.
	if err := newIPVS(c, nil).Close(); err != nil {
		t.Fatal(err)
	}
	var _ io.Closer = k
}
