package cluster

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// Leadership is one node's view of who leads the pool.
type Leadership struct {
	// IsLeader is true while this node is the Raft leader of Term.
	IsLeader bool
	// Term is the Raft term this view was taken in.
	Term uint64
	// LeaderID and LeaderAddr name the leader this node knows of; empty during an election.
	LeaderID   string
	LeaderAddr string
}

// WatchLeadership returns a channel that carries this node's Leadership: first the current
// value, then every change. It is how the director package learns when to own the VIP.
//
// The contract:
//   - Each value is the whole current truth, not an edge: act on the latest value received.
//   - Values coalesce. The channel holds one value; if the reader is slow, an unread value is
//     replaced by the newer one, so the reader may miss intermediate values (a lost-and-regained
//     leadership can arrive as IsLeader true with a higher Term) but never sees a stale one after
//     a newer one. A new Term with IsLeader true means another node may have led in between:
//     announce the VIP again.
//   - IsLeader becomes true once Raft has entered the leader state and false as soon as it
//     leaves it (it steps down after LeaderLeaseTimeout without a quorum, before followers
//     elect anyone else). The sender never blocks on a reader, so Raft is never held up.
//   - The channel is closed when ctx ends or Run returns (after a last value with IsLeader
//     false). A closed channel means: not leader. Drop the VIP.
//
// It may be called before Run (the first value is then "not leader").
func (n *Node) WatchLeadership(ctx context.Context) <-chan Leadership {
	return n.feed.watch(ctx)
}

// leadershipFeed hands the latest Leadership to its watchers without ever blocking.
type leadershipFeed struct {
	mu sync.Mutex // guards the following fields
	// watchers each hold at most one unread value.
	watchers map[chan Leadership]struct{}
	last     Leadership
	closed   bool
}

func (f *leadershipFeed) watch(ctx context.Context) <-chan Leadership {
	ch := make(chan Leadership, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		close(ch)
		return ch
	}
	if f.watchers == nil {
		f.watchers = map[chan Leadership]struct{}{}
	}
	f.watchers[ch] = struct{}{}
	ch <- f.last
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.watchers[ch]; ok {
			delete(f.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// publish hands l to every watcher, replacing a value it has not read yet. Equal consecutive
// values are sent once.
func (f *leadershipFeed) publish(l Leadership) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l == f.last || f.closed {
		return
	}
	f.last = l
	for ch := range f.watchers {
		// Only publish sends, under mu, so after the drain the send cannot block.
		select {
		case <-ch:
		default:
		}
		ch <- l
	}
}

// close publishes "not leader" and closes every watcher's channel; later watchers get a closed
// channel.
func (f *leadershipFeed) close() {
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	last.IsLeader = false
	f.publish(last)
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.watchers {
		close(ch)
	}
	clear(f.watchers)
	f.closed = true
}

// watchLeadership turns Raft's NotifyCh (blocking, so it loses nothing, unlike LeaderCh) and its
// leader observations into published Leadership values until stop is closed. It must keep
// reading notify until Raft has shut down.
func (n *Node) watchLeadership(r *raft.Raft, notify <-chan bool, obs <-chan raft.Observation, stop <-chan struct{}) {
	isLeader := false
	for {
		addr, id := r.LeaderWithID()
		term := r.CurrentTerm()
		// A fenced term is published as lost leadership: the director drops the VIPs at once,
		// while Raft steps down on its own once its lease runs out.
		leading := isLeader && term > n.fencedTerm.Load()
		n.feed.publish(Leadership{IsLeader: leading, Term: term, LeaderID: string(id), LeaderAddr: string(addr)})
		select {
		case v := <-notify:
			isLeader = v
			n.contact.reset()
			n.log.Info("leadership changed", "op", "leadership", "leader", v, "term", r.CurrentTerm())
		case o := <-obs:
			n.contact.observe(o)
		case <-n.fenced:
		case <-stop:
			return
		}
	}
}
