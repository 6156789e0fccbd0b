package config

import (
	"math"
	"net/netip"
	"strconv"

	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/troop-lb/troop/fsm"
)

// ParseTable reads a declarative table file (the input of `troop plan -f` and `troop apply -f`),
// normalizes it with fsm.NormalizeTable and validates it with fsm.ValidateService,
// fsm.ValidateGroup and fsm.ValidateTable. On any problem it returns a zero Table and a
// Diagnostics error listing every decoding problem, or, if the file decoded cleanly, the first
// validation problem of each service and group (and then of the table as a whole).
//
//	service "web" {
//	  vip      = "192.0.2.10"
//	  port     = 80
//	  check "http" { path = "/index.html" }
//	  real "192.0.2.21" { weight = 3 }
//	}
//	vip_group "front" { vips = ["192.0.2.10/24"] }
func ParseTable(filename string, src []byte) (fsm.Table, error) {
	d, root := parse(filename, src)
	if root == nil {
		return fsm.Table{}, d.result()
	}
	var t fsm.Table
	d.body(root, "", schema{blocks: map[string]blockSpec{
		"service": {labels: []string{"name"}, decode: func(b *hclsyntax.Block) {
			if s, ok := d.service(b); ok {
				t.Services = append(t.Services, s)
			}
		}},
		"vip_group": {labels: []string{"name"}, decode: func(b *hclsyntax.Block) {
			if g, ok := d.vipGroup(b); ok {
				t.VIPGroups = append(t.VIPGroups, g)
			}
		}},
	}})
	if len(d.diags) > 0 {
		return fsm.Table{}, d.result()
	}
	fsm.NormalizeTable(&t)
	d.validateTable(&t)
	if err := d.result(); err != nil {
		return fsm.Table{}, err
	}
	return t, nil
}

// validateTable checks each service and group on its own first, so that one file with several
// mistakes reports them all; the table-wide rules (unique kernel keys, a VIP in one group) only
// make sense once every part is valid.
func (d *decoder) validateTable(t *fsm.Table) {
	for i := range t.Services {
		if err := fsm.ValidateService(&t.Services[i]); err != nil {
			d.fail(err)
		}
	}
	for i := range t.VIPGroups {
		if err := fsm.ValidateGroup(&t.VIPGroups[i]); err != nil {
			d.fail(err)
		}
	}
	if len(d.diags) == 0 {
		if err := fsm.ValidateTable(t); err != nil {
			d.fail(err)
		}
	}
}

// Bounds of the unsigned fields: what the Go type (and the kernel's field) holds.
const (
	port16 = math.MaxUint16
	mark32 = math.MaxUint32
)

func (d *decoder) service(b *hclsyntax.Block) (fsm.Service, bool) {
	s := fsm.Service{Name: b.Labels[0]}
	path := "service " + strconv.Quote(s.Name)
	if !d.define(path, b) {
		return s, false
	}
	d.body(b.Body, path, schema{
		attrs: map[string]setter{
			"vip":         address(&s.VIP),
			"port":        number(&s.Port, 0, port16),
			"protocol":    text(&s.Protocol),
			"fwmark":      number(&s.FWMark, 0, mark32),
			"family":      text(&s.Family),
			"scheduler":   text(&s.Scheduler),
			"sched_flags": texts(&s.SchedFlags),
			"forwarding":  text(&s.Forwarding),
			"quiescent":   boolean(&s.Quiescent),
		},
		blocks: map[string]blockSpec{
			"persistence": {decode: func(b *hclsyntax.Block) { s.Persistence = d.persistence(b, path) }},
			"check": {labels: []string{"type"}, decode: func(b *hclsyntax.Block) {
				s.Check = d.check(b, path)
			}},
			"fallback": {decode: func(b *hclsyntax.Block) { s.Fallback = d.fallback(b, path) }},
			"real": {labels: []string{"address"}, decode: func(b *hclsyntax.Block) {
				if r, ok := d.real(b, path, &s); ok {
					s.Reals = append(s.Reals, r)
				}
			}},
		},
	})
	return s, true
}

func (d *decoder) persistence(b *hclsyntax.Block, service string) *fsm.Persistence {
	path := service + " persistence"
	if !d.define(path, b) {
		return nil
	}
	var p fsm.Persistence
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"timeout": duration(&p.Timeout, 0),
		"netmask": number(&p.Netmask, intLo, intHi),
	}})
	return &p
}

