package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// tcpChecker connects to the real server; with send it writes those bytes, and with expect or
// expect_regexp it reads the reply (at most maxReply bytes) until it matches, the server closes
// or the timeout ends. Without send and expect a completed handshake is healthy.
type tcpChecker struct {
	timeout time.Duration
	send    []byte
	match   matcher
}

func newTCPChecker(spec fsm.HealthCheck) (*tcpChecker, error) {
	m, err := newMatcher(spec)
	if err != nil {
		return nil, err
	}
	return &tcpChecker{timeout: time.Duration(spec.Timeout), send: []byte(spec.Send), match: m}, nil
}

// Check implements Checker. Reasons: "connected" or "reply matched" (healthy), "connection
// refused", "timeout after 1s", `"220" not seen in reply`, "reply does not match /re/", the
// latter two with " (timeout after 1s)" when part of a reply came before the timeout, or with
// "first 64 KiB of reply" when that much came without a match.
func (c *tcpChecker) Check(ctx context.Context, t Target) Result {
	return checkAddr(ctx, t, c.timeout, c.exchange)
}

// exchange runs the check against addr before ctx ends.
func (c *tcpChecker) exchange(ctx context.Context, addr netip.AddrPort) (healthy bool, reason string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return false, failReason(ctx, c.timeout, err)
	}
	defer conn.Close()
	if len(c.send) == 0 && c.match.empty() {
		return true, "connected"
	}
	stop := interruptOnDone(ctx, conn)
	defer stop()
	if len(c.send) > 0 {
		if _, err := conn.Write(c.send); err != nil {
			return false, failReason(ctx, c.timeout, err)
		}
	}
	if c.match.empty() {
		return true, "connected"
	}
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), maxReply-len(buf)))...)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if c.match.matches(buf) {
			return true, "reply matched"
		}
		if len(buf) >= maxReply {
			return false, c.match.mismatch(buf, "reply", "seen in", true)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			return false, c.match.mismatch(buf, "reply", "seen in", false)
		case len(buf) > 0 && timedOut(ctx, err):
			return false, c.match.mismatch(buf, "reply", "seen in", false) + " (" + timeoutReason(c.timeout) + ")"
		default:
			return false, failReason(ctx, c.timeout, err)
		}
	}
}
