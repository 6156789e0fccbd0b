package config

import (
	"math"
	"regexp"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/troop-lb/troop/fsm"
	"github.com/zclconf/go-cty/cty"
)

// Director configures the agent's dataplane (package director). Zero fields are "not set".
type Director struct {
	// Enabled false runs no dataplane at all: for pools of agents sharing one kernel, such as
	// the loopback example. Nil means enabled.
	Enabled *bool
	// Interface holds the VIPs of services in no VIP group.
	Interface string
	// IPVS false is VIP-only mode (keepalived's VRRP-only use): VIPs, no IPVS. Nil means enabled.
	IPVS              *bool
	ReconcileInterval time.Duration
	DrainPeriod       time.Duration
	Announce          Announce
	// SyncDaemon, when set, runs the IPVS connection-sync daemon on that interface.
	SyncDaemon *SyncDaemon
}

// Announce tunes the gratuitous ARP / unsolicited NA schedule of a new VIP owner.
type Announce struct {
	Repeats  int
	Interval time.Duration
	Refresh  time.Duration
}

// SyncDaemon configures the IPVS connection-sync daemon.
type SyncDaemon struct {
	Interface string
	SyncID    int
}

var ifaceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,14}$`)

func (d *decoder) director(b *hclsyntax.Block, dir *Director) {
	d.body(b.Body, "director", schema{
		attrs: map[string]setter{
			"enabled":            optionalBool(&dir.Enabled),
			"interface":          text(&dir.Interface),
			"reconcile_interval": duration(&dir.ReconcileInterval, 1),
			"drain_period":       duration(&dir.DrainPeriod, 1),
		},
		blocks: map[string]blockSpec{
			"ipvs": {decode: func(b *hclsyntax.Block) {
				if d.define("director ipvs", b) {
					d.body(b.Body, "director ipvs", schema{attrs: map[string]setter{"enabled": optionalBool(&dir.IPVS)}})
				}
			}},
			"announce": {decode: func(b *hclsyntax.Block) {
				if d.define("director announce", b) {
					d.body(b.Body, "director announce", schema{attrs: map[string]setter{
						"repeats":  number(&dir.Announce.Repeats, 1, 100),
						"interval": duration(&dir.Announce.Interval, 1),
						"refresh":  duration(&dir.Announce.Refresh, 1),
					}})
				}
			}},
			"sync_daemon": {decode: func(b *hclsyntax.Block) {
				if d.define("director sync_daemon", b) {
					sd := &SyncDaemon{}
					d.body(b.Body, "director sync_daemon", schema{attrs: map[string]setter{
						"interface": text(&sd.Interface),
						"sync_id":   number(&sd.SyncID, 0, math.MaxUint8),
					}})
					dir.SyncDaemon = sd
				}
			}},
		},
	})
}

// optionalBool stores a bool the file set explicitly, so that false differs from "not set".
func optionalBool(dst **bool) setter {
	return func(v cty.Value) *badValue {
		var b bool
		if bad := boolean(&b)(v); bad != nil {
			return bad
		}
		*dst = &b
		return nil
	}
}

// minAnnounceInterval is Linux's neighbour locktime (1 s) plus margin: a second gratuitous ARP
// within it is ignored by the receivers.
const minAnnounceInterval = 1100 * time.Millisecond

func (dir Director) problems() []*fsm.FieldError {
	var ps []*fsm.FieldError
	if dir.Interface != "" && !ifaceNameRE.MatchString(dir.Interface) {
		ps = append(ps, invalid("director interface", dir.Interface, "is not a valid interface name"))
	}
	if i := dir.Announce.Interval; i != 0 && i < minAnnounceInterval {
		ps = append(ps, invalid("director announce interval", i.String(), "must be at least %s: Linux ignores a second ARP update within its 1 s locktime", minAnnounceInterval))
	}
	if sd := dir.SyncDaemon; sd != nil {
		if sd.Interface == "" {
			ps = append(ps, invalid("director sync_daemon interface", "", "is required"))
		} else if !ifaceNameRE.MatchString(sd.Interface) {
			ps = append(ps, invalid("director sync_daemon interface", sd.Interface, "is not a valid interface name"))
		}
	}
	return ps
}
