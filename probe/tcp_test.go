package probe

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// testTCPServer accepts connections on loopback and hands each to serve; its goroutines stop
// when the test ends.
func testTCPServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

func TestTCP(t *testing.T) {
	received := make(chan string, 10)
	// An SMTP-like server: "220 ready" after a "HELO" line; anything else gets "500 what?".
	smtp := testTCPServer(t, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		received <- line
		if line == "HELO troop\r\n" {
			io.WriteString(c, "220 ready\r\n")
		} else {
			io.WriteString(c, "500 what?\r\n")
		}
	})
	// A server that sends its banner in pieces.
	slow := testTCPServer(t, func(c net.Conn) {
		for _, part := range []string{"SSH-", "2.0-", "OpenSSH_9\r\n"} {
			io.WriteString(c, part)
			time.Sleep(10 * time.Millisecond)
		}
	})
	// A server that accepts and then says nothing until the client goes.
	silent := testTCPServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	// A server that says part of a line and then nothing.
	partial := testTCPServer(t, func(c net.Conn) { io.WriteString(c, "22"); io.Copy(io.Discard, c) })
	// A server that talks a lot without ever saying the word.
	chatty := testTCPServer(t, func(c net.Conn) { io.WriteString(c, strings.Repeat("blah ", 20000)); io.Copy(io.Discard, c) })
	refused := freeTCPAddr(t)
	defer leakCheck(t)()

	for _, tc := range []struct {
		name                string
		addr                string
		send, expect, re    string
		healthy             bool
		reason, wantReceive string
	}{
		{name: "accepted", addr: silent, healthy: true, reason: "connected"},
		{name: "refused", addr: refused, reason: "connection refused"},
		{name: "banner", addr: smtp, send: "HELO troop\r\n", expect: "220", healthy: true, reason: "reply matched", wantReceive: "HELO troop\r\n"},
		{name: "banner regexp", addr: smtp, send: "HELO troop\r\n", re: `^220 \w+\r\n$`, healthy: true, reason: "reply matched", wantReceive: "HELO troop\r\n"},
		{name: "wrong reply", addr: smtp, send: "EHLO troop\r\n", expect: "220", reason: `"220" not seen in reply`, wantReceive: "EHLO troop\r\n"},
		{name: "wrong reply regexp", addr: smtp, send: "EHLO troop\r\n", re: `^2\d\d`, reason: "reply does not match /^2\\d\\d/", wantReceive: "EHLO troop\r\n"},
		{name: "send only", addr: smtp, send: "HELO troop\r\n", healthy: true, reason: "connected", wantReceive: "HELO troop\r\n"},
		{name: "reply in pieces", addr: slow, expect: "SSH-2.0-", re: `OpenSSH_\d`, healthy: true, reason: "reply matched"},
		{name: "silence", addr: silent, expect: "220", reason: "timeout after 200ms"},
		{name: "part of a reply, then silence", addr: partial, expect: "220", reason: `"220" not seen in reply (timeout after 200ms)`},
		{name: "too much", addr: chatty, expect: "220", reason: `"220" not seen in first 64 KiB of reply`},
	} {
		spec := testSpec("tcp", func(c *fsm.HealthCheck) { c.Send = tc.send; c.Expect = tc.expect; c.ExpectRegexp = tc.re })
		r := checkOnce(t, mustChecker(t, spec), testTarget(tc.addr, spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
		if tc.wantReceive != "" {
			select {
			case got := <-received:
				if got != tc.wantReceive {
					t.Errorf("%s: server received %q, want %q", tc.name, got, tc.wantReceive)
				}
			case <-time.After(time.Second):
				t.Errorf("%s: server received nothing", tc.name)
			}
		}
	}

	// The check port overrides the real server's.
	spec := testSpec("tcp", func(c *fsm.HealthCheck) { c.Port = netipPort(t, silent) })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(refused, spec)), true, "connected")
}
