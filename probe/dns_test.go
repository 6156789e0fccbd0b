package probe

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/troop-lb/troop/fsm"
)

// testDNSServer answers on 127.0.0.1 over UDP:
//
//	www.example.com.    A 192.0.2.1, 192.0.2.2; AAAA 2001:db8::1; MX 10 mail.example.com.
//	fifty.example.com.  A 192.0.2.50
//	late.example.com.   A 192.0.2.7, after a response with the wrong ID
//	silent.example.com. no response
//	anything else       NXDOMAIN
func testDNSServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, resp := range dnsAnswers(buf[:n]) {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

func dnsAnswers(query []byte) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	a4 := func(s string) dnsmessage.ResourceBody {
		return &dnsmessage.AResource{A: netip.MustParseAddr(s).As4()}
	}
	var answers []dnsmessage.ResourceBody
	rcode := dnsmessage.RCodeSuccess
	id := h.ID
	var out [][]byte
	switch q.Name.String() {
	case "www.example.com.":
		switch q.Type {
		case dnsmessage.TypeA:
			answers = append(answers, a4("192.0.2.1"), a4("192.0.2.2"))
		case dnsmessage.TypeAAAA:
			answers = append(answers, &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::1").As16()})
		case dnsmessage.TypeMX:
			answers = append(answers, &dnsmessage.MXResource{Pref: 10, MX: dnsmessage.MustNewName("mail.example.com.")})
		}
	case "fifty.example.com.":
		answers = append(answers, a4("192.0.2.50"))
	case "late.example.com.":
		out = append(out, dnsResponse(id+1, q, rcode, []dnsmessage.ResourceBody{a4("192.0.2.99")}))
		answers = append(answers, a4("192.0.2.7"))
	case "silent.example.com.":
		return nil
	default:
		rcode = dnsmessage.RCodeNameError
	}
	return append(out, dnsResponse(id, q, rcode, answers))
}

func dnsResponse(id uint16, q dnsmessage.Question, rcode dnsmessage.RCode, answers []dnsmessage.ResourceBody) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, Authoritative: true, RCode: rcode})
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range answers {
		switch a := a.(type) {
		case *dnsmessage.AResource:
			b.AResource(hdr, *a)
		case *dnsmessage.AAAAResource:
			b.AAAAResource(hdr, *a)
		case *dnsmessage.MXResource:
			b.MXResource(hdr, *a)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return msg
}

func TestDNS(t *testing.T) {
	server := testDNSServer(t)
	refused, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.LocalAddr().String()
	refused.Close()
	defer leakCheck(t)()
	for _, tc := range []struct {
		query, qtype, rcode, answer string
		addr                        string
		healthy                     bool
		reason                      string
	}{
		{query: "www.example.com", healthy: true, reason: "rcode NOERROR"},
		{query: "www.example.com.", answer: "192.0.2.2", healthy: true, reason: `rcode NOERROR, answer "192.0.2.2"`},
		{query: "www.example.com", answer: "192.0.2.5", reason: `answer "192.0.2.5" not in [192.0.2.1, 192.0.2.2]`},
		{query: "fifty.example.com", answer: "192.0.2.5", reason: `answer "192.0.2.5" not in [192.0.2.50]`},
		{query: "www.example.com", qtype: "AAAA", answer: "2001:db8::1", healthy: true, reason: `rcode NOERROR, answer "2001:db8::1"`},
		{query: "www.example.com", qtype: "aaaa", answer: "2001:db8::", reason: `answer "2001:db8::" not in [2001:db8::1]`},
		{query: "www.example.com", qtype: "MX", answer: "mail.example.com", healthy: true, reason: `rcode NOERROR, answer "mail.example.com"`},
		{query: "www.example.com", qtype: "TXT", answer: "v=spf1", reason: `answer "v=spf1" not in []`},
		{query: "nope.example.com", reason: "rcode NXDOMAIN (want NOERROR)"},
		{query: "nope.example.com", rcode: "NXDOMAIN", healthy: true, reason: "rcode NXDOMAIN"},
		{query: "www.example.com", rcode: "NXDOMAIN", reason: "rcode NOERROR (want NXDOMAIN)"},
		{query: "late.example.com", answer: "192.0.2.7", healthy: true, reason: `rcode NOERROR, answer "192.0.2.7"`},
		{query: "silent.example.com", reason: "timeout after 200ms"},
		{query: "www.example.com", addr: refusedAddr, reason: "connection refused"},
	} {
		spec := testSpec("dns", func(c *fsm.HealthCheck) {
			c.Query, c.QueryType, c.ExpectRcode, c.ExpectAnswer = tc.query, tc.qtype, tc.rcode, tc.answer
		})
		addr := tc.addr
		if addr == "" {
			addr = server
		}
		r := checkOnce(t, mustChecker(t, spec), testTarget(addr, spec))
		if r.Healthy != tc.healthy || r.Reason != tc.reason {
			t.Errorf("%s %s rcode %q answer %q: got %v %q, want %v %q", tc.query, tc.qtype, tc.rcode, tc.answer, r.Healthy, r.Reason, tc.healthy, tc.reason)
		}
	}
}

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10":  "10.2.0.192.in-addr.arpa.",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
	} {
		if got := reverseName(netip.MustParseAddr(in)); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", in, got, want)
		}
	}
	c, err := newDNSChecker(testSpec("dns", func(c *fsm.HealthCheck) { c.Query = "192.0.2.10"; c.QueryType = "PTR" }))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.q.Name.String(); got != "10.2.0.192.in-addr.arpa." {
		t.Errorf("PTR query for an address asks for %s", got)
	}
}

func TestContainsToken(t *testing.T) {
	for _, tc := range []struct {
		data, want string
		match      bool
	}{
		{"192.0.2.5", "192.0.2.5", true},
		{"192.0.2.50", "192.0.2.5", false},
		{"10.192.0.2.5", "192.0.2.5", true},
		{"2001:db8::10", "2001:db8::1", false},
		{"10 mail.example.com.", "mail.example.com", true},
		{"10 mail.example.com.", "mail.example.co", false},
		{"10 mymail.example.com.", "mail.example.com", false},
		{"v=spf1 include:_spf.example.com ~all", "include:_spf.example.com", true},
		{"v=spf1 -all", "v=spf1", true},
		{"192.0.2.55 192.0.2.5", "192.0.2.5", true},
	} {
		if got := containsToken(tc.data, tc.want); got != tc.match {
			t.Errorf("containsToken(%q, %q) = %v, want %v", tc.data, tc.want, got, tc.match)
		}
	}
}
