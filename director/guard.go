package director

import (
	"net/netip"
	"slices"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// TakeoverGuard makes a director that has just taken the VIPs drop, for a while, TCP segments to
// its services that IPVS does not know and that open nothing (no SYN), where the kernel would
// answer each with a reset. Such a segment belongs to a connection the previous leader forwarded
// and the sync has not delivered yet (a handshake that straddled the switch, or a connection the
// kernel's daemon was still buffering): dropped, the client retransmits and finds the entry
// there; reset, it fails. The guard acts after IPVS in the input path, so segments IPVS forwards
// never reach it.
type TakeoverGuard interface {
	// Set guards exactly these TCP services (replacing an earlier set; none clears it).
	Set(ports []netip.AddrPort) error
	// Close removes the guard.
	Close() error
}

// DefaultTakeoverWindow is how long a new leader guards its services and keeps its backup sync
// daemon: the kernel's sync daemon's buffer delay (up to about 2 s) plus a client's first
// retransmission.
const DefaultTakeoverWindow = 3 * time.Second

// raiseGuard guards the table's TCP services for the takeover window (a no-op without a guard).
func (d *Director) raiseGuard() {
	if d.deps.Guard == nil {
		return
	}
	ports := guardedPorts(d.deps.FSM.View())
	if err := d.deps.Guard.Set(ports); err != nil {
		d.log.Warn("takeover guard not set: segments of connections the sync has not delivered yet will be reset", "op", "guard", "err", err)
		return
	}
	d.log.Info("guarding the services while the connection sync catches up: unknown non-SYN TCP is dropped, not reset", "op", "guard", "services", len(ports), "for", d.cfg.TakeoverWindow)
}

// lowerGuard removes the guard (a no-op without one).
func (d *Director) lowerGuard() {
	if d.deps.Guard == nil {
		return
	}
	if err := d.deps.Guard.Set(nil); err != nil {
		d.log.Error("takeover guard not removed", "op", "guard", "err", err)
	}
}

// guardedPorts are the TCP services (VIP and port) of the table, sorted.
func guardedPorts(st *fsm.State) []netip.AddrPort {
	var out []netip.AddrPort
	for _, name := range st.ServiceNames() {
		s, _ := st.Service(name)
		k := KeyOf(&s)
		if k.FWMark == 0 && k.Protocol == fsm.TCP && k.Address.IsValid() {
			out = append(out, netip.AddrPortFrom(k.Address, k.Port))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}
