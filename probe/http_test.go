package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// httpSeen is what a test server saw of the requests it served.
type httpSeen struct {
	mu       sync.Mutex
	requests []*http.Request
	newConns atomic.Int32
}

func (s *httpSeen) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *httpSeen) last(t *testing.T) *http.Request {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("the server saw no request")
	}
	return s.requests[len(s.requests)-1]
}

// testHTTPServer serves the pages the HTTP tests check:
//
//	/status/NNN     answers status NNN with body "status NNN"
//	/index.html     ldirectord's test page
//	/redirect       302 to /landing
//	/landing        counts its hits
//	/big            70 KiB of filler, then "MARK", then hangs until the client goes
//	/hang           hangs until the client goes
func testHTTPServer(t *testing.T, tlsCert *tls.Certificate) (*httptest.Server, *httpSeen, *atomic.Int32) {
	t.Helper()
	seen := &httpSeen{}
	var landing atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		io.WriteString(w, "status "+r.PathValue("code"))
	})
	mux.HandleFunc("/index.html", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>Test Page</body></html>\n")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/landing", http.StatusFound)
	})
	mux.HandleFunc("/landing", func(w http.ResponseWriter, r *http.Request) {
		landing.Add(1)
		io.WriteString(w, "Test Page")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 70<<10)))
		io.WriteString(w, "MARK")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r)
		mux.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake failures are the point of some tests
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			seen.newConns.Add(1)
		}
	}
	if tlsCert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*tlsCert}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, seen, &landing
}

// serverAddr is the test server's address as a real server's.
func serverAddr(srv *httptest.Server) string {
	return srv.Listener.Addr().String()
}

func TestHTTPStatus(t *testing.T) {
	srv, _, landing := testHTTPServer(t, nil)
	defer leakCheck(t)()
	for _, tc := range []struct {
		path    string
		expect  []string
		healthy bool
		reason  string
	}{
		{"/status/200", nil, true, "status 200"},
		{"/status/204", nil, true, "status 204"},
		{"/status/503", nil, false, "status 503 (want 200-299)"},
		{"/status/301", nil, false, "status 301 (want 200-299)"},
		{"/status/301", []string{"200-399"}, true, "status 301"},
		{"/status/503", []string{"200-399"}, false, "status 503 (want 200-399)"},
		{"/status/204", []string{"200", "204"}, true, "status 204"},
		{"/status/404", []string{"200", "204", "300-399"}, false, "status 404 (want 200, 204, 300-399)"},
		{"/status/404", []string{"404"}, true, "status 404"},
		// A redirect is judged by its status and not followed.
		{"/redirect", nil, false, "status 302 (want 200-299)"},
		{"/redirect", []string{"200-399"}, true, "status 302"},
	} {
		spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = tc.path; c.ExpectStatus = tc.expect })
		r := checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("%s expect_status %v: got %v %q, want %v %q", tc.path, tc.expect, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
	}
	if n := landing.Load(); n != 0 {
		t.Errorf("the redirect was followed: /landing was hit %d times", n)
	}
}

func TestHTTPBody(t *testing.T) {
	srv, _, _ := testHTTPServer(t, nil)
	defer leakCheck(t)()
	for _, tc := range []struct {
		expect, re string
		healthy    bool
		reason     string
	}{
		{"Test Page", "", true, "status 200"},
		{"Welcome", "", false, `"Welcome" not found in body`},
		{"", `<body>Test\s+Page</body>`, true, "status 200"},
		{"", `^Test Page$`, false, "body does not match /^Test Page$/"},
		{"Test Page", `^<html>`, true, "status 200"},
		{"Test Page", `^<xml>`, false, "body does not match /^<xml>/"},
		{"Welcome", `^<xml>`, false, `"Welcome" not found in body`},
	} {
		spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/index.html"; c.Expect = tc.expect; c.ExpectRegexp = tc.re })
		r := checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("expect %q regexp %q: got %v %q, want %v %q", tc.expect, tc.re, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
	}
	// The status is judged before the body.
	spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/status/500"; c.Expect = "status 500" })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec)), false, "status 500 (want 200-299)")
}

func TestHTTPBodyBounded(t *testing.T) {
	srv, _, _ := testHTTPServer(t, nil)
	defer leakCheck(t)()
	// /big sends 70 KiB and the marker, then never ends its body: a check that read on would
	// time out; this one reads 64 KiB and judges them.
	for _, tc := range []struct {
		expect, re, reason string
	}{
		{"MARK", "", `"MARK" not found in first 64 KiB of body`},
		{"", "MARK", "first 64 KiB of body does not match /MARK/"},
	} {
		spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/big"; c.Expect = tc.expect; c.ExpectRegexp = tc.re })
		start := time.Now()
		r := checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec))
		wantResult(t, r, false, tc.reason)
		if took := time.Since(start); took >= testTimeout {
			t.Errorf("the check waited for the whole body: %v", took)
		}
	}
	// Text within the first 64 KiB is found.
	spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/big"; c.Expect = "xxxx" })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec)), true, "status 200")
}

