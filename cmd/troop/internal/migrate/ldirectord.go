package migrate

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// ldirectord's documented defaults (ldirectord(8), "perldoc ldirectord"), which an imported
// table spells out where Troop's differ.
const (
	ldCheckInterval    = 10 * time.Second
	ldCheckTimeout     = 5 * time.Second  // connect, external and ping checks
	ldNegotiateTimeout = 30 * time.Second // negotiate checks
	ldScheduler        = "wrr"
)

// ldServiceByPort is ldirectord's default `service` for a virtual port.
var ldServiceByPort = map[uint16]string{
	21: "ftp", 25: "smtp", 53: "dns", 80: "http", 110: "pop", 119: "nntp", 143: "imap",
	389: "ldap", 443: "https", 587: "submission", 993: "imaps", 995: "pops", 1521: "oracle",
	1812: "radius", 3128: "http_proxy", 3306: "mysql", 5432: "pgsql", 5060: "sip",
}

// ldInherited are the directives that may be global (a default for every virtual) or per virtual.
var ldInherited = map[string]bool{
	"checktimeout": true, "negotiatetimeout": true, "connecttimeout": true, "timeout": true,
	"checkinterval": true, "checkcount": true, "failurecount": true, "fallback": true,
	"fallback6": true, "fallbackcommand": true, "emailalert": true, "emailalertfreq": true,
	"emailalertstatus": true, "quiescent": true, "cleanstop": true, "smtp": true,
}

// ldVirtualOnly are the directives of a virtual section only.
var ldVirtualOnly = map[string]bool{
	"real": true, "real6": true, "checktype": true, "service": true, "request": true,
	"receive": true, "virtualhost": true, "httpmethod": true, "checkport": true,
	"checkcommand": true, "scheduler": true, "persistent": true, "netmask": true,
	"protocol": true, "login": true, "passwd": true, "database": true, "secret": true,
	"monitorfile": true, "ops": true,
}

// ldUnsupported says why a directive has no equivalent in Troop.
var ldUnsupported = map[string]string{
	"logfile":          "Troop logs to stderr (the journal); `troop events -f` follows health transitions as ldirectord.log did",
	"autoreload":       "the table changes with `troop apply`, replicated by Raft, not by watching a file",
	"callback":         "the table changes with `troop apply`, replicated by Raft, not by copying a file",
	"execute":          "one table per pool: import each configuration and merge the tables",
	"supervised":       "the agent runs in the foreground under systemd (Type=notify)",
	"fork":             "Troop runs checks concurrently anyway",
	"maintenancedir":   "use `troop host drain ADDR` or `troop real drain SERVICE ADDR`",
	"emailalert":       "no e-mail alerts: follow `troop events -f` or the agent's notifications",
	"emailalertfreq":   "no e-mail alerts",
	"emailalertstatus": "no e-mail alerts",
	"emailalertfrom":   "no e-mail alerts",
	"smtp":             "no e-mail alerts",
	"cleanstop":        "Troop never flushes IPVS when it stops; a stopping leader hands its services over",
	"readdquiescent":   "Troop reconciles IPVS to the table; a quiesced real server is kept at weight 0",
	"fallbackcommand":  "no command is run; `troop events` reports when every real server is down",
	"monitorfile":      "use `troop events -f`",
	"checkcount":       "deprecated in ldirectord; Troop retries through fall (failurecount)",
	"login":            "check credentials are not supported",
	"passwd":           "check credentials are not supported",
	"database":         "database checks are not supported",
	"secret":           "RADIUS checks are not supported",
	"ops":              "one-packet scheduling is not supported",
}

type ldValue struct {
	val  string
	line int
}

type ldVirtual struct {
	line   int
	text   string // the virtual= line as written
	six    bool
	vals   map[string]ldValue
	reals  []ldValue
	global map[string]ldValue // the globals in force when this virtual started
}

func (v *ldVirtual) get(key string) (ldValue, bool) {
	if x, ok := v.vals[key]; ok {
		return x, true
	}
	x, ok := v.global[key]
	return x, ok
}

