// Package apitest provides an api.Backend for tests of the API and its consumers: a one-process
// stand-in for cluster.Node over a real fsm.FSM. It is not a mock. Writes are validated with
// FSM.Prepare and applied through FSM.Apply at the next log index, as a single replica would
// apply committed entries, so the state, the indexes and the errors are the FSM's own.
package apitest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Backend is a three-server pool seen from server "a", the leader at first. Its methods are safe
// for concurrent use.
type Backend struct {
	fsm *fsm.FSM

	mu sync.Mutex // guards all following fields
	// index is the last log index handed out (applied entries and membership changes alike).
	index    uint64
	term     uint64
	self     string
	leader   string
	peers    []cluster.Peer
	noLeader bool
	// commitUnknown: a restarted follower that has heard from the leader but not yet learned
	// the commit index (Raft sets the leader first): commit and applied index 0, a log behind.
	commitUnknown bool
	// unchecked skips Prepare: see ProposeUnchecked.
	unchecked bool
	log       []fsm.Command
}

// NewBackend returns a pool of servers "a" (192.0.2.1:9701), "b" and "c" with an empty table,
// led by "a", at term 1 and index 0.
func NewBackend(log *slog.Logger) *Backend {
	b := &Backend{fsm: fsm.New(log), term: 1, self: "a", leader: "a"}
	for i, id := range []string{"a", "b", "c"} {
		b.peers = append(b.peers, cluster.Peer{ID: id, Address: fmt.Sprintf("192.0.2.%d:9701", i+1), Voter: true})
	}
	return b
}

// Apply validates c against the state (refusing it without using an index, as cluster.Node
// does), encodes it and applies it through FSM.Apply at the next index. The returned Result's
// Err is the FSM's refusal of an entry that passed (or skipped) validation.
func (b *Backend) Apply(ctx context.Context, c fsm.Command) (fsm.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noLeader {
		return fsm.Result{}, fmt.Errorf("apply %s: %w", c.Op, cluster.ErrNoLeader)
	}
	if !b.unchecked {
		if err := b.fsm.Prepare(&c); err != nil {
			return fsm.Result{}, err
		}
	}
	data, err := fsm.EncodeCommand(c)
	if err != nil {
		return fsm.Result{}, err
	}
	b.index++
	b.log = append(b.log, c)
	return b.fsm.Apply(b.index, data), nil
}

// View returns the FSM's current state.
func (b *Backend) View() *fsm.State { return b.fsm.View() }

// FSM is the backend's state machine, for tests that watch it (fsm.FSM.WatchChanges).
func (b *Backend) FSM() *fsm.FSM { return b.fsm }

// ConsistentView returns the current state, or cluster.ErrNoLeader while the pool has no leader.
func (b *Backend) ConsistentView(ctx context.Context) (*fsm.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noLeader {
		return nil, fmt.Errorf("read index: %w", cluster.ErrNoLeader)
	}
	return b.fsm.View(), nil
}

// Status reports the pool from server "a"'s point of view.
func (b *Backend) Status() cluster.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := cluster.Status{ID: b.self, Role: cluster.Follower, Term: b.term, CommitIndex: b.index, AppliedIndex: b.index, LastIndex: b.index}
	if b.commitUnknown {
		st.CommitIndex, st.AppliedIndex = 0, 0
	}
	if b.leader == b.self {
		st.Role = cluster.Leader
	}
	if h := b.fsm.Halted(); h != nil {
		st.Halted = h.String()
	}
	if b.noLeader {
		st.Role = cluster.Follower
	}
	for _, p := range b.peers {
		p.Leader = p.ID == b.leader && !b.noLeader
		if p.Leader {
			st.LeaderID, st.LeaderAddr = p.ID, p.Address
		}
		st.Peers = append(st.Peers, p)
	}
	return st
}

// Members lists the Raft servers as alive gossip members that advertise no version.
func (b *Backend) Members() []cluster.Member {
	var out []cluster.Member
	for _, p := range b.Status().Peers {
		m := cluster.Member{ID: p.ID, Gossip: cluster.GossipAlive, Raft: cluster.RaftVoter, RaftAddress: p.Address, Role: cluster.RoleDirector}
		if p.Leader {
			m.Raft = cluster.RaftLeader
		}
		out = append(out, m)
	}
	return out
}

// TransferLeadership makes id the leader in a new term, or the next server after the leader when
// id is empty.
func (b *Backend) TransferLeadership(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noLeader {
		return fmt.Errorf("transfer leadership: %w", cluster.ErrNoLeader)
	}
	if id == "" {
		i := slices.IndexFunc(b.peers, func(p cluster.Peer) bool { return p.ID == b.leader })
		id = b.peers[(i+1)%len(b.peers)].ID
	}
	if !slices.ContainsFunc(b.peers, func(p cluster.Peer) bool { return p.ID == id }) {
		return cluster.ErrUnknownPeer
	}
	if id == b.leader {
		return fmt.Errorf("%q is already the leader", id)
	}
	b.leader = id
	b.term++
	return nil
}

// RemovePeer removes a server from the configuration; the change uses a log index, as a Raft
// configuration entry does.
func (b *Backend) RemovePeer(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noLeader {
		return fmt.Errorf("remove peer: %w", cluster.ErrNoLeader)
	}
	i := slices.IndexFunc(b.peers, func(p cluster.Peer) bool { return p.ID == id })
	if i < 0 {
		return cluster.ErrUnknownPeer
	}
	b.peers = slices.Delete(b.peers, i, i+1)
	b.index++
	return nil
}

// SetLeaderless simulates a pool without a leader: writes and consistent reads fail with
// cluster.ErrNoLeader until it is called with false; local reads keep working.
func (b *Backend) SetLeaderless(noLeader bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noLeader = noLeader
}

// SetCommitUnknown makes Status report a follower that knows the leader but not yet the commit
// index, with its log (LastIndex) ahead: Raft's state for a moment after a restart.
func (b *Backend) SetCommitUnknown(unknown bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commitUnknown = unknown
}

// ProposeUnchecked makes Apply propose commands without validating them first, as a follower
// whose state lags the leader's would pass a command its own check accepts: the FSM then
// refuses the entry (Result.Err) after it has used a log index.
func (b *Backend) ProposeUnchecked(unchecked bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unchecked = unchecked
}

// Log returns the commands applied so far, in order, as they were proposed (normalized).
func (b *Backend) Log() []fsm.Command {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.log)
}
