package config

import (
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/troop-lb/troop/fsm"
)

// FormatTable writes t in the format ParseTable reads, for `troop import` and for tests. The
// output is deterministic: t is normalized (on a copy; t is not modified), so services, groups,
// real servers and flags come out sorted. It is minimal: a field is left out when it is empty or
// holds the value normalization would fill in anyway, so an imported table reads like a
// hand-written one.
//
// For a valid t, ParseTable(FormatTable(t)) returns the normalized t, provided its strings are
// valid UTF-8 in Unicode NFC (HCL normalizes strings to NFC and replaces invalid bytes) and its
// empty lists are nil (the parser reads an absent list as nil). An invalid t is written as well
// as it can be and will not parse back.
func FormatTable(t fsm.Table) []byte {
	t = t.Clone()
	fsm.NormalizeTable(&t)
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	for i := range t.Services {
		if i > 0 {
			root.AppendNewline()
		}
		s := &t.Services[i]
		writeService(root.AppendNewBlock("service", []string{s.Name}).Body(), s)
	}
	for i := range t.VIPGroups {
		if i > 0 || len(t.Services) > 0 {
			root.AppendNewline()
		}
		g := &t.VIPGroups[i]
		writeVIPGroup(root.AppendNewBlock("vip_group", []string{g.Name}).Body(), g)
	}
	return hclwrite.Format(f.Bytes())
}

func writeService(b *hclwrite.Body, s *fsm.Service) {
	// What normalization gives a service of this kind (address or firewall mark) with nothing set.
	dflt := fsm.Service{Port: s.Port, FWMark: s.FWMark, Fallback: &fsm.Fallback{}}
	fsm.NormalizeService(&dflt)

	setAddr(b, "vip", s.VIP)
	setUint(b, "port", s.Port)
	setText(b, "protocol", s.Protocol, dflt.Protocol)
	setUint(b, "fwmark", s.FWMark)
	setText(b, "family", s.Family, "")
	setText(b, "scheduler", s.Scheduler, dflt.Scheduler)
	setTexts(b, "sched_flags", s.SchedFlags)
	setText(b, "forwarding", s.Forwarding, dflt.Forwarding)
	setBool(b, "quiescent", s.Quiescent)
	if p := s.Persistence; p != nil {
		pb := b.AppendNewBlock("persistence", nil).Body()
		setDuration(pb, "timeout", p.Timeout, 0)
		setInt(pb, "netmask", p.Netmask)
	}
	if c := s.Check; c != nil {
		writeCheck(b.AppendNewBlock("check", []string{c.Type}).Body(), c)
	}
	if fb := s.Fallback; fb != nil {
		fbb := b.AppendNewBlock("fallback", nil).Body()
		setAddr(fbb, "address", fb.Address)
		if fb.Port != dflt.Fallback.Port {
			setUint(fbb, "port", fb.Port)
		}
		setText(fbb, "forwarding", fb.Forwarding, "")
	}
	for i := range s.Reals {
		writeReal(b, s, &s.Reals[i])
	}
}

func writeCheck(b *hclwrite.Body, c *fsm.HealthCheck) {
	// Defaults depend on the type (http gets method and path) and the timeout's on the interval.
	base := normalizedCheck(fsm.HealthCheck{Type: c.Type})
	dflt := normalizedCheck(fsm.HealthCheck{Type: c.Type, Interval: c.Interval})

	setUint(b, "port", c.Port)
	setDuration(b, "interval", c.Interval, base.Interval)
	setDuration(b, "timeout", c.Timeout, dflt.Timeout)
	if c.Rise != dflt.Rise {
		setInt(b, "rise", c.Rise)
	}
	if c.Fall != dflt.Fall {
		setInt(b, "fall", c.Fall)
	}
	setText(b, "initial_state", c.InitialState, dflt.InitialState)
	setText(b, "method", c.Method, dflt.Method)
	setText(b, "path", c.Path, dflt.Path)
	setText(b, "host", c.Host, "")
	setTexts(b, "expect_status", c.ExpectStatus)
	setText(b, "expect", c.Expect, "")
	setText(b, "expect_regexp", c.ExpectRegexp, "")
	setBool(b, "tls_skip_verify", c.TLSSkipVerify)
	setText(b, "ca_file", c.CAFile, "")
	setText(b, "send", c.Send, "")
	setText(b, "query", c.Query, "")
	setText(b, "query_type", c.QueryType, dflt.QueryType)
	setText(b, "expect_rcode", c.ExpectRcode, dflt.ExpectRcode)
	setText(b, "expect_answer", c.ExpectAnswer, "")
	setTexts(b, "command", c.Command)
}