// Ldirectord converts an ldirectord.cf into a Troop table. Directives before the first virtual
// are defaults for every virtual, as in ldirectord; one after a virtual section applies to the
// virtuals that follow it.
func Ldirectord(file string, src []byte) (*TableResult, error) {
	fs := &findings{file: file}
	globals := map[string]ldValue{}
	var virtuals []*ldVirtual
	var cur *ldVirtual
	for i, raw := range strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indented := raw[0] == ' ' || raw[0] == '\t'
		key, val, ok := strings.Cut(trimmed, "=")
		if !ok {
			return nil, errorf(file, n, "%q: want directive=value", trimmed)
		}
		key = strings.ToLower(strings.TrimSpace(key))
		val = strings.TrimSpace(val)
		switch {
		case key == "virtual" || key == "virtual6":
			if indented {
				return nil, errorf(file, n, "%s must start at the beginning of the line", key)
			}
			g := make(map[string]ldValue, len(globals))
			for k, v := range globals {
				g[k] = v
			}
			cur = &ldVirtual{line: n, text: trimmed, six: key == "virtual6", vals: map[string]ldValue{}, global: g}
			cur.vals[key] = ldValue{val, n}
			virtuals = append(virtuals, cur)
		case indented && cur != nil:
			if !ldVirtualOnly[key] && !ldInherited[key] {
				if _, global := ldUnsupported[key]; global {
					return nil, errorf(file, n, "%s is a global directive and cannot be inside a virtual section", key)
				}
				return nil, errorf(file, n, "unknown directive %q", key)
			}
			if key == "real" || key == "real6" {
				cur.reals = append(cur.reals, ldValue{key + "=" + val, n})
				continue
			}
			if prev, dup := cur.vals[key]; dup {
				fs.add(n, "%s repeats line %d; the last one counts, as in ldirectord", key, prev.line)
			}
			cur.vals[key] = ldValue{val, n}
		case indented:
			return nil, errorf(file, n, "indented %s before any virtual", key)
		default: // a global
			if ldVirtualOnly[key] {
				return nil, errorf(file, n, "%s belongs in a virtual section (indented under virtual=)", key)
			}
			if !ldInherited[key] {
				reason, known := ldUnsupported[key]
				if !known {
					return nil, errorf(file, n, "unknown directive %q", key)
				}
				fs.add(n, "%s=%s: not imported: %s", key, val, reason)
				continue
			}
			if cur != nil {
				fs.add(n, "global %s after the first virtual applies only to the virtuals after it (as ldirectord reads it)", key)
			}
			globals[key] = ldValue{val, n}
		}
	}
	if len(virtuals) == 0 {
		return nil, errorf(file, 1, "no virtual= section: nothing to import")
	}

	var t fsm.Table
	var origins []origin
	taken := names{}
	reported := map[int]bool{} // global lines already reported, once for all virtuals
	for _, v := range virtuals {
		s, err := ldService(file, v, fs, reported)
		if err != nil {
			return nil, err
		}
		s.Name = taken.unique(serviceBase(&s))
		if err := validateService(&s); err != nil {
			return nil, errorf(file, ldLineOf(v, err), "%s: %v", v.text, err)
		}
		t.Services = append(t.Services, s)
		origins = append(origins, origin{s.Name, fmt.Sprintf("%s:%d: %s", file, v.line, v.text)})
	}
	if err := fsm.ValidateTable(&t); err != nil {
		return nil, errorf(file, virtuals[0].line, "%v", err)
	}
	out, err := render(file, "Imported from "+file+" by `troop import ldirectord`.\nReview it, then: troop plan -f THIS_FILE && troop apply -f THIS_FILE", t, origins)
	if err != nil {
		return nil, err
	}
	return &TableResult{Table: t, HCL: out, Findings: fs.sorted()}, nil
}