func TestHTTPRequest(t *testing.T) {
	srv, seen, _ := testHTTPServer(t, nil)
	defer leakCheck(t)()

	// Defaults: GET /, Host is the address dialled, no compression asked for, connection closed.
	spec := testSpec("http", nil)
	c := mustChecker(t, spec)
	wantResult(t, checkOnce(t, c, testTarget(serverAddr(srv), spec)), false, "status 404 (want 200-299)")
	r := seen.last(t)
	if r.Method != "GET" || r.URL.Path != "/" || r.Host != serverAddr(srv) {
		t.Errorf("request %s %s Host %s, want GET / Host %s", r.Method, r.URL, r.Host, serverAddr(srv))
	}
	if !r.Close {
		t.Error("the request did not ask to close the connection (keep-alive is on)")
	}
	if ae := r.Header.Get("Accept-Encoding"); ae != "" {
		t.Errorf("Accept-Encoding %q, want none", ae)
	}
	if ua := r.UserAgent(); ua != "troop-probe" {
		t.Errorf("User-Agent %q", ua)
	}

	// ldirectord's virtualhost, HEAD, a path with a query.
	spec = testSpec("http", func(c *fsm.HealthCheck) {
		c.Method = "HEAD"
		c.Host = "www.example.com"
		c.Path = "/status/200?full=1&x=%2F"
	})
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(serverAddr(srv), spec)), true, "status 200")
	r = seen.last(t)
	if r.Method != "HEAD" || r.Host != "www.example.com" || r.URL.Path != "/status/200" || r.URL.RawQuery != "full=1&x=%2F" {
		t.Errorf("request %s %s Host %s, want HEAD /status/200?full=1&x=%%2F Host www.example.com", r.Method, r.URL, r.Host)
	}

	// Every check opens its own connection.
	before := seen.newConns.Load()
	for range 3 {
		checkOnce(t, c, testTarget(serverAddr(srv), spec))
	}
	if n := seen.newConns.Load() - before; n != 3 {
		t.Errorf("3 checks opened %d connections, want 3", n)
	}
}

func TestHTTPFailures(t *testing.T) {
	srv, _, _ := testHTTPServer(t, nil)
	defer leakCheck(t)()

	spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/hang" })
	c := mustChecker(t, spec)
	r := checkOnce(t, c, testTarget(serverAddr(srv), spec))
	wantResult(t, r, false, "timeout after 200ms")
	if r.Duration < testTimeout {
		t.Errorf("timed out after %v, before the timeout", r.Duration)
	}

	wantResult(t, checkOnce(t, c, testTarget(freeTCPAddr(t), spec)), false, "connection refused")

	// A firewall-mark service's real server without a port, and no check port.
	wantResult(t, checkOnce(t, c, testTarget("127.0.0.1:0", spec)), false, noPortReason)
	spec.Port = netipPort(t, serverAddr(srv))
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget("127.0.0.1:0", spec)), false, "timeout after 200ms")

	// The body ends early.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		conn.Read(buf)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
	}()
	spec = testSpec("http", func(c *fsm.HealthCheck) { c.Expect = "Test Page" })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(l.Addr().String(), spec)), false, "connection closed by the server")
	<-done
}

