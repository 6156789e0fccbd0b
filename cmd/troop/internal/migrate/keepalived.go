package migrate

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// keepalived's documented defaults (keepalived.conf(5)) where Troop's differ.
const (
	kaDelayLoop      = 60 * time.Second
	kaConnectTimeout = 5 * time.Second
)

// kaNode is one keepalived statement: a keyword, its arguments and, for a block, its children.
type kaNode struct {
	key      string
	args     []string
	line     int
	block    bool
	children []*kaNode
}

// value is the statement's single argument, or an error naming its line.
func (n *kaNode) value(file string) (string, error) {
	if len(n.args) != 1 {
		return "", errorf(file, n.line, "%s: want one value", n.key)
	}
	return n.args[0], nil
}

// seconds is the statement's single argument as a number of seconds, or an error naming its line.
func (n *kaNode) seconds(file string) (time.Duration, error) {
	v, err := n.value(file)
	if err != nil {
		return 0, err
	}
	d, ok := seconds(v)
	if !ok {
		return 0, errorf(file, n.line, "%s %s: want seconds", n.key, v)
	}
	return d, nil
}

// kaToken is a word, "{" or "}", with its line; eol marks the end of a line.
type kaToken struct {
	text string
	line int
	eol  bool
}

// kaTokens splits keepalived syntax: words separated by blanks, "{" and "}" on their own,
// double-quoted strings whole, comments from # or ! to the end of the line.
func kaTokens(file string, src []byte) ([]kaToken, error) {
	var toks []kaToken
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		for j := 0; j < len(line); {
			c := line[j]
			switch {
			case c == ' ' || c == '\t' || c == '\r':
				j++
			case c == '#' || c == '!':
				j = len(line)
			case c == '{' || c == '}':
				toks = append(toks, kaToken{text: string(c), line: n})
				j++
			case c == '"':
				end := strings.IndexByte(line[j+1:], '"')
				if end < 0 {
					return nil, errorf(file, n, "unclosed quote")
				}
				toks = append(toks, kaToken{text: line[j+1 : j+1+end], line: n})
				j += end + 2
			default:
				end := strings.IndexAny(line[j:], " \t\r{}#!\"")
				if end < 0 {
					end = len(line) - j
				}
				toks = append(toks, kaToken{text: line[j : j+end], line: n})
				j += end
			}
		}
		toks = append(toks, kaToken{line: n, eol: true})
	}
	return toks, nil
}

// kaParse builds the statement tree.
func kaParse(file string, src []byte) ([]*kaNode, error) {
	toks, err := kaTokens(file, src)
	if err != nil {
		return nil, err
	}
	pos := 0
	var block func(open int) ([]*kaNode, error)
	block = func(open int) ([]*kaNode, error) {
		var nodes []*kaNode
		var cur *kaNode
		for pos < len(toks) {
			t := toks[pos]
			pos++
			switch {
			case t.eol:
				cur = nil
			case t.text == "{":
				if cur == nil {
					// "{" on its own line opens the block of the statement above it.
					if len(nodes) == 0 || nodes[len(nodes)-1].block {
						return nil, errorf(file, t.line, "{ without a keyword before it")
					}
					cur = nodes[len(nodes)-1]
				}
				cur.block = true
				kids, err := block(t.line)
				if err != nil {
					return nil, err
				}
				cur.children = kids
				cur = nil
			case t.text == "}":
				if open == 0 {
					return nil, errorf(file, t.line, "} without a matching {")
				}
				return nodes, nil
			case cur == nil:
				cur = &kaNode{key: t.text, line: t.line}
				nodes = append(nodes, cur)
			default:
				cur.args = append(cur.args, t.text)
			}
		}
		if open != 0 {
			return nil, errorf(file, open, "{ is never closed")
		}
		return nodes, nil
	}
	return block(0)
}

