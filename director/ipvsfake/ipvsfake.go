// Package ipvsfake is an in-memory IPVS that behaves like the Linux kernel's, for tests and
// benchmarks of code that programs IPVS through director.IPVS and director.SyncDaemons.
//
// The fake answers with the errno the kernel (net/netfilter/ipvs/ip_vs_ctl.c and ip_vs_sync.c)
// answers, checked in the kernel's order, wrapped with the operation and the object as the real
// implementation (director.NewIPVS) wraps them:
//
//   - EEXIST: creating a service or destination that exists, starting a role that runs.
//   - ESRCH: any call naming a missing service (Destinations too), stopping a role that is not
//     running.
//   - ENOENT: updating or removing a missing destination; an unknown scheduler.
//   - ERANGE: a weight outside 0..2^31-1; a lower threshold above the upper one (even when the
//     upper is 0, "no limit": the kernel compares them unconditionally).
//   - EINVAL: a destination of the other family than its service unless it is tunnelled and no
//     sync daemon runs; a destination address that is not unicast (multicast, 0.0.0.0/8,
//     255.255.255.255, ::, IPv6 link-local); a sync daemon while a mixed-family destination
//     exists; an unknown sync role; an interface name longer than 15 bytes. Also what the real
//     implementation refuses before asking the kernel: a missing address, an address of the other
//     family than the key's Family, an unknown protocol, forwarding method or scheduler flag, a
//     netmask longer than the family's.
//   - EAFNOSUPPORT: a firewall-mark key without a family.
//   - ENODEV: a sync daemon on an interface the namespace lacks (see SyncDaemons.SetInterfaces).
//
// Like the kernel, and unlike ipvsadm, the fake accepts port 0 on an address service (the
// kernel's catch-all service) and weights above 65535.
//
// Beyond the interfaces, the fake counts calls per method (Calls), fails the next calls of a
// method on request (FailNext), lets a test set the kernel-owned counters (SetConns, SetStats,
// SetDestinationStats) and renders its whole state as ipvsadm -Ln style text (String), sorted as
// ipvsadm sorts, so tests can diff it. All methods are safe for concurrent use.
package ipvsfake

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// Op names a method of director.IPVS or director.SyncDaemons, for Calls and FailNext.
type Op string

// Methods of director.IPVS.
const (
	Services          Op = "Services"
	Destinations      Op = "Destinations"
	CreateService     Op = "CreateService"
	UpdateService     Op = "UpdateService"
	RemoveService     Op = "RemoveService"
	CreateDestination Op = "CreateDestination"
	UpdateDestination Op = "UpdateDestination"
	RemoveDestination Op = "RemoveDestination"
)

// Methods of director.SyncDaemons.
const (
	Daemons     Op = "Daemons"
	StartDaemon Op = "StartDaemon"
	StopDaemon  Op = "StopDaemon"
)

var ipvsOps = []Op{Services, Destinations, CreateService, UpdateService, RemoveService, CreateDestination, UpdateDestination, RemoveDestination}

// Schedulers the fake's kernel has: every scheduler of Linux's IPVS, and "none" (kernels since
// 4.x accept it for a service without a scheduler).
var knownSchedulers = append(slices.Clone(fsm.Schedulers), "none")

// namespace is one network namespace's IPVS state, shared by an IPVS and its SyncDaemons so
// the kernel's interplay (no sync daemon with mixed-family destinations) holds.
type namespace struct {
	mu sync.Mutex // guards all fields below and every field of the handles that share it

	services map[director.ServiceKey]*service
	master   *director.SyncDaemon
	backup   *director.SyncDaemon
	// ifaces are the namespace's interface names; nil means any non-empty name exists.
	ifaces map[string]bool
}

type service struct {
	svc   director.Service // SchedFlags unused; see flags
	flags uint32           // persistence and scheduler flag bits, as the kernel keeps them
	dests map[director.DestinationKey]*director.Destination
}

// counters counts calls and holds injected faults; guarded by the namespace's mutex.
type counters struct {
	calls  map[Op]int
	faults map[Op][]error
	closed bool
}

func newCounters() counters {
	return counters{calls: map[Op]int{}, faults: map[Op][]error{}}
}

