package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// SnapshotFormat is the format version of snapshots this build writes.
const SnapshotFormat = 1

// Snapshot is the serialized form of a whole State: what a Raft snapshot and `troop snapshot
// save` contain.
type Snapshot struct {
	Format int    `json:"format"`
	Index  uint64 `json:"index"`
	Table
	Health map[string]map[string]RealHealth `json:"health,omitempty"`
	// Tokens are the ACL tokens: accessors, names, scopes and hashes, never secrets. Absent
	// while there are none, so that older builds read the snapshot.
	Tokens []Token `json:"tokens,omitempty"`
}

// Result is the outcome of applying one log entry.
type Result struct {
	Index uint64
	// Changed lists the services whose state the entry changed, in order.
	Changed []string
	// Err is non-nil when the entry was refused; the state is then unchanged.
	Err error
}

// FSM is the replicated state machine. Apply, Restore and Snapshot are called by one goroutine
// (the cluster's apply loop); View and Prepare may be called from any goroutine at any time.
type FSM struct {
	log *slog.Logger

	mu sync.RWMutex
	// st is guarded by mu; apply replaces the values in its maps instead of modifying them,
	// so copies made by freeze stay valid without the lock.
	st *State
	// halt is guarded by mu: set by the first entry this build does not understand.
	halt *Halt
	// view is guarded by mu: the frozen copy of st that View hands out until st changes, so
	// that the readers of one change (the API, the director, the events) share one copy.
	view *State

	watchMu  sync.Mutex // guards watchers
	watchers map[*Watcher]struct{}
	// changes feeds WatchChanges.
	changes changeFeed
}

// New returns an empty state machine.
func New(log *slog.Logger) *FSM {
	return &FSM{log: log, st: newState(), watchers: map[*Watcher]struct{}{}}
}

// Halt describes why an FSM stopped applying the log.
type Halt struct {
	// Index is the entry the FSM could not apply; the state stays at the entry before it.
	Index uint64
	// Op is the entry's type as far as it could be read ("" if not even that).
	Op Op
	// Err is the reason, wrapping ErrUnknownCommand, ErrNewerVersion or a decoding error.
	Err error
}

func (h *Halt) String() string {
	return fmt.Sprintf("stopped applying the log at entry %d (type %q): %v; upgrade this agent: it catches up by replaying the log", h.Index, h.Op, h.Err)
}

// Apply decodes and applies the log entry at index. It never panics on bad input.
//
// An entry that decodes but fails validation against the current state (ErrInvalid,
// ErrNotFound, ErrConflict) is refused: Result.Err says why, the state stays as it was but for
// the applied index, and every replica refuses it identically.
//
// An entry this build cannot read — an unknown type, a newer version, or one that does not
// decode — is another matter: a newer replica may apply it, so skipping it would make this one
// diverge. The FSM halts instead: it logs the entry at ERROR once, Halted describes it from
// then on, and this and every later Apply return a Result whose Err wraps ErrHalted, changing
// neither the state nor its index. Upgrading the agent replays the log from its last snapshot
// (none is taken while halted) and applies the entry; a Restore also clears the halt.
func (f *FSM) Apply(index uint64, data []byte) Result {
	return f.ApplyAt(index, data, time.Time{})
}

// ApplyAt is Apply for an entry the leader appended at a known time (Raft's Log.AppendedAt;
// zero if unknown), which the Change that WatchChanges reports carries.
func (f *FSM) ApplyAt(index uint64, data []byte, appended time.Time) Result {
	res := Result{Index: index}
	f.mu.Lock()
	if h := f.halt; h != nil {
		f.mu.Unlock()
		res.Err = fmt.Errorf("entry %d not applied: halted at entry %d: %w", index, h.Index, ErrHalted)
		return res
	}
	c, err := DecodeCommand(data)
	if err == nil {
		var ch *change
		if ch, err = f.st.prepare(c); err == nil {
			f.st.commit(ch)
			res.Changed = ch.changed
		}
	}
	if err != nil && (c == nil || errors.Is(err, ErrUnknownCommand) || errors.Is(err, ErrNewerVersion)) {
		h := &Halt{Index: index, Op: entryOp(data), Err: err}
		f.halt = h
		f.mu.Unlock()
		f.log.Error("log entry not understood; stopped applying the log: upgrade this agent",
			"op", "apply", "index", index, "type", string(h.Op), "err", err)
		res.Err = fmt.Errorf("entry %d: %w: %w", index, ErrHalted, err)
		return res
	}
	f.st.index = index
	f.view = nil
	f.mu.Unlock()
	// Watchers hear after the lock is released, so a View they take includes the change.
	f.notify(res.Changed, false)
	if err != nil {
		res.Err = err
		f.log.Warn("log entry refused", "op", "apply", "index", index, "err", err)
	}
	f.noteChange(index, appended, c, res)
	return res
}

