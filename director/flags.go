package director

import "github.com/troop-lb/troop/fsm"

// IPVS service flag bits (include/uapi/linux/ip_vs.h, IP_VS_SVC_F_*), shared by the kernel
// client and the fake so that both name and encode flags the same way.
const (
	FlagPersistent uint32 = 0x1
	FlagSched1     uint32 = 0x8  // IP_VS_SVC_F_SCHED1: sh-fallback / mh-fallback
	FlagSched2     uint32 = 0x10 // IP_VS_SVC_F_SCHED2: sh-port / mh-port
	FlagSched3     uint32 = 0x20 // IP_VS_SVC_F_SCHED3
)

// schedFlagBits maps each scheduler flag name to its bit. sh and mh give the same two bits
// different names (IP_VS_SVC_F_SCHED_SH_FALLBACK = IP_VS_SVC_F_SCHED_MH_FALLBACK = SCHED1).
var schedFlagBits = map[fsm.SchedulerFlag]uint32{
	fsm.FlagSHFallback: FlagSched1, fsm.FlagSHPort: FlagSched2,
	fsm.FlagMHFallback: FlagSched1, fsm.FlagMHPort: FlagSched2,
	"flag-1": FlagSched1, "flag-2": FlagSched2, "flag-3": FlagSched3,
}

// SchedFlagBits encodes scheduler flags as the kernel's bits; ok is false for an unknown flag.
func SchedFlagBits(flags []fsm.SchedulerFlag) (bits uint32, ok bool) {
	for _, f := range flags {
		bit, known := schedFlagBits[f]
		if !known {
			return 0, false
		}
		bits |= bit
	}
	return bits, true
}

// SchedFlagsFromBits names the scheduler flag bits as ipvsadm does, after the scheduler.
func SchedFlagsFromBits(sched fsm.Scheduler, flags uint32) []fsm.SchedulerFlag {
	names := [3]fsm.SchedulerFlag{"flag-1", "flag-2", "flag-3"}
	switch sched {
	case "sh":
		names[0], names[1] = fsm.FlagSHFallback, fsm.FlagSHPort
	case "mh":
		names[0], names[1] = fsm.FlagMHFallback, fsm.FlagMHPort
	}
	var out []fsm.SchedulerFlag
	for i, bit := range []uint32{FlagSched1, FlagSched2, FlagSched3} {
		if flags&bit != 0 {
			out = append(out, names[i])
		}
	}
	return out
}

// ForwardingName is ipvsadm's name of a forwarding method: Route, Masq, Tunnel.
func ForwardingName(f fsm.Forwarding) string {
	switch f {
	case fsm.DR:
		return "Route"
	case fsm.NAT:
		return "Masq"
	case fsm.TUN:
		return "Tunnel"
	}
	return string(f)
}
