package probe

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/troop-lb/troop/fsm"
)

// dnsQueryTypes are the query types a dns check may ask for.
var dnsQueryTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME,
	"MX": dnsmessage.TypeMX, "NS": dnsmessage.TypeNS, "TXT": dnsmessage.TypeTXT,
	"SOA": dnsmessage.TypeSOA, "SRV": dnsmessage.TypeSRV, "PTR": dnsmessage.TypePTR,
}

// dnsRcodes are the response codes expect_rcode may name (RFC 1035 and 2136).
var dnsRcodes = map[string]dnsmessage.RCode{
	"NOERROR": dnsmessage.RCodeSuccess, "FORMERR": dnsmessage.RCodeFormatError,
	"SERVFAIL": dnsmessage.RCodeServerFailure, "NXDOMAIN": dnsmessage.RCodeNameError,
	"NOTIMP": dnsmessage.RCodeNotImplemented, "REFUSED": dnsmessage.RCodeRefused,
	"YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
}

func rcodeName(rc dnsmessage.RCode) string {
	for name, c := range dnsRcodes {
		if c == rc {
			return name
		}
	}
	return "RCODE" + strconv.Itoa(int(rc))
}

// dnsChecker sends one UDP query to the real server and judges the response code and,
// with expect_answer, the answer section. One datagram per check: a lost one is what fall is
// for. A truncated response is judged on what it carries (there is no retry over TCP).
type dnsChecker struct {
	timeout time.Duration
	q       dnsmessage.Question
	rcode   dnsmessage.RCode
	answer  string
}

func newDNSChecker(spec fsm.HealthCheck) (*dnsChecker, error) {
	c := &dnsChecker{timeout: time.Duration(spec.Timeout), answer: spec.ExpectAnswer}
	qt := strings.ToUpper(spec.QueryType)
	if qt == "" {
		qt = "A"
	}
	typ, ok := dnsQueryTypes[qt]
	if !ok {
		return nil, specError("query_type", spec.QueryType, "must be one of A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR")
	}
	rc := strings.ToUpper(spec.ExpectRcode)
	if rc == "" {
		rc = "NOERROR"
	}
	if c.rcode, ok = dnsRcodes[rc]; !ok {
		return nil, specError("expect_rcode", spec.ExpectRcode, "must be a response code name such as NOERROR, NXDOMAIN, SERVFAIL or REFUSED")
	}
	qname := spec.Query
	if a, err := netip.ParseAddr(qname); err == nil && typ == dnsmessage.TypePTR {
		qname = reverseName(a)
	}
	if qname == "" {
		return nil, specError("query", "", "is required for a dns check")
	}
	if !strings.HasSuffix(qname, ".") {
		qname += "."
	}
	name, err := dnsmessage.NewName(qname)
	if err != nil {
		return nil, specError("query", spec.Query, "%v", err)
	}
	c.q = dnsmessage.Question{Name: name, Type: typ, Class: dnsmessage.ClassINET}
	// Build once to reject what the encoder refuses (empty labels, labels over 63 bytes).
	if _, err := c.query(0); err != nil {
		return nil, specError("query", spec.Query, "%v", err)
	}
	return c, nil
}

