// Package migrate converts the configurations of the tools Troop replaces (ldirectord,
// Heartbeat, keepalived) into Troop table and agent files, for `troop import`. It does no I/O:
// the caller reads the files and hands over their contents, and writes what comes back.
//
// Every importer is all or nothing. A file it cannot read (a syntax error, an address it cannot
// parse, a value the Troop table would refuse) is an *Error naming the file and line, and nothing
// else comes back, so no partial table can be applied by mistake. Everything it read but could
// not carry over exactly (a directive with no Troop equivalent, a value it had to change) is a
// Finding with its line: nothing is dropped without one.
package migrate

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

// Error is a file an importer cannot read: the line at fault and why.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

func errorf(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// Finding is something read but not carried over exactly: no equivalent in Troop, a value
// changed to one Troop accepts, or a default that differs. Line 0 means the whole file.
type Finding struct {
	File string
	Line int
	Msg  string
}

func (f Finding) String() string {
	if f.Line == 0 {
		return f.File + ": " + f.Msg
	}
	return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Msg)
}

// findings collects the Findings of one file.
type findings struct {
	file string
	list []Finding
}

// add records a finding once: a global directive inherited by several virtuals is reported
// at its own line only once.
func (fs *findings) add(line int, format string, args ...any) {
	f := Finding{File: fs.file, Line: line, Msg: fmt.Sprintf(format, args...)}
	if !slices.Contains(fs.list, f) {
		fs.list = append(fs.list, f)
	}
}

// sorted returns the findings in line order.
func (fs *findings) sorted() []Finding {
	slices.SortStableFunc(fs.list, func(a, b Finding) int { return a.Line - b.Line })
	return fs.list
}

// TableResult is an imported table: the table itself, its HCL (what `troop apply -f` reads),
// and the findings.
type TableResult struct {
	Table    fsm.Table
	HCL      []byte
	Findings []Finding
}

// origin is where a service came from, for the comment above it in the HCL.
type origin struct {
	service string
	comment string
}

// render formats t with config.FormatTable, puts a header and each service's origin above it,
// and checks that the result parses back as a valid table: the importer's promise to the caller.
func render(file, header string, t fsm.Table, origins []origin) ([]byte, error) {
	out := config.FormatTable(t)
	if _, err := config.ParseTable(file+" (imported)", out); err != nil {
		return nil, fmt.Errorf("%s: the imported table does not validate (a bug in troop import):\n%w", file, err)
	}
	for _, o := range origins {
		open := []byte("service " + strconv.Quote(o.service) + " {\n")
		out = bytes.Replace(out, open, append([]byte("# "+o.comment+"\n"), open...), 1)
	}
	var b bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		b.WriteString("# " + l + "\n")
	}
	b.WriteString("\n")
	b.Write(out)
	return b.Bytes(), nil
}

// validate normalizes and validates one service, as ParseTable will.
func validateService(s *fsm.Service) error {
	fsm.NormalizeService(s)
	return fsm.ValidateService(s)
}

// nameRE is what fsm accepts as a service or group name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// names hands out unique service names.
type names map[string]int

// unique returns base, or base-2, base-3... if base is taken.
func (n names) unique(base string) string {
	base = sanitize(base)
	n[base]++
	if n[base] == 1 {
		return base
	}
	for i := n[base]; ; i++ {
		c := fmt.Sprintf("%s-%d", base, i)
		if n[c] == 0 {
			n[c] = 1
			return c
		}
	}
}

// sanitize turns s into a valid name: other characters become '-'.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	s = strings.Trim(string(b), "-._")
	if len(s) > 63 {
		s = s[:63]
	}
	if !nameRE.MatchString(s) {
		s = "svc-" + s
	}
	return s
}

// wellKnown names the usual service of a port, for service names.
var wellKnown = map[uint16]string{
	21: "ftp", 22: "ssh", 25: "smtp", 53: "dns", 80: "http", 110: "pop3", 119: "nntp", 143: "imap",
	389: "ldap", 443: "https", 587: "submission", 993: "imaps", 995: "pop3s", 1521: "oracle",
	1812: "radius", 3128: "http-proxy", 3306: "mysql", 5060: "sip", 5432: "pgsql", 8080: "http-alt",
}

// serviceBase is the name a service gets before uniqueness: its port's service name.
func serviceBase(s *fsm.Service) string {
	if s.FWMark != 0 {
		return "fwmark-" + strconv.FormatUint(uint64(s.FWMark), 10)
	}
	if n, ok := wellKnown[s.Port]; ok {
		return n
	}
	return string(s.Protocol) + "-" + strconv.Itoa(int(s.Port))
}

// portByName is the subset of /etc/services both tools' files use for ports.
var portByName = map[string]uint16{
	"ftp": 21, "ssh": 22, "smtp": 25, "domain": 53, "dns": 53, "http": 80, "www": 80, "pop3": 110,
	"nntp": 119, "imap": 143, "imap2": 143, "ldap": 389, "https": 443, "submission": 587,
	"imaps": 993, "pop3s": 995, "mysql": 3306, "postgresql": 5432, "sip": 5060,
}

// parsePort reads a port number or a well-known service name.
func parsePort(s string) (uint16, bool) {
	if p, ok := portByName[strings.ToLower(s)]; ok {
		return p, true
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// prefixOfMask reads a netmask written as a dotted quad or a prefix length.
func prefixOfMask(s string, bits int) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, n >= 0 && n <= bits
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&(1<<31) != 0 {
		ones++
		v <<= 1
	}
	return ones, v == 0 // contiguous
}

// seconds reads a whole or fractional number of seconds.
func seconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1e6 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// fitTimeout makes a check's timeout shorter than its interval, as Troop requires (a check
// still running when the next is due would pile up); it returns the timeout to use and whether
// it changed.
func fitTimeout(timeout, interval time.Duration) (time.Duration, bool) {
	if timeout > 0 && timeout < interval {
		return timeout, false
	}
	return interval / 2, true
}

// regexpMeta says whether a pattern uses regular-expression syntax; a pattern without any is
// the same as a substring match, which reads better as `expect`.
var regexpMeta = regexp.MustCompile(`[\\.+*?()|\[\]{}^$]`)

// setExpect sets c's expected body from a pattern that is a regular expression in the source.
func setExpect(c *fsm.HealthCheck, pattern string) {
	if pattern == "" {
		return
	}
	if regexpMeta.MatchString(pattern) {
		c.ExpectRegexp = pattern
	} else {
		c.Expect = pattern
	}
}
