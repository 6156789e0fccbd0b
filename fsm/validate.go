package fsm

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors that callers branch on (the API maps them to HTTP status codes).
var (
	// ErrInvalid wraps every validation failure of a user's input.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound means the service or real server named by a command does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a command would create a duplicate (a real server, a kernel service key).
	ErrConflict = errors.New("conflict")
	// ErrUnknownCommand means a log entry's type is not one this build knows.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrNewerVersion means a log entry or snapshot was written by a newer format than this build reads.
	ErrNewerVersion = errors.New("newer format version")
	// ErrHalted means the FSM has stopped applying the log: it met an entry it does not
	// understand (see FSM.Apply and FSM.Halted).
	ErrHalted = errors.New("fsm halted")
)

// FieldError is a rejected input: which field, what value, why. Field is a path such as
// `service "web" real "192.0.2.10:80" weight`.
type FieldError struct {
	Field  string
	Value  string
	Reason string
	// Kind is ErrInvalid, ErrNotFound or ErrConflict.
	Kind error
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", e.Field, strconv.Quote(e.Value), e.Reason)
}

// Unwrap lets errors.Is match the kind.
func (e *FieldError) Unwrap() error { return e.Kind }

func invalid(field, value, reason string, args ...any) *FieldError {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...), Kind: ErrInvalid}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ifaceRE matches a Linux interface name (IFNAMSIZ 16 including the NUL).
var ifaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,14}$`)

// Limits the kernel puts on values.
const (
	maxWeight = 65535
	// maxPersistence is what fits IPVS's timeout in seconds comfortably (ipvsadm accepts up to u32).
	maxPersistence = 365 * 24 * time.Hour
)

// Health-check defaults, chosen for fast detection; ldirectord uses checkinterval 10 s, checktimeout
// 5 s and one failure, keepalived delay_loop 60 s and connect_timeout 5 s, and neither has a rise.
const (
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = 1 * time.Second
	DefaultCheckRise     = 2
	DefaultCheckFall     = 2
)

// NormalizeService fills in defaults and sorts what has no meaningful order, so that equal
// services encode to equal bytes. It does not validate.
func NormalizeService(s *Service) {
	if s.FWMark == 0 && s.Protocol == "" {
		s.Protocol = DefaultProtocol
	}
	if s.Scheduler == "" {
		s.Scheduler = DefaultScheduler
	}
	if s.Forwarding == "" {
		s.Forwarding = DefaultForwarding
	}
	if s.VIP.IsValid() {
		s.VIP = s.VIP.Unmap()
	}
	if len(s.SchedFlags) == 0 {
		s.SchedFlags = nil
	} else {
		slices.Sort(s.SchedFlags)
	}
	if c := s.Check; c != nil {
		normalizeCheck(c)
	}
	if f := s.Fallback; f != nil {
		f.Address = f.Address.Unmap()
		if f.Port == 0 && s.FWMark == 0 {
			f.Port = s.Port
		}
	}
	for i := range s.Reals {
		normalizeReal(s, &s.Reals[i])
	}
	if len(s.Reals) == 0 {
		s.Reals = nil
	}
	slices.SortFunc(s.Reals, func(a, b Real) int { return compareReal(a, b) })
}

func compareReal(a, b Real) int {
	return netip.AddrPortFrom(a.Address, a.Port).Compare(netip.AddrPortFrom(b.Address, b.Port))
}

func normalizeReal(s *Service, r *Real) {
	r.Address = r.Address.Unmap()
	if r.Port == 0 && s.FWMark == 0 {
		r.Port = s.Port
	}
	if r.Admin == "" {
		r.Admin = Enabled
	}
}

func normalizeCheck(c *HealthCheck) {
	if c.Interval == 0 {
		c.Interval = Duration(DefaultCheckInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(min(DefaultCheckTimeout, time.Duration(c.Interval)/2))
	}
	if c.Rise == 0 {
		c.Rise = DefaultCheckRise
	}
	if c.Fall == 0 {
		c.Fall = DefaultCheckFall
	}
	if c.InitialState == "" {
		c.InitialState = HealthUp
	}
	if (c.Type == "http" || c.Type == "https") && c.Method == "" {
		c.Method = "GET"
	}
	if (c.Type == "http" || c.Type == "https") && c.Path == "" {
		c.Path = "/"
	}
	if c.Type == "dns" && c.QueryType == "" {
		c.QueryType = "A"
	}
	if c.Type == "dns" && c.ExpectRcode == "" {
		c.ExpectRcode = "NOERROR"
	}
}

// ValidateService checks one normalized service on its own (not against the rest of the table).
func ValidateService(s *Service) error {
	f := fmt.Sprintf("service %q", s.Name)
	if !nameRE.MatchString(s.Name) {
		return invalid("service name", s.Name, "must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if s.FWMark == 0 {
		if !s.VIP.IsValid() {
			return invalid(f+" vip", "", "is required (or set fwmark)")
		}
		if s.Port == 0 {
			return invalid(f+" port", "0", "must be 1–65535")
		}
		if !slices.Contains(Protocols, s.Protocol) {
			return invalid(f+" protocol", string(s.Protocol), "must be one of %s", joinOf(Protocols))
		}
		if s.Family != "" && s.Family != familyOf(s.VIP) {
			return invalid(f+" family", string(s.Family), "does not match vip %s", s.VIP)
		}
	} else {
		if s.Port != 0 {
			return invalid(f+" port", strconv.Itoa(int(s.Port)), "a firewall-mark service has no port")
		}
		if s.Protocol != "" {
			return invalid(f+" protocol", string(s.Protocol), "a firewall-mark service has no protocol")
		}
		if s.VIP.IsValid() && s.Family != "" && s.Family != familyOf(s.VIP) {
			return invalid(f+" family", string(s.Family), "does not match vip %s", s.VIP)
		}
		if !s.VIP.IsValid() && s.Family != IPv4 && s.Family != IPv6 {
			return invalid(f+" family", string(s.Family), "a firewall-mark service without a vip needs family ipv4 or ipv6")
		}
	}
	if s.VIP.IsValid() {
		if err := checkUnicast(f+" vip", s.VIP); err != nil {
			return err
		}
	}
	if !slices.Contains(Schedulers, s.Scheduler) {
		return invalid(f+" scheduler", string(s.Scheduler), "must be one of %s", joinOf(Schedulers))
	}
	for i, fl := range s.SchedFlags {
		sched, ok := schedulerOfFlag[fl]
		if !ok {
			return invalid(f+" sched_flags", string(fl), "must be one of sh-fallback, sh-port, mh-fallback, mh-port")
		}
		if sched != s.Scheduler {
			return invalid(f+" sched_flags", string(fl), "applies only to scheduler %s, not %s", sched, s.Scheduler)
		}
		if i > 0 && s.SchedFlags[i-1] == fl {
			return invalid(f+" sched_flags", string(fl), "is repeated")
		}
	}
	if !slices.Contains(Forwardings, s.Forwarding) {
		return invalid(f+" forwarding", string(s.Forwarding), "must be one of %s", joinOf(Forwardings))
	}
	fam := s.family()
	if p := s.Persistence; p != nil {
		if p.Timeout <= 0 || time.Duration(p.Timeout) > maxPersistence || time.Duration(p.Timeout)%time.Second != 0 {
			return invalid(f+" persistence timeout", p.Timeout.String(), "must be whole seconds between 1s and %s", maxPersistence)
		}
		if p.Netmask < 0 || p.Netmask > bitsOf(fam) {
			return invalid(f+" persistence netmask", strconv.Itoa(p.Netmask), "must be a prefix length 0–%d", bitsOf(fam))
		}
	}
	if c := s.Check; c != nil {
		if err := validateCheck(f+" check", c); err != nil {
			return err
		}
	}
	if fb := s.Fallback; fb != nil {
		if err := checkUnicast(f+" fallback address", fb.Address); err != nil {
			return err
		}
		if familyOf(fb.Address) != fam {
			return invalid(f+" fallback address", fb.Address.String(), "is %s but the service is %s", familyOf(fb.Address), fam)
		}
		if fb.Forwarding != "" && !slices.Contains(Forwardings, fb.Forwarding) {
			return invalid(f+" fallback forwarding", string(fb.Forwarding), "must be one of %s", joinOf(Forwardings))
		}
	}
	for i := range s.Reals {
		if err := validateReal(s, &s.Reals[i]); err != nil {
			return err
		}
		if i > 0 && s.Reals[i-1].ID() == s.Reals[i].ID() {
			e := invalid(f+" real", s.Reals[i].ID(), "is listed twice")
			e.Kind = ErrConflict
			return e
		}
	}
	return nil
}

func validateReal(s *Service, r *Real) error {
	f := fmt.Sprintf("service %q real %q", s.Name, r.ID())
	if err := checkUnicast(f+" address", r.Address); err != nil {
		return err
	}
	if fam := s.family(); familyOf(r.Address) != fam {
		return invalid(f+" address", r.Address.String(), "is %s but the service is %s", familyOf(r.Address), fam)
	}
	if w := r.EffectiveWeight(); w < 0 || w > maxWeight {
		return invalid(f+" weight", strconv.Itoa(w), "must be 0–%d", maxWeight)
	}
	if r.Forwarding != "" && !slices.Contains(Forwardings, r.Forwarding) {
		return invalid(f+" forwarding", string(r.Forwarding), "must be one of %s", joinOf(Forwardings))
	}
	fwd := r.Forwarding
	if fwd == "" {
		fwd = s.Forwarding
	}
	// DR and tunnelling deliver the packet unchanged: the real server sees the VIP's port.
	if fwd != NAT && s.FWMark == 0 && r.Port != s.Port {
		return invalid(f+" port", strconv.Itoa(int(r.Port)), "forwarding %s cannot change the port; use nat or port %d", fwd, s.Port)
	}
	// The kernel refuses (ERANGE) a lower threshold above the upper one, even when the upper one
	// is 0, "no limit": a lower threshold only means something under an upper one.
	if r.LowerThreshold > r.UpperThreshold {
		if r.UpperThreshold == 0 {
			return invalid(f+" lower_threshold", strconv.FormatUint(uint64(r.LowerThreshold), 10), "needs an upper_threshold at or above it")
		}
		return invalid(f+" lower_threshold", strconv.FormatUint(uint64(r.LowerThreshold), 10), "is above upper_threshold %d", r.UpperThreshold)
	}
	if !slices.Contains(AdminStates, r.Admin) {
		return invalid(f+" admin", string(r.Admin), "must be one of %s", joinOf(AdminStates))
	}
	return nil
}

// DNS query types and response codes a dns check understands.
var (
	DNSQueryTypes = []string{"A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"}
	DNSRcodes     = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}
)

var httpStatusRE = regexp.MustCompile(`^([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?$`)

func validateCheck(f string, c *HealthCheck) error {
	if !slices.Contains(CheckTypes, c.Type) {
		return invalid(f+" type", c.Type, "must be one of %s", strings.Join(CheckTypes, ", "))
	}
	if c.Interval < Duration(10*time.Millisecond) {
		return invalid(f+" interval", c.Interval.String(), "must be at least 10ms")
	}
	// A check still running when the next one is due would pile up: the timeout must end first.
	if c.Timeout <= 0 || c.Timeout >= c.Interval {
		return invalid(f+" timeout", c.Timeout.String(), "must be positive and shorter than the interval %s", c.Interval)
	}
	if c.Rise < 1 || c.Rise > 100 {
		return invalid(f+" rise", strconv.Itoa(c.Rise), "must be 1–100")
	}
	if c.Fall < 1 || c.Fall > 100 {
		return invalid(f+" fall", strconv.Itoa(c.Fall), "must be 1–100")
	}
	if c.InitialState != HealthUp && c.InitialState != HealthDown {
		return invalid(f+" initial_state", string(c.InitialState), "must be up or down")
	}
	if c.ExpectRegexp != "" {
		if _, err := regexp.Compile(c.ExpectRegexp); err != nil {
			return invalid(f+" expect_regexp", c.ExpectRegexp, "%v", err)
		}
	}
	switch c.Type {
	case "http", "https":
		if c.Method != "GET" && c.Method != "HEAD" {
			return invalid(f+" method", c.Method, "must be GET or HEAD")
		}
		if !strings.HasPrefix(c.Path, "/") {
			return invalid(f+" path", c.Path, "must start with /")
		}
		for _, st := range c.ExpectStatus {
			m := httpStatusRE.FindStringSubmatch(st)
			if m == nil || (m[2] != "" && m[2] < m[1]) {
				return invalid(f+" expect_status", st, "must be a status code like 200 or a range like 200-399")
			}
		}
		if c.Method == "HEAD" && (c.Expect != "" || c.ExpectRegexp != "") {
			return invalid(f+" method", c.Method, "a HEAD response has no body for expect or expect_regexp to find")
		}
	case "dns":
		if c.Query == "" {
			return invalid(f+" query", "", "is required for a dns check")
		}
		if !slices.Contains(DNSQueryTypes, c.QueryType) {
			return invalid(f+" query_type", c.QueryType, "must be one of %s", strings.Join(DNSQueryTypes, ", "))
		}
		if !slices.Contains(DNSRcodes, c.ExpectRcode) {
			return invalid(f+" expect_rcode", c.ExpectRcode, "must be one of %s", strings.Join(DNSRcodes, ", "))
		}
	case "exec":
		if len(c.Command) == 0 || c.Command[0] == "" {
			return invalid(f+" command", "", "is required for an exec check")
		}
		// Every director runs the program: a relative path would depend on each agent's cwd/PATH.
		if !strings.HasPrefix(c.Command[0], "/") {
			return invalid(f+" command", c.Command[0], "must be an absolute path (it runs on every director)")
		}
	}
	if c.Type != "https" && (c.TLSSkipVerify || c.CAFile != "") {
		return invalid(f+" type", c.Type, "tls_skip_verify and ca_file need type https")
	}
	return nil
}

func checkUnicast(field string, a netip.Addr) error {
	if !a.IsValid() {
		return invalid(field, "", "is required")
	}
	if a.IsUnspecified() || a.IsMulticast() || (a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return invalid(field, a.String(), "must be a unicast address")
	}
	if a.Zone() != "" {
		return invalid(field, a.String(), "must not carry a zone")
	}
	return nil
}

func bitsOf(f Family) int {
	if f == IPv6 {
		return 128
	}
	return 32
}

func joinOf[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// NormalizeGroup fills in host prefixes and sorts the VIPs.
func NormalizeGroup(g *VIPGroup) {
	for i, p := range g.VIPs {
		// An IPv4-mapped VIP is the IPv4 address; its prefix loses the 96 mapping bits.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			g.VIPs[i] = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
	}
	slices.SortFunc(g.VIPs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
}

// ValidateGroup checks one normalized VIP group.
func ValidateGroup(g *VIPGroup) error {
	f := fmt.Sprintf("vip_group %q", g.Name)
	if !nameRE.MatchString(g.Name) {
		return invalid("vip_group name", g.Name, "must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if g.Interface != "" && !ifaceRE.MatchString(g.Interface) {
		return invalid(f+" interface", g.Interface, "is not a valid interface name")
	}
	if len(g.VIPs) == 0 {
		return invalid(f+" vips", "", "must list at least one VIP")
	}
	for i, p := range g.VIPs {
		if !p.IsValid() {
			return invalid(f+" vips", p.String(), "is not a valid address/prefix")
		}
		if err := checkUnicast(f+" vips", p.Addr()); err != nil {
			return err
		}
		if i > 0 && g.VIPs[i-1].Addr() == p.Addr() {
			return invalid(f+" vips", p.Addr().String(), "is listed twice")
		}
	}
	return nil
}

// NormalizeTable normalizes every service and group and sorts them by name.
func NormalizeTable(t *Table) {
	for i := range t.Services {
		NormalizeService(&t.Services[i])
	}
	for i := range t.VIPGroups {
		NormalizeGroup(&t.VIPGroups[i])
	}
	slices.SortFunc(t.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(t.VIPGroups, func(a, b VIPGroup) int { return strings.Compare(a.Name, b.Name) })
	if len(t.VIPGroups) == 0 {
		t.VIPGroups = nil
	}
	if t.Services == nil {
		t.Services = []Service{}
	}
}

// ValidateTable checks a normalized table as a whole: every service and group, unique names,
// unique kernel keys, and each VIP in at most one group.
func ValidateTable(t *Table) error {
	keys := make(map[string]string, len(t.Services))
	for i := range t.Services {
		s := &t.Services[i]
		if err := ValidateService(s); err != nil {
			return err
		}
		if i > 0 && t.Services[i-1].Name == s.Name {
			return &FieldError{Field: "service name", Value: s.Name, Reason: "is defined twice", Kind: ErrConflict}
		}
		if other, dup := keys[s.Key()]; dup {
			return &FieldError{Field: fmt.Sprintf("service %q", s.Name), Value: s.Key(), Reason: fmt.Sprintf("is already served by service %q", other), Kind: ErrConflict}
		}
		keys[s.Key()] = s.Name
	}
	groupOf := map[netip.Addr]string{}
	for i := range t.VIPGroups {
		g := &t.VIPGroups[i]
		if err := ValidateGroup(g); err != nil {
			return err
		}
		if i > 0 && t.VIPGroups[i-1].Name == g.Name {
			return &FieldError{Field: "vip_group name", Value: g.Name, Reason: "is defined twice", Kind: ErrConflict}
		}
		for _, p := range g.VIPs {
			if other, dup := groupOf[p.Addr()]; dup {
				return &FieldError{Field: fmt.Sprintf("vip_group %q vips", g.Name), Value: p.Addr().String(), Reason: fmt.Sprintf("is already in vip_group %q", other), Kind: ErrConflict}
			}
			groupOf[p.Addr()] = g.Name
		}
	}
	return nil
}