// kaUnsupported says why a keepalived keyword has no equivalent.
var kaUnsupported = map[string]string{
	"global_defs":               "Troop's settings are in the agent file (notifications: `troop events -f`)",
	"static_ipaddress":          "Troop does not manage static addresses",
	"static_routes":             "Troop does not manage routes",
	"static_rules":              "Troop does not manage rules",
	"vrrp_script":               "Raft decides the leader; no tracking scripts",
	"vrrp_sync_group":           "all VIP groups move together with the Raft leader already",
	"linkbeat_use_polling":      "not needed",
	"include":                   "include is not followed: import each file on its own and merge the tables",
	"local_address_group":       "FULLNAT (local addresses) is not in the Linux kernel's IPVS",
	"vrrp_track_process":        "Raft decides the leader; no process tracking",
	"track_file":                "Raft decides the leader; no tracking files",
	"garp_group":                "gratuitous ARP is configured in the agent's director announce block",
	"state":                     "Raft elects the leader: no MASTER or BACKUP",
	"priority":                  "Raft elects the leader: no priorities (`troop operator raft transfer-leader` moves it)",
	"virtual_router_id":         "no VRRP",
	"advert_int":                "Raft's timing is in the agent file (raft heartbeat_timeout, election_timeout)",
	"authentication":            "no VRRP authentication: Raft's peers are listed in the agent file",
	"nopreempt":                 "Raft never pre-empts a working leader",
	"preempt_delay":             "Raft never pre-empts a working leader",
	"track_interface":           "Raft decides the leader; the reconciler reports a missing interface",
	"track_script":              "Raft decides the leader; no tracking scripts",
	"notify_master":             "use `troop events -f` or the agent's notifications",
	"notify_backup":             "use `troop events -f` or the agent's notifications",
	"notify_fault":              "use `troop events -f` or the agent's notifications",
	"notify_stop":               "use `troop events -f` or the agent's notifications",
	"notify":                    "use `troop events -f` or the agent's notifications",
	"smtp_alert":                "no e-mail alerts",
	"unicast_src_ip":            "Raft and gossip addresses are in the agent file",
	"unicast_peer":              "Raft peers are in the agent file",
	"mcast_src_ip":              "Raft and gossip addresses are in the agent file",
	"lvs_sync_daemon_interface": "the sync daemon is in the agent's director sync_daemon block",
	"virtual_routes":            "Troop does not manage routes",
	"virtual_rules":             "Troop does not manage rules",
	"garp_master_delay":         "gratuitous ARP is configured in the agent's director announce block",
	"garp_master_repeat":        "gratuitous ARP is configured in the agent's director announce block",
	"garp_master_refresh":       "gratuitous ARP is configured in the agent's director announce block",
	"dont_track_primary":        "not needed",
	"quorum":                    "no quorum of real servers: Troop keeps serving with any real server up, then the fallback",
	"quorum_up":                 "no quorum commands: use `troop events -f`",
	"quorum_down":               "no quorum commands: use `troop events -f`",
	"hysteresis":                "no quorum of real servers",
	"ha_suspend":                "every director checks; only the leader holds the VIP",
	"omega":                     "no quorum commands",
	"ops":                       "one-packet scheduling is not supported",
	"nat_mask":                  "obsolete in keepalived; not needed",
	"sorry_server_inhibit":      "a fallback in Troop is removed, not quiesced",
	"notify_up":                 "use `troop events -f` or the agent's notifications",
	"notify_down":               "use `troop events -f` or the agent's notifications",
	"delay_before_retry":        "Troop retries at the next interval",
	"warmup":                    "Troop spreads the first checks over the first interval",
	"retry":                     "",
	"nb_get_retry":              "",
}

func kaWhy(key string) string {
	if r := kaUnsupported[key]; r != "" {
		return r
	}
	return "no equivalent in Troop"
}

// kaMember is a virtual_server_group member: an address and port, or a firewall mark.
type kaMember struct {
	vip    netip.Addr
	port   uint16
	fwmark uint32
	line   int
}

