package probe

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The heap pops in (due, creation) order whatever the pushes and removals, and keeps every
// target's index right.
func TestTimerHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	h := timerHeap{base: t0}
	var live []*target
	var seq uint64
	check := func() {
		for i, e := range h.entries {
			if e.t.heapIdx != i {
				t.Fatalf("entry %d records index %d", i, e.t.heapIdx)
			}
		}
	}
	for range 5000 {
		switch op := rng.IntN(10); {
		case op < 6:
			seq++
			tg := &target{seq: seq, due: t0.Add(time.Duration(rng.IntN(50)) * time.Millisecond)}
			h.push(tg)
			live = append(live, tg)
		case op < 8 && len(live) > 0:
			i := rng.IntN(len(live))
			if got := h.remove(live[i].heapIdx); got != live[i] {
				t.Fatal("remove returned another target")
			}
			live = slices.Delete(live, i, i+1)
		case h.len() > 0:
			slices.SortFunc(live, func(a, b *target) int {
				if c := a.due.Compare(b.due); c != 0 {
					return c
				}
				return int(a.seq) - int(b.seq)
			})
			if got := h.pop(); got != live[0] || got.heapIdx != -1 {
				t.Fatalf("pop: due %s seq %d, want due %s seq %d", got.due, got.seq, live[0].due, live[0].seq)
			}
			live = live[1:]
		}
		check()
		if h.len() != len(live) {
			t.Fatalf("heap holds %d, want %d", h.len(), len(live))
		}
	}
}