// netipPort is the port of a host:port.
func netipPort(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

// testPKI is a CA and a server certificate it signed for www.example.com and 127.0.0.1.
type testPKI struct {
	caFile string
	server tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Troop test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		DNSNames:     []string{"www.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return testPKI{caFile: caFile, server: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

func TestHTTPS(t *testing.T) {
	pki := newTestPKI(t)
	srv, seen, _ := testHTTPServer(t, &pki.server)
	plain, _, _ := testHTTPServer(t, nil)
	defer leakCheck(t)()
	for _, tc := range []struct {
		name    string
		edit    func(*fsm.HealthCheck)
		addr    string
		healthy bool
		reason  string
	}{
		{"system roots", nil, serverAddr(srv), false, "TLS: certificate signed by unknown authority"},
		{"ca_file", func(c *fsm.HealthCheck) { c.CAFile = pki.caFile }, serverAddr(srv), true, "status 200"},
		{"tls_skip_verify", func(c *fsm.HealthCheck) { c.TLSSkipVerify = true }, serverAddr(srv), true, "status 200"},
		{"virtual host", func(c *fsm.HealthCheck) { c.CAFile = pki.caFile; c.Host = "www.example.com" }, serverAddr(srv), true, "status 200"},
		{"virtual host with port", func(c *fsm.HealthCheck) { c.CAFile = pki.caFile; c.Host = "www.example.com:8443" }, serverAddr(srv), true, "status 200"},
		{"wrong name", func(c *fsm.HealthCheck) { c.CAFile = pki.caFile; c.Host = "other.example.com" }, serverAddr(srv), false,
			"TLS: certificate is valid for www.example.com, not other.example.com"},
		{"wrong name, verification off", func(c *fsm.HealthCheck) { c.TLSSkipVerify = true; c.Host = "other.example.com" }, serverAddr(srv), true, "status 200"},
		{"plain HTTP server", func(c *fsm.HealthCheck) { c.TLSSkipVerify = true }, serverAddr(plain), false, "TLS: the server answered in plain HTTP"},
	} {
		spec := testSpec("https", func(c *fsm.HealthCheck) {
			c.Path = "/index.html"
			c.Expect = "Test Page"
			if tc.edit != nil {
				tc.edit(c)
			}
		})
		r := checkOnce(t, mustChecker(t, spec), testTarget(tc.addr, spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
		if tc.name == "virtual host" {
			if r := seen.last(t); r.TLS == nil || r.TLS.ServerName != "www.example.com" || r.Host != "www.example.com" {
				t.Errorf("virtual host: server saw SNI %q Host %q", r.TLS.ServerName, r.Host)
			}
		}
	}
}

// rawHTTPServer is a loopback HTTP server written by hand, for answers net/http's server would
// not give: it reads each request's head, records it, and lets answer write whatever it likes
// (answer may hang until the client closes). It stops when the test ends.
func rawHTTPServer(t *testing.T, answer func(conn net.Conn)) (addr string, lastHead func() string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		head string
	)
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				var got []byte
				buf := make([]byte, 1024)
				for !strings.Contains(string(got), "\r\n\r\n") {
					n, err := conn.Read(buf)
					if err != nil {
						return
					}
					got = append(got, buf[:n]...)
				}
				mu.Lock()
				head = string(got)
				mu.Unlock()
				answer(conn)
			})
		}
	})
	return l.Addr().String(), func() string {
		mu.Lock()
		defer mu.Unlock()
		return head
	}
}

// untilClosed waits for the client to close conn: a server that sends no more.
func untilClosed(conn net.Conn) { io.Copy(io.Discard, conn) }

// TestHTTPRequestBytes checks the request head byte for byte: nothing else is sent.
func TestHTTPRequestBytes(t *testing.T) {
	addr, head := rawHTTPServer(t, func(conn net.Conn) {
		io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	defer leakCheck(t)()
	spec := testSpec("http", func(c *fsm.HealthCheck) { c.Path = "/health?a=1&b=%2F" })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(addr, spec)), true, "status 204")
	want := "GET /health?a=1&b=%2F HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: troop-probe\r\nConnection: close\r\n\r\n"
	if got := head(); got != want {
		t.Errorf("request head\n%q\nwant\n%q", got, want)
	}
	spec = testSpec("http", func(c *fsm.HealthCheck) { c.Method = "HEAD"; c.Host = "www.example.com:8080" })
	wantResult(t, checkOnce(t, mustChecker(t, spec), testTarget(addr, spec)), true, "status 204")
	want = "HEAD / HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent: troop-probe\r\nConnection: close\r\n\r\n"
	if got := head(); got != want {
		t.Errorf("request head\n%q\nwant\n%q", got, want)
	}
}

// TestHTTPHostRefused: a host that cannot be sent as a Host header as it is refuses the spec.
func TestHTTPHostRefused(t *testing.T) {
	for _, host := range []string{"www.example.com\r\nX-Injected: 1", "www example com", "bücher.example"} {
		spec := testSpec("http", func(c *fsm.HealthCheck) { c.Host = host })
		_, err := NewChecker(spec)
		if !errors.Is(err, fsm.ErrInvalid) || !strings.Contains(err.Error(), "check host") {
			t.Errorf("host %q: got %v, want a check host error", host, err)
		}
	}
}