// Keepalived converts a keepalived.conf: virtual_server (and virtual_server_group) blocks into
// services, vrrp_instance virtual_ipaddress blocks into VIP groups.
func Keepalived(file string, src []byte) (*TableResult, error) {
	fs := &findings{file: file}
	nodes, err := kaParse(file, src)
	if err != nil {
		return nil, err
	}
	groups := map[string][]kaMember{}
	for _, n := range nodes {
		if n.key != "virtual_server_group" {
			continue
		}
		if len(n.args) != 1 || !n.block {
			return nil, errorf(file, n.line, "virtual_server_group: want a name and a { block }")
		}
		var ms []kaMember
		for _, c := range n.children {
			m, err := kaGroupMembers(file, c)
			if err != nil {
				return nil, err
			}
			ms = append(ms, m...)
		}
		groups[n.args[0]] = ms
	}

	var t fsm.Table
	var origins []origin
	taken := names{}
	for _, n := range nodes {
		switch n.key {
		case "virtual_server_group":
		case "virtual_server":
			svcs, err := kaVirtualServer(file, n, groups, fs)
			if err != nil {
				return nil, err
			}
			for i := range svcs {
				s := &svcs[i]
				base := serviceBase(s)
				if len(svcs) > 1 {
					base = n.args[1] + "-" + strconv.Itoa(i+1)
				}
				s.Name = taken.unique(base)
				if err := validateService(s); err != nil {
					return nil, errorf(file, n.line, "virtual_server %s: %v", strings.Join(n.args, " "), err)
				}
				t.Services = append(t.Services, *s)
				origins = append(origins, origin{s.Name, fmt.Sprintf("%s:%d: virtual_server %s", file, n.line, strings.Join(n.args, " "))})
			}
		case "vrrp_instance":
			g, err := kaVRRP(file, n, fs)
			if err != nil {
				return nil, err
			}
			if len(g.VIPs) > 0 {
				t.VIPGroups = append(t.VIPGroups, g)
			}
		default:
			fs.add(n.line, "%s: not imported: %s", n.key, kaWhy(n.key))
		}
	}
	if len(t.Services) == 0 && len(t.VIPGroups) == 0 {
		return nil, errorf(file, 1, "no virtual_server and no vrrp_instance virtual_ipaddress: nothing to import")
	}
	if err := fsm.ValidateTable(&t); err != nil {
		return nil, errorf(file, 1, "%v", err)
	}
	out, err := render(file, "Imported from "+file+" by `troop import keepalived`.\nReview it, then: troop plan -f THIS_FILE && troop apply -f THIS_FILE", t, origins)
	if err != nil {
		return nil, err
	}
	return &TableResult{Table: t, HCL: out, Findings: fs.sorted()}, nil
}

// kaGroupMembers reads one line of a virtual_server_group: "IP PORT", "IP-LAST PORT" (a range
// of the last byte) or "fwmark N".
func kaGroupMembers(file string, c *kaNode) ([]kaMember, error) {
	if c.key == "fwmark" {
		if len(c.args) != 1 {
			return nil, errorf(file, c.line, "fwmark: want a mark")
		}
		m, err := strconv.ParseUint(c.args[0], 10, 32)
		if err != nil || m == 0 {
			return nil, errorf(file, c.line, "fwmark %s: want a mark above 0", c.args[0])
		}
		return []kaMember{{fwmark: uint32(m), line: c.line}}, nil
	}
	if len(c.args) != 1 {
		return nil, errorf(file, c.line, "virtual_server_group member %s: want IP PORT", c.key)
	}
	port, ok := parsePort(c.args[0])
	if !ok || port == 0 {
		return nil, errorf(file, c.line, "%s %s: bad port", c.key, c.args[0])
	}
	from, to, isRange := strings.Cut(c.key, "-")
	first, err := netip.ParseAddr(from)
	if err != nil {
		return nil, errorf(file, c.line, "%q is not an IP address", from)
	}
	last := first
	if isRange {
		n, err := strconv.Atoi(to)
		if err != nil || !first.Is4() || n < int(first.As4()[3]) || n > 255 {
			return nil, errorf(file, c.line, "%s: a range is A.B.C.D-E with E at least D", c.key)
		}
		b := first.As4()
		b[3] = byte(n)
		last = netip.AddrFrom4(b)
	}
	var ms []kaMember
	for a := first; ; a = a.Next() {
		ms = append(ms, kaMember{vip: a, port: port, line: c.line})
		if a == last {
			break
		}
	}
	return ms, nil
}

