// Package probe checks real servers: one checker per check type (http, https, tcp, dns, exec,
// icmp, none), a scheduler that runs every check of the table with jitter, bounded concurrency
// and enforced timeouts, rise/fall damping, and the leader's committer that records the pool's
// health transitions in Raft. Every director runs every check, so a new leader starts warm.
// probe reports health; it never touches IPVS (the director reconciles what the FSM says).
package probe

import (
	"context"
	"net/netip"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// Target is one real server of one service, with the service's check.
type Target struct {
	Service string
	// VIP and ServicePort are the virtual service's (VIP is invalid for a firewall-mark service
	// without one; ServicePort is 0 for firewall-mark services).
	VIP         netip.Addr
	ServicePort uint16
	// Real is the real server's address and port (the port may be 0 under a firewall mark).
	Real netip.AddrPort
	// Check is the service's normalized check spec.
	Check fsm.HealthCheck
}

// ID identifies the target: the service name and the real server's ID, as the FSM keys health.
func (t Target) ID() string { return t.Service + "/" + t.Real.String() }

// Addr is where the check connects: the real server's address, at the check's port when set,
// else the real server's port.
func (t Target) Addr() netip.AddrPort {
	if t.Check.Port != 0 {
		return netip.AddrPortFrom(t.Real.Addr(), t.Check.Port)
	}
	return t.Real
}

// Result is the outcome of one check.
type Result struct {
	Healthy bool
	// Reason says in words what was seen: "timeout after 1s", "status 503", "connection
	// refused", `"Test Page" not found in body`; on success a short note ("status 200").
	Reason   string
	Duration time.Duration
}

// Checker runs one kind of check. Check must return by the time ctx ends (the scheduler sets
// the check's timeout as ctx's deadline) and report a deadline as "timeout after <timeout>".
// A Checker is used from many goroutines at once.
type Checker interface {
	Check(ctx context.Context, t Target) Result
}

// timeoutReason is the reason of a check cut off by its timeout.
func timeoutReason(d time.Duration) string { return "timeout after " + d.String() }
