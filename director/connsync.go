package director

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// Conn is one IPVS connection (or persistence template) as the kernel lists it
// (/proc/net/ip_vs_conn, `ipvsadm -Lnc`).
type Conn struct {
	Protocol fsm.Protocol
	Client   netip.AddrPort
	Virtual  netip.AddrPort
	Dest     netip.AddrPort
	// State is the kernel's name: ESTABLISHED, SYN_RECV, FIN_WAIT, NONE (a template or UDP), ...
	State   string
	Expires time.Duration
}

// ConnSync hands the leader's IPVS connections to the backups directly. The kernel's sync daemon
// sends its buffer up to about 2 s late and never sends a connection still in its handshake
// (SYN_RECV), so a leader that hands over gracefully sends them all itself, in the sync daemon's
// own wire format, to the backups' daemons.
type ConnSync interface {
	// Conns lists the kernel's IPVS connections.
	Conns() ([]Conn, error)
	// Send sends one sync message out of iface to the sync daemons' multicast group.
	Send(iface string, msg []byte) error
	Close() error
}

// The IPVS sync protocol, version 1 (include/net/ip_vs.h, net/netfilter/ipvs/ip_vs_sync.c).
const (
	syncProtoVersion = 1
	syncHeaderLen    = 8
	syncConnV4Len    = 36
	syncConnV6Len    = 72
	syncTypeInet6    = 1
	// syncMaxMessage keeps a message within one Ethernet frame (the kernel's default sync_maxlen
	// on a 1500-byte MTU is 1500 - 20 - 8).
	syncMaxMessage = 1472

	// Connection flags the backup keeps (IP_VS_CONN_F_BACKUP_MASK's members that matter here).
	connFlagMasq     = 0x0000
	connFlagTunnel   = 0x0002
	connFlagDRoute   = 0x0003
	connFlagInactive = 0x0100
	connFlagTemplate = 0x1000
)

// tcpStates are the kernel's TCP connection states (IP_VS_TCP_S_*) by the name it lists.
var tcpStates = map[string]uint16{
	"NONE": 0, "ESTABLISHED": 1, "SYN_SENT": 2, "SYN_RECV": 3, "FIN_WAIT": 4, "TIME_WAIT": 5,
	"CLOSE": 6, "CLOSE_WAIT": 7, "LAST_ACK": 8, "LISTEN": 9, "SYNACK": 10,
}

// syncEntry is one connection ready to encode.
type syncEntry struct {
	conn  Conn
	flags uint32
	state uint16
}

// syncEntries turns conns into sync entries, taking each one's forwarding method from the
// kernel's destinations (fwd: virtual → destination → method). Connections of services or
// destinations fwd lacks (another tool's, or firewall-mark services, whose mark the kernel's
// listing does not show) and of unknown states are skipped.
func syncEntries(conns []Conn, fwd map[connRoute]fsm.Forwarding) []syncEntry {
	var out []syncEntry
	for _, c := range conns {
		// Templates are in state NONE; UDP names every state "UDP", so a UDP template is told by
		// its client port 0, which no UDP connection has.
		template := (c.Protocol == fsm.TCP && c.State == "NONE") || (c.Protocol == fsm.UDP && c.Client.Port() == 0)
		if c.Protocol == fsm.SCTP && !template {
			continue // SCTP's states are not mapped (yet); the kernel's daemon still syncs them
		}
		method, ok := fwd[connRoute{c.Protocol, c.Virtual, c.Dest}]
		if !ok {
			continue
		}
		e := syncEntry{conn: c}
		switch method {
		case fsm.NAT:
			e.flags = connFlagMasq
		case fsm.TUN:
			e.flags = connFlagTunnel
		default:
			e.flags = connFlagDRoute
		}
		switch {
		case template:
			e.flags |= connFlagTemplate
		case c.Protocol == fsm.TCP:
			state, known := tcpStates[c.State]
			if !known {
				continue
			}
			e.state = state
			if c.State != "ESTABLISHED" {
				e.flags |= connFlagInactive
			}
		}
		out = append(out, e)
	}
	return out
}

// connRoute is what ties a connection to a kernel destination.
type connRoute struct {
	protocol fsm.Protocol
	virtual  netip.AddrPort
	dest     netip.AddrPort
}

// encodeSync packs entries into sync messages of at most syncMaxMessage bytes (and 255 entries).
func encodeSync(syncID uint8, entries []syncEntry) [][]byte {
	var msgs [][]byte
	var msg []byte
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
		msg[4] = byte(n)
		msgs = append(msgs, msg)
		msg, n = nil, 0
	}
	for _, e := range entries {
		size := syncConnV4Len
		if e.conn.Client.Addr().Is6() {
			size = syncConnV6Len
		}
		if n == 255 || len(msg)+size > syncMaxMessage {
			flush()
		}
		if msg == nil {
			msg = make([]byte, syncHeaderLen, syncMaxMessage)
			msg[1] = syncID
			msg[5] = syncProtoVersion
		}
		msg = appendSyncConn(msg, e, size)
		n++
	}
	flush()
	return msgs
}

