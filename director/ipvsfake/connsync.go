package ipvsfake

import (
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/troop-lb/troop/director"
)

// ConnSync is a fake director.ConnSync: the connections it lists are set by the test, and the
// messages it sends are recorded. Sending out of an interface it does not know is ENODEV, as the
// kernel says for an unknown multicast interface.
type ConnSync struct {
	mu     sync.Mutex
	conns  []director.Conn
	ifaces []string
	sent   []Sent
}

// Sent is one message the fake sent.
type Sent struct {
	Iface string
	Msg   []byte
}

// NewConnSync returns a fake that sends out of the named interfaces.
func NewConnSync(ifaces ...string) *ConnSync { return &ConnSync{ifaces: ifaces} }

// SetConns sets what Conns returns.
func (f *ConnSync) SetConns(cs ...director.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = slices.Clone(cs)
}

// Sent returns the messages sent so far.
func (f *ConnSync) Sent() []Sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func (f *ConnSync) Conns() ([]director.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.conns), nil
}

func (f *ConnSync) Send(iface string, msg []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.ifaces, iface) {
		return fmt.Errorf("sync interface %s: %w", iface, syscall.ENODEV)
	}
	f.sent = append(f.sent, Sent{Iface: iface, Msg: slices.Clone(msg)})
	return nil
}

func (f *ConnSync) Close() error { return nil }