// kaVirtualServer converts one virtual_server block into one service, or one per member of
// its group.
func kaVirtualServer(file string, n *kaNode, groups map[string][]kaMember, fs *findings) ([]fsm.Service, error) {
	if !n.block {
		return nil, errorf(file, n.line, "virtual_server: want a { block }")
	}
	var members []kaMember
	switch {
	case len(n.args) == 2 && n.args[0] == "fwmark":
		m, err := strconv.ParseUint(n.args[1], 10, 32)
		if err != nil || m == 0 {
			return nil, errorf(file, n.line, "virtual_server fwmark %s: want a mark above 0", n.args[1])
		}
		members = []kaMember{{fwmark: uint32(m), line: n.line}}
	case len(n.args) == 2 && n.args[0] == "group":
		ms, ok := groups[n.args[1]]
		if !ok {
			return nil, errorf(file, n.line, "virtual_server group %s: no virtual_server_group %s", n.args[1], n.args[1])
		}
		if len(ms) > 1 {
			fs.add(n.line, "virtual_server group %s: Troop has no service groups, so each of its %d members becomes a service with the same real servers", n.args[1], len(ms))
		}
		members = ms
	case len(n.args) == 2:
		a, err := netip.ParseAddr(n.args[0])
		if err != nil {
			return nil, errorf(file, n.line, "virtual_server %s: %q is not an IP address", strings.Join(n.args, " "), n.args[0])
		}
		p, ok := parsePort(n.args[1])
		if !ok || p == 0 {
			return nil, errorf(file, n.line, "virtual_server %s: bad port %q", strings.Join(n.args, " "), n.args[1])
		}
		members = []kaMember{{vip: a, port: p, line: n.line}}
	default:
		return nil, errorf(file, n.line, "virtual_server: want IP PORT, fwmark N or group NAME")
	}

	var s fsm.Service
	s.Forwarding = fsm.NAT // keepalived's default lb_kind
	s.Protocol = fsm.TCP
	interval := kaDelayLoop
	var vhost string
	initialDown := false
	var quiescent []string
	var plain []string
	var check *fsm.HealthCheck
	var checkFrom string
	for _, c := range n.children {
		arg := func() (string, error) { return c.value(file) }
		switch c.key {
		case "delay_loop":
			d, err := c.seconds(file)
			if err != nil {
				return nil, err
			}
			interval = d
		case "lb_algo", "lvs_sched":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			s.Scheduler = fsm.Scheduler(strings.ToLower(v))
		case "lb_kind", "lvs_method":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			m, ok := kaMethod(v)
			if !ok {
				return nil, errorf(file, c.line, "%s %s: want NAT, DR or TUN", c.key, v)
			}
			s.Forwarding = m
		case "persistence_timeout":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			d, ok := seconds(v)
			if !ok || d%time.Second != 0 {
				return nil, errorf(file, c.line, "persistence_timeout %s: want whole seconds", v)
			}
			if s.Persistence == nil {
				s.Persistence = &fsm.Persistence{}
			}
			s.Persistence.Timeout = fsm.Duration(d)
		case "persistence_granularity":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			bits, ok := prefixOfMask(v, 128)
			if !ok {
				return nil, errorf(file, c.line, "persistence_granularity %s: want a netmask", v)
			}
			if s.Persistence == nil {
				s.Persistence = &fsm.Persistence{Timeout: fsm.Duration(6 * time.Minute)} // keepalived's default timeout when only the granularity is set
			}
			s.Persistence.Netmask = bits
		case "protocol":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			p := fsm.Protocol(strings.ToLower(v))
			if p != fsm.TCP && p != fsm.UDP && p != fsm.SCTP {
				return nil, errorf(file, c.line, "protocol %s: want TCP, UDP or SCTP", v)
			}
			s.Protocol = p
		case "sorry_server":
			if len(c.args) != 2 {
				return nil, errorf(file, c.line, "sorry_server: want IP PORT")
			}
			a, err := netip.ParseAddr(c.args[0])
			p, ok := parsePort(c.args[1])
			if err != nil || !ok {
				return nil, errorf(file, c.line, "sorry_server %s: want IP PORT", strings.Join(c.args, " "))
			}
			if s.Fallback == nil {
				s.Fallback = &fsm.Fallback{}
			}
			s.Fallback.Address, s.Fallback.Port = a, p
		case "sorry_server_lvs_method":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			m, ok := kaMethod(v)
			if !ok {
				return nil, errorf(file, c.line, "%s %s: want NAT, DR or TUN", c.key, v)
			}
			if s.Fallback == nil {
				s.Fallback = &fsm.Fallback{}
			}
			s.Fallback.Forwarding = m
		case "virtualhost":
			v, err := arg()
			if err != nil {
				return nil, err
			}
			vhost = v
		case "alpha":
			initialDown = true
		case "real_server":
			r, rc, inhibit, err := kaRealServer(file, c, fs)
			if err != nil {
				return nil, err
			}
			id := strings.Join(c.args, " ")
			if inhibit {
				quiescent = append(quiescent, id)
			} else {
				plain = append(plain, id)
			}
			switch {
			case rc == nil:
			case check == nil:
				check, checkFrom = rc, fmt.Sprintf("real_server %s (line %d)", id, c.line)
			case !reflect.DeepEqual(check, rc):
				fs.add(c.line, "real_server %s: its checker differs from %s's, which is the service's: Troop checks every real server of a service alike", id, checkFrom)
			}
			s.Reals = append(s.Reals, r)
		default:
			fs.add(c.line, "%s: not imported: %s", c.key, kaWhy(c.key))
		}
	}
	if s.Fallback != nil && !s.Fallback.Address.IsValid() {
		return nil, errorf(file, n.line, "sorry_server_lvs_method without sorry_server")
	}
	if !slices.ContainsFunc(n.children, func(c *kaNode) bool { return c.key == "lb_kind" || c.key == "lvs_method" }) {
		fs.add(n.line, "no lb_kind: keepalived's default NAT is used")
	}
	s.Quiescent = len(quiescent) > 0
	if len(quiescent) > 0 && len(plain) > 0 {
		fs.add(n.line, "inhibit_on_failure is set on %s but not on %s: Troop quiesces all real servers of a service or none, so all are quiesced", strings.Join(quiescent, ", "), strings.Join(plain, ", "))
	}
	if check == nil && len(s.Reals) > 0 {
		fs.add(n.line, "no checker: keepalived keeps such real servers up; so does Troop (check \"none\")")
		check = &fsm.HealthCheck{Type: "none"}
	}
	if check != nil && check.Type != "none" {
		check.Interval = fsm.Duration(interval)
		timeout := time.Duration(check.Timeout)
		if timeout == 0 {
			timeout = kaConnectTimeout
		}
		t, changed := fitTimeout(timeout, interval)
		if changed {
			fs.add(n.line, "check timeout %s is not shorter than delay_loop %s: Troop needs it shorter, so %s is used", timeout, interval, t)
		}
		check.Timeout = fsm.Duration(t)
		if vhost != "" && (check.Type == "http" || check.Type == "https") && check.Host == "" {
			check.Host = vhost
		}
		if initialDown {
			check.InitialState = fsm.HealthDown
		}
	}
	s.Check = check

	svcs := make([]fsm.Service, len(members))
	for i, m := range members {
		c := s
		c.Reals = append([]fsm.Real(nil), s.Reals...)
		if s.Check != nil {
			ck := *s.Check
			c.Check = &ck
		}
		if m.fwmark != 0 {
			c.FWMark, c.Protocol = m.fwmark, ""
			c.Family = fsm.IPv4
			if len(c.Reals) > 0 && c.Reals[0].Address.Is6() {
				c.Family = fsm.IPv6
			}
		} else {
			c.VIP, c.Port = m.vip, m.port
			// DR and TUN deliver the packet unchanged: the kernel ignores a real server's port
			// there, and Troop refuses one that differs.
			for j := range c.Reals {
				r := &c.Reals[j]
				fwd := r.Forwarding
				if fwd == "" {
					fwd = c.Forwarding
				}
				if fwd != fsm.NAT && r.Port != c.Port {
					fs.add(n.line, "real_server %s %d: port changed to the virtual server's %d: %s forwarding cannot change the port", r.Address, r.Port, c.Port, strings.ToUpper(string(fwd)))
					r.Port = c.Port
				}
			}
		}
		svcs[i] = c
	}
	return svcs, nil
}