// appendSyncConn appends one struct ip_vs_sync_v4 or ip_vs_sync_v6.
func appendSyncConn(b []byte, e syncEntry, size int) []byte {
	c := e.conn
	typ := byte(0)
	if size == syncConnV6Len {
		typ = syncTypeInet6
	}
	b = append(b, typ, protocolNumber(c.Protocol))
	b = binary.BigEndian.AppendUint16(b, uint16(size)) // version 0 in the top 4 bits
	b = binary.BigEndian.AppendUint32(b, e.flags)
	b = binary.BigEndian.AppendUint16(b, e.state)
	b = binary.BigEndian.AppendUint16(b, c.Client.Port())
	b = binary.BigEndian.AppendUint16(b, c.Virtual.Port())
	b = binary.BigEndian.AppendUint16(b, c.Dest.Port())
	b = binary.BigEndian.AppendUint32(b, 0) // fwmark
	b = binary.BigEndian.AppendUint32(b, uint32(c.Expires/time.Second))
	for _, a := range []netip.Addr{c.Client.Addr(), c.Virtual.Addr(), c.Dest.Addr()} {
		b = append(b, a.AsSlice()...)
	}
	return b
}

func protocolNumber(p fsm.Protocol) byte {
	switch p {
	case fsm.UDP:
		return 17
	case fsm.SCTP:
		return 132
	default:
		return 6
	}
}

// connKey identifies a connection and its state, so that a pusher sends each state once.
type connKey struct {
	route  connRoute
	client netip.AddrPort
	state  string
}

// pushConns sends every connection of entries not in sent (and records them there), as sync
// messages out of iface. It returns how many it sent.
func pushConns(cs ConnSync, iface string, syncID uint8, entries []syncEntry, sent map[connKey]bool) (int, error) {
	var fresh []syncEntry
	for _, e := range entries {
		k := connKey{connRoute{e.conn.Protocol, e.conn.Virtual, e.conn.Dest}, e.conn.Client, e.conn.State}
		if !sent[k] {
			sent[k] = true
			fresh = append(fresh, e)
		}
	}
	for _, msg := range encodeSync(syncID, fresh) {
		if err := cs.Send(iface, msg); err != nil {
			return 0, fmt.Errorf("send %d IPVS connections to the backups on %s: %w", len(fresh), iface, err)
		}
	}
	return len(fresh), nil
}

// connPushInterval paces a handing-over leader's sends of new connections to the backups: well
// within a client's first retransmission (200 ms at least), which the new leader's guard waits for.
const connPushInterval = 100 * time.Millisecond

// sendConnsDuringHandover sends, when this director can (ConnSync, IPVS and a sync daemon), its
// IPVS connections to the backups at once and then every connPushInterval, each connection once
// per state, until the returned function is called; that sends a last round and returns when
// the sender has stopped.
func (d *Director) sendConnsDuringHandover(ctx context.Context) (stop func()) {
	cs, sync := d.deps.ConnSync, d.cfg.Sync
	if cs == nil || sync == nil || d.rec == nil {
		return func() {}
	}
	fwd, err := connRoutes(d.deps.IPVS)
	if err != nil {
		d.log.Warn("not sending connections to the backups", "op", "handover", "err", err)
		return func() {}
	}
	sent := map[connKey]bool{}
	total := 0
	round := func() {
		conns, err := cs.Conns()
		if err == nil {
			var n int
			n, err = pushConns(cs, sync.Interface, sync.SyncID, syncEntries(conns, fwd), sent)
			total += n
		}
		if err != nil {
			d.log.Warn("sending connections to the backups failed", "op", "handover", "err", err)
		}
	}
	round()
	d.log.Info("sent the IPVS connections to the backups", "op", "handover", "conns", total)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(connPushInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				round()
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				round()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		d.log.Info("stopped sending connections to the backups", "op", "handover", "conns", total)
	}
}

// connRoutes maps each (protocol, virtual, destination) of the kernel's IPVS table to the
// destination's forwarding method.
func connRoutes(ipvs IPVS) (map[connRoute]fsm.Forwarding, error) {
	svcs, err := ipvs.Services()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	out := map[connRoute]fsm.Forwarding{}
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue
		}
		dests, err := ipvs.Destinations(s.ServiceKey)
		if err != nil {
			return nil, fmt.Errorf("list destinations of %s: %w", s.ServiceKey, err)
		}
		for _, dst := range dests {
			virtual := netip.AddrPortFrom(s.Address, s.Port)
			out[connRoute{s.Protocol, virtual, netip.AddrPortFrom(dst.Address, dst.Port)}] = dst.Forwarding
		}
	}
	return out, nil
}