// enter counts a call of op and returns the injected fault or the closed error, if any. The
// caller holds the namespace's mutex.
func (c *counters) enter(op Op) error {
	c.calls[op]++
	if c.closed {
		return os.ErrClosed
	}
	if q := c.faults[op]; len(q) > 0 {
		err := q[0]
		c.faults[op] = q[1:]
		return err
	}
	return nil
}

// IPVS is a fake of the kernel's IPVS table in one network namespace. It implements
// director.IPVS; the zero value is not usable, call New.
type IPVS struct {
	ns    *namespace
	c     counters     // guarded by ns.mu
	hold  *listingHold // guarded by ns.mu
	syncd *SyncDaemons
}

var _ director.IPVS = (*IPVS)(nil)

// New returns an empty IPVS table in a namespace of its own.
func New() *IPVS {
	ns := &namespace{services: map[director.ServiceKey]*service{}}
	f := &IPVS{ns: ns, c: newCounters()}
	f.syncd = &SyncDaemons{ns: ns, c: newCounters()}
	return f
}

// SyncDaemons returns the fake sync daemons of the same namespace, which see this table's
// mixed-family destinations as the kernel does. It returns the same value every time.
func (f *IPVS) SyncDaemons() *SyncDaemons { return f.syncd }

// Calls returns how many times op was called, failed calls included.
func (f *IPVS) Calls(op Op) int {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	return f.c.calls[op]
}

// CallCounts returns the number of calls of each method called at least once.
func (f *IPVS) CallCounts() map[Op]int {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	out := make(map[Op]int, len(f.c.calls))
	for op, n := range f.c.calls {
		if n > 0 {
			out[op] = n
		}
	}
	return out
}

// TotalCalls returns the number of calls of all methods: what a sequence of operations cost in
// netlink round trips (Destinations of an empty service costs the real implementation two).
func (f *IPVS) TotalCalls() int {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	n := 0
	for _, c := range f.c.calls {
		n += c
	}
	return n
}

// WriteCalls returns the number of calls of the methods that change the table.
func (f *IPVS) WriteCalls() int {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	n := 0
	for _, op := range ipvsOps[2:] {
		n += f.c.calls[op]
	}
	return n
}

// ResetCalls sets every call count to zero; injected faults stay.
func (f *IPVS) ResetCalls() {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	clear(f.c.calls)
}

// FailNext makes the next call of op fail with err (typically a syscall.Errno) and change
// nothing; the error is wrapped as the real one would be. Calling it n times fails the next n
// calls. It panics on an op that is not a method of director.IPVS.
func (f *IPVS) FailNext(op Op, err error) {
	if !slices.Contains(ipvsOps, op) {
		panic(fmt.Sprintf("ipvsfake: %q is not a method of director.IPVS", op))
	}
	if err == nil {
		panic("ipvsfake: FailNext with a nil error")
	}
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.c.faults[op] = append(f.c.faults[op], err)
}

// Closed reports whether Close was called.
func (f *IPVS) Closed() bool {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	return f.c.closed
}

// Close makes every later call fail with os.ErrClosed, as a closed netlink socket does. The table
// stays, as the kernel's does. Close may be called more than once.
func (f *IPVS) Close() error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.c.closed = true
	return nil
}

// Services lists every service, sorted as ipvsadm sorts them.
func (f *IPVS) Services() ([]director.Service, error) {
	f.ns.mu.Lock()
	if err := f.c.enter(Services); err != nil {
		f.ns.mu.Unlock()
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	out := make([]director.Service, 0, len(f.ns.services))
	for _, s := range f.ns.sortedServices() {
		out = append(out, s.read())
	}
	hold := f.hold
	f.hold = nil
	f.ns.mu.Unlock()
	if hold != nil {
		close(hold.listed)
		<-hold.release
	}
	return out, nil
}

// listingHold is a Services call held by HoldNextListing.
type listingHold struct{ listed, release chan struct{} }

// HoldNextListing makes the next Services call take its listing and then wait, holding nothing,
// until release is called: as the kernel's dump of a large table takes seconds, while other
// calls go on and what it listed grows stale. listed is closed once the listing is taken.
// release may be called more than once.
func (f *IPVS) HoldNextListing() (listed <-chan struct{}, release func()) {
	h := &listingHold{listed: make(chan struct{}), release: make(chan struct{})}
	f.ns.mu.Lock()
	f.hold = h
	f.ns.mu.Unlock()
	var once sync.Once
	return h.listed, func() { once.Do(func() { close(h.release) }) }
}

// Destinations lists the destinations of a service, sorted by address and port.
func (f *IPVS) Destinations(key director.ServiceKey) ([]director.Destination, error) {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("list IPVS destinations of %s: %w", key, err) }
	if err := f.c.enter(Destinations); err != nil {
		return nil, wrap(err)
	}
	s, err := f.ns.lookup(key)
	if err != nil {
		return nil, wrap(err)
	}
	out := make([]director.Destination, 0, len(s.dests))
	for _, d := range s.sortedDests() {
		out = append(out, *d)
	}
	return out, nil
}

