package api

import (
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/troop-lb/troop/cluster"
)

// Readiness is the answer of GET /v1/agent/ready: whether this agent may take part in serving,
// the gate of a rolling upgrade (Nomad's check, systemd's READY=1).
type Readiness struct {
	Ready bool `json:"ready"`
	// Reasons says what is missing while not ready.
	Reasons []string `json:"reasons,omitempty"`
}

// readiness remembers the FSM index at which the node first caught up with the leader: the
// dataplane is ready once the IPVS table has matched a table at least that recent (a full pass,
// and the changes applied since).
type readiness struct {
	mu        sync.Mutex
	caughtUp  uint64
	hasCaught bool
}

// Readiness says whether the agent is ready: it is a member of the Raft configuration and
// knows a leader, its FSM has applied the log up to the commit index it knows and has not halted,
// and (on a director with IPVS) the kernel has matched a table at least as recent as the one it
// caught up with: a full reconcile without error, and every change since applied without error. Once caught up it stays so; the other
// conditions are checked at each call.
func (s *Server) Readiness() Readiness {
	st := s.b.Status()
	var reasons []string
	member := slices.ContainsFunc(st.Peers, func(p cluster.Peer) bool { return p.ID == st.ID })
	switch {
	case st.Role == cluster.Shutdown:
		reasons = append(reasons, "raft is not running")
	case !member:
		reasons = append(reasons, "not in the raft configuration yet")
	case st.LeaderID == "":
		reasons = append(reasons, "no leader known")
	}
	if st.Halted != "" {
		reasons = append(reasons, "stopped applying the log: "+st.Halted)
	}
	// A restarted node learns the leader before the commit index (Raft sets them in that order):
	// a commit index of 0 beside a log that holds entries is not known yet.
	commitKnown := st.CommitIndex > 0 || st.LastIndex == 0
	s.ready.mu.Lock()
	if !s.ready.hasCaught && len(reasons) == 0 && commitKnown && st.AppliedIndex >= st.CommitIndex {
		// The FSM's own index: Raft's applied index also counts entries that are not commands
		// (barriers, configuration changes), which no table sync would ever reach.
		s.ready.caughtUp, s.ready.hasCaught = s.b.View().Index(), true
	}
	caughtUp, hasCaught := s.ready.caughtUp, s.ready.hasCaught
	s.ready.mu.Unlock()
	switch {
	case hasCaught || len(reasons) > 0:
	case !commitKnown:
		reasons = append(reasons, fmt.Sprintf("commit index not learned from the leader yet (the log holds %d entries)", st.LastIndex))
	default:
		reasons = append(reasons, fmt.Sprintf("applied index %d behind commit index %d", st.AppliedIndex, st.CommitIndex))
	}
	if s.dp != nil {
		dp := s.dp.Status()
		switch {
		case dp.IPVS != "enabled":
		case dp.LastError != "":
			reasons = append(reasons, "IPVS reconcile failing: "+dp.LastError)
		case !hasCaught || dp.SyncedIndex < caughtUp || dp.SyncedIndex == 0:
			reasons = append(reasons, fmt.Sprintf("IPVS last matched the table at index %d, waiting for %d", dp.SyncedIndex, caughtUp))
		}
	}
	return Readiness{Ready: len(reasons) == 0, Reasons: reasons}
}

// getReady answers 200 when ready, 503 with the reasons otherwise.
func (s *Server) getReady(w http.ResponseWriter, _ *http.Request) error {
	r := s.Readiness()
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
	return nil
}
