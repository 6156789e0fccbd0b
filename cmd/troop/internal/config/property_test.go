package config

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/troop-lb/troop/fsm"
)

// The fuzz targets rarely mutate their way to a valid table, so this property generates valid
// tables directly and checks that they survive FormatTable and ParseTable.
func TestFormatParseProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tb := genTable().Draw(t, "table")
		want := normalized(tb)
		if err := fsm.ValidateTable(&want); err != nil {
			t.Fatalf("generated an invalid table (fix the generator or fsm): %v\n%s", err, dump(want))
		}
		out := FormatTable(tb)
		got, err := ParseTable("prop.hcl", out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %s\nwant %s\nformatted:\n%s", dump(got), dump(want), out)
		}
	})
}

// text draws strings with the characters HCL escapes ($, %, {, quotes, backslashes, control
// characters) and some non-ASCII, all valid UTF-8 in NFC, which HCL keeps as they are.
var anyText = rapid.StringOfN(rapid.SampledFrom([]rune("ab Z09/.-_$%{}\"\\\n\t\r\x00\x7fü€😀")), 0, 12, -1)

func genTable() *rapid.Generator[fsm.Table] {
	return rapid.Custom(func(t *rapid.T) fsm.Table {
		var tb fsm.Table
		// Distinct names, and distinct fwmarks / ports so kernel keys do not collide.
		names := rapid.SliceOfNDistinct(rapid.StringMatching(`[a-z0-9][a-z0-9._-]{0,8}`), 0, 4, func(s string) string { return s }).Draw(t, "names")
		for i, name := range names {
			tb.Services = append(tb.Services, genService(t, name, i))
		}
		vips := rapid.Permutation([]string{"192.0.2.1", "192.0.2.2/24", "2001:db8::1", "2001:db8::2/64", "198.51.100.1/32", "::ffff:198.51.100.3"}).Draw(t, "vips")
		groups := rapid.SliceOfNDistinct(rapid.StringMatching(`[a-z][a-z0-9]{0,5}`), 0, 2, func(s string) string { return s }).Draw(t, "groups")
		for i, name := range groups {
			g := fsm.VIPGroup{Name: name, Interface: rapid.SampledFrom([]string{"", "eth0", "bond0.100"}).Draw(t, "iface")}
			for _, v := range vips[i*2 : i*2+2] {
				p, _ := parsePrefix(v)
				g.VIPs = append(g.VIPs, p)
			}
			tb.VIPGroups = append(tb.VIPGroups, g)
		}
		return tb
	})
}

func genService(t *rapid.T, name string, i int) fsm.Service {
	s := fsm.Service{Name: name}
	v6 := rapid.Bool().Draw(t, "v6")
	addr := func(host int) netip.Addr {
		if v6 {
			return netip.MustParseAddr("2001:db8::" + strconv.Itoa(host))
		}
		a := netip.MustParseAddr("192.0.2." + strconv.Itoa(host))
		if rapid.Bool().Draw(t, "mapped") {
			a = netip.AddrFrom16(a.As16()) // ::ffff:192.0.2.x, which normalization unmaps
		}
		return a
	}
	if rapid.Bool().Draw(t, "fwmark") {
		s.FWMark = uint32(i + 1)
		if rapid.Bool().Draw(t, "fwmark vip") {
			s.VIP = addr(100 + i)
		} else {
			s.Family = map[bool]fsm.Family{false: fsm.IPv4, true: fsm.IPv6}[v6]
		}
	} else {
		s.VIP = addr(100 + i)
		s.Port = rapid.Uint16Range(1, 65535).Draw(t, "port")
		s.Protocol = rapid.SampledFrom([]fsm.Protocol{"", fsm.TCP, fsm.UDP, fsm.SCTP}).Draw(t, "protocol")
	}
	s.Scheduler = rapid.SampledFrom(append([]fsm.Scheduler{""}, fsm.Schedulers...)).Draw(t, "scheduler")
	switch s.Scheduler {
	case "sh":
		s.SchedFlags = rapid.SliceOfNDistinct(rapid.SampledFrom([]fsm.SchedulerFlag{fsm.FlagSHFallback, fsm.FlagSHPort}), 0, 2, func(f fsm.SchedulerFlag) fsm.SchedulerFlag { return f }).Draw(t, "flags")
	case "mh":
		s.SchedFlags = rapid.SliceOfNDistinct(rapid.SampledFrom([]fsm.SchedulerFlag{fsm.FlagMHFallback, fsm.FlagMHPort}), 0, 2, func(f fsm.SchedulerFlag) fsm.SchedulerFlag { return f }).Draw(t, "flags")
	}
	s.Forwarding = rapid.SampledFrom([]fsm.Forwarding{"", fsm.DR, fsm.NAT, fsm.TUN}).Draw(t, "forwarding")
	s.Quiescent = rapid.Bool().Draw(t, "quiescent")
	if rapid.Bool().Draw(t, "persistence") {
		bits := 32
		if v6 {
			bits = 128
		}
		s.Persistence = &fsm.Persistence{
			Timeout: fsm.Duration(time.Duration(rapid.IntRange(1, 365*24*3600).Draw(t, "timeout")) * time.Second),
			Netmask: rapid.IntRange(0, bits).Draw(t, "netmask"),
		}
	}
	if rapid.Bool().Draw(t, "check") {
		s.Check = genCheck(t)
	}
	if rapid.Bool().Draw(t, "fallback") {
		s.Fallback = &fsm.Fallback{
			Address:    addr(rapid.IntRange(1, 250).Draw(t, "fallback host")),
			Port:       rapid.Uint16Range(0, 65535).Draw(t, "fallback port"),
			Forwarding: rapid.SampledFrom([]fsm.Forwarding{"", fsm.DR, fsm.NAT, fsm.TUN}).Draw(t, "fallback forwarding"),
		}
	}
	hosts := rapid.SliceOfNDistinct(rapid.IntRange(1, 250), 0, 4, func(h int) int { return h }).Draw(t, "hosts")
	for _, h := range hosts {
		r := fsm.Real{
			Address:        addr(h),
			Forwarding:     rapid.SampledFrom([]fsm.Forwarding{"", fsm.DR, fsm.NAT, fsm.TUN}).Draw(t, "real forwarding"),
			UpperThreshold: rapid.Uint32Range(0, 1000).Draw(t, "upper"),
			Admin:          rapid.SampledFrom(append([]fsm.AdminState{""}, fsm.AdminStates...)).Draw(t, "admin"),
		}
		r.LowerThreshold = rapid.Uint32Range(0, r.UpperThreshold).Draw(t, "lower")
		if rapid.Bool().Draw(t, "weighted") {
			r.Weight = new(rapid.IntRange(0, 65535).Draw(t, "weight"))
		}
		// Only NAT may change the port of an address-based service.
		fwd := cmp.Or(r.Forwarding, s.Forwarding, fsm.DefaultForwarding)
		if s.FWMark != 0 || fwd == fsm.NAT {
			r.Port = rapid.Uint16Range(0, 65535).Draw(t, "real port")
		}
		s.Reals = append(s.Reals, r)
	}
	return s
}

