package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// NewChecker returns the checker for one normalized, validated check spec (fsm.NormalizeService
// and fsm.ValidateService have run on it). The engine calls it when a target's spec changes,
// not per check: everything that can be prepared once is prepared here (regular expressions
// compiled, the CA file read, the HTTP request prebuilt, the DNS question encoded).
//
// The returned Checker is bound to spec: its Check ignores Target.Check and uses only the
// target's addresses, ports and service name. It is safe for concurrent use, holds no goroutine,
// socket or process between checks, and needs no Close: dropping it is enough.
//
// An error means the spec cannot be checked on this director. Most causes are things
// validation already rejects (unknown type, bad regexp or status range); what it cannot see from
// the table alone is a ca_file that is missing or holds no PEM certificate here. Errors name the
// field and the value, like fsm's, and wrap fsm.ErrInvalid.
func NewChecker(spec fsm.HealthCheck) (Checker, error) {
	if spec.Timeout <= 0 {
		spec.Timeout = fsm.Duration(fsm.DefaultCheckTimeout)
	}
	switch spec.Type {
	case "http", "https":
		return newHTTPChecker(spec)
	case "tcp":
		return newTCPChecker(spec)
	case "dns":
		return newDNSChecker(spec)
	case "exec":
		return newExecChecker(spec)
	case "icmp":
		return newICMPChecker(spec, icmpPing, icmpRaw), nil
	case "none":
		return noneChecker{}, nil
	}
	return nil, specError("type", spec.Type, "must be one of %s", strings.Join(fsm.CheckTypes, ", "))
}

// specError is a spec NewChecker refuses, in fsm's field-error shape.
func specError(field, value, reason string, args ...any) error {
	return &fsm.FieldError{
		Field:  "check " + field,
		Value:  value,
		Reason: fmt.Sprintf(reason, args...),
		Kind:   fsm.ErrInvalid,
	}
}

// maxReply bounds what a check reads of an HTTP body or a TCP reply: enough for any health page
// or banner, small enough that thousands of checks cannot fill the director's memory.
const maxReply = 64 << 10

// maxReplyText is how maxReply is said in reasons.
const maxReplyText = "64 KiB"

// maxReason bounds a reason's length: reasons travel in Raft entries and events.
const maxReason = 200

// result finishes a check started at start.
func result(start time.Time, healthy bool, reason string) Result {
	return Result{Healthy: healthy, Reason: clip(reason, maxReason), Duration: time.Since(start)}
}

// clip shortens s to at most n bytes, cutting at a rune boundary and marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// failReason says why a check's I/O failed: its timeout, a cancellation, or the error in words.
// timeout is the spec's timeout, reported as "timeout after <timeout>" whichever deadline hit.
func failReason(ctx context.Context, timeout time.Duration, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return "canceled"
	case timedOut(ctx, err):
		return timeoutReason(timeout)
	}
	return errText(err)
}

// timedOut says the check's deadline ended it: ctx's, or the conn deadline set from it (which
// can fire a moment before ctx's own timer).
func timedOut(ctx context.Context, err error) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT)
}

