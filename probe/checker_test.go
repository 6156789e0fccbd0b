package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// testTimeout is the checks' timeout in these tests: short, so the package's tests stay quick.
const testTimeout = 200 * time.Millisecond

// testSpec is a check spec of the given type with the test timeout, normalized as the FSM does.
func testSpec(typ string, edit func(*fsm.HealthCheck)) fsm.HealthCheck {
	s := fsm.Service{
		Name: "web", VIP: netip.MustParseAddr("192.0.2.1"), Port: 80,
		Check: &fsm.HealthCheck{Type: typ, Interval: fsm.Duration(time.Second), Timeout: fsm.Duration(testTimeout)},
	}
	if edit != nil {
		edit(s.Check)
	}
	fsm.NormalizeService(&s)
	return *s.Check
}

// testTarget is the real server at addr of a service "web" on 192.0.2.1:80.
func testTarget(addr string, spec fsm.HealthCheck) Target {
	return Target{
		Service:     "web",
		VIP:         netip.MustParseAddr("192.0.2.1"),
		ServicePort: 80,
		Real:        netip.MustParseAddrPort(addr),
		Check:       spec,
	}
}

// mustChecker builds the checker of spec or fails the test.
func mustChecker(t *testing.T, spec fsm.HealthCheck) Checker {
	t.Helper()
	c, err := NewChecker(spec)
	if err != nil {
		t.Fatalf("NewChecker(%+v): %v", spec, err)
	}
	return c
}

// checkOnce runs one check as the scheduler would (the timeout as ctx's deadline) and checks
// that it kept to the deadline.
func checkOnce(t *testing.T, c Checker, target Target) Result {
	t.Helper()
	timeout := time.Duration(target.Check.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	r := c.Check(ctx, target)
	if took := time.Since(start); took > timeout+150*time.Millisecond {
		t.Errorf("check took %v, beyond its %v timeout", took, timeout)
	}
	if r.Duration <= 0 && r.Reason != "no check" {
		t.Errorf("result has no duration: %+v", r)
	}
	return r
}

// wantResult compares a result's verdict and reason.
func wantResult(t *testing.T, r Result, healthy bool, reason string) {
	t.Helper()
	if r.Healthy != healthy || r.Reason != reason {
		t.Errorf("got healthy=%v reason %q; want healthy=%v reason %q", r.Healthy, r.Reason, healthy, reason)
	}
}

// freeTCPAddr is a loopback address where nothing listens (a port just released).
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

var goroutineIDRE = regexp.MustCompile(`(?m)^goroutine (\d+) `)

// goroutines maps the IDs of the running goroutines to their stacks.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if m := goroutineIDRE.FindStringSubmatch(g); m != nil {
			out[m[1]] = g
		}
	}
	return out
}

