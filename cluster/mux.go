package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// network is how a node reaches its peers: Raft's transport, and Troop's RPC at the same
// address. Both are addressed by the peer's Raft address, so a follower can forward to the
// leader knowing only what Raft tells it. tcpNetwork is the real one; memNetwork runs whole
// pools in one process (Dev mode and tests).
type network interface {
	// Start makes the node reachable; the methods below but Addr and Close need it.
	Start()
	// Transport is Raft's transport. Raft closes it on shutdown.
	Transport() raft.Transport
	// RPCListener accepts inbound RPC connections.
	RPCListener() net.Listener
	// DialRPC opens an RPC connection to the node at a Raft address. An error from DialRPC means
	// nothing was sent.
	DialRPC(ctx context.Context, addr string) (net.Conn, error)
	// Addr is this node's advertised Raft address.
	Addr() string
	// Close stops listening and closes every connection it made or accepted. Idempotent.
	Close() error
}

// streamLayer is the connection layer under the multiplexer: plain TCP here. Mutual TLS slots in
// as another streamLayer whose Accept and Dial return connections that completed the handshake
// (and checked the peer's certificate) before the multiplexer reads the first byte.
type streamLayer interface {
	net.Listener
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// tcpLayer is a plain TCP streamLayer.
type tcpLayer struct {
	net.Listener
	dialer net.Dialer
}

func listenTCP(bind string) (*tcpLayer, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	return &tcpLayer{Listener: l}, nil
}

func (t *tcpLayer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return t.dialer.DialContext(ctx, "tcp", addr)
}

// The first byte of every connection on Troop's port says who it is for (as in Consul's
// pool.RPCType).
const (
	muxRaft byte = 1
	muxRPC  byte = 2
)

// muxHandshakeTimeout bounds the wait for an inbound connection's first byte.
const muxHandshakeTimeout = 5 * time.Second

// mux splits one listener into Raft and RPC connections by their first byte. It tracks every
// connection it accepted or dialed and closes them all on Close, so nothing outlives the node.
type mux struct {
	layer     streamLayer
	advertise net.Addr
	log       *slog.Logger
	raft, rpc *subListener
	wg        sync.WaitGroup

	mu     sync.Mutex // guards the following fields
	conns  map[*muxConn]struct{}
	closed bool
}

func newMux(layer streamLayer, advertise net.Addr, log *slog.Logger) *mux {
	m := &mux{layer: layer, advertise: advertise, log: log, conns: map[*muxConn]struct{}{}}
	m.raft = newSubListener(advertise)
	m.rpc = newSubListener(advertise)
	return m
}

// start launches the accept loop; Close stops it and waits.
func (m *mux) start() {
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.layer.Accept()
		if err != nil {
			if m.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (EMFILE and the like): back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("accept failed", "op", "mux", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc := m.track(c)
		if tc == nil {
			return
		}
		m.wg.Add(1)
		go m.route(tc)
	}
}

// route reads the connection's first byte and hands it to the Raft or RPC listener.
func (m *mux) route(c *muxConn) {
	defer m.wg.Done()
	var b [1]byte
	if err := handshake(c.Conn); err != nil {
		// A director without a certificate from the pool's CA, or anything else.
		m.log.Warn("TLS handshake failed; connection dropped", "op", "mux", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(muxHandshakeTimeout))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case muxRaft:
		m.raft.deliver(c)
	case muxRPC:
		m.rpc.deliver(c)
	default:
		m.log.Warn("connection with unknown type dropped", "op", "mux", "type", b[0], "remote", c.RemoteAddr().String())
		c.Close()
	}
}

// dial connects to addr and announces the connection's type.
func (m *mux) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	c, err := m.layer.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	tc := m.track(c)
	if tc == nil {
		return nil, net.ErrClosed
	}
	return tc, nil
}

func (m *mux) track(c net.Conn) *muxConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.Close()
		return nil
	}
	tc := &muxConn{Conn: c, m: m}
	m.conns[tc] = struct{}{}
	return tc
}

func (m *mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close stops accepting, closes every tracked connection and waits for the mux's goroutines.
func (m *mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	conns := m.conns
	m.conns = nil
	m.mu.Unlock()

	err := m.layer.Close()
	m.raft.Close()
	m.rpc.Close()
	for c := range conns {
		c.Conn.Close()
	}
	m.wg.Wait()
	return err
}

// muxConn removes itself from the mux's set when closed.
type muxConn struct {
	net.Conn
	m    *mux
	once sync.Once
}

func (c *muxConn) Close() error {
	var err error
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.conns, c)
		c.m.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// subListener is a net.Listener fed by the mux (or by memNetwork).
type subListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept, or closes it if the listener is closed.
func (l *subListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.addr }

// raftStream is the raft.StreamLayer over the mux.
type raftStream struct {
	*subListener
	m *mux
}

func (s raftStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.m.dial(ctx, string(addr), muxRaft)
}

// tcpNetwork is the production network: one TCP port, multiplexed. newTCPNetwork only holds the
// bound listener; Start builds the mux and Raft's NetworkTransport (which starts goroutines).
type tcpNetwork struct {
	layer     streamLayer
	advertise net.Addr
	log       *slog.Logger
	m         *mux
	trans     *raft.NetworkTransport
}

// Raft's NetworkTransport settings, as Consul uses them.
const (
	raftMaxPool = 3
	// raftIOTimeout bounds one Raft RPC's I/O; InstallSnapshot scales it with the snapshot size.
	raftIOTimeout = 10 * time.Second
)

func newTCPNetwork(layer streamLayer, advertise string, log *slog.Logger) (*tcpNetwork, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("resolve advertise address %s: %w", advertise, err)
	}
	return &tcpNetwork{layer: layer, advertise: adv, log: log}, nil
}

func (n *tcpNetwork) Start() {
	n.m = newMux(n.layer, n.advertise, n.log)
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftStream{subListener: n.m.raft, m: n.m},
		MaxPool: raftMaxPool,
		Timeout: raftIOTimeout,
		Logger:  newHclog(n.log, "raft-net"),
	})
	n.m.start()
}

func (n *tcpNetwork) Transport() raft.Transport { return n.trans }
func (n *tcpNetwork) RPCListener() net.Listener { return n.m.rpc }
func (n *tcpNetwork) Addr() string              { return n.advertise.String() }

func (n *tcpNetwork) DialRPC(ctx context.Context, addr string) (net.Conn, error) {
	return n.m.dial(ctx, addr, muxRPC)
}

func (n *tcpNetwork) Close() error {
	if n.m == nil {
		return n.layer.Close()
	}
	n.trans.Close()
	return n.m.Close()
}