// TestHTTPResponses feeds the checker answers written by hand: framings, interim responses,
// heads and bodies that end early or run long.
func TestHTTPResponses(t *testing.T) {
	big := strings.Repeat("x", 70<<10) + "MARK"
	const longBody = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nTest"
	for _, tc := range []struct {
		name    string
		answer  func(net.Conn)
		edit    func(*fsm.HealthCheck)
		healthy bool
		reason  string
	}{
		{"chunked, the text across chunks", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<p>Te\r\n7\r\nst Page\r\n4\r\n</p>\r\n0\r\n\r\n")
		}, func(c *fsm.HealthCheck) { c.Expect = "Test Page" }, true, "status 200"},
		{"chunked, matched against the chunks' data only", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
		}, func(c *fsm.HealthCheck) { c.ExpectRegexp = `^abcdef$` }, true, "status 200"},
		{"chunked, longer than the bound", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			fmt.Fprintf(conn, "%x\r\n%s\r\n", len(big), big)
			untilClosed(conn) // no last chunk: reading to the end would time out
		}, func(c *fsm.HealthCheck) { c.Expect = "MARK" }, false, `"MARK" not found in first 64 KiB of body`},
		{"chunked, closed in a chunk", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nTest")
		}, func(c *fsm.HealthCheck) { c.Expect = "Test Page" }, false, "connection closed by the server"},
		{"Content-Length, longer than the bound", func(conn net.Conn) {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big)+1, big)
			untilClosed(conn) // one byte short: reading to the end would time out
		}, func(c *fsm.HealthCheck) { c.ExpectRegexp = "MARK" }, false, "first 64 KiB of body does not match /MARK/"},
		{"Content-Length, the text within the bound", func(conn net.Conn) {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nTest Page%s", len(big)+9, big)
			untilClosed(conn)
		}, func(c *fsm.HealthCheck) { c.Expect = "Test Page" }, true, "status 200"},
		{"no Content-Length: the body ends with the connection", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.0 200 OK\r\n\r\n<html>Test Page</html>")
		}, func(c *fsm.HealthCheck) { c.Expect = "Test Page" }, true, "status 200"},
		{"no expect: the body is not read", func(conn net.Conn) {
			io.WriteString(conn, longBody)
			untilClosed(conn)
		}, nil, true, "status 200"},
		{"expect: the body is read", func(conn net.Conn) {
			io.WriteString(conn, longBody)
			untilClosed(conn)
		}, func(c *fsm.HealthCheck) { c.Expect = "Test" }, false, "timeout after 200ms"},
		{"the status is judged before the body", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nTest")
			untilClosed(conn)
		}, func(c *fsm.HealthCheck) { c.Expect = "Test" }, false, "status 503 (want 200-299)"},
		{"interim responses are skipped", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
		}, nil, false, "status 503 (want 200-299)"},
		{"closed before answering", func(conn net.Conn) {}, nil, false, "connection closed by the server"},
		{"closed in the status line", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 20")
		}, nil, false, `malformed HTTP status code "20"`},
		{"closed in the headers", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/pl")
		}, nil, false, "connection closed by the server"},
		{"hangs in the headers", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/pl")
			untilClosed(conn)
		}, nil, false, "timeout after 200ms"},
		{"headers longer than the bound", func(conn net.Conn) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\n")
			for range 100 {
				fmt.Fprintf(conn, "X-Filler: %s\r\n", strings.Repeat("y", 1000))
			}
			untilClosed(conn)
		}, nil, false, "server response headers exceeded 65536 bytes; aborted"},
		{"not HTTP", func(conn net.Conn) {
			io.WriteString(conn, "SSH-2.0-OpenSSH_9.6\r\n")
		}, nil, false, `malformed HTTP response "SSH-2.0-OpenSSH_9.6"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := rawHTTPServer(t, tc.answer)
			defer leakCheck(t)()
			spec := testSpec("http", tc.edit)
			r := checkOnce(t, mustChecker(t, spec), testTarget(addr, spec))
			wantResult(t, r, tc.healthy, tc.reason)
			if !strings.HasPrefix(r.Reason, "timeout") && r.Duration >= testTimeout/2 {
				t.Errorf("the check took %v: it waited for more than it needed", r.Duration)
			}
		})
	}
}

// TestHTTPCanceled: a canceled check returns at once, before its timeout, for http and https.
func TestHTTPCanceled(t *testing.T) {
	pki := newTestPKI(t)
	plain, _, _ := testHTTPServer(t, nil)
	secure, _, _ := testHTTPServer(t, &pki.server)
	hello, _ := rawHTTPServer(t, untilClosed) // accepts, never answers the TLS hello
	defer leakCheck(t)()
	for _, tc := range []struct {
		typ, addr, path string
	}{
		{"http", serverAddr(plain), "/hang"},
		{"https", serverAddr(secure), "/hang"},
		{"https", hello, "/"},
	} {
		spec := testSpec(tc.typ, func(c *fsm.HealthCheck) {
			c.Path = tc.path
			c.Timeout = fsm.Duration(5 * time.Second)
			if tc.typ == "https" {
				c.CAFile = pki.caFile
			}
		})
		c := mustChecker(t, spec)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		r := c.Check(ctx, testTarget(tc.addr, spec))
		if took := time.Since(start); r.Healthy || r.Reason != "canceled" || took > time.Second {
			t.Errorf("%s %s: got %v %q after %v, want a canceled check at once", tc.typ, tc.path, r.Healthy, r.Reason, took)
		}
		cancel()
	}
}
