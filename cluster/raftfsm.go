package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// raftFSM adapts fsm.FSM to raft.FSM. Raft calls Apply, Snapshot and Restore from its single
// FSM goroutine; applied and restores may be read from any goroutine.
type raftFSM struct {
	fsm *fsm.FSM
	// applied is the index of the last command entry applied (or restored from a snapshot),
	// stored after the FSM has applied it: a reader that sees applied >= i may View state that
	// includes entry i.
	applied atomic.Uint64
	// restores counts snapshots restored (on start or installed from the leader).
	restores atomic.Uint64
	// changed is signalled after every apply and restore.
	changed broadcast
}

func newRaftFSM(f *fsm.FSM) *raftFSM { return &raftFSM{fsm: f} }

// Apply passes a command entry to the FSM and returns its fsm.Result (raft only calls Apply for
// LogCommand entries). While the FSM is halted (fsm.ErrHalted) applied stays at the last entry
// it did apply.
func (a *raftFSM) Apply(l *raft.Log) any {
	res := a.fsm.ApplyAt(l.Index, l.Data, l.AppendedAt)
	if !errors.Is(res.Err, fsm.ErrHalted) {
		a.applied.Store(l.Index)
	}
	a.changed.signal()
	return res
}

// Snapshot captures the current state; fsm's states are frozen copies, so Persist can run while
// later entries are applied. It fails while the FSM is halted: Raft would record the snapshot
// as covering every entry handed to Apply, the ones the FSM did not apply included, and then
// compact them away, so that the upgraded agent could not replay them. (Raft calls Snapshot on
// the goroutine that calls Apply, so the halt cannot begin between the check and the View.)
func (a *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	if h := a.fsm.Halted(); h != nil {
		return nil, fmt.Errorf("no snapshot while the fsm is halted (%s): %w", h, fsm.ErrHalted)
	}
	return fsmSnapshot{st: a.fsm.View()}, nil
}

// Restore replaces the FSM's state with a snapshot.
func (a *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := a.fsm.Restore(rc); err != nil {
		return fmt.Errorf("restore fsm: %w", err)
	}
	a.applied.Store(a.fsm.View().Index())
	a.restores.Add(1)
	a.changed.signal()
	return nil
}

type fsmSnapshot struct{ st *fsm.State }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.st.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.st.Index(), err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// broadcast wakes every goroutine waiting on the channel returned by wait when signal is called.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next signal.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
