package director

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// claimReason is what the duplicate watch made of one packet: claimConflict (another host
// claims a VIP we announce: count it and re-announce), claimHandedOver (another host claims a
// VIP we yield: the handover is done) or why the packet is none of its concern.
// Like MetalLB's dropReason (internal/layer2/arp.go), it makes the per-packet decision testable
// without a socket.
type claimReason uint8

const (
	claimConflict claimReason = iota
	// claimFromUs: our own hardware address (our announcements, looped back).
	claimFromUs
	// claimNotOwned: an address we do not announce on this interface.
	claimNotOwned
	// claimNoAddress: the packet binds no address: an ARP probe (sender 0.0.0.0), a
	// duplicate-address-detection NS (source ::). A request *for* a VIP is a question, not a
	// claim: it binds the sender's address, which is then judged like any other.
	claimNoAddress
	// claimNoLinkAddr: an NDP message without a link-layer address option, so no binding.
	claimNoLinkAddr
	// claimUnsupported: not an ARP or NDP packet the watch reads (another hardware or protocol
	// type, another ICMPv6 message).
	claimUnsupported
	// claimHandedOver: another host claims a VIP we yield (NetAnnouncer.Yield): its new owner
	// announced it, so the yield ends and the caller may remove it.
	claimHandedOver
)

func (r claimReason) String() string {
	switch r {
	case claimConflict:
		return "conflict"
	case claimFromUs:
		return "from-us"
	case claimNotOwned:
		return "not-owned"
	case claimNoAddress:
		return "no-address"
	case claimNoLinkAddr:
		return "no-link-address"
	case claimUnsupported:
		return "unsupported"
	case claimHandedOver:
		return "handed-over"
	}
	return fmt.Sprintf("claim-reason-%d", uint8(r))
}

// claimVerdict decides whether o is another host claiming an address owned(addr) on the
// interface whose hardware address is ours. It returns the claimed address and the reason.
//
// What each packet claims is what it would write into a receiver's neighbour cache: an ARP
// request or reply binds its sender IP to its sender hardware address (Linux updates an
// existing entry from either); an NA binds its target to its target link-layer address; an NS
// binds its source to its source link-layer address. That is how a misconfigured LVS-DR real
// server (arp_announce 0, so its ARP requests carry the VIP from lo as sender) or a second
// director that still believes it leads takes a VIP's traffic.
func claimVerdict(o Observed, ours net.HardwareAddr, owned func(netip.Addr) bool) (netip.Addr, claimReason) {
	var ip netip.Addr
	switch o.Kind {
	case ARPRequest, ARPReply:
		ip = o.SenderIP
		if !ip.Is4() || ip.IsUnspecified() {
			return ip, claimNoAddress
		}
	case NeighborAdvertisement:
		ip = o.TargetIP
	case NeighborSolicitation:
		ip = o.SenderIP
		if !ip.IsValid() || ip.IsUnspecified() {
			return ip, claimNoAddress
		}
	default:
		return ip, claimUnsupported
	}
	ip = ip.WithZone("")
	if len(o.LinkAddr) == 0 {
		return ip, claimNoLinkAddr
	}
	if bytes.Equal(o.LinkAddr, ours) {
		return ip, claimFromUs
	}
	if !owned(ip) {
		return ip, claimNotOwned
	}
	return ip, claimConflict
}

// errNotClaim is parseARPFrame's and parseNDP's error for a packet the watch does not read.
var errNotClaim = errors.New("not an ARP or NDP packet the watch reads")

// parseARPFrame reduces an Ethernet frame carrying IPv4-over-Ethernet ARP to an Observed.
func parseARPFrame(b []byte) (Observed, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return Observed{}, fmt.Errorf("ethernet frame: %w", err)
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return Observed{}, errNotClaim
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return Observed{}, fmt.Errorf("arp packet: %w", err)
	}
	if p.HardwareType != 1 || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) || p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return Observed{}, errNotClaim
	}
	o := Observed{SenderIP: p.SenderIP, TargetIP: p.TargetIP, LinkAddr: p.SenderHardwareAddr}
	switch p.Operation {
	case arp.OperationRequest:
		o.Kind = ARPRequest
	case arp.OperationReply:
		o.Kind = ARPReply
	default:
		return Observed{}, errNotClaim
	}
	return o, nil
}

// parseNDP reduces an NDP message from src to an Observed.
func parseNDP(m ndp.Message, src netip.Addr) (Observed, error) {
	o := Observed{SenderIP: src.WithZone("")}
	var dir ndp.Direction
	var opts []ndp.Option
	switch m := m.(type) {
	case *ndp.NeighborAdvertisement:
		o.Kind, o.TargetIP, dir, opts = NeighborAdvertisement, m.TargetAddress, ndp.Target, m.Options
	case *ndp.NeighborSolicitation:
		o.Kind, o.TargetIP, dir, opts = NeighborSolicitation, m.TargetAddress, ndp.Source, m.Options
	default:
		return Observed{}, errNotClaim
	}
	for _, opt := range opts {
		if lla, ok := opt.(*ndp.LinkLayerAddress); ok && lla.Direction == dir {
			o.LinkAddr = lla.Addr
		}
	}
	return o, nil
}

// garpFrame builds the Ethernet frame of a gratuitous ARP request or reply (see PacketIO).
func garpFrame(mac net.HardwareAddr, vip netip.Addr, kind PacketKind) ([]byte, error) {
	op, tha := arp.OperationRequest, net.HardwareAddr{0, 0, 0, 0, 0, 0}
	if kind == ARPReply {
		op, tha = arp.OperationReply, mac
	}
	pkt, err := arp.NewPacket(op, mac, vip, tha, vip)
	if err != nil {
		return nil, err
	}
	payload, err := pkt.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: payload}
	return f.MarshalBinary()
}

// unsolicitedNA is the neighbour advertisement that announces vip at mac (see PacketIO).
func unsolicitedNA(mac net.HardwareAddr, vip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}
