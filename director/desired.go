package director

import (
	"cmp"
	"slices"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// DesiredService is one virtual service as Troop wants it in the kernel, computed from the FSM
// by DesiredFor. It is plain data: comparing it with what the kernel holds is the reconciler's job.
type DesiredService struct {
	// Name is the FSM service it comes from.
	Name string
	// Service is the kernel service: key and settings.
	Service Service
	// Destinations are the real servers the kernel should hold, sorted by key: serving reals at
	// their weight, quiescent and admin-draining ones at 0, reals being drained out (see Drain)
	// at 0, and the fallback server while no real server serves.
	Destinations []Destination
	// Draining lists, sorted, the Destinations that are only there to be drained out: a real
	// deleted from the table or disabled whose drain period has not passed. The reconciler
	// removes them early once their connections reach zero, and never recreates one the kernel
	// lost.
	Draining []DestinationKey
	// RemoveNow lists destinations that must leave the kernel at once, without a drain: reals
	// that are health-down in a non-quiescent service (their connections are dead already) and
	// the fallback server once a real server serves again (ldirectord deletes it at once too).
	RemoveNow []DestinationKey
	// Fallback is true when the fallback server is among the Destinations.
	Fallback bool
}

// Drain is a destination the reconciler is draining: its kernel weight was set to 0 at Since,
// and it is removed when its connections reach zero or the drain period has passed.
type Drain struct {
	Since time.Time
	// Destination is the destination as drained (weight 0), so the desired state can keep it.
	Destination Destination
}

// Drains is the reconciler's drain bookkeeping: service key → destination key → drain.
type Drains map[ServiceKey]map[DestinationKey]Drain

// Desired computes the whole desired IPVS table from st: one DesiredService per FSM service,
// in name order. It is a pure function of its arguments; drains and now decide which drained
// destinations are still kept at weight 0 (those whose opts.DrainPeriod has not passed).
func Desired(st *fsm.State, opts ReconcilerOptions, drains Drains, now time.Time) []DesiredService {
	opts = opts.withDefaults()
	names := st.ServiceNames()
	out := make([]DesiredService, 0, len(names))
	for _, name := range names {
		s, _ := st.Service(name)
		key := KeyOf(&s)
		out = append(out, DesiredFor(&s, healthOf(st, name), opts, drains[key], now))
	}
	return out
}

// healthOf returns the committed-health lookup of one service of st.
func healthOf(st *fsm.State, service string) func(realID string) fsm.Health {
	return func(realID string) fsm.Health { return st.Health(service, realID).State }
}

// KeyOf returns the kernel key of an FSM service.
func KeyOf(s *fsm.Service) ServiceKey {
	fam := s.Family
	if s.VIP.IsValid() {
		fam = fsm.IPv4
		if s.VIP.Unmap().Is6() {
			fam = fsm.IPv6
		}
	}
	if s.FWMark != 0 {
		return ServiceKey{Family: fam, FWMark: s.FWMark}
	}
	return ServiceKey{Family: fam, Protocol: s.Protocol, Address: s.VIP.Unmap(), Port: s.Port}
}

// hostBits is the prefix length of a single address of the family.
func hostBits(f fsm.Family) int {
	if f == fsm.IPv6 {
		return 128
	}
	return 32
}

// EffectiveHealth is the health the desired state uses for a real server whose committed
// verdict is h: the verdict when there is one; the check's initial state before the first
// verdict; and always up for a service without a check (or with check type none), since no
// prober will ever bring such a server back up — a verdict left over from a removed check must
// not keep it out forever.
func EffectiveHealth(s *fsm.Service, h fsm.Health) fsm.Health {
	if s.Check == nil || s.Check.Type == "none" {
		return fsm.HealthUp
	}
	if h == fsm.HealthUp || h == fsm.HealthDown {
		return h
	}
	if s.Check.InitialState == fsm.HealthDown {
		return fsm.HealthDown
	}
	return fsm.HealthUp
}

// DesiredFor computes the desired kernel state of one FSM service (normalized, as the FSM
// holds it). health returns the committed health of a real server by ID; drains is the drain
// bookkeeping of this service's key (nil when none).
//
// Each real server is:
//   - absent and removed at once (RemoveNow) when it is health-down and the service is not
//     quiescent;
//   - absent, so drained out, when its admin state is disabled;
//   - at weight 0 when it is health-down in a quiescent service (ldirectord's quiescent=yes),
//     or admin draining;
//   - at its configured weight otherwise.
//
// Thresholds are carried through, except a lower threshold without an upper one (dropped: the
// kernel refuses it with ERANGE, and it has no effect without an upper threshold).
//
// Health unknown is read as EffectiveHealth says. When no destination would take new
// connections (none at a weight above 0), the fallback server is installed at weight 1, with the
// fallback's forwarding or else the service's; if its address is also a real server's, that
// entry becomes the fallback. Drained destinations (drains) are kept at weight 0 until
// opts.DrainPeriod after their Since, unless the FSM wants them again.
func DesiredFor(s *fsm.Service, health func(realID string) fsm.Health, opts ReconcilerOptions, drains map[DestinationKey]Drain, now time.Time) DesiredService {
	opts = opts.withDefaults()
	key := KeyOf(s)
	d := DesiredService{Name: s.Name, Service: Service{ServiceKey: key, Scheduler: s.Scheduler, Netmask: hostBits(key.Family)}}
	if len(s.SchedFlags) > 0 {
		d.Service.SchedFlags = slices.Clone(s.SchedFlags)
		slices.Sort(d.Service.SchedFlags)
	}
	if p := s.Persistence; p != nil {
		d.Service.Persistent = true
		d.Service.Timeout = uint32(time.Duration(p.Timeout) / time.Second)
		if p.Netmask != 0 {
			d.Service.Netmask = p.Netmask
		}
	}

	dests := make([]Destination, 0, len(s.Reals)+len(drains)+1)
	serving := false
	for i := range s.Reals {
		r := &s.Reals[i]
		dk := DestinationKey{Address: r.Address.Unmap(), Port: r.Port}
		h := fsm.HealthUp
		if s.Check != nil && s.Check.Type != "none" {
			h = EffectiveHealth(s, health(r.ID()))
		}
		var weight int
		switch {
		case h == fsm.HealthDown && !s.Quiescent:
			d.RemoveNow = append(d.RemoveNow, dk)
			continue
		case r.Admin == fsm.Disabled:
			continue
		case h == fsm.HealthDown, r.Admin == fsm.Draining:
			weight = 0
		default:
			weight = r.EffectiveWeight()
		}
		fwd := r.Forwarding
		if fwd == "" {
			fwd = s.Forwarding
		}
		dests = append(dests, Destination{DestinationKey: dk, Forwarding: fwd, Weight: weight,
			UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold})
		serving = serving || weight > 0
	}

	// isReal reports whether dk is one of the service's real servers, whatever its state.
	isReal := func(dk DestinationKey) bool {
		_, ok := s.Real(fsm.RealID(dk.Address, dk.Port))
		return ok
	}
	if fb := s.Fallback; fb != nil {
		fk := DestinationKey{Address: fb.Address.Unmap(), Port: fb.Port}
		switch {
		case !serving:
			fwd := fb.Forwarding
			if fwd == "" {
				fwd = s.Forwarding
			}
			dests = slices.DeleteFunc(dests, func(x Destination) bool { return x.DestinationKey == fk })
			d.RemoveNow = slices.DeleteFunc(d.RemoveNow, func(x DestinationKey) bool { return x == fk })
			dests = append(dests, Destination{DestinationKey: fk, Forwarding: fwd, Weight: 1})
			d.Fallback = true
		case !isReal(fk):
			d.RemoveNow = append(d.RemoveNow, fk)
		}
	}

	// Drained destinations stay at weight 0 until their time is up, unless something above
	// claims their key (the real is back, or it is the fallback now).
	for dk, dr := range drains {
		if now.Sub(dr.Since) >= opts.DrainPeriod || slices.Contains(d.RemoveNow, dk) ||
			slices.ContainsFunc(dests, func(x Destination) bool { return x.DestinationKey == dk }) {
			continue
		}
		kept := dr.Destination
		kept.Weight, kept.ActiveConns, kept.InactiveConns, kept.Stats = 0, 0, 0, Stats{}
		dests = append(dests, kept)
		d.Draining = append(d.Draining, dk)
	}
	slices.SortFunc(dests, func(a, b Destination) int { return compareDest(a.DestinationKey, b.DestinationKey) })
	slices.SortFunc(d.Draining, compareDest)
	slices.SortFunc(d.RemoveNow, compareDest)
	d.RemoveNow = slices.Compact(d.RemoveNow)
	d.Destinations = dests
	return d
}

// compareDest orders destination keys by address, then port.
func compareDest(a, b DestinationKey) int {
	if c := a.Address.Compare(b.Address); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// compareKey orders service keys: by family, then address services before firewall marks, then
// protocol, address and port (or mark).
func compareKey(a, b ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.Family, b.Family),
		cmp.Compare(a.FWMark, b.FWMark),
		cmp.Compare(a.Protocol, b.Protocol),
		a.Address.Compare(b.Address),
		cmp.Compare(a.Port, b.Port),
	)
}

// normalizeKey returns k in the form the reconciler compares: a firewall-mark key has no
// address, port or protocol; an IPv4-mapped address is the IPv4 address; the family follows
// the address when there is one.
func normalizeKey(k ServiceKey) ServiceKey {
	if k.FWMark != 0 {
		return ServiceKey{Family: k.Family, FWMark: k.FWMark}
	}
	k.Address = k.Address.Unmap()
	if k.Address.IsValid() {
		k.Family = fsm.IPv4
		if k.Address.Is6() {
			k.Family = fsm.IPv6
		}
	}
	return k
}

// normalizeDestKey unmaps an IPv4-mapped destination address.
func normalizeDestKey(k DestinationKey) DestinationKey {
	return DestinationKey{Address: k.Address.Unmap(), Port: k.Port}
}