// leakCheck notes the running goroutines; the returned func fails the test if goroutines
// started since (by the checks, or by the test servers on their behalf: a connection left
// open keeps its server goroutine) are still running a moment later. Call it after starting
// the test's servers: `defer leakCheck(t)()`.
func leakCheck(t *testing.T) func() {
	t.Helper()
	before := goroutines()
	return func() {
		t.Helper()
		var left []string
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			left = left[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !strings.Contains(stack, "probe.leakCheck") {
					left = append(left, stack)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("%d goroutines left running:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
	}
}

func TestNewCheckerKinds(t *testing.T) {
	for _, typ := range fsm.CheckTypes {
		spec := testSpec(typ, func(c *fsm.HealthCheck) {
			c.Query = "www.example.com"
			c.Command = []string{"/bin/true"}
		})
		if _, err := NewChecker(spec); err != nil {
			t.Errorf("NewChecker(%s): %v", typ, err)
		}
	}
	// A spec that skipped normalization gets the same defaults.
	for _, typ := range fsm.CheckTypes {
		if _, err := NewChecker(fsm.HealthCheck{Type: typ, Query: "example.com", Command: []string{"x"}}); err != nil {
			t.Errorf("NewChecker(%s) without normalization: %v", typ, err)
		}
	}
}

func TestNewCheckerRejects(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec fsm.HealthCheck
		want string
	}{
		{fsm.HealthCheck{Type: "smtp"}, `check type: "smtp": must be one of http, https, tcp, dns, exec, icmp, none`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.ExpectRegexp = "(" }), "check expect_regexp: \"(\": error parsing regexp: missing closing ): `(`"},
		{testSpec("tcp", func(c *fsm.HealthCheck) { c.ExpectRegexp = "[a" }), "check expect_regexp: \"[a\": error parsing regexp: missing closing ]: `[a`"},
		{testSpec("http", func(c *fsm.HealthCheck) { c.ExpectStatus = []string{"200", "399-200"} }), `check expect_status: "399-200": must be a status code like 200 or a range like 200-399`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.ExpectStatus = []string{"2xx"} }), `check expect_status: "2xx": must be a status code like 200 or a range like 200-399`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.Method = "POST" }), `check method: "POST": must be GET or HEAD`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.Method = "HEAD"; c.Expect = "ok" }), `check method: "HEAD": a HEAD response has no body for expect or expect_regexp to match; use GET`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.Path = "http://x/" }), `check path: "http://x/": must be a path starting with /`},
		{testSpec("http", func(c *fsm.HealthCheck) { c.TLSSkipVerify = true }), `check type: "http": tls_skip_verify and ca_file need type https`},
		{testSpec("https", func(c *fsm.HealthCheck) { c.CAFile = filepath.Join(dir, "missing.pem") }), `check ca_file: "` + dir + `/missing.pem": open ` + dir + `/missing.pem: no such file or directory`},
		{testSpec("https", func(c *fsm.HealthCheck) { c.CAFile = notPEM }), `check ca_file: "` + notPEM + `": holds no PEM certificate`},
		{testSpec("dns", nil), `check query: is required for a dns check`},
		{testSpec("dns", func(c *fsm.HealthCheck) { c.Query = "example.com"; c.QueryType = "ANY" }), `check query_type: "ANY": must be one of A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR`},
		{testSpec("dns", func(c *fsm.HealthCheck) { c.Query = "example.com"; c.ExpectRcode = "OK" }), `check expect_rcode: "OK": must be a response code name such as NOERROR, NXDOMAIN, SERVFAIL or REFUSED`},
		{testSpec("dns", func(c *fsm.HealthCheck) { c.Query = "a..example.com" }), `check query: "a..example.com": Name: zero length segment`},
		{testSpec("exec", nil), `check command: is required for an exec check`},
	} {
		_, err := NewChecker(tc.spec)
		if err == nil || err.Error() != tc.want {
			t.Errorf("NewChecker(%+v):\n got %v\nwant %s", tc.spec, err, tc.want)
		}
		if err != nil && !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("NewChecker(%+v): %v does not wrap fsm.ErrInvalid", tc.spec, err)
		}
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijkl", 10, "abcdefg…"},
		{"ééééé", 8, "éé…"},
	} {
		if got := clip(tc.s, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestTimeoutReasonUsesSpecTimeout(t *testing.T) {
	// A caller's deadline shorter than the spec's still reports the spec's timeout, and a
	// cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := failReason(ctx, time.Second, context.Canceled); got != "canceled" {
		t.Errorf("canceled ctx: %q", got)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 0)
	defer cancel()
	if got := failReason(ctx, time.Second, context.DeadlineExceeded); got != "timeout after 1s" {
		t.Errorf("expired ctx: %q", got)
	}
}

func TestNone(t *testing.T) {
	c := mustChecker(t, testSpec("none", nil))
	r := c.Check(context.Background(), testTarget("192.0.2.10:80", testSpec("none", nil)))
	wantResult(t, r, true, "no check")
}

// sortedLines is the lines of s, sorted, without blank ones.
func sortedLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestErrText(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dial(syscall.ECONNREFUSED), "connection refused"},
		{dial(syscall.EHOSTUNREACH), "no route to host"},
		{dial(syscall.ENETUNREACH), "network is unreachable"},
		{&url.Error{Op: "Get", URL: "http://192.0.2.10/", Err: dial(syscall.ECONNRESET)}, "connection reset by peer"},
		{&url.Error{Op: "Get", URL: "http://192.0.2.10/", Err: io.EOF}, "connection closed by the server"},
		{&net.OpError{Op: "remote error", Err: tls.AlertError(42)}, "TLS: alert from the server: bad certificate"},
		{&url.Error{Op: "Get", URL: "http://192.0.2.10/", Err: errors.New("net/http: server response headers exceeded 65536 bytes; aborted")},
			"server response headers exceeded 65536 bytes; aborted"},
		{&net.OpError{Op: "read", Err: errors.New("tls: unsupported protocol version")}, "TLS: unsupported protocol version"},
	} {
		if got := errText(tc.err); got != tc.want {
			t.Errorf("errText(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
