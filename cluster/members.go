package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one director as this node sees it: gossip, Raft and the serial link together.
type Member struct {
	ID string `json:"id"`
	// Gossip is alive, suspect, dead, left, or none (never heard in gossip, or gossip is off).
	Gossip        string `json:"gossip"`
	GossipAddress string `json:"gossip_address,omitempty"`
	// GossipSince is when a dead or departed member was last seen going; zero otherwise.
	GossipSince time.Time `json:"gossip_since,omitzero"`
	// Raft is leader, voter, nonvoter, or none (not in the Raft configuration).
	Raft        string `json:"raft"`
	RaftAddress string `json:"raft_address,omitempty"`
	// Role is director or witness, as the member advertises it; empty if it never gossiped.
	Role    string `json:"role,omitempty"`
	Version string `json:"version,omitempty"`
	// Protocol is the protocol the member advertises in gossip (0: not known).
	Protocol int `json:"protocol,omitempty"`
	// Serial is this node's verdict on its serial link to the member, if it has one.
	Serial string `json:"serial,omitempty"`
}

// Raft suffrage as Member.Raft shows it.
const (
	RaftLeader   = "leader"
	RaftVoter    = "voter"
	RaftNonvoter = "nonvoter"
	RaftNone     = "none"
)

// Members lists every director this node knows of, from gossip and the Raft configuration,
// sorted by ID. Without gossip it lists the Raft configuration with gossip "none".
func (n *Node) Members() []Member {
	byID := map[string]*Member{}
	get := func(id string) *Member {
		if byID[id] == nil {
			byID[id] = &Member{ID: id, Gossip: GossipNone, Raft: RaftNone}
		}
		return byID[id]
	}
	g := n.gossip.Load()
	if g != nil {
		for id, g := range g.members() {
			m := get(id)
			m.Gossip, m.GossipAddress, m.GossipSince = g.state, g.addr, g.since
			m.RaftAddress, m.Version, m.Protocol, m.Role = g.meta.Raft, g.meta.Version, g.meta.Protocol, RoleDirector
			if g.meta.Witness {
				m.Role = RoleWitness
			}
		}
	}
	self := get(n.cfg.NodeID)
	self.Role = RoleDirector
	self.Protocol = n.cfg.Protocol
	if n.cfg.Witness {
		self.Role = RoleWitness
	}
	if g != nil {
		self.Version = g.cfg.Version
	}
	if r := n.raft.Load(); r != nil {
		_, leader := r.LeaderWithID()
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				m := get(string(s.ID))
				m.RaftAddress = string(s.Address)
				switch {
				case s.ID == leader:
					m.Raft = RaftLeader
				case s.Suffrage == raft.Voter:
					m.Raft = RaftVoter
				default:
					m.Raft = RaftNonvoter
				}
			}
		}
	}
	for _, st := range n.SerialStatus() {
		get(st.Peer).Serial = st.Verdict
	}
	out := make([]Member, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, *byID[id])
	}
	return out
}

// GossipAddr is this node's advertised gossip address, or "" when gossip is off or not running.
func (n *Node) GossipAddr() string {
	if g := n.gossip.Load(); g != nil {
		return g.addr()
	}
	return ""
}

// raftServers is the set of server IDs in r's configuration (empty if it cannot be read).
func raftServers(r *raft.Raft) map[string]bool {
	ids := map[string]bool{}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			ids[string(s.ID)] = true
		}
	}
	return ids
}

// autopilot manages Raft membership from gossip while this node leads, until ctx ends: it adds
// servers that gossip into the pool as non-voters, promotes caught-up non-voters, and removes
// servers dead for longer than DeadServerCleanup, never below MinQuorum voters.
func (n *Node) autopilot(ctx context.Context, r *raft.Raft, g *gossip) {
	p := &pilot{n: n, r: r, g: g, caughtUp: map[string]time.Time{}, held: map[string]string{}}
	tick := time.NewTicker(autopilotInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.wake:
		}
		if r.State() != raft.Leader {
			clear(p.caughtUp)
			continue
		}
		p.round(ctx)
	}
}

// pilot is the autopilot's memory between rounds.
type pilot struct {
	n *Node
	r *raft.Raft
	g *gossip
	// caughtUp is when each non-voter was first seen caught up, in an unbroken run.
	caughtUp map[string]time.Time
	// held is the last reason each dead server was kept, so that it is logged once.
	held map[string]string
}

