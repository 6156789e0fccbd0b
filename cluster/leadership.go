package cluster

import (
	"context"

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
	ch := make(chan Leadership, 1)
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if n.watchDone {
		close(ch)
		return ch
	}
	n.watchers[ch] = struct{}{}
	ch <- n.leadership
	context.AfterFunc(ctx, func() {
		n.watchMu.Lock()
		defer n.watchMu.Unlock()
		if _, ok := n.watchers[ch]; ok {
			delete(n.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// publish hands l to every watcher that does not already have it, replacing an unread value.
func (n *Node) publish(l Leadership) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if l == n.leadership || n.watchDone {
		return
	}
	n.leadership = l
	for ch := range n.watchers {
		// Only publish sends, under watchMu, so after the drain the send cannot block.
		select {
		case <-ch:
		default:
		}
		ch <- l
	}
}

// closeWatchers publishes "not leader" and closes every watcher's channel.
func (n *Node) closeWatchers() {
	last := n.leadership
	last.IsLeader = false
	n.publish(last)
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	for ch := range n.watchers {
		close(ch)
	}
	clear(n.watchers)
	n.watchDone = true
}

// watchLeadership turns Raft's NotifyCh (blocking, so it loses nothing, unlike LeaderCh) and its
// leader observations into published Leadership values until stop is closed. It must keep
// reading notify until Raft has shut down.
func (n *Node) watchLeadership(r *raft.Raft, notify <-chan bool, obs <-chan raft.Observation, stop <-chan struct{}) {
	isLeader := false
	for {
		addr, id := r.LeaderWithID()
		n.publish(Leadership{IsLeader: isLeader, Term: r.CurrentTerm(), LeaderID: string(id), LeaderAddr: string(addr)})
		select {
		case v := <-notify:
			isLeader = v
			n.log.Info("leadership changed", "op", "leadership", "leader", v, "term", r.CurrentTerm())
		case <-obs:
		case <-stop:
			return
		}
	}
}