// check decodes a check block. Its label is the check type, so validation's `check type` field
// points at the label.
func (d *decoder) check(b *hclsyntax.Block, service string) *fsm.HealthCheck {
	path := service + " check"
	if !d.define(path, b) {
		return nil
	}
	d.at[path+" type"] = b.LabelRanges[0]
	c := fsm.HealthCheck{Type: b.Labels[0]}
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"port":            number(&c.Port, 0, port16),
		"interval":        duration(&c.Interval, 0),
		"timeout":         duration(&c.Timeout, 0),
		"rise":            number(&c.Rise, 1, 100), // fsm's range; 0 would silently mean the default
		"fall":            number(&c.Fall, 1, 100),
		"initial_state":   text(&c.InitialState),
		"method":          text(&c.Method),
		"path":            text(&c.Path),
		"host":            text(&c.Host),
		"expect_status":   texts(&c.ExpectStatus),
		"expect":          text(&c.Expect),
		"expect_regexp":   text(&c.ExpectRegexp),
		"tls_skip_verify": boolean(&c.TLSSkipVerify),
		"ca_file":         text(&c.CAFile),
		"send":            text(&c.Send),
		"query":           text(&c.Query),
		"query_type":      text(&c.QueryType),
		"expect_rcode":    text(&c.ExpectRcode),
		"expect_answer":   text(&c.ExpectAnswer),
		"command":         texts(&c.Command),
	}})
	return &c
}

func (d *decoder) fallback(b *hclsyntax.Block, service string) *fsm.Fallback {
	path := service + " fallback"
	if !d.define(path, b) {
		return nil
	}
	var f fsm.Fallback
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"address":    address(&f.Address),
		"port":       number(&f.Port, 0, port16),
		"forwarding": text(&f.Forwarding),
	}})
	return &f
}

// real decodes a real block. Its label is the address with an optional port, and its field path
// uses the real server's ID as fsm will know it after normalization ("192.0.2.21" in a port-80
// service is `real "192.0.2.21:80"`), so that both a duplicate written two ways and validation
// errors are found at the right block. s's attributes are decoded before its blocks, so s.Port
// and s.FWMark are known here.
func (d *decoder) real(b *hclsyntax.Block, service string, s *fsm.Service) (fsm.Real, bool) {
	label := b.Labels[0]
	addr, port, ok := parseRealLabel(label)
	if !ok {
		d.diags.add(b.LabelRanges[0], fsm.ErrInvalid, "%s real: %s: must be an address, address:port or [IPv6]:port", service, strconv.Quote(label))
		return fsm.Real{}, false
	}
	r := fsm.Real{Address: addr, Port: port}
	path := service + " real " + strconv.Quote(normalizedRealID(s, r))
	if !d.define(path, b) {
		return r, false
	}
	d.at[path+" address"] = b.LabelRanges[0]
	d.at[path+" port"] = b.LabelRanges[0]
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"weight":          optionalInt(&r.Weight),
		"forwarding":      text(&r.Forwarding),
		"upper_threshold": number(&r.UpperThreshold, 0, mark32),
		"lower_threshold": number(&r.LowerThreshold, 0, mark32),
		"admin":           text(&r.Admin),
	}})
	return r, true
}

// parseRealLabel reads "192.0.2.21", "192.0.2.21:8080", "2001:db8::21" or "[2001:db8::21]:8080".
// Port 0 means the service's port.
func parseRealLabel(s string) (netip.Addr, uint16, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, 0, true
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	return ap.Addr(), ap.Port(), true
}

// normalizedRealID is r's ID once fsm has filled in its defaults. It asks fsm rather than
// repeating its rules (port inheritance, IPv4-mapped addresses) here.
func normalizedRealID(s *fsm.Service, r fsm.Real) string {
	probe := fsm.Service{Port: s.Port, FWMark: s.FWMark, Reals: []fsm.Real{r}}
	fsm.NormalizeService(&probe)
	return probe.Reals[0].ID()
}

func (d *decoder) vipGroup(b *hclsyntax.Block) (fsm.VIPGroup, bool) {
	g := fsm.VIPGroup{Name: b.Labels[0]}
	path := "vip_group " + strconv.Quote(g.Name)
	if !d.define(path, b) {
		return g, false
	}
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"interface": text(&g.Interface),
		"vips":      prefixes(&g.VIPs),
	}})
	return g, true
}
