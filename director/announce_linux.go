package director

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
)

// etherTypeARP is ARP's EtherType, the protocol the raw sockets bind to.
const etherTypeARP = 0x0806

// writeTimeout bounds one packet write, so that a wedged interface queue cannot hold a VIP's
// schedule (and so Stop) for long.
const writeTimeout = time.Second

// PacketIO sends announcements and reads the ARP/NDP traffic of the duplicate watch, with raw
// sockets: an AF_PACKET socket per interface for ARP (frames built with mdlayher/arp, so no
// IPv4 address is needed on the interface, unlike arp.Dial) and an ICMPv6 socket per interface
// for NDP (mdlayher/ndp). It implements Sender and Listener and needs CAP_NET_RAW.
//
// Gratuitous ARP: the request is an RFC 5227 announcement (sender and target IP the VIP,
// target hardware address zero); the reply carries our hardware address as both sender and
// target, which is what Linux (arp_is_garp) requires to call a reply gratuitous and apply it
// even within the neighbour locktime. Both go to the Ethernet broadcast address. The
// unsolicited NA has the override flag, our hardware address as target link-layer option, the
// VIP as source and all-nodes (ff02::1) as destination; Linux applies it to an existing
// neighbour entry only (it creates none from an unsolicited NA).
//
// Network namespace: sockets are opened, and interfaces looked up, in the namespace at netns
// (a path like /var/run/netns/NAME or /proc/PID/ns/net), on an OS thread locked into it for
// the purpose; "" means the process's own. Once open, a socket stays in its namespace whatever
// thread uses it.
type PacketIO struct {
	netns string
	log   *slog.Logger

	mu     sync.Mutex // guards all following fields
	links  map[string]*sendLink
	closed bool
}

// sendLink are the sending sockets of one interface, opened on first use.
type sendLink struct {
	ifi *net.Interface
	arp *packet.Conn
	ndp *ndp.Conn
}

func (l *sendLink) close() {
	if l.arp != nil {
		l.arp.Close()
	}
	if l.ndp != nil {
		l.ndp.Close()
	}
}

// NewPacketIO returns a PacketIO for the network namespace at netnsPath ("" for the
// process's). It opens nothing until used; Close closes what it opened.
func NewPacketIO(netnsPath string, log *slog.Logger) *PacketIO {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PacketIO{netns: netnsPath, log: log, links: map[string]*sendLink{}}
}

var (
	_ Sender   = (*PacketIO)(nil)
	_ Listener = (*PacketIO)(nil)
)

// Close closes every socket PacketIO opened for sending; later Sends fail. Listen's sockets
// close with its context.
func (p *PacketIO) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, l := range p.links {
		l.close()
		delete(p.links, name)
	}
	p.closed = true
	return nil
}

// inNetns runs fn on an OS thread in the network namespace at path ("" for the calling
// thread's own).
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime ends a thread still locked when its goroutine
		// exits, so no other goroutine runs in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

func (p *PacketIO) lookup(iface string) (*net.Interface, error) {
	var ifi *net.Interface
	err := inNetns(p.netns, func() error {
		var err error
		ifi, err = net.InterfaceByName(iface)
		return err
	})
	if err != nil {
		if isNoSuchInterface(err) {
			return nil, fmt.Errorf("%w: %q", ErrNoInterface, iface)
		}
		return nil, err
	}
	return ifi, nil
}

// isNoSuchInterface recognises the net package's unexported "no such network interface".
func isNoSuchInterface(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("no such network interface"))
}

// HardwareAddr implements Listener.
func (p *PacketIO) HardwareAddr(iface string) (net.HardwareAddr, error) {
	ifi, err := p.lookup(iface)
	if err != nil {
		return nil, fmt.Errorf("hardware address of %s: %w", iface, err)
	}
	return ifi.HardwareAddr, nil
}

// dropAll is a socket filter that accepts nothing: the sending ARP socket is bound to ARP's
// EtherType (to send it) but must not queue every ARP frame of the segment.
var dropAll = mustAssemble(bpf.RetConstant{Val: 0})

func mustAssemble(insns ...bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		panic(err)
	}
	return raw
}

// Send implements Sender. The interface is looked up at every call, and its sockets reopened
// when it has changed (recreated, or another hardware address), so an announcement never
// carries a stale MAC; a failed write drops the sockets so that the next call reopens them.
func (p *PacketIO) Send(iface string, vip netip.Addr, kind PacketKind) error {
	err := p.send(iface, vip, kind)
	if err != nil {
		return fmt.Errorf("announce %s on %s (%s): %w", vip, iface, kind, err)
	}
	return nil
}

