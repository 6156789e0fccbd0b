package cluster

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A witness (Config.Witness) is a voter that must not lead for long: it holds no VIP and
// programs no IPVS, so a pool led by it serves nothing. The seed's two directors get a third
// vote from a small machine this way. When a witness becomes leader it hands leadership to a
// director at once.
//
// Which peers are witnesses is learnt by asking them: every node answers the "info" RPC with its
// own Witness flag and last log index, so the answer cannot go stale in a replicated record and
// an unreachable director is never chosen. If no director answers, the witness stays leader (the
// table stays writable) and keeps trying.

// Pacing of a witness's attempts to hand leadership back while it remains leader.
const (
	handBackMin = 50 * time.Millisecond
	handBackMax = 2 * time.Second
	// handBackGrace is how long a witness waits for more answers once one director has
	// answered: on a LAN a live server answers within milliseconds.
	handBackGrace = 20 * time.Millisecond
)

// peerInfo is one voter's answer to "info" (nil info: it did not answer).
type peerInfo struct {
	server raft.Server
	info   *nodeInfo
}

// handBackTarget picks the director to hand leadership to: the most up-to-date voter, other than
// self, that answered and is not a witness (ties go to the smallest ID, so the choice is stable).
// ok is false when there is none.
func handBackTarget(self string, peers []peerInfo) (raft.Server, bool) {
	var cands []peerInfo
	for _, p := range peers {
		if string(p.server.ID) == self || p.server.Suffrage != raft.Voter || p.info == nil || p.info.Witness {
			continue
		}
		cands = append(cands, p)
	}
	if len(cands) == 0 {
		return raft.Server{}, false
	}
	best := slices.MinFunc(cands, func(a, b peerInfo) int {
		if c := cmp.Compare(b.info.LastIndex, a.info.LastIndex); c != 0 {
			return c
		}
		return cmp.Compare(a.server.ID, b.server.ID)
	})
	return best.server, true
}

// askPeers asks every other server of the configuration for its info, in parallel, and returns
// the answers: all of them, or those in by handBackGrace after the first director's (a director
// whose link is cut would otherwise hold the hand-over up until the call times out).
func (n *Node) askPeers(ctx context.Context, r *raft.Raft) ([]peerInfo, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	var wg sync.WaitGroup
	// The askers send into a buffered channel and end once ctx is cancelled: wait for them.
	defer wg.Wait()
	defer cancel()
	servers := f.Configuration().Servers
	answers := make(chan peerInfo, len(servers))
	asked := 0
	for _, s := range servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		asked++
		wg.Go(func() {
			info, err := n.info(ctx, string(s.Address))
			if err != nil || info.ID != string(s.ID) {
				info = nil
			}
			answers <- peerInfo{server: s, info: info}
		})
	}
	var peers []peerInfo
	var grace <-chan time.Time
	for ; asked > 0; asked-- {
		select {
		case p := <-answers:
			peers = append(peers, p)
			if grace == nil && p.info != nil && !p.info.Witness {
				grace = time.After(handBackGrace)
			}
		case <-grace:
			return peers, nil
		}
	}
	return peers, nil
}

// handBack runs on a witness until ctx ends: whenever it leads, it transfers leadership to a
// director, retrying with backoff while it remains leader.
func (n *Node) handBack(ctx context.Context, r *raft.Raft) {
	leadership := n.feed.watch(ctx)
	for l := range leadership {
		// A coalesced value may be older than Raft's state: act on the state.
		if !l.IsLeader || r.State() != raft.Leader {
			continue
		}
		n.log.Info("a witness leads; handing leadership to a director", "op", "witness", "term", l.Term)
		backoff := handBackMin
		for r.State() == raft.Leader && ctx.Err() == nil {
			err := n.handBackOnce(ctx, r)
			if err == nil {
				break
			}
			n.log.Warn("witness cannot hand leadership to a director; it stays leader (the table stays writable) and retries",
				"op", "witness", "retry_in", backoff, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, handBackMax)
		}
	}
}

// errNoDirector means no voter other than witnesses answered.
var errNoDirector = errors.New("no director reachable")

// handBackOnce makes one attempt: choose a director, transfer leadership to it.
func (n *Node) handBackOnce(ctx context.Context, r *raft.Raft) error {
	peers, err := n.askPeers(ctx, r)
	if err != nil {
		return err
	}
	target, ok := handBackTarget(n.cfg.NodeID, peers)
	if !ok {
		return errNoDirector
	}
	if err := r.LeadershipTransferToServer(target.ID, target.Address).Error(); err != nil {
		return err
	}
	n.log.Info("witness handed leadership to a director", "op", "witness", "to", string(target.ID))
	return nil
}
