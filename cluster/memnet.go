package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/hashicorp/raft"
)

// memNetwork is an in-process network: raft.InmemTransport for Raft and net.Pipe connections for
// RPC, with partitions (modelled on hashicorp/raft's testing.go MakeCluster and Partition). Dev
// mode runs a one-node memNetwork; tests run whole pools on one.
type memNetwork struct {
	mu sync.Mutex // guards the following fields
	// nodes are the started transports by address.
	nodes map[string]*memTransport
	// isolated addresses reach no one and no one reaches them.
	isolated map[string]bool
}

func newMemNetwork() *memNetwork {
	return &memNetwork{nodes: map[string]*memTransport{}, isolated: map[string]bool{}}
}

// transport returns a node's endpoint at addr; it joins the network on Start.
func (mn *memNetwork) transport(addr string) *memTransport {
	return &memTransport{mn: mn, addr: addr, rpc: newSubListener(memAddr(addr))}
}

// Partition isolates addrs from everyone until Heal.
func (mn *memNetwork) Partition(addrs ...string) {
	mn.mu.Lock()
	defer mn.mu.Unlock()
	for _, a := range addrs {
		mn.isolated[a] = true
	}
	mn.rewire()
}

// Heal undoes every partition.
func (mn *memNetwork) Heal() {
	mn.mu.Lock()
	defer mn.mu.Unlock()
	clear(mn.isolated)
	mn.rewire()
}

func (mn *memNetwork) isIsolated(addr string) bool {
	mn.mu.Lock()
	defer mn.mu.Unlock()
	return mn.isolated[addr]
}

func (mn *memNetwork) connected(a, b string) bool {
	return !mn.isolated[a] && !mn.isolated[b]
}

// rewire connects or disconnects every pair of Raft transports. mn.mu must be held.
func (mn *memNetwork) rewire() {
	for a, ta := range mn.nodes {
		for b, tb := range mn.nodes {
			if a == b {
				continue
			}
			if mn.connected(a, b) {
				ta.trans.Connect(raft.ServerAddress(b), tb.trans)
			} else {
				ta.trans.Disconnect(raft.ServerAddress(b))
			}
		}
	}
}

// memTransport is one node's endpoint on a memNetwork.
type memTransport struct {
	mn    *memNetwork
	addr  string
	trans *raft.InmemTransport
	rpc   *subListener
	once  sync.Once
}

func (t *memTransport) Start() {
	_, t.trans = raft.NewInmemTransport(raft.ServerAddress(t.addr))
	t.mn.mu.Lock()
	defer t.mn.mu.Unlock()
	t.mn.nodes[t.addr] = t
	t.mn.rewire()
}

func (t *memTransport) Transport() raft.Transport { return t.trans }
func (t *memTransport) RPCListener() net.Listener { return t.rpc }
func (t *memTransport) Addr() string              { return t.addr }

// DialRPC connects through a pipe, failing as a refused TCP connection would when the target is
// down or cut off.
func (t *memTransport) DialRPC(ctx context.Context, addr string) (net.Conn, error) {
	t.mn.mu.Lock()
	peer, ok := t.mn.nodes[addr]
	reachable := ok && t.mn.connected(t.addr, addr)
	t.mn.mu.Unlock()
	if !reachable {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	client, server := net.Pipe()
	select {
	case peer.rpc.ch <- server:
		return client, nil
	case <-peer.rpc.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, fmt.Errorf("dial %s: connection refused", addr)
}

// Close leaves the network. Raft closes the InmemTransport itself on shutdown.
func (t *memTransport) Close() error {
	t.once.Do(func() {
		t.rpc.Close()
		t.mn.mu.Lock()
		defer t.mn.mu.Unlock()
		if t.mn.nodes[t.addr] == t {
			delete(t.mn.nodes, t.addr)
			for _, other := range t.mn.nodes {
				other.trans.Disconnect(raft.ServerAddress(t.addr))
			}
		}
		if t.trans != nil {
			t.trans.Close()
		}
	})
	return nil
}

// memAddr is a net.Addr for in-memory endpoints.
type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }
