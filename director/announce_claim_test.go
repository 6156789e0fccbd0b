package director

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// The duplicate watch's per-packet decision, from wire bytes to reason, with no socket: frames
// are built with the same libraries (and our own builders) and parsed as Listen parses them.

var (
	claimOurs   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	claimOther  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	claimVIP4   = netip.MustParseAddr("192.0.2.10")
	claimVIP6   = netip.MustParseAddr("2001:db8::10")
	claimClient = netip.MustParseAddr("192.0.2.50")
)

func claimOwned(ip netip.Addr) bool { return ip == claimVIP4 || ip == claimVIP6 }

func arpFrame(t *testing.T, op arp.Operation, sha net.HardwareAddr, sip netip.Addr, tha net.HardwareAddr, tip netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, sha, sip, tha, tip)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ourGARP(t *testing.T, mac net.HardwareAddr, kind PacketKind) []byte {
	t.Helper()
	b, err := garpFrame(mac, claimVIP4, kind)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ndpBytes marshals m as it arrives on a raw ICMPv6 socket (the checksum is the kernel's).
func ndpBytes(t *testing.T, m ndp.Message) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClaimVerdictARP(t *testing.T) {
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  claimReason
		addr  netip.Addr
	}{
		{"another host's gratuitous request for our VIP", ourGARP(t, claimOther, ARPRequest), claimConflict, claimVIP4},
		{"another host's gratuitous reply for our VIP", ourGARP(t, claimOther, ARPReply), claimConflict, claimVIP4},
		{"MetalLB-style reply (broadcast target)", arpFrame(t, arp.OperationReply, claimOther, claimVIP4, ethernet.Broadcast, claimVIP4), claimConflict, claimVIP4},
		{"a real server with arp_announce 0 asking from the VIP", arpFrame(t, arp.OperationRequest, claimOther, claimVIP4, zero, netip.MustParseAddr("192.0.2.1")), claimConflict, claimVIP4},
		{"a real server with arp_ignore 0 answering for the VIP", arpFrame(t, arp.OperationReply, claimOther, claimVIP4, claimOurs, claimClient), claimConflict, claimVIP4},
		{"our own request, looped back", ourGARP(t, claimOurs, ARPRequest), claimFromUs, claimVIP4},
		{"our own reply, looped back", ourGARP(t, claimOurs, ARPReply), claimFromUs, claimVIP4},
		{"a client asking for the VIP", arpFrame(t, arp.OperationRequest, claimOther, claimClient, zero, claimVIP4), claimNotOwned, claimClient},
		{"a probe for the VIP (RFC 5227)", arpFrame(t, arp.OperationRequest, claimOther, netip.IPv4Unspecified(), zero, claimVIP4), claimNoAddress, netip.IPv4Unspecified()},
		{"a gratuitous ARP for another address", arpFrame(t, arp.OperationRequest, claimOther, netip.MustParseAddr("192.0.2.11"), zero, netip.MustParseAddr("192.0.2.11")), claimNotOwned, netip.MustParseAddr("192.0.2.11")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseARPFrame(tc.frame)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			addr, got := claimVerdict(o, claimOurs, claimOwned)
			if got != tc.want || addr != tc.addr {
				t.Errorf("verdict = %s for %s, want %s for %s (observed %+v)", got, addr, tc.want, tc.addr, o)
			}
		})
	}
}

func TestParseARPFrameRefuses(t *testing.T) {
	good := ourGARP(t, claimOther, ARPRequest)
	notARP := bytes.Clone(good)
	notARP[12], notARP[13] = 0x08, 0x00 // EtherType IPv4
	ipv6Proto := bytes.Clone(good)
	ipv6Proto[14+2], ipv6Proto[14+3] = 0x86, 0xdd // ARP protocol type IPv6
	badOp := bytes.Clone(good)
	badOp[14+7] = 9
	for name, b := range map[string][]byte{
		"truncated frame":       good[:10],
		"truncated ARP":         good[:14+12],
		"not ARP":               notARP,
		"ARP for IPv6":          ipv6Proto,
		"unknown ARP op (RARP)": badOp,
	} {
		if o, err := parseARPFrame(b); err == nil {
			t.Errorf("%s: parsed as %+v", name, o)
		}
	}
	if _, err := parseARPFrame(notARP); !errors.Is(err, errNotClaim) {
		t.Errorf("not ARP: %v, want errNotClaim", err)
	}
}

