package director

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/troop-lb/troop/fsm"
)

// The sync daemons' defaults, which Troop does not change (see NewSyncDaemons).
var syncGroup = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 81), Port: 8848}

// kernelConnSync reads /proc/net/ip_vs_conn of the process's network namespace and sends with
// a UDP socket to the sync daemons' multicast group, TTL 1 as the kernel's daemon does.
type kernelConnSync struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
}

// NewConnSync opens the socket the leader sends its connections to the backups with.
func NewConnSync() (ConnSync, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("open the connection sync socket: %w", err)
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetMulticastTTL(1); err != nil {
		c.Close()
		return nil, fmt.Errorf("connection sync socket: multicast TTL: %w", err)
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		c.Close()
		return nil, fmt.Errorf("connection sync socket: multicast loopback: %w", err)
	}
	return &kernelConnSync{conn: c, pc: pc}, nil
}

func (k *kernelConnSync) Conns() ([]Conn, error) {
	b, err := os.ReadFile("/proc/net/ip_vs_conn")
	if err != nil {
		return nil, fmt.Errorf("list IPVS connections: %w", err)
	}
	return parseConns(b)
}

func (k *kernelConnSync) Send(iface string, msg []byte) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("sync interface %s: %w", iface, err)
	}
	if err := k.pc.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("sync interface %s: %w", iface, err)
	}
	if _, err := k.conn.WriteToUDP(msg, syncGroup); err != nil {
		return fmt.Errorf("send to %s on %s: %w", syncGroup, iface, err)
	}
	return nil
}

func (k *kernelConnSync) Close() error { return k.conn.Close() }

// parseConns reads the kernel's listing (ip_vs_conn_seq_show):
//
//	Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//	TCP C0000264 D8A4 C0000264 0050 C0000215 0050 ESTABLISHED     899
//
// IPv4 addresses and every port in hex, IPv6 addresses in full colon form.
func parseConns(b []byte) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if line == 1 && len(f) > 0 && f[0] == "Pro" {
			continue
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("ip_vs_conn line %d: %d fields, want at least 9: %q", line, len(f), sc.Text())
		}
		c := Conn{Protocol: fsm.Protocol(strings.ToLower(f[0])), State: f[7]}
		var err error
		for i, dst := range []*netip.AddrPort{&c.Client, &c.Virtual, &c.Dest} {
			if *dst, err = parseProcAddrPort(f[1+2*i], f[2+2*i]); err != nil {
				return nil, fmt.Errorf("ip_vs_conn line %d: %w", line, err)
			}
		}
		secs, err := strconv.ParseUint(f[8], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("ip_vs_conn line %d: expires %q: %w", line, f[8], err)
		}
		c.Expires = time.Duration(secs) * time.Second
		out = append(out, c)
	}
	return out, sc.Err()
}

func parseProcAddrPort(addr, port string) (netip.AddrPort, error) {
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	if strings.Contains(addr, ":") {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
		}
		return netip.AddrPortFrom(a, uint16(p)), nil
	}
	v, err := strconv.ParseUint(addr, 16, 32)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
	}
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return netip.AddrPortFrom(a, uint16(p)), nil
}
