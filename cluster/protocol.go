package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// Version compatibility. Agents of release N and N-1 run together during a rolling upgrade. An
// entry type added in protocol P (fsm.Op.MinProtocol) must not reach the log while any server
// speaks less than P: that server's FSM would halt at it (fsm.FSM.Apply). So the leader checks
// every server of the Raft configuration before it proposes such an entry.

// protocolCacheTTL is how long the leader trusts a server's answer that it speaks a protocol.
// Only answers that were new enough are kept: an upgraded server is seen at once, and a
// downgrade within the TTL (not a supported move) at worst halts that server, loudly.
const protocolCacheTTL = 5 * time.Second

// protocolCache holds recent info-RPC answers, by server ID and address.
type protocolCache struct {
	mu      sync.Mutex // guards entries
	entries map[raft.Server]protocolAnswer
}

type protocolAnswer struct {
	protocol int
	at       time.Time
}

func (c *protocolCache) get(s raft.Server, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.entries[raft.Server{ID: s.ID, Address: s.Address}]
	if !ok || now.Sub(a.at) > protocolCacheTTL {
		return 0, false
	}
	return a.protocol, true
}

func (c *protocolCache) put(s raft.Server, protocol int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[raft.Server]protocolAnswer{}
	}
	for k, a := range c.entries {
		if now.Sub(a.at) > protocolCacheTTL {
			delete(c.entries, k)
		}
	}
	c.entries[raft.Server{ID: s.ID, Address: s.Address}] = protocolAnswer{protocol: protocol, at: now}
}

// checkProtocol returns an error wrapping ErrFeatureUnavailable, naming the servers that lack
// it, unless every server in the Raft configuration (voters and non-voters) speaks the protocol
// op needs. A server's protocol is its gossip metadata's if known, else its answer to the info
// RPC; a server that cannot be asked counts as too old. Protocol-1 types need no check.
func (n *Node) checkProtocol(ctx context.Context, r *raft.Raft, op fsm.Op) error {
	need := op.MinProtocol()
	if need <= 1 {
		return nil
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("check protocol of %s: read configuration: %w", op, err)
	}
	var gossiped map[string]gossipMember
	if g := n.gossip.Load(); g != nil {
		gossiped = g.members()
	}
	var lacking []string
	for _, s := range f.Configuration().Servers {
		p, how := n.protocolOf(ctx, s, gossiped, need)
		if p < need {
			lacking = append(lacking, fmt.Sprintf("%s (%s)", s.ID, how))
		}
	}
	if len(lacking) == 0 {
		return nil
	}
	slices.Sort(lacking)
	verb := "lack it; upgrade them first"
	if len(lacking) == 1 {
		verb = "lacks it; upgrade it first"
	}
	return fmt.Errorf("%s needs protocol %d on every server of the pool, and %s %s: %w",
		op, need, strings.Join(lacking, ", "), verb, ErrFeatureUnavailable)
}

// protocolOf returns the protocol server s speaks and, for the error message, how that was
// learned.
func (n *Node) protocolOf(ctx context.Context, s raft.Server, gossiped map[string]gossipMember, need int) (int, string) {
	if string(s.ID) == n.cfg.NodeID {
		return n.cfg.Protocol, fmt.Sprintf("protocol %d", n.cfg.Protocol)
	}
	if m, ok := gossiped[string(s.ID)]; ok && !m.metaErr && m.meta.Protocol > 0 {
		return m.meta.Protocol, fmt.Sprintf("protocol %d in gossip", m.meta.Protocol)
	}
	now := time.Now()
	if p, ok := n.protocols.get(s, now); ok {
		return p, fmt.Sprintf("protocol %d", p)
	}
	info, err := n.info(ctx, string(s.Address))
	switch {
	case err != nil:
		return 0, fmt.Sprintf("unreachable at %s: %v", s.Address, err)
	case info.ID != string(s.ID):
		return 0, fmt.Sprintf("%s answers as %s", s.Address, info.ID)
	}
	p := max(info.Protocol, 1) // an agent from before protocol versioning speaks protocol 1
	if p >= need {
		n.protocols.put(s, p, now)
	}
	return p, fmt.Sprintf("protocol %d", p)
}