func TestClaimVerdictNDP(t *testing.T) {
	lla := func(d ndp.Direction, mac net.HardwareAddr) []ndp.Option {
		return []ndp.Option{&ndp.LinkLayerAddress{Direction: d, Addr: mac}}
	}
	src := netip.MustParseAddr("fe80::b")
	for _, tc := range []struct {
		name string
		msg  ndp.Message
		src  netip.Addr
		want claimReason
		addr netip.Addr
	}{
		{"another host's unsolicited NA for our VIP", unsolicitedNA(claimOther, claimVIP6), src, claimConflict, claimVIP6},
		{"a solicited NA for our VIP from another host", &ndp.NeighborAdvertisement{Solicited: true, TargetAddress: claimVIP6, Options: lla(ndp.Target, claimOther)}, src, claimConflict, claimVIP6},
		{"our own NA, looped back", unsolicitedNA(claimOurs, claimVIP6), claimVIP6, claimFromUs, claimVIP6},
		{"an NA without a link-layer address", &ndp.NeighborAdvertisement{Override: true, TargetAddress: claimVIP6}, src, claimNoLinkAddr, claimVIP6},
		{"an NA for another address", unsolicitedNA(claimOther, netip.MustParseAddr("2001:db8::11")), src, claimNotOwned, netip.MustParseAddr("2001:db8::11")},
		{"an NS sent from our VIP by another host", &ndp.NeighborSolicitation{TargetAddress: netip.MustParseAddr("2001:db8::1"), Options: lla(ndp.Source, claimOther)}, claimVIP6.WithZone("eth0"), claimConflict, claimVIP6},
		{"a client's NS for the VIP", &ndp.NeighborSolicitation{TargetAddress: claimVIP6, Options: lla(ndp.Source, claimOther)}, netip.MustParseAddr("2001:db8::50"), claimNotOwned, netip.MustParseAddr("2001:db8::50")},
		{"duplicate address detection for the VIP", &ndp.NeighborSolicitation{TargetAddress: claimVIP6}, netip.IPv6Unspecified(), claimNoAddress, netip.IPv6Unspecified()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ndp.ParseMessage(ndpBytes(t, tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			o, err := parseNDP(m, tc.src)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			addr, got := claimVerdict(o, claimOurs, claimOwned)
			if got != tc.want || addr != tc.addr {
				t.Errorf("verdict = %s for %s, want %s for %s (observed %+v)", got, addr, tc.want, tc.addr, o)
			}
		})
	}
	if _, err := parseNDP(&ndp.RouterSolicitation{}, src); !errors.Is(err, errNotClaim) {
		t.Errorf("router solicitation: %v, want errNotClaim", err)
	}
	if _, got := claimVerdict(Observed{Kind: 0}, claimOurs, claimOwned); got != claimUnsupported {
		t.Errorf("unknown kind: %s", got)
	}
}

// TestGARPFrames pins the announcement packets' fields (see PacketIO for why each).
func TestGARPFrames(t *testing.T) {
	for _, tc := range []struct {
		kind PacketKind
		op   arp.Operation
		tha  net.HardwareAddr
	}{
		{ARPRequest, arp.OperationRequest, net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{ARPReply, arp.OperationReply, claimOurs}, // Linux's arp_is_garp: tha == sha
	} {
		b, err := garpFrame(claimOurs, claimVIP4, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, claimOurs) ||
			p.Operation != tc.op || !bytes.Equal(p.SenderHardwareAddr, claimOurs) || p.SenderIP != claimVIP4 ||
			!bytes.Equal(p.TargetHardwareAddr, tc.tha) || p.TargetIP != claimVIP4 {
			t.Errorf("%s: frame %+v, packet %+v", tc.kind, f, p)
		}
	}
	na := unsolicitedNA(claimOurs, claimVIP6)
	if !na.Override || na.Solicited || na.Router || na.TargetAddress != claimVIP6 {
		t.Errorf("NA %+v", na)
	}
}