func kaMethod(s string) (fsm.Forwarding, bool) {
	switch strings.ToUpper(s) {
	case "NAT":
		return fsm.NAT, true
	case "DR":
		return fsm.DR, true
	case "TUN":
		return fsm.TUN, true
	}
	return "", false
}

// kaRealServer converts a real_server block: the real server, its checker (nil if none) and
// whether it is inhibited (quiesced) on failure.
func kaRealServer(file string, n *kaNode, fs *findings) (fsm.Real, *fsm.HealthCheck, bool, error) {
	if len(n.args) != 2 {
		return fsm.Real{}, nil, false, errorf(file, n.line, "real_server: want IP PORT")
	}
	a, err := netip.ParseAddr(n.args[0])
	if err != nil {
		return fsm.Real{}, nil, false, errorf(file, n.line, "real_server %s: %q is not an IP address", strings.Join(n.args, " "), n.args[0])
	}
	p, ok := parsePort(n.args[1])
	if !ok {
		return fsm.Real{}, nil, false, errorf(file, n.line, "real_server %s: bad port %q", strings.Join(n.args, " "), n.args[1])
	}
	r := fsm.Real{Address: a, Port: p}
	var check *fsm.HealthCheck
	inhibit := false
	for _, c := range n.children {
		num := func(max uint64) (uint64, error) {
			if len(c.args) != 1 {
				return 0, errorf(file, c.line, "%s: want one number", c.key)
			}
			v, err := strconv.ParseUint(c.args[0], 10, 64)
			if err != nil || v > max {
				return 0, errorf(file, c.line, "%s %s: want a number up to %d", c.key, c.args[0], max)
			}
			return v, nil
		}
		switch c.key {
		case "weight":
			w, err := num(65535)
			if err != nil {
				return r, nil, false, err
			}
			wi := int(w)
			r.Weight = &wi
		case "inhibit_on_failure":
			inhibit = true
		case "uthreshold":
			v, err := num(1<<32 - 1)
			if err != nil {
				return r, nil, false, err
			}
			r.UpperThreshold = uint32(v)
		case "lthreshold":
			v, err := num(1<<32 - 1)
			if err != nil {
				return r, nil, false, err
			}
			r.LowerThreshold = uint32(v)
		case "lvs_method", "lb_kind":
			v, err := c.value(file)
			if err != nil {
				return r, nil, false, err
			}
			m, ok := kaMethod(v)
			if !ok {
				return r, nil, false, errorf(file, c.line, "%s %s: want NAT, DR or TUN", c.key, c.args[0])
			}
			r.Forwarding = m
		case "HTTP_GET", "SSL_GET", "TCP_CHECK", "DNS_CHECK":
			ck, err := kaChecker(file, c, fs)
			if err != nil {
				return r, nil, false, err
			}
			if check != nil {
				fs.add(c.line, "%s: a second checker on one real server: Troop has one check per service; only the first is imported", c.key)
				continue
			}
			check = ck
		case "MISC_CHECK":
			fs.add(c.line, "MISC_CHECK: not imported: write an exec check (`check \"exec\" { command = [...] }`); Troop passes VIP, port, real address and port as arguments instead of keepalived's fixed command line")
		default:
			fs.add(c.line, "real_server %s %s: not imported: %s", strings.Join(n.args, " "), c.key, kaWhy(c.key))
		}
	}
	return r, check, inhibit, nil
}

