// Package director turns the replicated table into kernel state: the IPVS table on every
// director (reconciled against what the kernel holds), and, on the Raft leader only, the VIPs on
// their interfaces, their announcements (gratuitous ARP, unsolicited NA) and the IPVS
// connection-sync daemon's role. It is the only package that writes kernel state. The kernel sits
// behind the small interfaces of this file, each with a real (Linux) and a fake implementation.
package director

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/troop-lb/troop/fsm"
)

// ServiceKey identifies an IPVS virtual service the way the kernel does: protocol, address and
// port, or a firewall mark and an address family.
//
// Keys that IPVS returns are canonical: Family is always set, and a firewall-mark key has no
// Protocol, Address or Port. Build keys the same way to compare them with == or use them as map
// keys. A key passed in may leave Family empty for an address service (it is taken from Address);
// a firewall-mark key must name its family, and its Protocol, Address and Port are ignored.
type ServiceKey struct {
	Family   fsm.Family
	Protocol fsm.Protocol // empty for a firewall-mark service
	Address  netip.Addr   // invalid for a firewall-mark service
	Port     uint16
	FWMark   uint32
}

// String formats the key as ipvsadm does: "TCP 192.0.2.10:80", "FWM 7 IPv4".
func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		fam := "IPv4"
		if k.Family == fsm.IPv6 {
			fam = "IPv6"
		}
		return "FWM " + strconv.FormatUint(uint64(k.FWMark), 10) + " " + fam
	}
	return strings.ToUpper(string(k.Protocol)) + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

// Service is an IPVS virtual service: its key and its settings.
type Service struct {
	ServiceKey
	Scheduler fsm.Scheduler
	// SchedFlags are the scheduler's flags (ipvsadm -b). The kernel keeps three anonymous flag
	// bits, so what IPVS returns is named after the service's scheduler, in bit order: sh-fallback
	// and sh-port for sh, mh-fallback and mh-port for mh, flag-1, flag-2 and flag-3 for any other.
	// Written, each name sets its bit whatever the scheduler (flag-N are accepted too).
	SchedFlags []fsm.SchedulerFlag
	// Persistent makes IPVS keep a client on one real server for Timeout seconds; Netmask is the
	// prefix length grouping clients (32 or 128 for a single client). Written, a Netmask of 0
	// means the host mask, and a service that is not persistent always gets the host mask. Read
	// back, Netmask is the kernel's value: 32 or 128 for the host mask, -1 for an IPv4 mask that
	// is not a prefix (set by some other tool). The kernel keeps Timeout even when the service is
	// not persistent.
	Persistent bool
	Timeout    uint32
	Netmask    int
	// Stats are the kernel's counters; read-only, zero in what the reconciler writes.
	Stats Stats
}

// DestinationKey identifies a real server within a service.
type DestinationKey struct {
	Address netip.Addr
	Port    uint16
}

// String formats the key as "192.0.2.21:80" or "[2001:db8::21]:80".
func (k DestinationKey) String() string { return netip.AddrPortFrom(k.Address, k.Port).String() }

// Destination is a real server in an IPVS service.
type Destination struct {
	DestinationKey
	// Forwarding is dr, nat or tun (IP-in-IP). Read back, kernel values Troop never writes
	// appear as local, bypass, tun-gue and tun-gre, so they differ from anything desired.
	Forwarding fsm.Forwarding
	// Weight is 0 to 2^31-1 for the kernel (ipvsadm and Troop's table stop at 65535); a
	// negative weight is ERANGE.
	Weight int
	// LowerThreshold may not exceed UpperThreshold, even when UpperThreshold is 0 (no limit):
	// the kernel answers ERANGE.
	UpperThreshold uint32
	LowerThreshold uint32
	// ActiveConns, InactiveConns and Stats are the kernel's; read-only.
	ActiveConns   uint32
	InactiveConns uint32
	Stats         Stats
}

// Stats are IPVS counters and rates of a service or destination.
type Stats struct {
	Connections uint64
	PacketsIn   uint64
	PacketsOut  uint64
	BytesIn     uint64
	BytesOut    uint64
	CPS         uint64
	PPSIn       uint64
	PPSOut      uint64
	BPSIn       uint64
	BPSOut      uint64
}

// IPVS is the kernel's IPVS table in one network namespace: the one the implementation was
// opened in. Errors wrap the kernel's errno, so errors.Is works on them:
//
//   - EEXIST (os.ErrExist): creating a service or a destination that exists.
//   - ESRCH (syscall.ESRCH): any call naming a service that does not exist, Destinations too.
//   - ENOENT (os.ErrNotExist): updating or removing a destination that does not exist; also
//     creating or updating a service with a scheduler the kernel does not have.
//   - ERANGE (syscall.ERANGE): a weight outside 0..2^31-1, or a lower threshold above the upper.
//   - EINVAL (syscall.EINVAL): a destination of the other address family than its service unless
//     it is tunnelled (and then only while no sync daemon runs), and what the implementation
//     refuses before asking the kernel: a missing address, an address of the other family than
//     Family, an unknown protocol, forwarding method or scheduler flag, a netmask longer than
//     the family's.
//   - EAFNOSUPPORT: a firewall-mark key without a family.
//
// An empty table is an empty list, not an error (the real implementation hides cloudflare/ipvs's
// os.ErrNotExist for it). Lists come in no particular order. Implementations are safe for
// concurrent use.
type IPVS interface {
	// Services lists every virtual service, Troop's and others'.
	Services() ([]Service, error)
	// Destinations lists the real servers of one service; ESRCH if it does not exist.
	Destinations(ServiceKey) ([]Destination, error)
	CreateService(Service) error
	UpdateService(Service) error
	RemoveService(ServiceKey) error
	CreateDestination(ServiceKey, Destination) error
	UpdateDestination(ServiceKey, Destination) error
	RemoveDestination(ServiceKey, DestinationKey) error
	Close() error
}

// SyncState is the role of an IPVS connection-sync daemon.
type SyncState uint32

// Sync daemon roles, with the kernel's values (IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP).
const (
	SyncMaster SyncState = 1
	SyncBackup SyncState = 2
)

// SyncDaemon is the configuration of one IPVS connection-sync daemon.
type SyncDaemon struct {
	State     SyncState
	Interface string
	SyncID    uint8
}

// SyncDaemons controls the kernel's IPVS connection-sync daemons (ipvsadm --start-daemon) in one
// network namespace: the one the implementation was opened in. Starting a role that runs is
// EEXIST; stopping one that does not run is ESRCH; an interface the namespace lacks is ENODEV; an
// unknown role, or any daemon while a service has a destination of the other address family, is
// EINVAL. Implementations are safe for concurrent use.
type SyncDaemons interface {
	// Daemons lists the running daemons, the master first.
	Daemons() ([]SyncDaemon, error)
	StartDaemon(SyncDaemon) error
	StopDaemon(SyncState) error
	// Close releases what the implementation holds (the netlink socket); running daemons keep
	// running. Close may be called more than once.
	Close() error
}