// normalizedCheck returns c with fsm's defaults filled in.
func normalizedCheck(c fsm.HealthCheck) fsm.HealthCheck {
	fsm.NormalizeService(&fsm.Service{Check: &c})
	return c
}

// writeReal writes one real block, labelled with the bare address when the port is the one the
// real server would inherit anyway.
func writeReal(b *hclwrite.Body, s *fsm.Service, r *fsm.Real) {
	probe := fsm.Service{Port: s.Port, FWMark: s.FWMark, Reals: []fsm.Real{{Address: r.Address}}}
	fsm.NormalizeService(&probe)
	dflt := probe.Reals[0]

	label := r.Address.String()
	if r.Port != dflt.Port {
		label = netip.AddrPortFrom(r.Address, r.Port).String()
	}
	blk := hclwrite.NewBlock("real", []string{label})
	rb := blk.Body()
	if r.Weight != nil { // even 0 or 1: an explicit weight is not the same as none
		rb.SetAttributeValue("weight", cty.NumberIntVal(int64(*r.Weight)))
	}
	setText(rb, "forwarding", r.Forwarding, "")
	setUint(rb, "upper_threshold", r.UpperThreshold)
	setUint(rb, "lower_threshold", r.LowerThreshold)
	setText(rb, "admin", r.Admin, dflt.Admin)
	if len(rb.Attributes()) > 0 {
		b.AppendBlock(blk)
		return
	}
	// A real server with nothing but defaults is the common case: keep it on one line.
	toks := hclwrite.Tokens{{Type: hclsyntax.TokenIdent, Bytes: []byte("real")}}
	toks = append(toks, hclwrite.TokensForValue(cty.StringVal(label))...)
	toks = append(toks,
		&hclwrite.Token{Type: hclsyntax.TokenOBrace, Bytes: []byte("{")},
		&hclwrite.Token{Type: hclsyntax.TokenCBrace, Bytes: []byte("}")},
		&hclwrite.Token{Type: hclsyntax.TokenNewline, Bytes: []byte("\n")},
	)
	b.AppendUnstructuredTokens(toks)
}

func writeVIPGroup(b *hclwrite.Body, g *fsm.VIPGroup) {
	setText(b, "interface", g.Interface, "")
	vips := make([]string, len(g.VIPs))
	for i, p := range g.VIPs {
		vips[i] = p.String()
		if p.IsValid() && p.Bits() == p.Addr().BitLen() {
			vips[i] = p.Addr().String() // a host prefix is what a bare address means
		}
	}
	setTexts(b, "vips", vips)
}

// The set* helpers write one attribute unless it holds its default (the zero value, or the
// value given), which ParseTable and fsm.NormalizeTable would restore.

func setText[T ~string](b *hclwrite.Body, name string, v, dflt T) {
	if v != "" && v != dflt {
		b.SetAttributeValue(name, cty.StringVal(string(v)))
	}
}

func setTexts[T ~string](b *hclwrite.Body, name string, vs []T) {
	if len(vs) == 0 {
		return
	}
	vals := make([]cty.Value, len(vs))
	for i, v := range vs {
		vals[i] = cty.StringVal(string(v))
	}
	b.SetAttributeValue(name, cty.TupleVal(vals))
}

func setUint[T ~uint16 | ~uint32](b *hclwrite.Body, name string, v T) {
	if v != 0 {
		b.SetAttributeValue(name, cty.NumberUIntVal(uint64(v)))
	}
}

func setInt(b *hclwrite.Body, name string, v int) {
	if v != 0 {
		b.SetAttributeValue(name, cty.NumberIntVal(int64(v)))
	}
}

func setBool(b *hclwrite.Body, name string, v bool) {
	if v {
		b.SetAttributeValue(name, cty.True)
	}
}

func setDuration(b *hclwrite.Body, name string, v, dflt fsm.Duration) {
	if v != 0 && v != dflt {
		b.SetAttributeValue(name, cty.StringVal(formatDuration(time.Duration(v))))
	}
}

// formatDuration writes a duration as a person would: "5m" and "1h", not Go's "5m0s" and
// "1h0m0s". time.ParseDuration reads both.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func setAddr(b *hclwrite.Body, name string, a netip.Addr) {
	if a.IsValid() {
		b.SetAttributeValue(name, cty.StringVal(a.String()))
	}
}