// kaChecker converts HTTP_GET, SSL_GET, TCP_CHECK or DNS_CHECK.
func kaChecker(file string, n *kaNode, fs *findings) (*fsm.HealthCheck, error) {
	c := &fsm.HealthCheck{Rise: 1, Fall: 1}
	switch n.key {
	case "HTTP_GET":
		c.Type = "http"
	case "SSL_GET":
		c.Type = "https"
		c.TLSSkipVerify = true // keepalived's SSL_GET does not verify the certificate unless told to
	case "TCP_CHECK":
		c.Type = "tcp"
	case "DNS_CHECK":
		c.Type = "dns"
		c.QueryType = "SOA"
		c.Query = "."
	}
	urls := 0
	for _, x := range n.children {
		one := func() (string, error) { return x.value(file) }
		switch x.key {
		case "url":
			urls++
			if urls > 1 {
				fs.add(x.line, "url: a second url: Troop checks one path per service; only the first is imported")
				continue
			}
			for _, u := range x.children {
				if _, err := u.value(file); err != nil {
					return nil, err
				}
				switch u.key {
				case "path":
					c.Path = u.args[0]
				case "status_code":
					c.ExpectStatus = append(c.ExpectStatus, u.args[0])
				case "digest":
					fs.add(u.line, "digest: not imported: Troop matches a substring or a regexp of the body (expect, expect_regexp), not an MD5 of it")
				case "virtualhost":
					c.Host = u.args[0]
				default:
					fs.add(u.line, "url %s: not imported: %s", u.key, kaWhy(u.key))
				}
			}
		case "connect_timeout":
			d, err := x.seconds(file)
			if err != nil {
				return nil, err
			}
			c.Timeout = fsm.Duration(d)
		case "connect_port":
			v, err := one()
			if err != nil {
				return nil, err
			}
			p, ok := parsePort(v)
			if !ok || p == 0 {
				return nil, errorf(file, x.line, "connect_port %s: want a port", v)
			}
			c.Port = p
		case "nb_get_retry", "retry":
			v, err := one()
			if err != nil {
				return nil, err
			}
			r, err := strconv.Atoi(v)
			if err != nil || r < 0 || r > 100 {
				return nil, errorf(file, x.line, "%s %s: want 0-100", x.key, v)
			}
			c.Fall = max(r, 1)
		case "virtualhost":
			v, err := one()
			if err != nil {
				return nil, err
			}
			c.Host = v
		case "type":
			v, err := one()
			if err != nil {
				return nil, err
			}
			c.QueryType = strings.ToUpper(v)
		case "name":
			v, err := one()
			if err != nil {
				return nil, err
			}
			c.Query = v
		default:
			fs.add(x.line, "%s %s: not imported: %s", n.key, x.key, kaWhy(x.key))
		}
	}
	if n.key == "SSL_GET" {
		fs.add(n.line, "SSL_GET: keepalived does not verify the real servers' certificates, so tls_skip_verify = true; set ca_file to verify them")
	}
	return c, nil
}