// reverseName is the PTR name of an address: 1.2.0.192.in-addr.arpa. or the ip6.arpa nibbles.
func reverseName(a netip.Addr) string {
	var b strings.Builder
	if a.Is4() || a.Is4In6() {
		ip := a.Unmap().As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.in-addr.arpa.", ip[3], ip[2], ip[1], ip[0])
		return b.String()
	}
	ip := a.As16()
	const hex = "0123456789abcdef"
	for i := len(ip) - 1; i >= 0; i-- {
		b.WriteByte(hex[ip[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[ip[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

func (c *dnsChecker) query(id uint16) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(c.q); err != nil {
		return nil, err
	}
	return b.Finish()
}

// Check implements Checker. Reasons: "rcode NOERROR" (healthy, with `, answer "192.0.2.5"`
// when one was expected), "rcode NXDOMAIN (want NOERROR)", `answer "192.0.2.5" not in
// [192.0.2.1, 192.0.2.2]`, "timeout after 1s", "connection refused" (an ICMP port unreachable).
func (c *dnsChecker) Check(ctx context.Context, t Target) Result {
	return checkAddr(ctx, t, c.timeout, c.ask)
}

// ask runs the check against addr before ctx ends.
func (c *dnsChecker) ask(ctx context.Context, addr netip.AddrPort) (healthy bool, reason string) {
	id := uint16(rand.Uint32())
	msg, err := c.query(id)
	if err != nil {
		return false, err.Error()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return false, failReason(ctx, c.timeout, err)
	}
	defer conn.Close()
	stop := interruptOnDone(ctx, conn)
	defer stop()
	if _, err := conn.Write(msg); err != nil {
		return false, failReason(ctx, c.timeout, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return false, failReason(ctx, c.timeout, err)
		}
		healthy, reason, ours := c.judge(buf[:n], id)
		if ours {
			return healthy, reason
		}
		// Not a response to this query (a late one to an earlier check, or garbage): wait on.
	}
}

// judge reads a response; ours is false when it does not answer this query.
func (c *dnsChecker) judge(msg []byte, id uint16) (healthy bool, reason string, ours bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.ID != id || !h.Response {
		return false, "", false
	}
	q, err := p.Question()
	if err != nil || q.Type != c.q.Type || q.Class != c.q.Class || !strings.EqualFold(q.Name.String(), c.q.Name.String()) {
		return false, "", false
	}
	if h.RCode != c.rcode {
		return false, fmt.Sprintf("rcode %s (want %s)", rcodeName(h.RCode), rcodeName(c.rcode)), true
	}
	if c.answer == "" {
		return true, "rcode " + rcodeName(h.RCode), true
	}
	if err := p.SkipAllQuestions(); err != nil {
		return false, "malformed response: " + err.Error(), true
	}
	var seen []string
	for {
		rh, err := p.AnswerHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			return false, "malformed response: " + err.Error(), true
		}
		data, err := renderRR(&p, rh)
		if err != nil {
			return false, "malformed response: " + err.Error(), true
		}
		if data == "" {
			continue
		}
		if containsToken(data, c.answer) {
			return true, "rcode " + rcodeName(h.RCode) + ", answer " + strconv.Quote(c.answer), true
		}
		seen = append(seen, data)
	}
	list := clip(strings.Join(seen, ", "), 120)
	if h.Truncated {
		list += " (truncated)"
	}
	return false, fmt.Sprintf("answer %q not in [%s]", c.answer, list), true
}

// renderRR renders an answer's data as dig shows it ("192.0.2.1", "10 mail.example.com.");
// types a dns check cannot ask for are skipped and render as "".
func renderRR(p *dnsmessage.Parser, h dnsmessage.ResourceHeader) (string, error) {
	switch h.Type {
	case dnsmessage.TypeA:
		r, err := p.AResource()
		return netip.AddrFrom4(r.A).String(), err
	case dnsmessage.TypeAAAA:
		r, err := p.AAAAResource()
		return netip.AddrFrom16(r.AAAA).String(), err
	case dnsmessage.TypeCNAME:
		r, err := p.CNAMEResource()
		return r.CNAME.String(), err
	case dnsmessage.TypeMX:
		r, err := p.MXResource()
		return fmt.Sprintf("%d %s", r.Pref, r.MX.String()), err
	case dnsmessage.TypeNS:
		r, err := p.NSResource()
		return r.NS.String(), err
	case dnsmessage.TypeTXT:
		r, err := p.TXTResource()
		return strings.Join(r.TXT, ""), err
	case dnsmessage.TypeSOA:
		r, err := p.SOAResource()
		return fmt.Sprintf("%s %s %d %d %d %d %d", r.NS.String(), r.MBox.String(), r.Serial, r.Refresh, r.Retry, r.Expire, r.MinTTL), err
	case dnsmessage.TypeSRV:
		r, err := p.SRVResource()
		return fmt.Sprintf("%d %d %d %s", r.Priority, r.Weight, r.Port, r.Target.String()), err
	case dnsmessage.TypePTR:
		r, err := p.PTRResource()
		return r.PTR.String(), err
	}
	return "", p.SkipAnswer()
}

// containsToken says want occurs in data as a whole token: not inside a longer number, label
// or address, so that "192.0.2.5" does not match "192.0.2.50" and "2001:db8::1" does not match
// "2001:db8::10", while "mail.example.com" matches "10 mail.example.com.".
func containsToken(data, want string) bool {
	for i := 0; ; {
		j := strings.Index(data[i:], want)
		if j < 0 {
			return false
		}
		s, e := i+j, i+j+len(want)
		if (s == 0 || !tokenByte(data[s-1]) || !tokenByte(want[0])) &&
			(e == len(data) || !tokenByte(data[e]) || !tokenByte(want[len(want)-1])) {
			return true
		}
		i = s + 1
	}
}

// tokenByte is a byte that continues a number, label or address.
func tokenByte(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '-' || b == '_' || b == ':'
}