// errText renders a network, TLS or system error as the words an operator reads: "connection
// refused", "no route to host", "TLS: certificate signed by unknown authority". It drops the
// operation and addresses that Go's errors carry (the target is known from elsewhere).
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var (
		verr   *tls.CertificateVerificationError
		rhErr  tls.RecordHeaderError
		alert  tls.AlertError
		uaErr  x509.UnknownAuthorityError
		hErr   x509.HostnameError
		ciErr  x509.CertificateInvalidError
		errno  syscall.Errno
		urlErr *url.Error
	)
	switch {
	case errors.As(err, &verr):
		return "TLS: " + strings.TrimPrefix(verr.Err.Error(), "x509: ")
	case errors.As(err, &uaErr):
		return "TLS: " + strings.TrimPrefix(uaErr.Error(), "x509: ")
	case errors.As(err, &hErr):
		return "TLS: " + strings.TrimPrefix(hErr.Error(), "x509: ")
	case errors.As(err, &ciErr):
		return "TLS: " + strings.TrimPrefix(ciErr.Error(), "x509: ")
	case errors.As(err, &rhErr):
		return "TLS: the server did not answer with TLS"
	case errors.As(err, &alert):
		return "TLS: alert from the server: " + strings.TrimPrefix(alert.Error(), "tls: ")
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	// Strip the wrappers that add only the operation and the address.
	for {
		var opErr *net.OpError
		switch {
		case errors.As(err, &urlErr) && urlErr.Err != nil:
			err = urlErr.Err
			urlErr = nil
			continue
		case errors.As(err, &opErr) && opErr.Err != nil:
			err = opErr.Err
			continue
		}
		break
	}
	msg := err.Error()
	if msg == "http: server gave HTTP response to HTTPS client" { // net/http's words, not a type
		return "TLS: the server answered in plain HTTP"
	}
	if rest, ok := strings.CutPrefix(msg, "tls: "); ok {
		return "TLS: " + rest
	}
	if rest, ok := strings.CutPrefix(msg, "net/http: "); ok {
		return rest
	}
	return msg
}

// interruptOnDone makes blocked I/O on conn return as soon as ctx ends, for a cancellation as
// well as the deadline. The returned stop waits for the callback if it started, so nothing of
// the check runs after Check returns.
func interruptOnDone(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	fired := make(chan struct{})
	stopFn := context.AfterFunc(ctx, func() {
		defer close(fired)
		conn.SetDeadline(time.Unix(1, 0))
	})
	return func() {
		if !stopFn() {
			<-fired
		}
	}
}

// checkAddr runs check against t's address (the check's port, else the real server's) with the
// spec's timeout on ctx, timing it; a target with no port to check fails at once.
func checkAddr(ctx context.Context, t Target, timeout time.Duration, check func(context.Context, netip.AddrPort) (bool, string)) Result {
	start := time.Now()
	addr := t.Addr()
	if addr.Port() == 0 {
		return result(start, false, noPortReason)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	healthy, reason := check(ctx, addr)
	return result(start, healthy, reason)
}

// noPortReason is the reason when neither the real server nor the check names a port: a
// firewall-mark service's real servers may have port 0, and then the check needs its own.
const noPortReason = "no port to check: the real server has port 0; set the check's port"

// matcher is the expect/expect_regexp pair of an HTTP body or a TCP reply.
type matcher struct {
	expect string
	re     *regexp.Regexp
}

func newMatcher(spec fsm.HealthCheck) (matcher, error) {
	m := matcher{expect: spec.Expect}
	if spec.ExpectRegexp != "" {
		re, err := regexp.Compile(spec.ExpectRegexp)
		if err != nil {
			return matcher{}, specError("expect_regexp", spec.ExpectRegexp, "%v", err)
		}
		m.re = re
	}
	return m, nil
}

// empty says nothing is expected.
func (m matcher) empty() bool { return m.expect == "" && m.re == nil }

// matches says data holds the substring and matches the expression.
func (m matcher) matches(data []byte) bool {
	return (m.expect == "" || bytes.Contains(data, []byte(m.expect))) && (m.re == nil || m.re.Match(data))
}

// mismatch says why data does not match, in the words of what (body, reply) and seen (found in,
// seen in); truncated adds that only the first maxReply bytes were looked at.
func (m matcher) mismatch(data []byte, what, seen string, truncated bool) string {
	if truncated {
		what = "first " + maxReplyText + " of " + what
	}
	if m.expect != "" && !bytes.Contains(data, []byte(m.expect)) {
		return strconv.Quote(m.expect) + " not " + seen + " " + what
	}
	if m.re != nil && !m.re.Match(data) {
		return what + " does not match /" + m.re.String() + "/"
	}
	return ""
}