// CreateService adds a service.
func (f *IPVS) CreateService(in director.Service) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("create IPVS service %s: %w", in.ServiceKey, err) }
	if err := f.c.enter(CreateService); err != nil {
		return wrap(err)
	}
	svc, flags, err := normalizeService(in)
	if err != nil {
		return wrap(err)
	}
	// ip_vs_genl_set_cmd: EEXIST before ip_vs_add_service looks the scheduler up.
	if _, ok := f.ns.services[svc.ServiceKey]; ok {
		return wrap(syscall.EEXIST)
	}
	if !slices.Contains(knownSchedulers, svc.Scheduler) {
		return wrap(syscall.ENOENT)
	}
	f.ns.services[svc.ServiceKey] = &service{svc: svc, flags: flags, dests: map[director.DestinationKey]*director.Destination{}}
	return nil
}

// UpdateService replaces a service's scheduler, flags, timeout and netmask; its counters and
// destinations stay.
func (f *IPVS) UpdateService(in director.Service) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("update IPVS service %s: %w", in.ServiceKey, err) }
	if err := f.c.enter(UpdateService); err != nil {
		return wrap(err)
	}
	svc, flags, err := normalizeService(in)
	if err != nil {
		return wrap(err)
	}
	s, err := f.ns.lookup(svc.ServiceKey)
	if err != nil {
		return wrap(err)
	}
	if !slices.Contains(knownSchedulers, svc.Scheduler) {
		return wrap(syscall.ENOENT)
	}
	svc.Stats = s.svc.Stats
	s.svc, s.flags = svc, flags
	return nil
}

// RemoveService deletes a service and its destinations.
func (f *IPVS) RemoveService(key director.ServiceKey) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("remove IPVS service %s: %w", key, err) }
	if err := f.c.enter(RemoveService); err != nil {
		return wrap(err)
	}
	k, err := normalizeKey(key)
	if err != nil {
		return wrap(err)
	}
	if _, err := f.ns.lookup(k); err != nil {
		return wrap(err)
	}
	delete(f.ns.services, k)
	return nil
}

// CreateDestination adds a destination to a service.
func (f *IPVS) CreateDestination(key director.ServiceKey, in director.Destination) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("create IPVS destination %s in %s: %w", in.DestinationKey, key, err)
	}
	// ip_vs_add_dest: ranges, then EEXIST, then ip_vs_new_dest's address type.
	s, d, err := f.destinationWrite(CreateDestination, key, in)
	if err != nil {
		return wrap(err)
	}
	if _, ok := s.dests[d.DestinationKey]; ok {
		return wrap(syscall.EEXIST)
	}
	if !unicast(d.Address) {
		return wrap(syscall.EINVAL)
	}
	s.dests[d.DestinationKey] = &d
	return nil
}

// UpdateDestination replaces a destination's forwarding method, weight and thresholds; its
// connection counts and counters stay.
func (f *IPVS) UpdateDestination(key director.ServiceKey, in director.Destination) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("update IPVS destination %s in %s: %w", in.DestinationKey, key, err)
	}
	s, d, err := f.destinationWrite(UpdateDestination, key, in)
	if err != nil {
		return wrap(err)
	}
	old, ok := s.dests[d.DestinationKey]
	if !ok {
		return wrap(syscall.ENOENT)
	}
	old.Forwarding, old.Weight = d.Forwarding, d.Weight
	old.UpperThreshold, old.LowerThreshold = d.UpperThreshold, d.LowerThreshold
	return nil
}