// ldFieldKeys maps the fields of fsm's validation errors to the directive that set them.
var ldFieldKeys = []struct{ field, key string }{
	{" scheduler", "scheduler"}, {" check command", "checkcommand"}, {" check path", "request"},
	{" check method", "httpmethod"}, {" check expect_regexp", "receive"}, {" fallback address", "fallback"},
	{" persistence timeout", "persistent"}, {" persistence netmask", "netmask"},
}

// ldLineOf is the line of the directive a validation error is about, else the virtual's.
func ldLineOf(v *ldVirtual, err error) int {
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		for _, k := range ldFieldKeys {
			if x, ok := v.get(k.key); ok && strings.HasSuffix(fe.Field, k.field) {
				return x.line
			}
		}
	}
	return v.line
}

// ldService converts one virtual section.
func ldService(file string, v *ldVirtual, fs *findings, reported map[int]bool) (fsm.Service, error) {
	var s fsm.Service
	bits := 32
	if v.six {
		bits = 128
	}
	addrKey := "virtual"
	if v.six {
		addrKey = "virtual6"
	}
	vv := v.vals[addrKey]
	if mark, err := strconv.ParseUint(vv.val, 10, 32); err == nil {
		if mark == 0 {
			return s, errorf(file, v.line, "firewall mark must be greater than zero")
		}
		s.FWMark = uint32(mark)
		s.Family = fsm.IPv4
		if v.six {
			s.Family = fsm.IPv6
		}
	} else {
		ap, err := ldAddrPort(vv.val, v.six)
		if err != nil {
			return s, errorf(file, v.line, "%s=%s: %v", addrKey, vv.val, err)
		}
		s.VIP, s.Port = ap.Addr(), ap.Port()
		if s.Port == 0 {
			return s, errorf(file, v.line, "%s=%s: a port is required (or a firewall mark)", addrKey, vv.val)
		}
		s.Protocol = fsm.TCP
		if s.Port == 53 {
			s.Protocol = fsm.UDP // ldirectord's default for port 53
		}
	}

	// Report the unsupported inherited directives once each, where they were written.
	for key, reason := range ldUnsupported {
		if x, ok := v.get(key); ok && !reported[x.line] {
			reported[x.line] = true
			fs.add(x.line, "%s=%s: not imported: %s", key, x.val, reason)
		}
	}

	if x, ok := v.get("protocol"); ok {
		switch p := strings.ToLower(x.val); {
		case p == "fwm" && s.FWMark != 0:
		case (p == "tcp" || p == "udp" || p == "sctp") && s.FWMark == 0:
			s.Protocol = fsm.Protocol(p)
		default:
			return s, errorf(file, x.line, "protocol=%s: want tcp or udp for an address:port virtual, fwm for a firewall mark", x.val)
		}
	}
	s.Scheduler = ldScheduler
	if x, ok := v.get("scheduler"); ok {
		s.Scheduler = fsm.Scheduler(strings.ToLower(x.val))
	} else {
		fs.add(v.line, "%s: no scheduler: using ldirectord's default wrr (Troop's own default is wlc)", v.text)
	}
	if x, ok := v.get("persistent"); ok {
		d, ok := seconds(x.val)
		if !ok || d%time.Second != 0 {
			return s, errorf(file, x.line, "persistent=%s: want a whole number of seconds", x.val)
		}
		s.Persistence = &fsm.Persistence{Timeout: fsm.Duration(d)}
	}
	if x, ok := v.get("netmask"); ok {
		n, ok := prefixOfMask(x.val, bits)
		if !ok {
			return s, errorf(file, x.line, "netmask=%s: want a dotted-quad netmask or a prefix length", x.val)
		}
		if s.Persistence == nil {
			fs.add(x.line, "netmask=%s: not imported: it only groups persistent clients and this virtual has no persistent=", x.val)
		} else {
			s.Persistence.Netmask = n
		}
	}
	s.Quiescent = true // ldirectord's documented default
	if x, ok := v.get("quiescent"); ok {
		switch strings.ToLower(x.val) {
		case "yes":
		case "no":
			s.Quiescent = false
		default:
			return s, errorf(file, x.line, "quiescent=%s: want yes or no", x.val)
		}
	} else {
		fs.add(v.line, "%s: no quiescent: using ldirectord's documented default yes (failed servers kept at weight 0); old ldirectord releases removed them instead, so write quiescent=no if yours did", v.text)
	}

	// Real servers.
	fwd := map[fsm.Forwarding]int{}
	for _, rl := range v.reals {
		rs, method, reqRecv, err := ldReals(file, rl, s)
		if err != nil {
			return s, err
		}
		fwd[method] += len(rs)
		for i := range rs {
			rs[i].Forwarding = method
		}
		s.Reals = append(s.Reals, rs...)
		if reqRecv != nil {
			fs.add(rl.line, "the request/receive pair of this real server is not imported per real server: Troop checks every real server of a service alike (the service's request/receive is used)")
		}
	}
	// The service's forwarding is the most common one; the others stay on their real servers.
	best := fsm.DR
	for _, m := range []fsm.Forwarding{fsm.DR, fsm.NAT, fsm.TUN} {
		if fwd[m] > fwd[best] {
			best = m
		}
	}
	s.Forwarding = best
	for i := range s.Reals {
		if s.Reals[i].Forwarding == best {
			s.Reals[i].Forwarding = ""
		}
		// ldirectord sets the port of a gate or ipip real server to the virtual's (LVS cannot map it).
		r := &s.Reals[i]
		m := r.Forwarding
		if m == "" {
			m = best
		}
		if s.FWMark == 0 && m != fsm.NAT && r.Port != 0 && r.Port != s.Port {
			fs.add(v.line, "real server %s: port %d changed to the virtual's %d, as ldirectord does for %s", r.Address, r.Port, s.Port, m)
			r.Port = s.Port
		}
	}

	// Fallback.
	fbKey := "fallback"
	if v.six {
		fbKey = "fallback6"
	}
	if x, ok := v.get(fbKey); ok {
		f := strings.Fields(x.val)
		ap, err := ldAddrPort(f[0], v.six)
		if err != nil {
			return s, errorf(file, x.line, "%s=%s: %v", fbKey, x.val, err)
		}
		s.Fallback = &fsm.Fallback{Address: ap.Addr(), Port: ap.Port()}
		if len(f) > 1 {
			m, ok := ldMethod(f[1])
			if !ok {
				return s, errorf(file, x.line, "%s=%s: forwarding must be gate, masq or ipip", fbKey, x.val)
			}
			s.Fallback.Forwarding = m
		}
		if len(f) > 2 {
			return s, errorf(file, x.line, "%s=%s: want address[:port] [gate|masq|ipip]", fbKey, x.val)
		}
	}

	check, err := ldCheck(file, v, &s, fs, reported)
	if err != nil {
		return s, err
	}
	s.Check = check
	return s, nil
}

