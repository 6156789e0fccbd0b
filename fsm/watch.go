package fsm

import (
	"maps"
	"slices"
	"sync"
)

// Watcher collects which services changed since its owner last looked. The FSM adds the services
// each applied entry changed; a restored snapshot marks everything changed. C carries a signal
// whenever something was added; Take returns it all at once, so a slow reader sees every change
// coalesced, never a stale or partial list.
type Watcher struct {
	// C receives a value when changes are pending; it has room for one.
	C chan struct{}

	mu sync.Mutex // guards the following fields
	// pending holds the names of changed services not yet taken.
	pending map[string]struct{}
	all     bool
}

// Take returns the services changed since the last Take, in order, or all=true when a restore
// replaced the whole state (the caller should then compare everything).
func (w *Watcher) Take() (names []string, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	names, all = slices.Sorted(maps.Keys(w.pending)), w.all
	w.pending, w.all = map[string]struct{}{}, false
	return names, all
}

func (w *Watcher) add(names []string, all bool) {
	if len(names) == 0 && !all {
		return
	}
	w.mu.Lock()
	for _, n := range names {
		w.pending[n] = struct{}{}
	}
	w.all = w.all || all
	w.mu.Unlock()
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// Watch returns a new Watcher fed by every later apply and restore. The FSM never blocks on it.
// Call Unwatch when done.
func (f *FSM) Watch() *Watcher {
	w := &Watcher{C: make(chan struct{}, 1), pending: map[string]struct{}{}}
	f.watchMu.Lock()
	f.watchers[w] = struct{}{}
	f.watchMu.Unlock()
	return w
}

// Unwatch stops feeding w.
func (f *FSM) Unwatch(w *Watcher) {
	f.watchMu.Lock()
	delete(f.watchers, w)
	f.watchMu.Unlock()
}

func (f *FSM) notify(names []string, all bool) {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	for w := range f.watchers {
		w.add(names, all)
	}
}
