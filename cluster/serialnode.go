package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// localView is what this node's serial frames say: its Raft term and the leader it believes in.
func (n *Node) localView() (term uint64, leader string) {
	r := n.raft.Load()
	if r == nil {
		return 0, ""
	}
	_, id := r.LeaderWithID()
	return r.CurrentTerm(), string(id)
}

// fenceFrom is called with each frame a serial link accepts. If this node leads and the frame
// says a newer term has a leader other than this node, it fences its own term: the director
// drops the VIPs at once (WatchLeadership publishes IsLeader false), before Raft's lease would
// depose this node. A peer can only know such a leader if this node lost its quorum.
func (n *Node) fenceFrom(f Frame) {
	r := n.raft.Load()
	if r == nil || r.State() != raft.Leader {
		return
	}
	term := r.CurrentTerm()
	if f.Term <= term || f.Leader == "" || f.Leader == n.cfg.NodeID || n.fencedTerm.Load() >= term {
		return
	}
	n.fencedTerm.Store(term)
	n.log.Warn("serial link: a newer term has another leader; giving up leadership now", "op", "fence", "peer", f.NodeID, "term", term, "peer_term", f.Term, "new_leader", f.Leader)
	select {
	case n.fenced <- struct{}{}:
	default:
	}
}

// SerialStatus reports every serial link (Config.Serial order) with this node's verdict on its
// peer: Raft's contact with the peer combined with the link's state. It may be called from any
// goroutine, before, during and after Run.
func (n *Node) SerialStatus() []SerialStatus {
	if len(n.links) == 0 {
		return nil
	}
	now := time.Now()
	r := n.raft.Load()
	var leaderID string
	leading := false
	members := map[string]bool{}
	if r != nil {
		_, id := r.LeaderWithID()
		leaderID, leading = string(id), r.State() == raft.Leader
		members = raftServers(r)
	}
	out := make([]SerialStatus, 0, len(n.links))
	for _, l := range n.links {
		st := l.status(now)
		st.RaftContact = ContactUnknown
		switch {
		case r == nil || !members[st.Peer]:
			// Raft knows nothing of a peer outside its configuration.
		case leading:
			// The leader heartbeats every follower; a failing heartbeat means lost contact.
			st.RaftContact = ContactOK
			if n.contact.failing(st.Peer) {
				st.RaftContact = ContactLost
			}
		case leaderID == st.Peer || (st.State == LinkUp && st.PeerLeader == st.Peer):
			// A follower hears from the leader at least every HeartbeatTimeout/10.
			st.RaftContact = ContactLost
			if now.Sub(r.LastContact()) < n.cfg.HeartbeatTimeout {
				st.RaftContact = ContactOK
			}
		}
		st.Verdict = verdict(st.RaftContact, st.State)
		out = append(out, st)
	}
	return out
}

// heartbeatFailures is the leader's record of followers whose heartbeats fail, from Raft's
// FailedHeartbeat and ResumedHeartbeat observations.
type heartbeatFailures struct {
	mu   sync.Mutex // guards peer
	peer map[string]bool
}

func (h *heartbeatFailures) observe(o raft.Observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if h.peer == nil {
			h.peer = map[string]bool{}
		}
		h.peer[string(d.PeerID)] = true
	case raft.ResumedHeartbeatObservation:
		delete(h.peer, string(d.PeerID))
	}
}

func (h *heartbeatFailures) failing(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peer[id]
}

// reset forgets every failure when leadership changes: a new leader starts with fresh
// replication.
func (h *heartbeatFailures) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.peer)
}
