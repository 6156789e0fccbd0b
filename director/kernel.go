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
	Scheduler  fsm.Scheduler
	SchedFlags []fsm.SchedulerFlag
	// Persistent makes IPVS keep a client on one real server for Timeout seconds; Netmask is the
	// prefix length grouping clients (32 or 128 for a single client).
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
	Forwarding     fsm.Forwarding
	Weight         int
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

// IPVS is the kernel's IPVS table in the calling network namespace. Errors match the kernel's:
// creating what exists is EEXIST (errors.Is(err, os.ErrExist)), acting on a missing service is
// ESRCH (errors.Is(err, syscall.ESRCH)) and on a missing destination ENOENT (errors.Is(err,
// os.ErrNotExist)), and invalid settings are EINVAL. An empty table is an empty list, not an
// error (the real implementation hides cloudflare/ipvs's os.ErrNotExist for it).
type IPVS interface {
	// Services lists every virtual service, Troop's and others'.
	Services() ([]Service, error)
	// Destinations lists the real servers of one service.
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

// SyncDaemons controls the kernel's IPVS connection-sync daemons (ipvsadm --start-daemon).
// Starting a role that runs is EEXIST; stopping one that does not run is ESRCH.
type SyncDaemons interface {
	Daemons() ([]SyncDaemon, error)
	StartDaemon(SyncDaemon) error
	StopDaemon(SyncState) error
}
