package cluster

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// proposalGate tracks the entries (applies and barriers) this node has proposed as leader and is
// waiting on. hashicorp/raft never answers an entry that is committed but still queued for its
// FSM goroutine when it shuts down (hashicorp/raft#498), so a caller waiting on that future would
// hang forever. Run therefore closes the gate and waits for every open proposal, while Raft still
// runs and so still answers them (applied, or ErrLeadershipLost once the lease runs out), and only
// then shuts Raft down.
type proposalGate struct {
	mu     sync.Mutex
	closed bool
	open   sync.WaitGroup
}

// errStopping refuses a proposal before it reaches Raft: nothing was appended, so another leader
// may take it.
var errStopping = fmt.Errorf("node is stopping: %w", raft.ErrRaftShutdown)

// enter registers a proposal; the caller calls leave once its future has answered. It fails with
// errStopping after close.
func (g *proposalGate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errStopping
	}
	g.open.Add(1)
	return nil
}

func (g *proposalGate) leave() { g.open.Done() }

// closeAndWait refuses new proposals and waits until every open one has been answered.
func (g *proposalGate) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.open.Wait()
}
