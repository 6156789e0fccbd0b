package metrics

import (
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The series read at scrape time.
var (
	descLeader       = desc("troop_raft_leader", "1 while this agent is the Raft leader, 0 otherwise.")
	descTerm         = desc("troop_raft_term", "The Raft term this agent is in.")
	descCommitIndex  = desc("troop_raft_commit_index", "The highest Raft log index this agent knows committed.")
	descAppliedIndex = desc("troop_raft_applied_index", "The highest Raft log index this agent's state machine applied.")
	descPeers        = desc("troop_raft_peers", "Servers in the Raft configuration, by suffrage.", "suffrage")
	descHalted       = desc("troop_fsm_halted", "1 when this agent stopped applying the log at an entry it does not understand (it needs an upgrade).")
	descMembers      = desc("troop_members", "Members of the pool as this agent sees them, by gossip state.", "gossip")

	descVIPsHeld     = desc("troop_vips_held", "VIPs this agent holds on its interfaces.")
	descTakeovers    = desc("troop_vip_takeovers_total", "VIPs this agent put on an interface (leadership won, or a VIP added while leading).")
	descReleases     = desc("troop_vip_releases_total", "VIPs this agent took off an interface (leadership lost, handed over, or removed from the table).")
	descDirLeader    = desc("troop_director_leading", "1 while this agent's director acts as the leader (holds, or is taking, the VIPs).")
	descAnnounced    = desc("troop_announcements_sent_total", "Gratuitous ARP and unsolicited neighbour advertisement packets sent, by VIP.", "vip")
	descAnnounceErrs = desc("troop_announcement_errors_total", "Announcement packets that failed to go out, by VIP.", "vip")
	descSightings    = desc("troop_duplicate_vip_sightings_total", "Packets in which another host claimed a VIP this agent announced, by VIP.", "vip")

	descRepairs       = desc("troop_reconcile_drift_repairs_total", "Out-of-band IPVS edits the reconciler repaired.")
	descRecErrors     = desc("troop_reconcile_errors_total", "Failed kernel calls in IPVS reconcile passes.")
	descSyncedIndex   = desc("troop_reconcile_synced_index", "The FSM index the kernel's IPVS table last fully matched.")
	descDraining      = desc("troop_reconcile_draining", "Real servers being drained out of IPVS after the last pass.")
	descRealServers   = desc("troop_real_servers", "Real servers of the table by committed health (the pool's verdict).", "state")
	descCheckTargets  = desc("troop_health_check_targets", "Real servers under check by this agent, by its own verdict.", "state")
	descChecksRun     = desc("troop_health_checks_total", "Health checks run by this agent.")
	descChecksLate    = desc("troop_health_checks_late_total", "Health-check slots skipped because the previous check of the target ended late.")
	descConnsActive   = desc("troop_ipvs_connections_active", "Active connections of a real server in the kernel's IPVS.", "service", "vip", "real")
	descConnsInactive = desc("troop_ipvs_connections_inactive", "Inactive connections of a real server in the kernel's IPVS.", "service", "vip", "real")
	descConnsTotal    = desc("troop_ipvs_connections_total", "Connections a real server was scheduled, per the kernel's IPVS counters.", "service", "vip", "real")
	descPackets       = desc("troop_ipvs_packets_total", "Packets through a real server, per the kernel's IPVS counters.", "service", "vip", "real", "direction")
	descBytes         = desc("troop_ipvs_bytes_total", "Bytes through a real server, per the kernel's IPVS counters.", "service", "vip", "real", "direction")
	descCPS           = desc("troop_ipvs_rate_cps", "Connections per second to a real server (the kernel's rate estimate).", "service", "vip", "real")
	descPPS           = desc("troop_ipvs_rate_pps", "Packets per second through a real server (the kernel's rate estimate).", "service", "vip", "real", "direction")
	descBPS           = desc("troop_ipvs_rate_bps", "Bytes per second through a real server (the kernel's rate estimate).", "service", "vip", "real", "direction")
	descWeight        = desc("troop_ipvs_weight", "A real server's weight in the kernel's IPVS (0 while drained or quiescent).", "service", "vip", "real")
)

// collector reads the agent's parts at scrape time.
type collector struct {
	src Sources
	log *slog.Logger
}

// Describe sends nothing: the collector is unchecked, since its IPVS series come and go with
// the kernel's table.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	c.collectNode(gauge)
	if d := c.src.Director; d != nil {
		st, n := d.Status(), d.Counters()
		gauge(descVIPsHeld, float64(len(st.VIPs)))
		gauge(descDirLeader, b2f(st.Leader))
		counter(descTakeovers, float64(n.Takeovers))
		counter(descReleases, float64(n.Releases))
		if st.IPVS == "enabled" {
			counter(descRepairs, float64(n.DriftRepairs))
			counter(descRecErrors, float64(n.ReconcileErrors))
			gauge(descSyncedIndex, float64(st.SyncedIndex))
			gauge(descDraining, float64(st.LastReport.Draining))
			c.collectKernel(d, gauge, counter)
		}
	}
	if a := c.src.Announcer; a != nil {
		for _, s := range a.Stats() {
			v := s.VIP.String()
			counter(descAnnounced, float64(s.Sent), v)
			counter(descAnnounceErrs, float64(s.Errors), v)
			counter(descSightings, float64(s.Conflicts), v)
		}
	}
	if e := c.src.Checks; e != nil {
		s := e.Stats()
		gauge(descCheckTargets, float64(s.Up), string(fsm.HealthUp))
		gauge(descCheckTargets, float64(s.Down), string(fsm.HealthDown))
		gauge(descCheckTargets, float64(s.Targets-s.Up-s.Down), string(fsm.HealthUnknown))
		counter(descChecksRun, float64(s.Checks))
		counter(descChecksLate, float64(s.Late))
	}
	if f := c.src.FSM; f != nil {
		counts := map[fsm.Health]int{fsm.HealthUp: 0, fsm.HealthDown: 0, fsm.HealthUnknown: 0}
		st := f.View()
		for _, name := range st.ServiceNames() {
			svc, _ := st.Service(name)
			for _, r := range svc.Reals {
				counts[st.Health(name, r.ID()).State]++
			}
		}
		for state, n := range counts {
			gauge(descRealServers, float64(n), string(state))
		}
	}
}

