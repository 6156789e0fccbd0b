package api

import (
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Response headers of every read.
const (
	// HeaderConsistency says how fresh a read is: ConsistencyLocal or ConsistencyLeaderVerified.
	HeaderConsistency = "X-Troop-Consistency"
	// HeaderIndex is the Raft index of the state a read was served from, or of a write's entry.
	HeaderIndex = "X-Troop-Index"
	// HeaderActor, on a request, names who makes a change (for the events stream); without it
	// the server records the client's remote address.
	HeaderActor = "X-Troop-Actor"
)

// Values of HeaderConsistency.
const (
	// ConsistencyLocal is a read of the serving node's own state, which may lag the leader.
	ConsistencyLocal = "local"
	// ConsistencyLeaderVerified is a read that includes every write the leader had committed
	// when the request arrived (the ?consistent query parameter asks for it).
	ConsistencyLeaderVerified = "leader-verified"
)

// ServiceStatus is a service as the API returns it: its definition and the committed health of
// each of its real servers.
type ServiceStatus struct {
	fsm.Service
	// Health maps every real server's ID to its committed health (state "unknown" before the
	// first verdict).
	Health map[string]fsm.RealHealth `json:"health"`
}

// ServiceList is the answer to GET /v1/services.
type ServiceList struct {
	Services []ServiceStatus `json:"services"`
}

// WriteResult is the answer to a successful write.
type WriteResult struct {
	// Index is the Raft index of the entry that applied the change.
	Index uint64 `json:"index"`
}

// TableDiff is the answer to a plan or an apply of a whole table, or to a snapshot restore.
type TableDiff struct {
	// BaseIndex is the index of the state the diff was computed against.
	BaseIndex uint64 `json:"base_index"`
	// Index is the index of the entry that applied the change; 0 for a plan. Entries committed
	// between BaseIndex and Index (health records, other writers) are not in Diff.
	Index uint64           `json:"index,omitempty"`
	Diff  []fsm.Difference `json:"diff"`
}

// Status is the answer to GET /v1/status: the serving node's Raft view and the size of its table.
type Status struct {
	cluster.Status
	// Index is the index of the state the counts come from.
	Index    uint64 `json:"index"`
	Services int    `json:"services"`
	Reals    int    `json:"reals"`
}

// MemberList is the answer to GET /v1/members.
type MemberList struct {
	Members []cluster.Member `json:"members"`
}

// PeerList is the answer to GET /v1/operator/raft/peers.
type PeerList struct {
	Peers []cluster.Peer `json:"peers"`
}

// WeightRequest is the body of PUT /v1/services/{name}/reals/{id}/weight.
type WeightRequest struct {
	Weight *int `json:"weight"`
}

// AdminRequest is the body of PUT /v1/services/{name}/reals/{id}/admin.
type AdminRequest struct {
	Admin fsm.AdminState `json:"admin"`
}

// HostAdminResult is the answer to PUT /v1/hosts/{addr}/admin.
type HostAdminResult struct {
	// Index is the Raft index of the entry that applied the change.
	Index uint64 `json:"index"`
	// Changed lists the real servers at the address that the write put in the requested
	// state, by service; empty when all of them were in it already.
	Changed []HostReal `json:"changed"`
}

// HostReal is one real server of a service.
type HostReal struct {
	Service string `json:"service"`
	Real    string `json:"real"`
}

// TransferRequest is the optional body of POST /v1/operator/raft/transfer-leadership. An empty
// ID lets the leader pick the most up-to-date follower.
type TransferRequest struct {
	ID string `json:"id,omitempty"`
}
