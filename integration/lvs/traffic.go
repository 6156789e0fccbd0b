package lvs

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Sample is one request of a Load.
type Sample struct {
	At     time.Time
	Took   time.Duration
	Server string // the real server that answered
	Err    error
}

// Load is a client making one request after another, each on a new connection.
type Load struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []Sample
}

// StartLoad starts requesting url from the client host, one request every `every` (or as soon
// as the previous one ends, if it took longer), each given timeout to finish.
func (p *Pool) StartLoad(ctx context.Context, url string, every, timeout time.Duration) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for ctx.Err() == nil {
			start := time.Now()
			server, err := p.Get(ctx, url, timeout)
			if ctx.Err() != nil {
				return // a request cut short by Stop is not a failure
			}
			l.mu.Lock()
			l.samples = append(l.samples, Sample{At: start, Took: time.Since(start), Server: server, Err: err})
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	return l
}

// Samples returns what the load has seen so far.
func (l *Load) Samples() []Sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Sample(nil), l.samples...)
}

// Stop ends the load and returns every sample.
func (l *Load) Stop() []Sample {
	l.cancel()
	<-l.done
	return l.Samples()
}

// Reply is one ICMP echo reply the client received, with the sender's MAC address.
type Reply struct {
	At  time.Time
	MAC string
}

// Watch pings an address from the client host and records which MAC answers each echo.
type Watch struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	conns   []interface{ Close() error }
	mu      sync.Mutex
	replies []Reply
}

// WatchAddr pings addr from the client every `every`, recording the source MAC of each reply as
// the client's interface sees it (a packet socket), which is how a client tells which director
// holds the VIP.
func (p *Pool) WatchAddr(ctx context.Context, addr string, every time.Duration) (*Watch, error) {
	target := net.ParseIP(addr).To4()
	if target == nil {
		return nil, fmt.Errorf("watch %q: not an IPv4 address", addr)
	}
	var ping *icmp.PacketConn
	var capture *packet.Conn
	err := p.nodes[ClientName].NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if ping, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return err
		}
		if capture, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_IP, nil); err != nil {
			ping.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watch{cancel: cancel, conns: []interface{ Close() error }{ping, capture}}
	id := os.Getpid() & 0xffff
	w.wg.Add(3)
	go func() { // send
		defer w.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff}}
			if b, err := msg.Marshal(nil); err == nil {
				ping.WriteTo(b, &net.IPAddr{IP: target}) // unreachable while nobody holds it: fine
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // the ping socket's own copy of each reply is not needed
		defer w.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := ping.ReadFrom(buf); err != nil && ctx.Err() != nil {
				return
			}
		}
	}()
	go func() { // capture
		defer w.wg.Done()
		buf := make([]byte, 1600)
		for {
			n, _, err := capture.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if mac, ok := echoReplyFrom(buf[:n], target, id); ok {
				w.mu.Lock()
				w.replies = append(w.replies, Reply{At: time.Now(), MAC: mac})
				w.mu.Unlock()
			}
		}
	}()
	return w, nil
}

// echoReplyFrom parses an Ethernet frame and reports the source MAC if it is an ICMP echo reply
// from src with the given identifier.
func echoReplyFrom(frame []byte, src net.IP, id int) (string, bool) {
	const ethLen = 14
	if len(frame) < ethLen+20 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return "", false
	}
	ip := frame[ethLen:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 1 || !net.IP(ip[12:16]).Equal(src) || len(ip) < ihl+8 {
		return "", false
	}
	icmpHdr := ip[ihl:]
	if icmpHdr[0] != 0 || int(binary.BigEndian.Uint16(icmpHdr[4:6])) != id {
		return "", false
	}
	return net.HardwareAddr(frame[6:12]).String(), true
}

// Replies returns the replies seen so far.
func (w *Watch) Replies() []Reply {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Reply(nil), w.replies...)
}

// Stop ends the watch and returns every reply seen. It may be called more than once.
func (w *Watch) Stop() []Reply {
	w.cancel()
	for _, c := range w.conns {
		c.Close()
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Reply(nil), w.replies...)
}

// Outage is the client-visible gap of a failover: from the last reply from oldMAC to the first
// reply from newMAC after it.
func Outage(replies []Reply, oldMAC, newMAC string) (time.Duration, error) {
	var last time.Time
	for _, r := range replies {
		switch {
		case r.MAC == oldMAC:
			last = r.At
		case r.MAC == newMAC && !last.IsZero():
			return r.At.Sub(last), nil
		}
	}
	if last.IsZero() {
		return 0, fmt.Errorf("no reply from the old holder %s", oldMAC)
	}
	return 0, fmt.Errorf("no reply from the new holder %s after the last from %s", newMAC, oldMAC)
}