func genCheck(t *rapid.T) *fsm.HealthCheck {
	c := &fsm.HealthCheck{Type: rapid.SampledFrom(fsm.CheckTypes).Draw(t, "type")}
	c.Port = rapid.Uint16Range(0, 65535).Draw(t, "check port")
	if rapid.Bool().Draw(t, "interval") {
		c.Interval = fsm.Duration(time.Duration(rapid.IntRange(10, 120_000).Draw(t, "interval ms")) * time.Millisecond)
	}
	limit := cmp.Or(time.Duration(c.Interval), fsm.DefaultCheckInterval)
	if rapid.Bool().Draw(t, "timeout") {
		c.Timeout = fsm.Duration(rapid.Int64Range(1, int64(limit)-1).Draw(t, "timeout ns"))
	}
	c.Rise = rapid.SampledFrom([]int{0, 1, 2, 100}).Draw(t, "rise") // 0: not written, the default
	c.Fall = rapid.SampledFrom([]int{0, 1, 3, 100}).Draw(t, "fall")
	c.InitialState = rapid.SampledFrom([]fsm.Health{"", fsm.HealthUp, fsm.HealthDown}).Draw(t, "initial")
	if c.Type == "http" || c.Type == "https" {
		c.Method = rapid.SampledFrom([]string{"", "GET", "HEAD"}).Draw(t, "method")
		if rapid.Bool().Draw(t, "path") {
			c.Path = "/" + anyText.Draw(t, "path")
		}
		c.ExpectStatus = rapid.SliceOfN(rapid.SampledFrom([]string{"200", "200-299", "301", "404-404"}), 0, 3).Draw(t, "status")
	}
	if c.Type == "https" {
		c.TLSSkipVerify = rapid.Bool().Draw(t, "skip verify")
		c.CAFile = anyText.Draw(t, "ca")
	}
	c.Host = anyText.Draw(t, "host")
	c.Expect = anyText.Draw(t, "expect")
	c.ExpectRegexp = rapid.SampledFrom([]string{"", "^OK$", `a\.b{2}`, `\$\{x\}`}).Draw(t, "regexp")
	c.Send = anyText.Draw(t, "send")
	c.Query = anyText.Draw(t, "query")
	if c.Type == "dns" && c.Query == "" {
		c.Query = "example.org."
	}
	c.QueryType = rapid.SampledFrom([]string{"", "A", "AAAA", "SRV"}).Draw(t, "qtype")
	c.ExpectRcode = rapid.SampledFrom([]string{"", "NOERROR", "NXDOMAIN"}).Draw(t, "rcode")
	c.ExpectAnswer = anyText.Draw(t, "answer")
	c.Command = rapid.SliceOfN(anyText, 0, 3).Draw(t, "command")
	if len(c.Command) == 0 {
		c.Command = nil // the parser reads an absent list as nil
	}
	if c.Type == "exec" && (len(c.Command) == 0 || !strings.HasPrefix(c.Command[0], "/")) {
		c.Command = slices.Concat([]string{"/bin/true"}, c.Command)
	}
	if c.Method == "HEAD" && (c.Expect != "" || c.ExpectRegexp != "") {
		c.Method = "GET" // a HEAD response has no body to look in: fsm refuses the pair
	}
	if len(c.ExpectStatus) == 0 {
		c.ExpectStatus = nil
	}
	return c
}