// kaVRRP turns a vrrp_instance's virtual_ipaddress into a VIP group.
func kaVRRP(file string, n *kaNode, fs *findings) (fsm.VIPGroup, error) {
	if len(n.args) != 1 || !n.block {
		return fsm.VIPGroup{}, errorf(file, n.line, "vrrp_instance: want a name and a { block }")
	}
	g := fsm.VIPGroup{Name: sanitize(n.args[0])}
	var iface string
	for _, c := range n.children {
		switch c.key {
		case "interface":
			if len(c.args) != 1 {
				return g, errorf(file, c.line, "interface: want one name")
			}
			iface = c.args[0]
		case "virtual_ipaddress":
			for _, v := range c.children {
				p, dev, err := kaVIP(v)
				if err != nil {
					return g, errorf(file, v.line, "virtual_ipaddress %s: %v", strings.Join(append([]string{v.key}, v.args...), " "), err)
				}
				if dev != "" {
					if g.Interface != "" && g.Interface != dev {
						fs.add(v.line, "dev %s: a VIP group is on one interface, so this VIP goes on %s", dev, g.Interface)
					} else {
						g.Interface = dev
					}
				}
				g.VIPs = append(g.VIPs, p)
			}
		case "virtual_ipaddress_excluded":
			fs.add(c.line, "virtual_ipaddress_excluded: not imported: list these VIPs in a vip_group too if the leader must hold them")
		case "authentication":
			why := kaWhy(c.key)
			for _, a := range c.children {
				if a.key == "auth_type" && len(a.args) == 1 && strings.EqualFold(a.args[0], "PASS") {
					why = "INSECURE: PASS sends the password in clear in every advertisement; Raft's peers are listed in the agent file instead"
				}
			}
			fs.add(c.line, "vrrp_instance %s authentication: not imported: %s", n.args[0], why)
		default:
			fs.add(c.line, "vrrp_instance %s %s: not imported: %s", n.args[0], c.key, kaWhy(c.key))
		}
	}
	if g.Interface == "" {
		g.Interface = iface
	}
	fsm.NormalizeGroup(&g)
	if err := fsm.ValidateGroup(&g); err != nil {
		return g, errorf(file, n.line, "vrrp_instance %s: %v", n.args[0], err)
	}
	return g, nil
}

// kaVIP reads "ADDR[/LEN] [dev IF] [label L] [brd B] [scope S]...".
func kaVIP(v *kaNode) (netip.Prefix, string, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(v.key); err == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(v.key); err != nil {
		return p, "", fmt.Errorf("%q is not an address or address/prefix", v.key)
	}
	dev := ""
	for i := 0; i+1 < len(v.args); i += 2 {
		if v.args[i] == "dev" {
			dev = v.args[i+1]
		}
	}
	if len(v.args)%2 != 0 {
		return p, "", fmt.Errorf("options come in pairs (dev IF, label L, ...)")
	}
	return p, dev, nil
}
