// Package api serves Troop's HTTP JSON API under /v1/ and provides the Go client the CLI uses.
package api

import (
	"context"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Backend is what the API needs from the agent's Raft node. cluster.Node implements it.
type Backend interface {
	// Apply validates c (returning fsm's ErrInvalid/ErrNotFound/ErrConflict errors without
	// proposing anything), then commits it through the leader, forwarding when this node is a
	// follower, and returns once this node has applied it. The leader's state decides validity;
	// a lagging follower does not refuse what the leader accepts. A non-nil Result.Err means the
	// leader's FSM refused the entry.
	Apply(ctx context.Context, c fsm.Command) (fsm.Result, error)
	// View returns this node's state, which may lag the leader.
	View() *fsm.State
	// ConsistentView returns a state that includes every write the leader had committed when
	// the call started (a read-index through the leader).
	ConsistentView(ctx context.Context) (*fsm.State, error)
	// Status reports the node's Raft view.
	Status() cluster.Status
	// Members lists the directors this node knows of, from gossip and Raft.
	Members() []cluster.Member
	// TransferLeadership hands leadership to the peer id, or to the most up-to-date follower
	// when id is empty. It is forwarded to the leader.
	TransferLeadership(ctx context.Context, id string) error
	// RemovePeer removes a server from the Raft configuration (forwarded to the leader).
	RemovePeer(ctx context.Context, id string) error
}
