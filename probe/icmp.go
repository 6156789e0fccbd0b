package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/troop-lb/troop/fsm"
)

// icmpMode is a kind of socket an echo request can be sent from.
type icmpMode int

const (
	// icmpPing is Linux's unprivileged ICMP socket ("ping socket", "udp4"/"udp6" in x/net/icmp):
	// allowed when the process's group is within sysctl net.ipv4.ping_group_range (which
	// governs IPv6 too; the default "1 0" allows nobody). The kernel sets the echo identifier
	// and hands the socket only its own replies.
	icmpPing icmpMode = iota
	// icmpRaw is a raw ICMP socket: needs root or CAP_NET_RAW. It sees every echo reply the
	// host receives, so replies are matched by source, identifier, sequence and payload.
	icmpRaw
)

func (m icmpMode) network(v6 bool) (network, laddr string) {
	switch {
	case m == icmpPing && !v6:
		return "udp4", "0.0.0.0"
	case m == icmpPing:
		return "udp6", "::"
	case !v6:
		return "ip4:icmp", "0.0.0.0"
	}
	return "ip6:ipv6-icmp", "::"
}

// icmpNotPermitted is the reason when neither socket kind may be opened.
const icmpNotPermitted = "icmp not permitted: ping sockets are off for this group " +
	"(sysctl net.ipv4.ping_group_range) and raw sockets need root or CAP_NET_RAW"

// icmpChecker sends one echo request to the real server's address (IPv4 or IPv6) and waits for
// the matching reply. It tries its socket kinds in order (a ping socket first, then a raw
// socket) on every check, so a change of sysctl or capabilities takes effect without a restart.
// Each check opens and closes its own socket. ICMP errors (destination unreachable) are not
// read: the check then ends at its timeout.
type icmpChecker struct {
	timeout time.Duration
	modes   []icmpMode
	// id is the echo identifier on raw sockets (a ping socket's is the kernel's).
	id  int
	seq atomic.Uint32
}

func newICMPChecker(spec fsm.HealthCheck, modes ...icmpMode) *icmpChecker {
	var b [2]byte
	rand.Read(b[:])
	return &icmpChecker{timeout: time.Duration(spec.Timeout), modes: modes, id: int(b[0])<<8 | int(b[1])}
}

// Check implements Checker. Reasons: "echo reply" (healthy), "no echo reply (timeout after
// 1s)", "network is unreachable", and icmpNotPermitted.
func (c *icmpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	dst := t.Real.Addr().Unmap()
	if !dst.IsValid() {
		return result(start, false, "no address to ping")
	}
	var (
		conn *icmp.PacketConn
		mode icmpMode
		err  error
	)
	for _, mode = range c.modes {
		network, laddr := mode.network(dst.Is6())
		if conn, err = icmp.ListenPacket(network, laddr); err == nil || !isPermissionError(err) {
			break
		}
	}
	if err != nil {
		if isPermissionError(err) {
			return result(start, false, icmpNotPermitted)
		}
		return result(start, false, "icmp socket: "+errText(err))
	}
	defer conn.Close()
	stop := interruptOnDone(ctx, conn)
	defer stop()

	seq := int(uint16(c.seq.Add(1)))
	payload := make([]byte, 16)
	rand.Read(payload)
	echo := &icmp.Echo{ID: c.id, Seq: seq, Data: payload}
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: echo}
	proto, replyType := 1, icmp.Type(ipv4.ICMPTypeEchoReply)
	if dst.Is6() {
		// The kernel fills in the ICMPv6 checksum, which covers a pseudo-header.
		msg.Type, proto, replyType = ipv6.ICMPTypeEchoRequest, 58, ipv6.ICMPTypeEchoReply
	}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return result(start, false, err.Error())
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if mode == icmpPing {
		to = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	if _, err := conn.WriteTo(wire, to); err != nil {
		return result(start, false, c.noReply(ctx, err))
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return result(start, false, c.noReply(ctx, err))
		}
		if addrOf(from) != dst {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		reply, ok := m.Body.(*icmp.Echo)
		// A ping socket's identifier is the kernel's, and the kernel already matched it.
		if !ok || reply.Seq != seq || (mode == icmpRaw && reply.ID != c.id) || !bytes.Equal(reply.Data, payload) {
			continue
		}
		return result(start, true, "echo reply")
	}
}

func (c *icmpChecker) noReply(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "canceled"
	}
	if timedOut(ctx, err) {
		return fmt.Sprintf("no echo reply (%s)", timeoutReason(c.timeout))
	}
	return errText(err)
}

func isPermissionError(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// addrOf is the IP address of a ping or raw socket's peer.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	var zone string
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, zone = a.IP, a.Zone
	case *net.IPAddr:
		ip, zone = a.IP, a.Zone
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap().WithZone(zone)
}
