package lvs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

// PrepareReal makes node an LVS-DR real server for vips with `troop realserver setup`.
func (p *Pool) PrepareReal(ctx context.Context, node string, vips ...string) error {
	args := []string{p.cfg.Bin, "realserver", "setup"}
	for _, v := range vips {
		args = append(args, "-vip", v)
	}
	if _, err := p.Exec(ctx, node, args...); err != nil {
		return fmt.Errorf("realserver setup on %s: %w", node, err)
	}
	return nil
}

// Page is what node's HTTP server answers: the health check's expected string and its name.
func Page(node string) string { return "Test Page from " + node + "\n" }

// Serve starts an HTTP server on node's port (every address: its own for the checks, the VIP
// for the traffic). It answers every path with Page(node).
func (p *Pool) Serve(node string, port int) error {
	ln, err := p.nodes[node].NS.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return fmt.Errorf("serve on %s: %w", node, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, Page(node))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	p.mu.Lock()
	p.servers[serverKey(node, port)] = srv
	p.mu.Unlock()
	go srv.Serve(ln)
	p.logf("%s serves HTTP on port %d", node, port)
	return nil
}

func serverKey(node string, port int) string { return fmt.Sprintf("%s:%d", node, port) }

// StopServing stops node's HTTP server on port: new connections are refused, as when httpd
// stops.
func (p *Pool) StopServing(node string, port int) error {
	p.mu.Lock()
	srv := p.servers[serverKey(node, port)]
	delete(p.servers, serverKey(node, port))
	p.mu.Unlock()
	if srv == nil {
		return fmt.Errorf("%s is not serving on port %d", node, port)
	}
	p.logf("%s stops serving HTTP on port %d", node, port)
	return srv.Close()
}

// Get fetches url from the client host over a new connection and returns the server's name
// (from its page).
func (p *Pool) Get(ctx context.Context, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return pageServer(resp)
}

// GetFromPort fetches url's page over HTTP/1.0 from a fixed client port, as a client reusing a
// port does, and returns the server's name. The server closes first (HTTP/1.0) and the client
// only after reading to the end, so the client keeps no TIME_WAIT on the port and may use it
// again at once, while IPVS has seen the connection end the usual way.
func (p *Pool) GetFromPort(ctx context.Context, url string, port int, timeout time.Duration) (string, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return "", err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c net.Conn
	err = p.nodes[ClientName].NS.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	name, err := pageServer(resp)
	io.Copy(io.Discard, br) // until the server's FIN: then our close is the passive one
	return name, err
}

// pageServer reads a response to the end and returns the name its page gives.
func pageServer(resp *http.Response) (string, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	name, ok := strings.CutPrefix(strings.TrimSpace(string(body)), "Test Page from ")
	if !ok {
		return "", fmt.Errorf("unexpected page %q", body)
	}
	return name, nil
}

// Dial opens a TCP connection from the client host.
func (p *Pool) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return p.nodes[ClientName].NS.DialContext(ctx, "tcp", addr)
}

// ServeEcho starts a line echo server on node's port: each line comes back prefixed with
// node's name, so the client sees which real server holds its connection.
func (p *Pool) ServeEcho(node string, port int) error {
	ln, err := p.nodes[node].NS.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return fmt.Errorf("echo on %s: %w", node, err)
	}
	p.mu.Lock()
	p.closers = append(p.closers, ln)
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			go echo(c, node)
		}
	}()
	return nil
}

func echo(c net.Conn, node string) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s %s", node, buf[:n]); err != nil {
			return
		}
	}
}
