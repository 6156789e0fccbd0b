package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures the pool's memberlist gossip: who is alive, and how directors find
// each other. Gossip is an extra pair of eyes; Raft alone decides who leads and holds the VIP.
type GossipConfig struct {
	// BindAddr is the host:port gossip listens on, TCP and UDP (port 0: any free port).
	BindAddr string
	// AdvertiseAddr is the host:port others reach this node's gossip at; BindAddr if empty.
	AdvertiseAddr string
	// Join lists gossip addresses of pool members to contact at start (and again while this
	// node is alone). A node with no Raft bootstrap source waits to be added through gossip.
	Join []string
	// Key is the AES key (16, 24 or 32 bytes) that encrypts and authenticates every gossip
	// message; nodes without it cannot join. Required unless Dev.
	Key []byte
	// Version is the agent's version, advertised to the pool (`troop members`).
	Version string

	// Failure detection, as memberlist names it: a member is probed every ProbeInterval and
	// must answer within ProbeTimeout; a suspect is declared dead after about SuspicionMult ×
	// log10(pool size) probe intervals. GossipInterval paces the spreading of news.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int

	// Membership management on the leader, in the spirit of Consul's autopilot.
	//
	// A server gossiping into the pool that Raft does not know is added as a non-voter; a
	// non-voter is promoted to voter once its log has stayed caught up for StabilizationTime.
	StabilizationTime time.Duration
	// DeadServerCleanup is how long a server must have been dead or gone (in gossip, and out of
	// the leader's Raft contact) before the leader removes it from Raft; zero never removes.
	DeadServerCleanup time.Duration
	// MinQuorum is the fewest voters the cleanup leaves: it never removes a voter below it.
	MinQuorum int
}

// Gossip defaults: memberlist's LAN profile (a dead member is declared in about 5–8 s on a quiet
// LAN, design.md), a 5 s stabilization and a 5 min cleanup that a director's reboot or upgrade
// never reaches, and a floor of three voters, the smallest pool that survives a failure.
const (
	DefaultGossipProbeInterval  = time.Second
	DefaultGossipProbeTimeout   = 500 * time.Millisecond
	DefaultGossipInterval       = 200 * time.Millisecond
	DefaultGossipSuspicionMult  = 4
	DefaultStabilizationTime    = 5 * time.Second
	DefaultDeadServerCleanup    = 5 * time.Minute
	DefaultMinQuorum            = 3
	gossipKeySizes              = "16, 24 or 32"
	gossipLeaveTimeout          = time.Second
	gossipRejoinInterval        = 5 * time.Second
	departedKept                = time.Hour
	autopilotInterval           = time.Second
	autopilotMaxTrailingEntries = 250
)

// DefaultGossip returns the gossip defaults; the caller sets BindAddr, Join and Key.
func DefaultGossip() GossipConfig {
	return GossipConfig{
		ProbeInterval:     DefaultGossipProbeInterval,
		ProbeTimeout:      DefaultGossipProbeTimeout,
		GossipInterval:    DefaultGossipInterval,
		SuspicionMult:     DefaultGossipSuspicionMult,
		StabilizationTime: DefaultStabilizationTime,
		DeadServerCleanup: DefaultDeadServerCleanup,
		MinQuorum:         DefaultMinQuorum,
	}
}