func (p *pilot) round(ctx context.Context) {
	f := p.r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := map[string]raft.Server{}
	voters := 0
	for _, s := range f.Configuration().Servers {
		servers[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	members := p.g.members()
	for _, id := range slices.Sorted(maps.Keys(members)) {
		p.admit(id, members[id], servers)
	}
	for _, id := range slices.Sorted(maps.Keys(servers)) {
		s := servers[id]
		if s.Suffrage == raft.Nonvoter {
			p.promote(ctx, s)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(servers)) {
		if p.cleanup(servers[id], members[id], voters) {
			return // one configuration change per round: the next round sees the new one
		}
	}
}

// admit adds a live gossip member that Raft does not know (or knows at another address) as a
// non-voter.
func (p *pilot) admit(id string, m gossipMember, servers map[string]raft.Server) {
	if m.state != GossipAlive || m.metaErr || m.meta.Raft == "" || id == p.n.cfg.NodeID {
		return
	}
	if s, ok := servers[id]; ok && string(s.Address) == m.meta.Raft {
		return
	}
	if err := p.n.addServer(p.r, id, m.meta.Raft, raft.Nonvoter); err != nil {
		p.n.log.Warn("autopilot: could not add a server found by gossip", "op", "autopilot", "peer_id", id, "peer", m.meta.Raft, "err", err)
		return
	}
	p.n.log.Info("autopilot: added a server found by gossip as a non-voter", "op", "autopilot", "peer_id", id, "peer", m.meta.Raft)
}

// promote makes a non-voter a voter once its log has stayed within autopilotMaxTrailingEntries
// of the leader's for StabilizationTime.
func (p *pilot) promote(ctx context.Context, s raft.Server) {
	id := string(s.ID)
	info, err := p.n.info(ctx, string(s.Address))
	if err != nil || info.ID != id || info.LastIndex+autopilotMaxTrailingEntries < p.r.LastIndex() {
		delete(p.caughtUp, id)
		return
	}
	since, ok := p.caughtUp[id]
	if !ok {
		p.caughtUp[id] = time.Now()
		since = p.caughtUp[id]
	}
	if time.Since(since) < p.n.cfg.Gossip.StabilizationTime {
		return
	}
	if err := p.r.AddVoter(s.ID, s.Address, 0, 0).Error(); err != nil {
		p.n.log.Warn("autopilot: promotion failed", "op", "autopilot", "peer_id", id, "err", err)
		return
	}
	delete(p.caughtUp, id)
	p.n.log.Info("autopilot: promoted a caught-up non-voter to voter", "op", "autopilot", "peer_id", id, "last_index", info.LastIndex)
}

// cleanup removes server s if gossip has called it dead or gone for DeadServerCleanup and the
// leader's heartbeats to it fail too, unless that would leave fewer than MinQuorum voters. It
// reports whether it changed the configuration.
func (p *pilot) cleanup(s raft.Server, m gossipMember, voters int) bool {
	id := string(s.ID)
	cfg := p.n.cfg.Gossip
	if id == p.n.cfg.NodeID || cfg.DeadServerCleanup == 0 || (m.state != GossipDead && m.state != GossipLeft) {
		delete(p.held, id)
		return false
	}
	gone := time.Since(m.since)
	switch {
	case gone < cfg.DeadServerCleanup:
		return false
	case !p.n.contact.failing(id):
		p.hold(id, "gossip says "+m.state+" but Raft still reaches it")
		return false
	case s.Suffrage == raft.Voter && voters-1 < cfg.MinQuorum:
		p.hold(id, fmt.Sprintf("removing it would leave %d voters, below min_quorum %d", voters-1, cfg.MinQuorum))
		return false
	}
	if err := p.r.RemoveServer(s.ID, 0, 0).Error(); err != nil {
		p.n.log.Warn("autopilot: removing a dead server failed", "op", "autopilot", "peer_id", id, "err", err)
		return false
	}
	delete(p.held, id)
	p.n.log.Warn("autopilot: removed a dead server from raft", "op", "autopilot", "peer_id", id, "gossip", m.state, "gone_for", gone.Round(time.Second))
	return true
}

// hold logs, once per reason, why a dead server stays.
func (p *pilot) hold(id, reason string) {
	if p.held[id] == reason {
		return
	}
	p.held[id] = reason
	p.n.log.Warn("autopilot: keeping a dead server", "op", "autopilot", "peer_id", id, "reason", reason)
}
