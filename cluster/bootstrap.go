package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Bootstrap and join pacing.
const (
	// expectPollInterval is how often a BootstrapExpect node asks its Join addresses who they are.
	expectPollInterval = 200 * time.Millisecond
	// infoTimeout bounds one info call.
	infoTimeout = time.Second
	// joinTimeout bounds one join call (the leader commits a configuration change).
	joinTimeout = 5 * time.Second
	// Join retries back off from joinRetryMin to joinRetryMax.
	joinRetryMin = 100 * time.Millisecond
	joinRetryMax = 5 * time.Second
)

// bootstrap forms or joins the pool as configured, until done or ctx ends. A node with Raft state
// never bootstraps again: Raft recovers its configuration from the log and it rejoins as a
// follower. It still asks to join when Join is set, which repairs a changed address.
func (n *Node) bootstrap(ctx context.Context, r *raft.Raft) {
	switch {
	case n.hasState:
		n.log.Info("recovering existing raft state", "op", "bootstrap", "last_index", r.LastIndex())
		if len(n.cfg.Join) > 0 {
			n.joinLoop(ctx, r)
		}
	case n.cfg.Dev:
		n.bootstrapWith(r, map[string]string{n.cfg.NodeID: n.net.Addr()})
	case len(n.cfg.Peers) > 0:
		servers := map[string]string{}
		for _, p := range n.cfg.Peers {
			servers[p.ID] = p.Address
		}
		n.bootstrapWith(r, servers)
	case n.cfg.BootstrapExpect > 0:
		if !n.expect(ctx, r) {
			n.joinLoop(ctx, r)
		}
	case len(n.cfg.Join) > 0:
		n.joinLoop(ctx, r)
	default:
		n.log.Info("waiting for the leader to add this node through gossip", "op", "bootstrap", "gossip_join", n.cfg.Gossip.Join)
	}
}

// bootstrapWith bootstraps the configuration of servers (ID → address), sorted by ID so that
// every server computing the same set proposes the same configuration.
func (n *Node) bootstrapWith(r *raft.Raft, servers map[string]string) {
	var c raft.Configuration
	for _, id := range slices.Sorted(maps.Keys(servers)) {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(servers[id])})
	}
	err := r.BootstrapCluster(c).Error()
	switch {
	case errors.Is(err, raft.ErrCantBootstrap):
		n.log.Info("raft state already present; not bootstrapping", "op", "bootstrap")
	case err != nil:
		n.log.Error("bootstrap failed", "op", "bootstrap", "err", err)
	default:
		n.log.Info("bootstrapped", "op", "bootstrap", "servers", describe(c.Servers))
	}
}

func describe(servers []raft.Server) string {
	var b strings.Builder
	for i, s := range servers {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s@%s", s.ID, s.Address)
	}
	return b.String()
}

// expect waits until BootstrapExpect servers without Raft state are known (this one and those
// answering at the Join addresses), then bootstraps with all of them. It returns false if it
// found a server that already has state: the pool exists, and this node should join it.
func (n *Node) expect(ctx context.Context, r *raft.Raft) bool {
	self, selfAddr := n.cfg.NodeID, n.net.Addr()
	for {
		if r.LastIndex() > 0 {
			// Another server bootstrapped a configuration with this one in it and replicated it.
			return true
		}
		found := map[string]string{self: selfAddr}
		for _, addr := range n.cfg.Join {
			if addr == selfAddr {
				continue
			}
			info, err := n.info(ctx, addr)
			if err != nil {
				n.log.Debug("bootstrap peer not answering", "op", "bootstrap", "peer", addr, "err", err)
				continue
			}
			if info.HasState || info.Leader != "" {
				n.log.Info("found an existing pool; joining it", "op", "bootstrap", "peer", addr, "peer_id", info.ID)
				return false
			}
			if info.ID == self {
				n.log.Warn("another server uses this node's ID", "op", "bootstrap", "peer", addr, "peer_id", info.ID)
				continue
			}
			found[info.ID] = info.Address
		}
		if len(found) >= n.cfg.BootstrapExpect {
			n.bootstrapWith(r, found)
			return true
		}
		n.log.Debug("waiting for servers to bootstrap", "op", "bootstrap", "found", len(found), "expect", n.cfg.BootstrapExpect)
		if !sleep(ctx, expectPollInterval) {
			return true
		}
	}
}