// destinationWrite is what adding and editing a destination check first, in the kernel's order:
// the call itself (counted, or failed on request), the service and destination arguments, then
// the thresholds' range. f.ns.mu is held.
func (f *IPVS) destinationWrite(op Op, key director.ServiceKey, in director.Destination) (*service, director.Destination, error) {
	if err := f.c.enter(op); err != nil {
		return nil, in, err
	}
	s, d, err := f.ns.destinationArgs(key, in)
	if err != nil {
		return nil, in, err
	}
	if d.LowerThreshold > d.UpperThreshold {
		return nil, in, syscall.ERANGE
	}
	return s, d, nil
}

// RemoveDestination deletes a destination from a service. (The kernel keeps a removed
// destination that still has connections in a trash list and revives it, counters and all, if it
// is added back within a while; the fake forgets it at once.)
func (f *IPVS) RemoveDestination(key director.ServiceKey, dk director.DestinationKey) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("remove IPVS destination %s from %s: %w", dk, key, err) }
	if err := f.c.enter(RemoveDestination); err != nil {
		return wrap(err)
	}
	k, err := normalizeKey(key)
	if err != nil {
		return wrap(err)
	}
	if !dk.Address.IsValid() {
		return wrap(syscall.EINVAL)
	}
	s, err := f.ns.lookup(k)
	if err != nil {
		return wrap(err)
	}
	if _, ok := s.dests[dk]; !ok {
		return wrap(syscall.ENOENT)
	}
	delete(s.dests, dk)
	return nil
}

// SetConns sets a destination's active and inactive connection counts, as traffic would (for
// drain tests). Its error is ESRCH or ENOENT when the service or destination is missing.
func (f *IPVS) SetConns(key director.ServiceKey, dk director.DestinationKey, active, inactive uint32) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	d, err := f.ns.dest(key, dk)
	if err != nil {
		return fmt.Errorf("set connections of %s in %s: %w", dk, key, err)
	}
	d.ActiveConns, d.InactiveConns = active, inactive
	return nil
}

// SetStats sets a service's counters.
func (f *IPVS) SetStats(key director.ServiceKey, st director.Stats) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	k, err := normalizeKey(key)
	if err == nil {
		var s *service
		if s, err = f.ns.lookup(k); err == nil {
			s.svc.Stats = st
			return nil
		}
	}
	return fmt.Errorf("set counters of %s: %w", key, err)
}

// SetDestinationStats sets a destination's counters.
func (f *IPVS) SetDestinationStats(key director.ServiceKey, dk director.DestinationKey, st director.Stats) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	d, err := f.ns.dest(key, dk)
	if err != nil {
		return fmt.Errorf("set counters of %s in %s: %w", dk, key, err)
	}
	d.Stats = st
	return nil
}