// ldReals reads one real= line: address[->address][:port] gate|masq|ipip [weight] ["request", "receive"].
func ldReals(file string, rl ldValue, s fsm.Service) ([]fsm.Real, fsm.Forwarding, []string, error) {
	key, val, _ := strings.Cut(rl.val, "=")
	six := key == "real6"
	f, err := splitQuoted(val)
	if err != nil {
		return nil, "", nil, errorf(file, rl.line, "%s: %v", rl.val, err)
	}
	if len(f) < 2 {
		return nil, "", nil, errorf(file, rl.line, "%s: want address[:port] gate|masq|ipip [weight]", rl.val)
	}
	method, ok := ldMethod(f[1])
	if !ok {
		return nil, "", nil, errorf(file, rl.line, "%s: forwarding %q must be gate, masq or ipip", rl.val, f[1])
	}
	var weight *int
	rest := f[2:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "\"") {
		w, err := strconv.Atoi(rest[0])
		if err != nil || w < 0 || w > 65535 {
			return nil, "", nil, errorf(file, rl.line, "%s: weight %q must be 0-65535", rl.val, rest[0])
		}
		weight = &w
		rest = rest[1:]
	}
	var reqRecv []string
	switch len(rest) {
	case 0:
	case 2:
		reqRecv = []string{unquote(strings.TrimSuffix(rest[0], ",")), unquote(rest[1])}
	default:
		return nil, "", nil, errorf(file, rl.line, "%s: after the weight, want \"request\", \"receive\"", rl.val)
	}

	// address[->address][:port]
	spec := f[0]
	var port uint16
	if i := strings.LastIndex(spec, ":"); i >= 0 && (!six || strings.Contains(spec, "]:")) {
		p, ok := parsePort(spec[i+1:])
		if !ok {
			return nil, "", nil, errorf(file, rl.line, "%s: bad port %q", rl.val, spec[i+1:])
		}
		spec, port = spec[:i], p
	}
	from, to, isRange := strings.Cut(spec, "->")
	first, err := netip.ParseAddr(strings.Trim(from, "[]"))
	if err != nil {
		return nil, "", nil, errorf(file, rl.line, "%s: %q is not an IP address (host names are not resolved by troop import; write the address)", rl.val, from)
	}
	last := first
	if isRange {
		if last, err = netip.ParseAddr(strings.Trim(to, "[]")); err != nil || !first.Is4() || !last.Is4() || last.Less(first) {
			return nil, "", nil, errorf(file, rl.line, "%s: a range must be two IPv4 addresses, lowest first", rl.val)
		}
	}
	if six != first.Is6() {
		return nil, "", nil, errorf(file, rl.line, "%s: %s is not an %s address", rl.val, first, map[bool]string{true: "IPv6", false: "IPv4"}[six])
	}
	var rs []fsm.Real
	for a := first; ; a = a.Next() {
		rs = append(rs, fsm.Real{Address: a, Port: port, Weight: weight})
		if a == last || len(rs) > 1024 {
			break
		}
	}
	return rs, method, reqRecv, nil
}