func (c *collector) collectNode(gauge func(*prometheus.Desc, float64, ...string)) {
	st := c.src.Node.Status()
	gauge(descLeader, b2f(st.Role == cluster.Leader))
	gauge(descTerm, float64(st.Term))
	gauge(descCommitIndex, float64(st.CommitIndex))
	gauge(descAppliedIndex, float64(st.AppliedIndex))
	gauge(descHalted, b2f(st.Halted != ""))
	var voters, nonvoters int
	for _, p := range st.Peers {
		if p.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	gauge(descPeers, float64(voters), "voter")
	gauge(descPeers, float64(nonvoters), "nonvoter")
	gossip := map[string]int{}
	for _, m := range c.src.Node.Members() {
		gossip[m.Gossip]++
	}
	for state, n := range gossip {
		gauge(descMembers, float64(n), state)
	}
}

// collectKernel exports the kernel's IPVS counters of each real server of Troop's services.
func (c *collector) collectKernel(d Director, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	view, err := d.KernelView()
	if err != nil {
		c.log.Warn("IPVS series left out of the scrape", "op", "metrics", "err", err)
		return
	}
	for _, ks := range view {
		if ks.Kernel == nil {
			continue
		}
		vip := vipLabel(ks.Kernel.ServiceKey)
		for _, kd := range ks.Destinations {
			k := kd.Kernel
			if k == nil {
				continue
			}
			l := []string{ks.Name, vip, kd.Key}
			gauge(descConnsActive, float64(k.ActiveConns), l...)
			gauge(descConnsInactive, float64(k.InactiveConns), l...)
			gauge(descWeight, float64(k.Weight), l...)
			counter(descConnsTotal, float64(k.Stats.Connections), l...)
			gauge(descCPS, float64(k.Stats.CPS), l...)
			for _, dir := range []struct {
				name                     string
				packets, bytes, pps, bps uint64
			}{
				{"in", k.Stats.PacketsIn, k.Stats.BytesIn, k.Stats.PPSIn, k.Stats.BPSIn},
				{"out", k.Stats.PacketsOut, k.Stats.BytesOut, k.Stats.PPSOut, k.Stats.BPSOut},
			} {
				dl := append(l[:3:3], dir.name)
				counter(descPackets, float64(dir.packets), dl...)
				counter(descBytes, float64(dir.bytes), dl...)
				gauge(descPPS, float64(dir.pps), dl...)
				gauge(descBPS, float64(dir.bps), dl...)
			}
		}
	}
}

// vipLabel is the vip label of a service: "tcp/192.0.2.6:80", or "fwm/5" under a firewall mark.
func vipLabel(k director.ServiceKey) string {
	if k.FWMark != 0 {
		return k.String()
	}
	return string(k.Protocol) + "/" + netip.AddrPortFrom(k.Address, k.Port).String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
