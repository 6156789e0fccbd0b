package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// DefaultExpectStatus is the status an http or https check accepts when expect_status is empty:
// any 2xx. keepalived's HTTP_GET accepts 2xx by default, and ldirectord's check is LWP's
// is_success, also 2xx. Troop does not follow redirects, so a 3xx proves only that something
// answers: a server that redirects every request to a login or maintenance page would count as
// healthy. Say expect_status = ["200-399"] to accept redirects.
const DefaultExpectStatus = "200-299"

// httpChecker sends one request (GET or HEAD) to the real server and judges the status and, for
// GET with expect or expect_regexp, the first maxReply bytes of the body.
//
// Every check opens its own connection (keep-alive is off, as ldirectord's was: a check must
// prove the server accepts connections, and thousands of targets must not pin idle connections),
// asks for no compression (the expected text is matched against the bytes sent), and follows no
// redirect (a 3xx is judged by its status). TLS verifies the server's certificate against the
// system roots, or against ca_file when set, for the name in host (else the address);
// tls_skip_verify turns verification off.
//
// A check does the HTTP/1.1 exchange itself, on the goroutine that calls Check: dial, handshake
// for https, write a request prebuilt from the spec, read the response head with net/http's
// parser, read the body only when expect or expect_regexp needs it, close. It does not use
// net/http's Transport, which runs a dial goroutine and a read and a write loop per connection
// with their buffers: at 10,000 checks a second on two cores they cost about 0.4 of a core more,
// for connections that carry one request (docs/benchmarks.md, probe section).
type httpChecker struct {
	timeout time.Duration
	dialer  net.Dialer
	// tls is the client configuration for https, nil for http. Its ServerName is the host's
	// name when host is set; otherwise a check verifying the certificate sets the address
	// dialled in a copy (TLS sends no SNI for an address, so without verification none is
	// needed).
	tls *tls.Config
	// reqHead is the request up to the Host header's value and reqTail the rest of the head; the
	// value between them is host, or the address dialled when host is empty.
	reqHead, reqTail string
	host             string
	// req is what http.ReadResponse needs to know of the request: its method (a HEAD response
	// has no body). It is only read, so every check shares it.
	req    *http.Request
	status statusSet
	match  matcher
}

// httpUserAgent is the User-Agent of every HTTP check, for the real servers' logs.
const httpUserAgent = "troop-probe"