func ldMethod(s string) (fsm.Forwarding, bool) {
	switch strings.ToLower(s) {
	case "gate":
		return fsm.DR, true
	case "masq":
		return fsm.NAT, true
	case "ipip":
		return fsm.TUN, true
	}
	return "", false
}

// ldAddrPort reads address[:port] or [IPv6][:port].
func ldAddrPort(s string, six bool) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	host, portText := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return netip.AddrPort{}, fmt.Errorf("unclosed [")
		}
		host, portText = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		host, portText = s[:i], s[i+1:]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (host names are not resolved by troop import; write the address)", host)
	}
	if six != a.Is6() {
		if six {
			return netip.AddrPort{}, fmt.Errorf("%s is not an IPv6 address (virtual6, real6 and fallback6 take [IPv6]:port)", a)
		}
		return netip.AddrPort{}, fmt.Errorf("%s is an IPv6 address: use virtual6, real6 or fallback6", a)
	}
	var port uint16
	if portText != "" {
		p, ok := parsePort(portText)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("bad port %q", portText)
		}
		port = p
	}
	return netip.AddrPortFrom(a, port), nil
}

// ldCheck converts checktype, service and their settings into the service's check.
func ldCheck(file string, v *ldVirtual, s *fsm.Service, fs *findings, reported map[int]bool) (*fsm.HealthCheck, error) {
	interval := ldCheckInterval
	if x, ok := v.get("checkinterval"); ok {
		d, ok := seconds(x.val)
		if !ok {
			return nil, errorf(file, x.line, "checkinterval=%s: want a number of seconds", x.val)
		}
		interval = d
	}
	durationOf := func(key string) (time.Duration, *ldValue, error) {
		x, ok := v.get(key)
		if !ok {
			return 0, nil, nil
		}
		d, ok := seconds(x.val)
		if !ok {
			return 0, nil, errorf(file, x.line, "%s=%s: want a number of seconds", key, x.val)
		}
		return d, &x, nil
	}
	negotiate, negAt, err := durationOf("negotiatetimeout")
	if err != nil {
		return nil, err
	}
	connect, conAt, err := durationOf("connecttimeout")
	if err != nil {
		return nil, err
	}
	legacy, legAt, err := durationOf("timeout")
	if err != nil {
		return nil, err
	}
	if legAt != nil && !reported[legAt.line] {
		reported[legAt.line] = true
		fs.add(legAt.line, "timeout=%s: the old name of connecttimeout, read as the negotiate timeout", legAt.val)
	}
	if connect == 0 {
		connect, conAt = legacy, legAt
	}
	if negotiate == 0 {
		negotiate, negAt = connect, conAt
	}
	checkT, checkAt, err := durationOf("checktimeout")
	if err != nil {
		return nil, err
	}
	if checkT == 0 {
		checkT, checkAt = negotiate, negAt
	}
	if negotiate == 0 {
		negotiate = ldNegotiateTimeout
	}
	if checkT == 0 {
		checkT = ldCheckTimeout
	}

	checktype := "negotiate"
	ctLine := v.line
	if x, ok := v.get("checktype"); ok {
		checktype, ctLine = strings.ToLower(x.val), x.line
	}
	service := ""
	if x, ok := v.get("service"); ok {
		service = strings.ToLower(x.val)
	} else if s.FWMark == 0 {
		service = ldServiceByPort[s.Port]
	}
	if service == "" {
		service = "none"
	}
	c := &fsm.HealthCheck{Rise: 1, Fall: 1, InitialState: fsm.HealthDown}
	if x, ok := v.get("failurecount"); ok {
		n, err := strconv.Atoi(x.val)
		if err != nil || n < 1 || n > 100 {
			return nil, errorf(file, x.line, "failurecount=%s: want 1-100", x.val)
		}
		c.Fall = n
	}
	if x, ok := v.get("checkport"); ok {
		p, ok := parsePort(x.val)
		if !ok || p == 0 {
			return nil, errorf(file, x.line, "checkport=%s: want a port", x.val)
		}
		c.Port = p
	}
	timeout := checkT
	timeoutAt := checkAt

	if n, err := strconv.Atoi(checktype); err == nil && n > 0 {
		fs.add(ctLine, "checktype=%d (a negotiate check every %d connect checks): Troop runs the negotiate check every interval", n, n)
		checktype = "negotiate"
	}
	switch checktype {
	case "negotiate":
		timeout, timeoutAt = negotiate, negAt
		if err := ldNegotiate(file, v, s, c, service, ctLine, fs); err != nil {
			return nil, err
		}
		if c.Type == "tcp" && c.Send == "" { // a connect fallback uses the connect timeout
			timeout, timeoutAt = checkT, checkAt
		}
	case "connect":
		c.Type = "tcp"
		if s.Protocol == fsm.UDP {
			c.Type = "icmp" // ldirectord pings for a connect check of a UDP service
			fs.add(ctLine, "checktype=connect on a UDP service: ldirectord pings, so an icmp check is used")
		}
	case "ping":
		c.Type = "icmp"
	case "external", "external-perl":
		c.Type = "exec"
		cmd := "/bin/true"
		if x, ok := v.get("checkcommand"); ok {
			cmd = unquote(x.val)
		} else {
			fs.add(ctLine, "checktype=%s without checkcommand: ldirectord's default /bin/true (always up)", checktype)
		}
		c.Command = strings.Fields(cmd)
		if len(c.Command) == 0 {
			return nil, errorf(file, ctLine, "checkcommand is empty")
		}
		if checktype == "external-perl" {
			fs.add(ctLine, "checktype=external-perl: run as an external program (exec check); the script needs a #! line and the execute bit")
		}
	case "on":
		c = &fsm.HealthCheck{Type: "none"}
		return c, nil
	case "off":
		fs.add(ctLine, "checktype=off (no real or fallback server activated): imported with every real server disabled and no fallback; enable them with `troop real enable`")
		for i := range s.Reals {
			s.Reals[i].Admin = fsm.Disabled
		}
		s.Fallback = nil
		return &fsm.HealthCheck{Type: "none"}, nil
	default:
		return nil, errorf(file, ctLine, "checktype=%s: want connect, negotiate, ping, external, external-perl, on, off or a number", checktype)
	}
	if c.Type == "none" {
		return c, nil
	}
	for _, key := range []string{"request", "receive", "virtualhost", "httpmethod"} {
		if x, ok := v.get(key); ok && checktype != "negotiate" {
			fs.add(x.line, "%s: not used by checktype=%s (only by negotiate checks), not imported", key, checktype)
		}
	}
	c.Interval = fsm.Duration(interval)
	t, changed := fitTimeout(timeout, interval)
	if changed {
		line := v.line
		if timeoutAt != nil {
			line = timeoutAt.line
		}
		fs.add(line, "check timeout %s is not shorter than the check interval %s: Troop needs it shorter, so %s is used", timeout, interval, t)
	}
	c.Timeout = fsm.Duration(t)
	return c, nil
}

