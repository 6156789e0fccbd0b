// Package cluster runs Troop's Raft node: hashicorp/raft over TCP with raft-boltdb storage and
// file snapshots, bootstrap and join, forwarding of writes and consistent reads to the leader,
// leadership transfer and graceful leave. It feeds committed entries to an fsm.FSM.
//
// One TCP port carries both Raft and Troop's own RPC: the first byte of each connection says
// which (as in Consul). Followers send writes, read-index requests, joins, removals and
// leadership transfers to the leader over that RPC, at the Raft address Raft reports for the
// leader, so no node needs another's API address. Errors cross the wire with their kind, so
// errors.Is against fsm's and this package's sentinels works on a follower as on the leader.
//
// Goroutines: New starts none. Run starts Raft, the RPC server, the bootstrap or join loop and
// the leadership watcher, and stops and waits for all of them before it returns.
package cluster

import "errors"

// Role is a node's Raft state.
type Role string

// Raft roles, as hashicorp/raft names them.
const (
	Leader    Role = "leader"
	Follower  Role = "follower"
	Candidate Role = "candidate"
	Shutdown  Role = "shutdown"
)

// Peer is one server in the Raft configuration.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Voter is false for a non-voter that receives the log but does not vote.
	Voter  bool `json:"voter"`
	Leader bool `json:"leader"`
}

// Status is a node's view of the pool.
type Status struct {
	ID   string `json:"id"`
	Role Role   `json:"role"`
	// Witness is true on a witness (Config.Witness): it votes but hands leadership to a director.
	Witness      bool   `json:"witness,omitempty"`
	Term         uint64 `json:"term"`
	LeaderID     string `json:"leader_id,omitempty"`
	LeaderAddr   string `json:"leader_address,omitempty"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	Peers        []Peer `json:"peers"`
	// Serial is every serial heartbeat link with this node's verdict on its peer.
	Serial []SerialStatus `json:"serial,omitempty"`
	// Halted, when set, says that this node's FSM stopped applying the log at an entry it does
	// not understand (fsm.FSM.Halted): the agent needs an upgrade. Its state is frozen there.
	Halted string `json:"halted,omitempty"`
}

// Errors callers branch on.
var (
	// ErrNoLeader means the pool has no leader right now (an election is running or quorum is
	// lost); the request was not applied and may be retried.
	ErrNoLeader = errors.New("no leader")
	// ErrUnknownPeer means a peer ID is not in the Raft configuration.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrUnknownOutcome means a write reached the leader but its fate is unknown: leadership was
	// lost, the leader shut down or the connection broke before the answer came. The entry may
	// still be committed by the next leader; retry only if the command is idempotent, or read
	// the state first.
	ErrUnknownOutcome = errors.New("outcome unknown, the write may or may not have been committed")
	// ErrNotRunning means the node's Run has not started yet or has returned.
	ErrNotRunning = errors.New("node not running")
	// ErrFeatureUnavailable means a command needs a newer protocol than some server of the
	// pool speaks (a rolling upgrade is not finished); nothing was proposed. It is final until
	// those servers are upgraded.
	ErrFeatureUnavailable = errors.New("feature unavailable until every server is upgraded")
)