func newHTTPChecker(spec fsm.HealthCheck) (*httpChecker, error) {
	c := &httpChecker{
		timeout: time.Duration(spec.Timeout),
		// Keep-alive probes are for connections that outlive a check; none does, and turning
		// them off spares a few setsockopt calls per check.
		dialer: net.Dialer{KeepAlive: -1},
		host:   spec.Host,
	}
	method := spec.Method
	if method == "" {
		method = http.MethodGet
	}
	if method != http.MethodGet && method != http.MethodHead {
		return nil, specError("method", spec.Method, "must be GET or HEAD")
	}
	path := spec.Path
	if path == "" {
		path = "/"
	}
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(path, "/") {
		return nil, specError("path", spec.Path, "must be a path starting with /")
	}
	if !validHostHeader(spec.Host) {
		// The value goes into the request head as it is: a space or a line break would end the
		// header early, or add headers.
		return nil, specError("host", spec.Host, "must be a host name or address, with an optional port, in ASCII (punycode for an international name)")
	}
	if c.status, err = parseStatusSet(spec.ExpectStatus); err != nil {
		return nil, err
	}
	if c.match, err = newMatcher(spec); err != nil {
		return nil, err
	}
	if !c.match.empty() && method == http.MethodHead {
		return nil, specError("method", spec.Method, "a HEAD response has no body for expect or expect_regexp to match; use GET")
	}
	// RequestURI is the path escaped, with its query, as net/http sends it.
	c.reqHead = method + " " + u.RequestURI() + " HTTP/1.1\r\nHost: "
	c.reqTail = "\r\nUser-Agent: " + httpUserAgent + "\r\nConnection: close\r\n\r\n"
	c.req = &http.Request{Method: method}

	if spec.Type == "https" {
		// No NextProtos (ALPN): the exchange is HTTP/1.1, never HTTP/2.
		c.tls = &tls.Config{InsecureSkipVerify: spec.TLSSkipVerify}
		if spec.Host != "" {
			// Verify the certificate for the virtual host, as a browser asking for it would.
			c.tls.ServerName = hostOnly(spec.Host)
		}
		if spec.CAFile != "" {
			pem, err := os.ReadFile(spec.CAFile)
			if err != nil {
				return nil, specError("ca_file", spec.CAFile, "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, specError("ca_file", spec.CAFile, "holds no PEM certificate")
			}
			c.tls.RootCAs = pool
		}
	} else if spec.TLSSkipVerify || spec.CAFile != "" {
		return nil, specError("type", spec.Type, "tls_skip_verify and ca_file need type https")
	}
	return c, nil
}

// validHostHeader says h may be sent as a Host header: the bytes net/http accepts there
// (golang.org/x/net/http/httpguts.ValidHostHeader), which exclude spaces, controls and
// anything not ASCII.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// hostOnly strips a port from a Host header value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// httpReadSize is the read buffer of a check's connection: a health check's status line and
// headers usually fit, and net/http's parser reads longer lines and bodies through it.
const httpReadSize = 1 << 10

// errHeadersTooLong ends a response whose head runs past maxReply bytes: http.ReadResponse
// has no limit of its own, and a check must not buffer whatever a server sends.
var errHeadersTooLong = errors.New("server response headers exceeded " + strconv.Itoa(maxReply) + " bytes; aborted")

// errPlainHTTP is net/http's error for a TLS handshake answered in plain HTTP, in its words,
// which errText renders as "TLS: the server answered in plain HTTP".
var errPlainHTTP = errors.New("http: server gave HTTP response to HTTPS client")

// httpConn is one check's connection as http.ReadResponse reads it, with the buffers a check
// needs. They are pooled (httpConns), so thousands of checks a second do not make 1.3 KiB of
// garbage each. A check takes one and puts it back when done with the connection; nothing of
// it outlives the check.
type httpConn struct {
	conn net.Conn
	// headLeft is what the response head may still read from conn: reads past it fail with
	// errHeadersTooLong. The body is bounded by its reader instead.
	headLeft int64
	br       *bufio.Reader
	wbuf     []byte
}

var httpConns = sync.Pool{New: func() any {
	hc := &httpConn{wbuf: make([]byte, 0, 256)}
	hc.br = bufio.NewReaderSize(hc, httpReadSize)
	return hc
}}

func (hc *httpConn) Read(p []byte) (int, error) {
	if hc.headLeft <= 0 {
		return 0, errHeadersTooLong
	}
	if int64(len(p)) > hc.headLeft {
		p = p[:hc.headLeft]
	}
	n, err := hc.conn.Read(p)
	hc.headLeft -= int64(n)
	return n, err
}

// Check implements Checker. Reasons: "status 200" (healthy), "status 503 (want 200-299)",
// `"Test Page" not found in body`, "body does not match /re/", with "first 64 KiB of body"
// when the body was longer, "connection refused", "connection closed by the server", "timeout
// after 1s", "TLS: certificate signed by unknown authority", "TLS: the server answered in plain
// HTTP".
func (c *httpChecker) Check(ctx context.Context, t Target) Result {
	return checkAddr(ctx, t, c.timeout, c.exchange)
}

// exchange sends the request to addr and judges the response, all before ctx ends.
func (c *httpChecker) exchange(ctx context.Context, addr netip.AddrPort) (healthy bool, reason string) {
	raw, err := c.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return false, failReason(ctx, c.timeout, err)
	}
	conn := raw
	defer func() { conn.Close() }()
	// The conn's deadline is ctx's, and a cancellation makes blocked I/O return at once.
	stop := interruptOnDone(ctx, raw)
	defer stop()

	// The Host header without a zone, as RFC 6874 asks of a client.
	hostAddr := netip.AddrPortFrom(addr.Addr().WithZone(""), addr.Port())
	if c.tls != nil {
		conf := c.tls
		if conf.ServerName == "" && !conf.InsecureSkipVerify {
			conf = conf.Clone()
			conf.ServerName = hostAddr.Addr().String()
		}
		tc := tls.Client(raw, conf)
		conn = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			var rh tls.RecordHeaderError
			if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
				err = errPlainHTTP
			}
			return false, failReason(ctx, c.timeout, err)
		}
	}

	hc := httpConns.Get().(*httpConn)
	defer func() {
		hc.conn = nil
		httpConns.Put(hc)
	}()
	hc.conn, hc.headLeft = conn, maxReply
	hc.br.Reset(hc)
	req := append(hc.wbuf[:0], c.reqHead...)
	if c.host != "" {
		req = append(req, c.host...)
	} else {
		req, _ = hostAddr.AppendText(req)
	}
	req = append(req, c.reqTail...)
	hc.wbuf = req
	if _, err := conn.Write(req); err != nil {
		return false, failReason(ctx, c.timeout, err)
	}

	var resp *http.Response
	for {
		if resp, err = http.ReadResponse(hc.br, c.req); err != nil {
			return false, failReason(ctx, c.timeout, err)
		}
		// Interim responses (100 Continue, 103 Early Hints) come before the one to judge
		// (101 Switching Protocols is final). The head limit spans them all, so a server
		// cannot keep a check reading interim heads.
		if code := resp.StatusCode; code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
	}
	hc.headLeft = math.MaxInt64
	if !c.status.has(resp.StatusCode) {
		return false, fmt.Sprintf("status %d (want %s)", resp.StatusCode, c.status)
	}
	// resp.Body is never closed: closing would read a body not yet read to its end (the
	// server's Connection header decides that), and closing the connection ends it.
	if !c.match.empty() {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
		if err != nil {
			return false, failReason(ctx, c.timeout, err)
		}
		truncated := len(body) > maxReply
		if truncated {
			body = body[:maxReply]
		}
		if why := c.match.mismatch(body, "body", "found in", truncated); why != "" {
			return false, why
		}
	}
	return true, "status " + strconv.Itoa(resp.StatusCode)
}

// statusSet is the accepted HTTP statuses: codes and inclusive ranges.
type statusSet struct {
	ranges [][2]int
	text   string
}

func parseStatusSet(specs []string) (statusSet, error) {
	if len(specs) == 0 {
		specs = []string{DefaultExpectStatus}
	}
	s := statusSet{text: strings.Join(specs, ", ")}
	for _, sp := range specs {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(sp), "-")
		if !isRange {
			hi = lo
		}
		l, errL := strconv.Atoi(lo)
		h, errH := strconv.Atoi(hi)
		if errL != nil || errH != nil || l < 100 || h > 599 || l > h {
			return statusSet{}, specError("expect_status", sp, "must be a status code like 200 or a range like 200-399")
		}
		s.ranges = append(s.ranges, [2]int{l, h})
	}
	return s, nil
}

func (s statusSet) has(code int) bool {
	for _, r := range s.ranges {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

func (s statusSet) String() string { return s.text }