// validate adds a problem for each bad field through bad (the field names are GossipConfig's).
func (g *GossipConfig) validate(dev bool, bad func(field, value, reason string, args ...any)) {
	if err := checkHostPort(g.BindAddr, true); err != nil {
		bad("Gossip.BindAddr", g.BindAddr, "%v", err)
	}
	if g.AdvertiseAddr != "" {
		if err := checkHostPort(g.AdvertiseAddr, false); err != nil {
			bad("Gossip.AdvertiseAddr", g.AdvertiseAddr, "%v", err)
		}
	}
	for i, a := range g.Join {
		if err := checkHostPort(a, false); err != nil {
			bad(fmt.Sprintf("Gossip.Join[%d]", i), a, "%v", err)
		}
	}
	switch len(g.Key) {
	case 16, 24, 32:
	case 0:
		if !dev {
			bad("Gossip.Key", "", "is required (outside Dev): %s bytes shared by the pool, so that no stranger can gossip into it", gossipKeySizes)
		}
	default:
		bad("Gossip.Key", "(secret)", "must be %s bytes, not %d", gossipKeySizes, len(g.Key))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"Gossip.ProbeInterval", g.ProbeInterval}, {"Gossip.ProbeTimeout", g.ProbeTimeout}, {"Gossip.GossipInterval", g.GossipInterval}} {
		if d.v < minTimeout {
			bad(d.field, d.v.String(), "must be at least %s", minTimeout)
		}
	}
	if g.ProbeTimeout >= g.ProbeInterval {
		bad("Gossip.ProbeTimeout", g.ProbeTimeout.String(), "must be shorter than ProbeInterval (%s)", g.ProbeInterval)
	}
	if g.SuspicionMult < 1 {
		bad("Gossip.SuspicionMult", strconv.Itoa(g.SuspicionMult), "must be at least 1")
	}
	if g.StabilizationTime < 0 {
		bad("Gossip.StabilizationTime", g.StabilizationTime.String(), "must not be negative")
	}
	if g.DeadServerCleanup < 0 {
		bad("Gossip.DeadServerCleanup", g.DeadServerCleanup.String(), "must not be negative (zero never removes)")
	}
	if g.MinQuorum < 1 {
		bad("Gossip.MinQuorum", strconv.Itoa(g.MinQuorum), "must be at least 1")
	}
}

// Gossip states of a member, as `troop members` shows them.
const (
	GossipAlive   = "alive"
	GossipSuspect = "suspect"
	GossipDead    = "dead"
	GossipLeft    = "left"
	// GossipNone is a Raft server this node has never heard gossip from.
	GossipNone = "none"
)

// Member roles.
const (
	RoleDirector = "director"
	RoleWitness  = "witness"
)

// memberMeta is what each node advertises in gossip (memberlist limits it to 512 bytes).
type memberMeta struct {
	Raft    string `json:"raft"`
	Version string `json:"version,omitempty"`
	// Protocol is the protocol the node speaks (Config.Protocol); 0: not advertised.
	Protocol int  `json:"protocol,omitempty"`
	Witness  bool `json:"witness,omitempty"`
	// Leaving is advertised just before a graceful leave, so that others record "left" rather
	// than "dead" (memberlist does not tell its event delegate which it was).
	Leaving bool `json:"leaving,omitempty"`
}

// gossipMember is one member as gossip knows it.
type gossipMember struct {
	id      string
	addr    string // gossip host:port
	udp     *net.UDPAddr
	state   string // GossipAlive, GossipSuspect, GossipDead or GossipLeft
	since   time.Time
	meta    memberMeta
	metaErr bool
}

// gossip runs this node's memberlist and keeps its own record of the members from memberlist's
// events: memberlist forgets members that died or left, does not expose which live ones are
// suspect, and its Members() hands out nodes it keeps changing without a lock.
type gossip struct {
	cfg  GossipConfig
	self string
	log  *slog.Logger
	ml   *memberlist.Memberlist
	// wake tells the autopilot that membership changed.
	wake chan struct{}

	mu   sync.Mutex // guards the fields below
	meta memberMeta
	// known is every member heard of, by ID, in its latest state.
	known map[string]gossipMember
}

