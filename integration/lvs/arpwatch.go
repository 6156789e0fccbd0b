package lvs

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
)

// WatchARP asks for addr's MAC address from the client every `every` (a broadcast ARP request,
// which every host holding addr answers) and records the sender MAC of every ARP packet that
// claims addr: the answers, and the gratuitous ARPs of a host announcing it. Unlike WatchAddr,
// whose pings follow the client's neighbour entry to one MAC, it hears every host on the segment
// that answers for addr, so two holders show up as two MACs.
func (p *Pool) WatchARP(ctx context.Context, addr string, every time.Duration) (*Watch, error) {
	target, err := netip.ParseAddr(addr)
	if err != nil || !target.Is4() {
		return nil, fmt.Errorf("watch ARP for %q: not an IPv4 address", addr)
	}
	var c *arp.Client
	err = p.nodes[ClientName].NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("watch ARP for %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watch{cancel: cancel, conns: []interface{ Close() error }{c}}
	w.wg.Add(2)
	go func() { // ask
		defer w.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			c.Request(target) // a failed send is one fewer sample, nothing more
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // listen
		defer w.wg.Done()
		for {
			pkt, _, err := c.Read()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue // a frame that is not ARP
			}
			if pkt.SenderIP == target {
				w.mu.Lock()
				w.replies = append(w.replies, Reply{At: time.Now(), MAC: pkt.SenderHardwareAddr.String()})
				w.mu.Unlock()
			}
		}
	}()
	return w, nil
}
