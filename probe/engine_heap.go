package probe

import "time"

// timerHeap is the scheduler's queue of targets by due time: a 4-ary min-heap of values, so
// that comparisons read the keys in the slice and never follow a pointer to a target (with tens
// of thousands of targets, chasing pointers in comparisons cost more than the rest of the
// scheduler). Each target records its index, for removal.
type timerHeap struct {
	// base is the time keys count from; it carries the monotonic reading of the system clock,
	// so a step of the wall clock does not reorder the heap.
	base    time.Time
	entries []heapEntry
}

type heapEntry struct {
	// key is the due time in nanoseconds after base; seq (creation order) breaks ties.
	key int64
	seq uint64
	t   *target
}

func (h *timerHeap) len() int { return len(h.entries) }

// minDue returns the earliest due time; the heap must not be empty.
func (h *timerHeap) minDue() time.Time { return h.entries[0].t.due }

// push adds t, keyed by t.due.
func (h *timerHeap) push(t *target) {
	h.entries = append(h.entries, heapEntry{key: int64(t.due.Sub(h.base)), seq: t.seq, t: t})
	t.heapIdx = len(h.entries) - 1
	h.up(t.heapIdx)
}

// pop removes and returns the target due first.
func (h *timerHeap) pop() *target {
	return h.remove(0)
}

// remove removes and returns the entry at i.
func (h *timerHeap) remove(i int) *target {
	t := h.entries[i].t
	last := len(h.entries) - 1
	if i != last {
		h.set(i, h.entries[last])
	}
	h.entries[last] = heapEntry{}
	h.entries = h.entries[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
	t.heapIdx = -1
	return t
}

func (h *timerHeap) less(a, b *heapEntry) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.seq < b.seq
}

func (h *timerHeap) set(i int, e heapEntry) {
	h.entries[i] = e
	e.t.heapIdx = i
}

func (h *timerHeap) up(i int) {
	e := h.entries[i]
	for i > 0 {
		p := (i - 1) / 4
		if !h.less(&e, &h.entries[p]) {
			break
		}
		h.set(i, h.entries[p])
		i = p
	}
	h.set(i, e)
}

func (h *timerHeap) down(i int) {
	n := len(h.entries)
	e := h.entries[i]
	for {
		first := 4*i + 1
		if first >= n {
			break
		}
		m := first
		for c := first + 1; c < min(first+4, n); c++ {
			if h.less(&h.entries[c], &h.entries[m]) {
				m = c
			}
		}
		if !h.less(&h.entries[m], &e) {
			break
		}
		h.set(i, h.entries[m])
		i = m
	}
	h.set(i, e)
}
