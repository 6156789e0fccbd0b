package lvs

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Netns is a named network namespace (as `ip netns add` makes them, under /run/netns).
type Netns string

// Do runs fn on a fresh OS thread that has entered the namespace. Sockets fn opens live in the
// namespace for good and may then be used from any goroutine. The thread is never returned to
// Go's pool (it ends with the goroutine), so nothing else ever runs in the wrong namespace.
func (n Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread exits with this goroutine
		f, err := os.Open(filepath.Join("/run/netns", string(n)))
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", n, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// DialContext opens a connection from inside the namespace, for an http.Transport.
func (n Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside the namespace.
func (n Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Interface returns the namespace's interface called name (its MAC and addresses are read
// inside the namespace too).
func (n Netns) Interface(name string) (mac net.HardwareAddr, addrs []net.Addr, err error) {
	err = n.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		addrs, err = ifi.Addrs()
		return err
	})
	return mac, addrs, err
}