// String renders the table as ipvsadm -Ln prints it, without the header lines and with fields
// separated by two spaces instead of padded columns:
//
//	TCP  192.0.2.10:80 wrr persistent 300 mask 255.255.255.0
//	  -> 192.0.2.21:80  Route  1  0  0
//	FWM  7 IPv6 sh (sh-fallback,sh-port)
//	  -> [2001:db8::21]:0  Tunnel  3  5  2  thresholds 10-100
//
// The destination columns are forwarding, weight, active and inactive connections; thresholds
// (lower-upper, which ipvsadm shows only with --thresholds) follow when either is set. Services
// are sorted as ipvsadm sorts them, destinations by address and port. An empty table is "".
func (f *IPVS) String() string {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	var b strings.Builder
	for _, s := range f.ns.sortedServices() {
		b.WriteString(serviceLine(s))
		b.WriteByte('\n')
		for _, d := range s.sortedDests() {
			fmt.Fprintf(&b, "  -> %s  %s  %d  %d  %d", d.DestinationKey, director.ForwardingName(d.Forwarding), d.Weight, d.ActiveConns, d.InactiveConns)
			if d.LowerThreshold != 0 || d.UpperThreshold != 0 {
				fmt.Fprintf(&b, "  thresholds %d-%d", d.LowerThreshold, d.UpperThreshold)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func serviceLine(s *service) string {
	var b strings.Builder
	k := s.svc.ServiceKey
	if k.FWMark != 0 {
		fmt.Fprintf(&b, "FWM  %d", k.FWMark)
		if k.Family == fsm.IPv6 {
			b.WriteString(" IPv6")
		}
	} else {
		fmt.Fprintf(&b, "%s  %s", strings.ToUpper(string(k.Protocol)), netip.AddrPortFrom(k.Address, k.Port))
	}
	fmt.Fprintf(&b, " %s", s.svc.Scheduler)
	if fl := director.SchedFlagsFromBits(s.svc.Scheduler, s.flags); len(fl) > 0 {
		names := make([]string, len(fl))
		for i, f := range fl {
			names[i] = string(f)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(names, ","))
	}
	if s.svc.Persistent {
		fmt.Fprintf(&b, " persistent %d", s.svc.Timeout)
		if k.Family == fsm.IPv6 && s.svc.Netmask != 128 {
			fmt.Fprintf(&b, " mask %d", s.svc.Netmask)
		}
		if k.Family == fsm.IPv4 && s.svc.Netmask != 32 {
			fmt.Fprintf(&b, " mask %s", maskString(s.svc.Netmask))
		}
	}
	return b.String()
}

// maskString formats an IPv4 prefix length as a dotted mask.
func maskString(ones int) string {
	m := uint32(0)
	if ones > 0 {
		m = ^uint32(0) << (32 - ones)
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

// read returns the service as the kernel lists it.
func (s *service) read() director.Service {
	out := s.svc
	out.SchedFlags = director.SchedFlagsFromBits(s.svc.Scheduler, s.flags)
	return out
}

func (s *service) sortedDests() []*director.Destination {
	out := make([]*director.Destination, 0, len(s.dests))
	for _, d := range s.dests {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *director.Destination) int {
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

// sortedServices orders services as ipvsadm does (ipvs_cmp_services): address services before
// firewall marks, then by mark, family, protocol number, address and port.
func (ns *namespace) sortedServices() []*service {
	out := make([]*service, 0, len(ns.services))
	for _, s := range ns.services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *service) int {
		x, y := a.svc.ServiceKey, b.svc.ServiceKey
		if x.FWMark != y.FWMark {
			if x.FWMark < y.FWMark {
				return -1
			}
			return 1
		}
		if x.Family != y.Family {
			return strings.Compare(string(x.Family), string(y.Family))
		}
		if px, py := protocolNumbers[x.Protocol], protocolNumbers[y.Protocol]; px != py {
			return px - py
		}
		if c := x.Address.Compare(y.Address); c != 0 {
			return c
		}
		return int(x.Port) - int(y.Port)
	})
	return out
}

var protocolNumbers = map[fsm.Protocol]int{fsm.TCP: 6, fsm.UDP: 17, fsm.SCTP: 132}

// lookup finds a service by its canonical key; ESRCH when it is missing.
func (ns *namespace) lookup(k director.ServiceKey) (*service, error) {
	k, err := normalizeKey(k)
	if err != nil {
		return nil, err
	}
	s, ok := ns.services[k]
	if !ok {
		return nil, syscall.ESRCH
	}
	return s, nil
}

func (ns *namespace) dest(key director.ServiceKey, dk director.DestinationKey) (*director.Destination, error) {
	s, err := ns.lookup(key)
	if err != nil {
		return nil, err
	}
	d, ok := s.dests[dk]
	if !ok {
		return nil, syscall.ENOENT
	}
	return d, nil
}

// destinationArgs checks what creating or updating a destination checks before the command's
// own checks, in order: what the real implementation refuses itself (key, then destination),
// then what ip_vs_genl_set_cmd checks: the service (ESRCH), then the family (a destination of
// the other family than its service must be tunnelled, and no sync daemon may run).
func (ns *namespace) destinationArgs(key director.ServiceKey, in director.Destination) (*service, director.Destination, error) {
	k, err := normalizeKey(key)
	if err != nil {
		return nil, in, err
	}
	d, err := normalizeDestination(in)
	if err != nil {
		return nil, d, err
	}
	s, err := ns.lookup(k)
	if err != nil {
		return nil, d, err
	}
	if familyOf(d.Address) != s.svc.Family {
		if ns.master != nil || ns.backup != nil {
			return nil, d, syscall.EINVAL
		}
		if d.Forwarding != fsm.TUN {
			return nil, d, syscall.EINVAL
		}
	}
	return s, d, nil
}

// mixedFamilyDests reports whether any destination's family differs from its service's: the
// kernel refuses to start a sync daemon then.
func (ns *namespace) mixedFamilyDests() bool {
	for _, s := range ns.services {
		for _, d := range s.dests {
			if familyOf(d.Address) != s.svc.Family {
				return true
			}
		}
	}
	return false
}

// unicast reports whether ip_vs_new_dest accepts the address: a unicast or local IPv4 address
// (not multicast, 0.0.0.0/8 or the limited broadcast), an IPv6 unicast that is not link-local.
func unicast(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return !a.IsMulticast() && b[0] != 0 && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return !a.IsUnspecified() && !a.IsMulticast() && !a.IsLinkLocalUnicast()
}

func familyOf(a netip.Addr) fsm.Family {
	if a.Is4() {
		return fsm.IPv4
	}
	return fsm.IPv6
}

// normalizeKey returns the canonical key (Family set; a firewall-mark key without protocol,
// address or port) or the error the real implementation refuses it with.
func normalizeKey(k director.ServiceKey) (director.ServiceKey, error) {
	if k.FWMark != 0 {
		fam := k.Family
		if fam == "" && k.Address.IsValid() {
			fam = familyOf(k.Address)
		}
		if fam != fsm.IPv4 && fam != fsm.IPv6 {
			return k, syscall.EAFNOSUPPORT
		}
		return director.ServiceKey{Family: fam, FWMark: k.FWMark}, nil
	}
	if !k.Address.IsValid() {
		return k, syscall.EINVAL
	}
	fam := familyOf(k.Address)
	if k.Family != "" && k.Family != fam {
		return k, syscall.EINVAL
	}
	if _, ok := protocolNumbers[k.Protocol]; !ok {
		return k, syscall.EINVAL
	}
	return director.ServiceKey{Family: fam, Protocol: k.Protocol, Address: k.Address, Port: k.Port}, nil
}

// normalizeService returns the service as the kernel would store it (canonical key, the host
// mask unless persistent with a prefix, zero counters) and its flag bits.
func normalizeService(in director.Service) (director.Service, uint32, error) {
	k, err := normalizeKey(in.ServiceKey)
	if err != nil {
		return in, 0, err
	}
	var flags uint32
	if in.Persistent {
		flags |= director.FlagPersistent
	}
	schedBits, ok := director.SchedFlagBits(in.SchedFlags)
	if !ok {
		return in, 0, syscall.EINVAL
	}
	flags |= schedBits
	bits := 32
	if k.Family == fsm.IPv6 {
		bits = 128
	}
	mask := bits
	if in.Persistent && in.Netmask != 0 {
		if in.Netmask < 0 || in.Netmask > bits {
			return in, 0, syscall.EINVAL
		}
		mask = in.Netmask
	}
	return director.Service{
		ServiceKey: k,
		Scheduler:  in.Scheduler,
		Persistent: in.Persistent,
		Timeout:    in.Timeout,
		Netmask:    mask,
	}, flags, nil
}

// normalizeDestination returns the destination as the kernel would store it (zero counters) or
// the error the real implementation refuses it with.
func normalizeDestination(in director.Destination) (director.Destination, error) {
	if !in.Address.IsValid() {
		return in, syscall.EINVAL
	}
	switch in.Forwarding {
	case fsm.DR, fsm.NAT, fsm.TUN:
	default:
		return in, syscall.EINVAL
	}
	if in.Weight < 0 || in.Weight > math.MaxInt32 {
		return in, syscall.ERANGE
	}
	return director.Destination{
		DestinationKey: in.DestinationKey,
		Forwarding:     in.Forwarding,
		Weight:         in.Weight,
		UpperThreshold: in.UpperThreshold,
		LowerThreshold: in.LowerThreshold,
	}, nil
}