// Halted describes why the FSM stopped applying the log, or is nil while it applies.
func (f *FSM) Halted() *Halt {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halt
}

// Prepare normalizes c and validates it against the current local state, so that a bad command
// is refused before it is proposed. The local state may lag the leader's; Apply validates again.
func (f *FSM) Prepare(c *Command) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, err := f.st.prepare(c)
	return err
}

// View returns the current state, frozen: later applies do not change it. Views taken between
// two applies are the same value.
func (f *FSM) View() *State {
	f.mu.RLock()
	v := f.view
	f.mu.RUnlock()
	if v != nil {
		return v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.view == nil {
		f.view = f.st.freeze()
	}
	return f.view
}

// Restore replaces the state with a snapshot read from r. A successful restore clears a halt:
// the state is then the snapshot's, at its index, whatever came before.
func (f *FSM) Restore(r io.Reader) error {
	snap, err := ReadSnapshot(r)
	if err != nil {
		return err
	}
	st := newState()
	ch, err := st.prepareReplace(&snap.Table, orEmpty(snap.Health))
	if err != nil {
		return fmt.Errorf("restore snapshot at index %d: %w", snap.Index, err)
	}
	st.commit(ch)
	for i := range snap.Tokens {
		tk := snap.Tokens[i]
		if err := ValidateToken(&tk); err != nil {
			return fmt.Errorf("restore snapshot at index %d: %w", snap.Index, err)
		}
		st.tokens[tk.Accessor] = &tk
	}
	st.index = snap.Index
	f.mu.Lock()
	f.st, f.view = st, nil
	f.halt = nil
	f.mu.Unlock()
	f.notify(nil, true)
	return nil
}

// Snapshot returns the whole state in serializable form.
func (st *State) Snapshot() Snapshot {
	s := Snapshot{Format: SnapshotFormat, Index: st.index, Table: st.Table()}
	if len(st.tokens) > 0 {
		s.Tokens = st.Tokens()
	}
	for name, inner := range st.health {
		if len(inner) == 0 {
			continue
		}
		if s.Health == nil {
			s.Health = map[string]map[string]RealHealth{}
		}
		s.Health[name] = maps.Clone(inner)
	}
	return s
}

// WriteTo writes the state as a snapshot. Equal states write equal bytes.
func (st *State) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	cw := &countingWriter{w: bw}
	if err := json.NewEncoder(cw).Encode(st.Snapshot()); err != nil {
		return cw.n, fmt.Errorf("write snapshot at index %d: %w", st.index, err)
	}
	return cw.n, bw.Flush()
}

// ReadSnapshot parses a snapshot, refusing a newer format.
func ReadSnapshot(r io.Reader) (*Snapshot, error) {
	var snap Snapshot
	dec := json.NewDecoder(bufio.NewReader(r))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if dec.More() {
		return nil, errors.New("read snapshot: trailing data after the snapshot")
	}
	if snap.Format > SnapshotFormat {
		return nil, fmt.Errorf("read snapshot: format %d, this build reads up to %d: %w", snap.Format, SnapshotFormat, ErrNewerVersion)
	}
	if snap.Format < 1 {
		return nil, fmt.Errorf("read snapshot: missing or bad format %d", snap.Format)
	}
	return &snap, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
