package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
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
// GET, the first maxReply bytes of the body.
//
// Every check opens its own connection (keep-alives are off, as ldirectord's were: a check must
// prove the server accepts connections, and thousands of targets must not pin idle connections),
// asks for no compression (the expected text is matched against the bytes sent), and follows no
// redirect (a 3xx is judged by its status). TLS verifies the server's certificate against the
// system roots, or against ca_file when set, for the name in host (else the address);
// tls_skip_verify turns verification off.
type httpChecker struct {
	timeout time.Duration
	scheme  string
	method  string
	// target is the path and query of the request; scheme and host are set per check.
	target url.URL
	// host is the Host header; empty means the address dialled.
	host   string
	status statusSet
	match  matcher
	client *http.Client
}

func newHTTPChecker(spec fsm.HealthCheck) (*httpChecker, error) {
	c := &httpChecker{
		timeout: time.Duration(spec.Timeout),
		scheme:  spec.Type,
		method:  spec.Method,
		host:    spec.Host,
	}
	if c.method == "" {
		c.method = http.MethodGet
	}
	if c.method != http.MethodGet && c.method != http.MethodHead {
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
	c.target = *u
	if c.status, err = parseStatusSet(spec.ExpectStatus); err != nil {
		return nil, err
	}
	if c.match, err = newMatcher(spec); err != nil {
		return nil, err
	}
	if !c.match.empty() && c.method == http.MethodHead {
		return nil, specError("method", spec.Method, "a HEAD response has no body for expect or expect_regexp to match; use GET")
	}

	var tlsConf *tls.Config
	if spec.Type == "https" {
		tlsConf = &tls.Config{InsecureSkipVerify: spec.TLSSkipVerify}
		if spec.Host != "" {
			// Verify the certificate for the virtual host, as a browser asking for it would.
			tlsConf.ServerName = hostOnly(spec.Host)
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
			tlsConf.RootCAs = pool
		}
	} else if spec.TLSSkipVerify || spec.CAFile != "" {
		return nil, specError("type", spec.Type, "tls_skip_verify and ca_file need type https")
	}
	dialer := &net.Dialer{KeepAlive: -1} // bounded by the request's context
	c.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never through HTTP_PROXY: the real server itself is checked
			DialContext:            dialer.DialContext,
			TLSClientConfig:        tlsConf,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: maxReply,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// hostOnly strips a port from a Host header value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// Check implements Checker. Reasons: "status 200" (healthy), "status 503 (want 200-299)",
// `"Test Page" not found in body`, "body does not match /re/", with "first 64 KiB of body"
// when the body was longer, "connection refused", "timeout after 1s", "TLS: certificate signed
// by unknown authority".
func (c *httpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	addr := t.Addr()
	if addr.Port() == 0 {
		return result(start, false, noPortReason)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.target
	u.Scheme = c.scheme
	u.Host = addr.String()
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), nil)
	if err != nil {
		return result(start, false, errText(err))
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "troop-probe")
	resp, err := c.client.Do(req)
	if err != nil {
		return result(start, false, failReason(ctx, c.timeout, err))
	}
	defer resp.Body.Close()
	if !c.status.has(resp.StatusCode) {
		return result(start, false, fmt.Sprintf("status %d (want %s)", resp.StatusCode, c.status))
	}
	if !c.match.empty() {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
		if err != nil {
			return result(start, false, failReason(ctx, c.timeout, err))
		}
		truncated := len(body) > maxReply
		if truncated {
			body = body[:maxReply]
		}
		if why := c.match.mismatch(body, "body", "found in", truncated); why != "" {
			return result(start, false, why)
		}
	}
	return result(start, true, "status "+strconv.Itoa(resp.StatusCode))
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
