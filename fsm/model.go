// Package fsm is Troop's replicated virtual-service table: the data model of a director pool,
// the commands that change it, their validation, and a deterministic state machine that applies
// them, snapshots and restores. It does no I/O and knows nothing of Raft or the kernel; the
// cluster package feeds it log entries and the director package reads its state.
package fsm

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Protocol is the transport protocol of a virtual service.
type Protocol string

// Protocols IPVS balances.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// Protocols lists every accepted protocol.
var Protocols = []Protocol{TCP, UDP, SCTP}

// Scheduler is an IPVS scheduling algorithm name, as ipvsadm -s takes it.
type Scheduler string

// Schedulers lists every scheduler of the Linux kernel's IPVS.
var Schedulers = []Scheduler{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"}

// SchedulerFlag is a scheduler-specific flag (ipvsadm -b).
type SchedulerFlag string

// Flags of the sh and mh schedulers.
const (
	FlagSHFallback SchedulerFlag = "sh-fallback"
	FlagSHPort     SchedulerFlag = "sh-port"
	FlagMHFallback SchedulerFlag = "mh-fallback"
	FlagMHPort     SchedulerFlag = "mh-port"
)

// schedulerOfFlag names the only scheduler each flag is meaningful for.
var schedulerOfFlag = map[SchedulerFlag]Scheduler{
	FlagSHFallback: "sh", FlagSHPort: "sh", FlagMHFallback: "mh", FlagMHPort: "mh",
}

// Forwarding is an LVS packet-forwarding method.
type Forwarding string

// Forwarding methods: direct routing (ldirectord's gate), NAT (masq) and IP-in-IP tunnelling.
const (
	DR  Forwarding = "dr"
	NAT Forwarding = "nat"
	TUN Forwarding = "tun"
)

// Forwardings lists every forwarding method.
var Forwardings = []Forwarding{DR, NAT, TUN}

// AdminState is what an operator asked of a real server, independent of its health.
type AdminState string

// Admin states. Draining keeps the server in IPVS at weight 0 so existing connections finish.
const (
	Enabled  AdminState = "enabled"
	Draining AdminState = "draining"
	Disabled AdminState = "disabled"
)

// AdminStates lists every admin state.
var AdminStates = []AdminState{Enabled, Draining, Disabled}

// Health is the pool's verdict on a real server, committed by the leader's prober.
type Health string

// Health values. Unknown means no verdict was committed yet; the check's initial state applies.
const (
	HealthUnknown Health = "unknown"
	HealthUp      Health = "up"
	HealthDown    Health = "down"
)

// Family is an address family.
type Family string

// Address families, for firewall-mark services that have no VIP to take it from.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// familyOf returns the family of an address.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Duration is a time.Duration that reads and writes as a Go duration string ("5s", "250ms").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string, or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration must be a string like \"5s\", got %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// String formats the duration as Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// Persistence makes IPVS send a client to the same real server for Timeout (ipvsadm -p, -M).
type Persistence struct {
	Timeout Duration `json:"timeout"`
	// Netmask is the prefix length that groups clients; 0 means a host mask (32 or 128).
	Netmask int `json:"netmask,omitempty"`
}

// HealthCheck describes how real servers of a service are checked. Fields not used by Type are
// left empty. Zero knobs take the defaults of Defaults().
type HealthCheck struct {
	// Type is one of http, https, tcp, dns, exec, icmp, none.
	Type string `json:"type"`
	// Port overrides the real server's port for the check.
	Port     uint16   `json:"port,omitempty"`
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	// Rise is the number of consecutive successes that mark a server up, Fall of failures down.
	Rise int `json:"rise,omitempty"`
	Fall int `json:"fall,omitempty"`
	// InitialState is the health of a real server before its first verdict: up or down.
	InitialState Health `json:"initial_state,omitempty"`

	// http and https (ldirectord's request/receive/virtualhost/httpmethod).
	Method       string   `json:"method,omitempty"`
	Path         string   `json:"path,omitempty"`
	Host         string   `json:"host,omitempty"`
	ExpectStatus []string `json:"expect_status,omitempty"`
	// Expect is a substring the body (http) or the reply (tcp) must contain.
	Expect string `json:"expect,omitempty"`
	// ExpectRegexp is a regular expression the body or reply must match.
	ExpectRegexp  string `json:"expect_regexp,omitempty"`
	TLSSkipVerify bool   `json:"tls_skip_verify,omitempty"`
	// CAFile is a PEM file of CAs to trust instead of the system's; every director reads its own
	// copy, so it must exist on each of them.
	CAFile string `json:"ca_file,omitempty"`

	// tcp: bytes sent after connecting, before Expect is looked for.
	Send string `json:"send,omitempty"`

	// dns
	Query       string `json:"query,omitempty"`
	QueryType   string `json:"query_type,omitempty"`
	ExpectRcode string `json:"expect_rcode,omitempty"`
	// ExpectAnswer must appear as a whole token in a record of the answer section.
	ExpectAnswer string `json:"expect_answer,omitempty"`

	// exec: program and arguments; the VIP, port, real address and port are appended.
	Command []string `json:"command,omitempty"`
}

// CheckTypes lists every health-check type.
var CheckTypes = []string{"http", "https", "tcp", "dns", "exec", "icmp", "none"}

// Fallback is the "sorry" server installed when every real server of a service is down.
type Fallback struct {
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port,omitempty"`
	// Forwarding defaults to the service's.
	Forwarding Forwarding `json:"forwarding,omitempty"`
}

// Real is a real server of a virtual service.
type Real struct {
	Address netip.Addr `json:"address"`
	// Port defaults to the service port; firewall-mark services need it set or accept 0 (any).
	Port uint16 `json:"port,omitempty"`
	// Weight is 0–65535; nil means the default of 1.
	Weight *int `json:"weight,omitempty"`
	// Forwarding overrides the service default.
	Forwarding     Forwarding `json:"forwarding,omitempty"`
	UpperThreshold uint32     `json:"upper_threshold,omitempty"`
	LowerThreshold uint32     `json:"lower_threshold,omitempty"`
	Admin          AdminState `json:"admin,omitempty"`
}

// DefaultWeight is a real server's weight when none is given, as in ipvsadm and ldirectord.
const DefaultWeight = 1

// EffectiveWeight returns the configured weight or the default.
func (r Real) EffectiveWeight() int {
	if r.Weight == nil {
		return DefaultWeight
	}
	return *r.Weight
}

// ID is the real server's key within its service: "192.0.2.10:80" or "[2001:db8::10]:80".
func (r Real) ID() string { return RealID(r.Address, r.Port) }

// RealID formats the key of a real server.
func RealID(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// Service is a virtual service: a VIP and port (or a firewall mark) balanced over real servers.
type Service struct {
	// Name is the service's unique key in the table.
	Name string `json:"name"`
	// VIP is required unless FWMark is set.
	VIP      netip.Addr `json:"vip,omitzero"`
	Port     uint16     `json:"port,omitempty"`
	Protocol Protocol   `json:"protocol,omitempty"`
	// FWMark, when non-zero, makes this a firewall-mark service (no port or protocol).
	FWMark uint32 `json:"fwmark,omitempty"`
	// Family of a firewall-mark service without a VIP.
	Family      Family          `json:"family,omitempty"`
	Scheduler   Scheduler       `json:"scheduler,omitempty"`
	SchedFlags  []SchedulerFlag `json:"sched_flags,omitempty"`
	Persistence *Persistence    `json:"persistence,omitempty"`
	Forwarding  Forwarding      `json:"forwarding,omitempty"`
	Check       *HealthCheck    `json:"check,omitempty"`
	Fallback    *Fallback       `json:"fallback,omitempty"`
	// Quiescent keeps a failed real server at weight 0 instead of removing it (ldirectord's default).
	Quiescent bool `json:"quiescent,omitempty"`
	// Reals are kept sorted by ID.
	Reals []Real `json:"reals,omitempty"`
}

// Defaults of a service's optional fields, filled in by Normalize.
const (
	DefaultScheduler  Scheduler  = "wlc"
	DefaultProtocol   Protocol   = TCP
	DefaultForwarding Forwarding = DR
)

// Key identifies the service the way the kernel does: "tcp 192.0.2.1:80" or "fwmark 7 ipv4".
func (s *Service) Key() string {
	if s.FWMark != 0 {
		return "fwmark " + strconv.FormatUint(uint64(s.FWMark), 10) + " " + string(s.family())
	}
	return string(s.Protocol) + " " + netip.AddrPortFrom(s.VIP, s.Port).String()
}

// family is the address family of the service.
func (s *Service) family() Family {
	if s.VIP.IsValid() {
		return familyOf(s.VIP)
	}
	return s.Family
}

// Real returns the real server with the given ID.
func (s *Service) Real(id string) (Real, bool) {
	i, ok := s.realIndex(id)
	if !ok {
		return Real{}, false
	}
	return s.Reals[i], true
}

func (s *Service) realIndex(id string) (int, bool) {
	for i := range s.Reals {
		if s.Reals[i].ID() == id {
			return i, true
		}
	}
	return 0, false
}

// VIPGroup is a set of VIPs that move together, held on one interface of the leader.
type VIPGroup struct {
	Name      string `json:"name"`
	Interface string `json:"interface,omitempty"`
	// VIPs with their prefix length on the interface (/32 or /128 when written without one).
	VIPs []netip.Prefix `json:"vips"`
}

// RealHealth is the committed health of one real server.
type RealHealth struct {
	State  Health `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Since is the leader's clock when the transition was recorded.
	Since time.Time `json:"since,omitzero"`
}

// Table is the declarative part of the state: what `troop apply` sends and `troop plan` diffs.
type Table struct {
	Services  []Service  `json:"services"`
	VIPGroups []VIPGroup `json:"vip_groups,omitempty"`
}