func (p *PacketIO) send(iface string, vip netip.Addr, kind PacketKind) error {
	if (kind == NeighborAdvertisement) != vip.Is6() || kind == NeighborSolicitation {
		return fmt.Errorf("cannot announce with a %s", kind)
	}
	ifi, err := p.lookup(iface)
	if err != nil {
		return err
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("interface has no Ethernet address (%q)", ifi.HardwareAddr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	l := p.links[iface]
	if l != nil && (l.ifi.Index != ifi.Index || !bytes.Equal(l.ifi.HardwareAddr, ifi.HardwareAddr)) {
		l.close()
		l = nil
	}
	if l == nil {
		l = &sendLink{ifi: ifi}
		p.links[iface] = l
	}
	if vip.Is4() {
		err = p.sendARP(l, vip, kind)
	} else {
		err = p.sendNA(l, vip)
	}
	if err != nil {
		l.close()
		delete(p.links, iface)
	}
	return err
}

func (p *PacketIO) sendARP(l *sendLink, vip netip.Addr, kind PacketKind) error {
	if l.arp == nil {
		err := inNetns(p.netns, func() error {
			var err error
			l.arp, err = packet.Listen(l.ifi, packet.Raw, etherTypeARP, &packet.Config{Filter: dropAll})
			return err
		})
		if err != nil {
			return fmt.Errorf("open ARP socket: %w", err)
		}
	}
	frame, err := garpFrame(l.ifi.HardwareAddr, vip, kind)
	if err != nil {
		return err
	}
	if err := l.arp.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err = l.arp.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// zonedByIndex returns a copy of ifi named by its index. mdlayher/ndp gives its socket's
// addresses the interface's name as IPv6 zone, which the net package turns into an index
// through a process-wide cache of the names it saw in whatever namespace it looked: in
// another network namespace "eth0" names some other interface (sendmsg then fails with
// EINVAL). A numeric zone is taken as the index itself.
func zonedByIndex(ifi *net.Interface) *net.Interface {
	c := *ifi
	c.Name = strconv.Itoa(ifi.Index)
	return &c
}

func (p *PacketIO) sendNA(l *sendLink, vip netip.Addr) error {
	if l.ndp == nil {
		err := inNetns(p.netns, func() error {
			c, _, err := ndp.Listen(zonedByIndex(l.ifi), ndp.Unspecified)
			if err != nil {
				return err
			}
			// Send only: accept no ICMPv6 message at all.
			var f ipv6.ICMPFilter
			f.SetAll(true)
			if err := c.SetICMPFilter(&f); err != nil {
				c.Close()
				return err
			}
			l.ndp = c
			return nil
		})
		if err != nil {
			return fmt.Errorf("open ICMPv6 socket: %w", err)
		}
	}
	if err := l.ndp.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: vip.AsSlice(), IfIndex: l.ifi.Index}
	return l.ndp.WriteTo(unsolicitedNA(l.ifi.HardwareAddr, vip), cm, netip.IPv6LinkLocalAllNodes())
}

// Listen implements Listener: it reads ARP frames from an AF_PACKET socket on iface and
// neighbour solicitations and advertisements from an ICMPv6 socket (kept to iface's packets).
// Without IPv6 on iface (disabled) it watches ARP alone, and logs that once. Only frames that
// reach this host are seen: broadcasts, and unicasts to it (another host's unicast ARP reply
// to a client is seen only where the switch floods it).
func (p *PacketIO) Listen(ctx context.Context, iface string, handle func(Observed)) error {
	ifi, err := p.lookup(iface)
	if err != nil {
		return fmt.Errorf("watch %s: %w", iface, err)
	}
	var arpc *packet.Conn
	var ndpc *ndp.Conn
	var ndpErr error
	err = inNetns(p.netns, func() error {
		var err error
		if arpc, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil); err != nil {
			return fmt.Errorf("open ARP socket: %w", err)
		}
		ndpc, ndpErr = listenNDP(ifi)
		return nil
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", iface, err)
	}
	if ndpErr != nil {
		p.log.Warn("duplicate-VIP watch without NDP: IPv6 VIPs are not watched", "op", "watch", "iface", iface, "err", ndpErr)
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing the sockets is what ends the blocked reads: when the caller's context ends, or
	// when one read fails (cancel).
	context.AfterFunc(ctx, func() {
		arpc.Close()
		if ndpc != nil {
			ndpc.Close()
		}
	})

	var handleMu sync.Mutex // handle is called one at a time
	deliver := func(o Observed) {
		handleMu.Lock()
		defer handleMu.Unlock()
		handle(o)
	}
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1514)
		for {
			n, _, err := arpc.ReadFrom(buf)
			if err != nil {
				errs <- fmt.Errorf("read ARP: %w", err)
				cancel()
				return
			}
			if o, err := parseARPFrame(buf[:n]); err == nil {
				deliver(o)
			}
		}
	})
	if ndpc != nil {
		wg.Go(func() {
			for {
				m, cm, src, err := ndpc.ReadFrom()
				if err != nil {
					errs <- fmt.Errorf("read NDP: %w", err)
					cancel()
					return
				}
				if cm == nil || cm.IfIndex != ifi.Index {
					continue // the socket hears every interface
				}
				if o, err := parseNDP(m, src); err == nil {
					deliver(o)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if parent.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch %s: %w", iface, <-errs) // the first read that failed
}

// listenNDP opens an ICMPv6 socket that receives neighbour solicitations and advertisements
// with the interface they arrived on. The thread is in the right namespace.
func listenNDP(ifi *net.Interface) (*ndp.Conn, error) {
	c, _, err := ndp.Listen(zonedByIndex(ifi), ndp.Unspecified)
	if err != nil {
		return nil, fmt.Errorf("open ICMPv6 socket: %w", err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("ICMPv6 filter: %w", err)
	}
	if err := c.SetControlMessage(ipv6.FlagInterface, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("ICMPv6 control messages: %w", err)
	}
	return c, nil
}