// ldNegotiate fills c in for checktype=negotiate and the given service.
func ldNegotiate(file string, v *ldVirtual, s *fsm.Service, c *fsm.HealthCheck, service string, ctLine int, fs *findings) error {
	request, hasReq := v.get("request")
	receive, hasRecv := v.get("receive")
	req, recv := unquote(request.val), unquote(receive.val)
	switch service {
	case "http", "https":
		c.Type = service
		if hasReq {
			path := req
			if u, ok := strings.CutPrefix(path, service+"://"); ok {
				host, p, _ := strings.Cut(u, "/")
				fs.add(request.line, "request=%q names a host: ldirectord checks that URL instead of each real server; Troop checks each real server with Host %q", req, host)
				c.Host, path = host, p
			}
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			c.Path = path
		}
		setExpect(c, recv)
		if x, ok := v.get("virtualhost"); ok {
			c.Host = unquote(x.val)
		}
		if x, ok := v.get("httpmethod"); ok {
			m := strings.ToUpper(x.val)
			if m != "GET" && m != "HEAD" {
				return errorf(file, x.line, "httpmethod=%s: want GET or HEAD", x.val)
			}
			c.Method = m
		}
		if service == "https" {
			c.TLSSkipVerify = true // ldirectord's check does not verify the certificate
			fs.add(ctLine, "service=https: ldirectord does not verify the real servers' certificates, so tls_skip_verify = true; set ca_file to verify them")
		}
	case "simpletcp":
		c.Type = "tcp"
		c.Send = strings.ReplaceAll(req, `\n`, "\n")
		setExpect(c, recv)
	case "dns":
		c.Type = "dns"
		if !hasReq {
			return errorf(file, ctLine, "service=dns needs request= (the name to look up)")
		}
		c.Query = req
		c.QueryType = "A"
		if a, err := netip.ParseAddr(req); err == nil {
			c.Query, c.QueryType = reverseName(a), "PTR"
		}
		if hasRecv {
			c.ExpectAnswer = recv
		}
		return nil
	case "none":
		c.Type = "none"
		fs.add(ctLine, "service=none with a negotiate check: ldirectord does not monitor it, so neither does Troop (check \"none\")")
		return nil
	default:
		c.Type = "tcp"
		fs.add(ctLine, "service=%s: Troop has no %s check; a TCP connect check is used instead (or write an exec check)", service, service)
		hasReq = false
	}
	if hasReq && c.Type == "tcp" && c.Send == "" {
		fs.add(request.line, "request: not used by the TCP connect check, not imported")
	}
	return nil
}

// reverseName is the PTR name of an address.
func reverseName(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
	}
	b := a.As16()
	var sb strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		fmt.Fprintf(&sb, "%x.%x.", b[i]&0xf, b[i]>>4)
	}
	return sb.String() + "ip6.arpa"
}

// splitQuoted splits on spaces, keeping "quoted strings" (with their quotes) whole.
func splitQuoted(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unclosed quote")
			}
			tok := s[:end+2]
			s = s[end+2:]
			if strings.HasPrefix(s, ",") {
				s = s[1:]
			}
			out = append(out, tok)
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out, nil
}

// unquote removes one pair of surrounding double quotes.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