func (n *Node) info(ctx context.Context, addr string) (*nodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	resp, err := call(ctx, n.net, addr, &rpcRequest{Op: opInfo})
	if err != nil {
		return nil, err
	}
	if resp.Info == nil {
		return nil, fmt.Errorf("info from %s: empty answer", addr)
	}
	return resp.Info, nil
}

// joinLoop asks the Join addresses in turn to have the leader add this node, backing off between
// rounds, until one succeeds, this node is already a member with a leader, or ctx ends.
func (n *Node) joinLoop(ctx context.Context, r *raft.Raft) {
	backoff := joinRetryMin
	for round := 1; ; round++ {
		if n.isMember(r) {
			return
		}
		var errs []error
		for _, addr := range n.cfg.Join {
			if addr == n.net.Addr() {
				continue
			}
			err := n.joinVia(ctx, addr)
			if err == nil {
				n.log.Info("joined the pool", "op", "join", "via", addr)
				return
			}
			errs = append(errs, fmt.Errorf("via %s: %w", addr, err))
		}
		if ctx.Err() != nil {
			return
		}
		lvl := n.log.Debug
		if round%10 == 0 {
			lvl = n.log.Warn
		}
		lvl("join failed; retrying", "op", "join", "round", round, "retry_in", backoff, "err", errors.Join(errs...))
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, joinRetryMax)
	}
}

// isMember reports whether this node, at its current address, is in the configuration and knows
// a leader.
func (n *Node) isMember(r *raft.Raft) bool {
	if addr, _ := r.LeaderWithID(); addr == "" {
		return false
	}
	s, ok, err := server(r, n.cfg.NodeID)
	return err == nil && ok && string(s.Address) == n.net.Addr()
}

// joinVia asks the node at addr (or the leader it names) to add this node.
func (n *Node) joinVia(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	req := &rpcRequest{Op: opJoin, ID: n.cfg.NodeID, Address: n.net.Addr()}
	resp, err := call(ctx, n.net, addr, req)
	if errors.Is(err, raft.ErrNotLeader) && resp != nil && resp.Leader != "" && resp.Leader != addr {
		_, err = call(ctx, n.net, resp.Leader, req)
	}
	return err
}

// joinLeader adds server id at addr, on the leader: as a voter, or as a non-voter when gossip
// runs, since the autopilot then promotes it once it has caught up.
func (n *Node) joinLeader(r *raft.Raft, id, addr string) error {
	suffrage := raft.Voter
	if n.cfg.Gossip != nil {
		suffrage = raft.Nonvoter
	}
	return n.addServer(r, id, addr, suffrage)
}

// addServer adds server id at addr with the given suffrage; it runs on the leader. A server
// already present with the same ID and address is left alone (a voter is never demoted); one
// with the same ID or the same address (a restarted server with a new address, a reinstalled one
// with a new ID) is replaced.
func (n *Node) addServer(r *raft.Raft, id, addr string, suffrage raft.ServerSuffrage) error {
	if r.State() != raft.Leader {
		return raft.ErrNotLeader
	}
	if id == "" || addr == "" {
		return errors.New("join: id and address are required")
	}
	if id == n.cfg.NodeID && addr != n.net.Addr() {
		return fmt.Errorf("join: server %s at %s has the leader's ID", id, addr)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		sameID, sameAddr := string(s.ID) == id, string(s.Address) == addr
		if sameID && sameAddr && (s.Suffrage == raft.Voter || s.Suffrage == suffrage) {
			return nil
		}
		if sameID && sameAddr {
			break // a non-voter to promote: AddVoter below does it in place
		}
		if sameID || sameAddr {
			if string(s.ID) == n.cfg.NodeID {
				return fmt.Errorf("join %s at %s: that address is the leader's own", id, addr)
			}
			if err := r.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return fmt.Errorf("join %s: remove stale server %s at %s: %w", id, s.ID, s.Address, err)
			}
			n.log.Info("removed stale server", "op", "join", "peer_id", string(s.ID), "peer", string(s.Address))
		}
	}
	add := r.AddVoter
	if suffrage == raft.Nonvoter {
		add = r.AddNonvoter
	}
	if err := add(raft.ServerID(id), raft.ServerAddress(addr), 0, 0).Error(); err != nil {
		return fmt.Errorf("join %s at %s: %w", id, addr, err)
	}
	n.log.Info("added server", "op", "join", "peer_id", id, "peer", addr, "suffrage", suffrage.String())
	return nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