// startGossip creates the memberlist, binding its ports (memberlist starts its goroutines here;
// stop ends them all).
func startGossip(cfg GossipConfig, self string, meta memberMeta, logger *slog.Logger) (*gossip, error) {
	g := &gossip{cfg: cfg, self: self, log: logger, wake: make(chan struct{}, 1), meta: meta, known: map[string]gossipMember{}}
	mc := memberlist.DefaultLANConfig()
	mc.Name = self
	host, port, _ := net.SplitHostPort(cfg.BindAddr)
	mc.BindAddr = host
	if host == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertisePort = mc.BindPort
	if cfg.AdvertiseAddr != "" {
		host, port, _ := net.SplitHostPort(cfg.AdvertiseAddr)
		mc.AdvertiseAddr = host
		mc.AdvertisePort, _ = strconv.Atoi(port)
	}
	mc.SecretKey = cfg.Key
	mc.ProbeInterval, mc.ProbeTimeout = cfg.ProbeInterval, cfg.ProbeTimeout
	mc.GossipInterval, mc.SuspicionMult = cfg.GossipInterval, cfg.SuspicionMult
	// News spreads over UDP a few times and can miss a member; the periodic full exchange (TCP) is
	// what repairs that. memberlist's LAN default (30 s) suits thousands of members; a director
	// pool is a handful, so an exchange every ten probe intervals costs nothing.
	mc.PushPullInterval = 10 * cfg.ProbeInterval
	mc.Delegate = (*gossipDelegate)(g)
	mc.Events = (*gossipEvents)(g)
	mc.Logger = log.New(&memberlistLog{log: logger}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	return g, nil
}

// addr is this node's advertised gossip address.
func (g *gossip) addr() string {
	return g.ml.LocalNode().FullAddress().Addr
}

// run joins the pool through the Join addresses and keeps trying to reach departed members
// that Raft still lists (so that a healed partition merges again), until stop closes.
func (g *gossip) run(stop <-chan struct{}, raftServers func() map[string]bool) {
	backoff := joinRetryMin
	joined := len(g.cfg.Join) == 0
	for {
		if !joined {
			if n, err := g.ml.Join(g.cfg.Join); err != nil {
				g.log.Debug("gossip join failed; retrying", "op", "gossip", "retry_in", backoff, "err", err)
			} else {
				joined = true
				g.log.Info("joined the gossip pool", "op", "gossip", "contacted", n)
			}
		} else {
			g.reconnect(raftServers())
			if g.ml.NumMembers() == 1 && len(g.cfg.Join) > 0 {
				joined = false
			}
		}
		wait := gossipRejoinInterval
		if !joined {
			wait, backoff = backoff, min(2*backoff, joinRetryMax)
		} else {
			backoff = joinRetryMin
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
	}
}

// reconnect tries to gossip again with dead members that Raft still counts on, and forgets
// departed members Raft no longer lists once they are old news.
func (g *gossip) reconnect(inRaft map[string]bool) {
	var addrs []string
	g.mu.Lock()
	for id, m := range g.known {
		switch {
		case m.state != GossipDead && m.state != GossipLeft:
		case inRaft[id] && m.state == GossipDead:
			addrs = append(addrs, m.addr)
		case !inRaft[id] && time.Since(m.since) > departedKept:
			delete(g.known, id)
		}
	}
	g.mu.Unlock()
	if len(addrs) > 0 {
		if n, err := g.ml.Join(addrs); err == nil {
			g.log.Info("gossip reached departed members again", "op", "gossip", "contacted", n)
		}
	}
}

// probe pings every live member directly each ProbeInterval, until stop closes, and marks those
// that do not answer suspect: this node cannot reach them although the pool has not declared
// them dead.
func (g *gossip) probe(stop <-chan struct{}) {
	tick := time.NewTicker(g.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var wg sync.WaitGroup
		for id, m := range g.members() {
			if id == g.self || (m.state != GossipAlive && m.state != GossipSuspect) {
				continue
			}
			wg.Go(func() {
				_, err := g.ml.Ping(id, m.udp)
				state := GossipAlive
				if err != nil {
					state = GossipSuspect
				}
				g.mu.Lock()
				cur, ok := g.known[id]
				changed := ok && cur.state != state && (cur.state == GossipAlive || cur.state == GossipSuspect)
				if changed {
					cur.state = state
					g.known[id] = cur
				}
				g.mu.Unlock()
				if changed {
					g.log.Warn("gossip: member "+state+" by direct probe", "op", "gossip", "peer_id", id, "err", err)
				}
			})
		}
		wg.Wait()
	}
}

// stop announces that this node leaves (so that others see "left", not "dead") and shuts the
// memberlist down.
func (g *gossip) stop() {
	g.mu.Lock()
	g.meta.Leaving = true
	g.mu.Unlock()
	if err := g.ml.UpdateNode(gossipLeaveTimeout); err != nil {
		g.log.Warn("gossip: leaving not announced", "op", "gossip", "err", err)
	}
	if err := g.ml.Leave(gossipLeaveTimeout); err != nil {
		g.log.Warn("gossip leave not acknowledged", "op", "gossip", "err", err)
	}
	if err := g.ml.Shutdown(); err != nil {
		g.log.Warn("gossip shutdown", "op", "gossip", "err", err)
	}
}

// members returns a copy of every member gossip has heard of, by ID.
func (g *gossip) members() map[string]gossipMember {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.known)
}

// toMember describes memberlist node n in state; it must run inside a memberlist event, the
// only time n is not being changed (memberlist's Node.State is not kept up to date either, so
// the caller says which state it is).
func toMember(n *memberlist.Node, state string) gossipMember {
	m := gossipMember{id: n.Name, addr: n.Address(), udp: &net.UDPAddr{IP: slices.Clone(n.Addr), Port: int(n.Port)}, state: state}
	m.metaErr = json.Unmarshal(n.Meta, &m.meta) != nil
	return m
}

func (g *gossip) notify() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// gossipDelegate advertises this node's metadata; Troop sends no user messages over gossip.
type gossipDelegate gossip

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	b, err := json.Marshal(d.meta)
	d.mu.Unlock()
	if err != nil || len(b) > limit {
		d.log.Error("gossip metadata too long; advertising none", "op", "gossip", "len", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                {}
func (d *gossipDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(bool) []byte          { return nil }
func (d *gossipDelegate) MergeRemoteState([]byte, bool)   {}

// gossipEvents records departures and wakes the autopilot on every change. memberlist calls it
// with its own locks held: it must not block.
type gossipEvents gossip

func (e *gossipEvents) NotifyJoin(n *memberlist.Node) {
	g := (*gossip)(e)
	g.mu.Lock()
	g.known[n.Name] = toMember(n, GossipAlive)
	g.mu.Unlock()
	g.log.Info("gossip: member alive", "op", "gossip", "peer_id", n.Name, "peer", n.Address())
	g.notify()
}

func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	g := (*gossip)(e)
	m := toMember(n, GossipDead)
	if m.meta.Leaving {
		m.state = GossipLeft
	}
	m.since = time.Now()
	g.mu.Lock()
	g.known[n.Name] = m
	g.mu.Unlock()
	g.log.Warn("gossip: member "+m.state, "op", "gossip", "peer_id", n.Name, "peer", n.Address())
	g.notify()
}

// NotifyUpdate takes the member's new metadata, keeping its state (a suspect stays suspect until
// it answers a probe).
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) {
	g := (*gossip)(e)
	m := toMember(n, GossipAlive)
	g.mu.Lock()
	if cur, ok := g.known[n.Name]; ok && cur.state == GossipSuspect {
		m.state = GossipSuspect
	}
	g.known[n.Name] = m
	g.mu.Unlock()
	g.notify()
}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into slog records.
type memberlistLog struct{ log *slog.Logger }

func (w *memberlistLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG] ": slog.LevelDebug, "[INFO] ": slog.LevelInfo, "[WARN] ": slog.LevelWarn, "[ERR] ": slog.LevelError} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			line, level = rest, l
			break
		}
	}
	w.log.Log(context.Background(), level, line, "op", "gossip")
	return len(p), nil
}
