package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// Config is one node's Raft configuration. Start from DefaultConfig (or DevConfig) and set the
// node's identity, address and bootstrap source; New validates it.
type Config struct {
	// NodeID is this server's stable Raft ID; it must be unique in the pool and never reused by
	// another machine.
	NodeID string
	// DataDir holds the Raft log (raft/raft.db) and snapshots (raft/snapshots/). Unused in Dev mode.
	DataDir string
	// BindAddr is the TCP host:port Raft and Troop's RPC listen on (one port, multiplexed).
	BindAddr string
	// AdvertiseAddr is the host:port other servers reach this one at. It defaults to BindAddr
	// (with the port the listener actually got, when BindAddr's port is 0).
	AdvertiseAddr string

	// Bootstrap sources; a node with existing Raft state ignores all of them but Join.
	//
	// Peers is the static initial configuration: every listed server bootstraps the same one,
	// which hashicorp/raft treats as safe. It must include this node with its AdvertiseAddr.
	Peers []PeerConfig
	// BootstrapExpect makes the node wait until it can see this many servers without Raft state
	// (itself and the Join addresses) and then bootstrap with all of them, sorted by ID. Every
	// expected server should list the others in Join.
	BootstrapExpect int
	// Join lists Raft addresses of servers to ask for membership (or, with BootstrapExpect, to
	// discover). The node retries with backoff until one of them has the leader add it.
	Join []string

	// Raft timing. An old leader steps down after LeaderLeaseTimeout without a quorum; followers
	// start an election between HeartbeatTimeout and twice that without a leader.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower may wait to learn a new commit index when the
	// leader is idle.
	CommitTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot trigger a new one;
	// SnapshotInterval is how often that is checked. TrailingLogs is how many entries are kept
	// behind a snapshot so that a briefly absent follower catches up from the log.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Witness makes this node a witness: a voter that hands leadership to a director (a voter
	// that is not a witness) whenever it becomes leader. It stays leader only while no director
	// answers, so that the table stays writable.
	Witness bool

	// Gossip, if set, runs memberlist gossip: membership, liveness, and discovery of new
	// servers, which the leader adds to Raft (see GossipConfig). Start from DefaultGossip.
	Gossip *GossipConfig

	// Serial lists serial heartbeat links, at most one per peer (see SerialConfig). Zero
	// Baud, Keepalive and Deadtime take the DefaultSerial values.
	Serial []SerialConfig

	// TLS, if set, makes every Raft and RPC connection between directors mutual TLS with this
	// configuration (build it with MutualTLS): a director whose certificate the CA did not sign
	// can neither join nor talk to the pool. Ignored in Dev mode.
	TLS *tls.Config

	// Dev runs a single-node pool with in-memory storage and transport that bootstraps itself:
	// nothing survives a restart. Like `consul agent -dev`.
	Dev bool

	// Logger receives the node's logs and, at the same level, Raft's. Nil discards them.
	Logger *slog.Logger

	// ObserveApply, if set, is called at the end of every Apply through this node with the
	// command's op, how long it took end to end (validation, forwarding to the leader, commit,
	// and the local apply that read-your-writes waits for) and its error (nil or not). It runs
	// on Apply's caller's goroutine and must not block (metrics).
	ObserveApply func(op fsm.Op, took time.Duration, err error)

	// Protocol is the protocol this node advertises (in gossip and the info RPC); 0 means
	// fsm.ProtocolVersion, what the build speaks. A leader proposes an entry only when every
	// server advertises the entry's protocol (fsm.Op.MinProtocol). Setting it lower is for tests
	// and for holding a mixed-version pool at the older protocol; it cannot exceed the build's.
	Protocol int
}

// PeerConfig is one server of a static bootstrap configuration.
type PeerConfig struct {
	ID      string
	Address string
}

// Timing defaults. design.md measured 3 in-memory nodes with the leader partitioned:
// hashicorp/raft's defaults (1 s/1 s/500 ms) elected a new leader after 1.35–2.9 s, 200/200/100 ms
// after 0.24–0.45 s. 300/300/150 ms keeps failover well under a second with some margin for
// GC pauses and loaded VMs.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 120 * time.Second
	DefaultTrailingLogs       = 10240
)

// Lower bounds hashicorp/raft enforces (raft.ValidateConfig).
const (
	minTimeout       = 5 * time.Millisecond
	minCommitTimeout = time.Millisecond
)

// DefaultConfig returns the production defaults; the caller sets NodeID, DataDir, BindAddr and
// a bootstrap source.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
		SnapshotThreshold:  DefaultSnapshotThreshold,
		SnapshotInterval:   DefaultSnapshotInterval,
		TrailingLogs:       DefaultTrailingLogs,
	}
}

// DevConfig returns DefaultConfig in Dev mode with node ID "dev". A lone node has no one to
// disagree with, so it uses shorter timeouts and leads within about 200 ms.
func DevConfig() Config {
	c := DefaultConfig()
	c.Dev = true
	c.NodeID = "dev"
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	return c
}

// ConfigError is a rejected configuration value. Field is the Config field's name (the agent's
// config loader maps it to its own key).
type ConfigError struct {
	Field  string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("cluster config: %s = %s: %s", e.Field, strconv.Quote(e.Value), e.Reason)
}

// Validate checks every field and the invariants between them. It returns all problems joined
// (each a *ConfigError), or nil.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, value, reason string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}

	if strings.TrimSpace(c.NodeID) == "" || c.NodeID != strings.TrimSpace(c.NodeID) {
		bad("NodeID", c.NodeID, "is required and must not have surrounding spaces")
	}
	if c.Dev {
		if len(c.Peers) > 0 {
			bad("Peers", fmt.Sprint(len(c.Peers)), "must be empty in Dev mode (a dev node bootstraps alone)")
		}
		if c.BootstrapExpect != 0 {
			bad("BootstrapExpect", strconv.Itoa(c.BootstrapExpect), "must be 0 in Dev mode")
		}
		if len(c.Join) > 0 {
			bad("Join", strings.Join(c.Join, ","), "must be empty in Dev mode")
		}
	} else {
		if c.DataDir == "" {
			bad("DataDir", c.DataDir, "is required (unless Dev)")
		}
		if err := checkHostPort(c.BindAddr, true); err != nil {
			bad("BindAddr", c.BindAddr, "%v", err)
		}
		if c.AdvertiseAddr != "" {
			if err := checkHostPort(c.AdvertiseAddr, false); err != nil {
				bad("AdvertiseAddr", c.AdvertiseAddr, "%v", err)
			}
		} else if host, _, err := net.SplitHostPort(c.BindAddr); err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				bad("AdvertiseAddr", c.AdvertiseAddr, "is required when BindAddr %q listens on all addresses: other servers need an address to reach this one", c.BindAddr)
			}
		}
		if len(c.Peers) == 0 && c.BootstrapExpect == 0 && len(c.Join) == 0 && (c.Gossip == nil || len(c.Gossip.Join) == 0) {
			bad("Peers", "", "no bootstrap source: set Peers, BootstrapExpect, Join or Gossip.Join (a single server: BootstrapExpect = 1)")
		}
	}

	if len(c.Peers) > 0 {
		if c.BootstrapExpect != 0 {
			bad("BootstrapExpect", strconv.Itoa(c.BootstrapExpect), "cannot be combined with static Peers")
		}
		ids, addrs, self := map[string]bool{}, map[string]bool{}, false
		for i, p := range c.Peers {
			field := fmt.Sprintf("Peers[%d]", i)
			if p.ID == "" {
				bad(field+".ID", p.ID, "is required")
			} else if ids[p.ID] {
				bad(field+".ID", p.ID, "is listed twice")
			}
			ids[p.ID] = true
			if err := checkHostPort(p.Address, false); err != nil {
				bad(field+".Address", p.Address, "%v", err)
			} else if addrs[p.Address] {
				bad(field+".Address", p.Address, "is listed twice")
			}
			addrs[p.Address] = true
			self = self || p.ID == c.NodeID
		}
		if !self && c.NodeID != "" {
			bad("Peers", c.NodeID, "must include this node's NodeID")
		}
	}
	if c.BootstrapExpect < 0 {
		bad("BootstrapExpect", strconv.Itoa(c.BootstrapExpect), "must not be negative")
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		bad("Join", "", "is required with BootstrapExpect %d: the node must know where to find the others", c.BootstrapExpect)
	}
	for i, a := range c.Join {
		if err := checkHostPort(a, false); err != nil {
			bad(fmt.Sprintf("Join[%d]", i), a, "%v", err)
		}
	}

	checkMin := func(field string, v, min time.Duration) {
		if v < min {
			bad(field, v.String(), "must be at least %s", min)
		}
	}
	checkMin("HeartbeatTimeout", c.HeartbeatTimeout, minTimeout)
	checkMin("ElectionTimeout", c.ElectionTimeout, minTimeout)
	checkMin("LeaderLeaseTimeout", c.LeaderLeaseTimeout, minTimeout)
	checkMin("CommitTimeout", c.CommitTimeout, minCommitTimeout)
	checkMin("SnapshotInterval", c.SnapshotInterval, minTimeout)
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("LeaderLeaseTimeout", c.LeaderLeaseTimeout.String(), "must not exceed HeartbeatTimeout (%s); keep it well below, so that a deposed leader steps down before followers elect another", c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		bad("ElectionTimeout", c.ElectionTimeout.String(), "must be at least HeartbeatTimeout (%s)", c.HeartbeatTimeout)
	}
	if c.CommitTimeout > c.HeartbeatTimeout {
		bad("CommitTimeout", c.CommitTimeout.String(), "must not exceed HeartbeatTimeout (%s)", c.HeartbeatTimeout)
	}
	if c.SnapshotThreshold == 0 {
		bad("SnapshotThreshold", "0", "must be positive")
	}
	if c.Gossip != nil {
		c.Gossip.validate(c.Dev, bad)
	}
	peers := map[string]bool{}
	for i, s := range c.Serial {
		s = s.withDefaults()
		field := fmt.Sprintf("Serial[%d].", i)
		switch {
		case s.Peer == "" || len(s.Peer) > maxIDLen:
			bad(field+"Peer", s.Peer, "must be a node ID of 1 to %d bytes", maxIDLen)
		case s.Peer == c.NodeID:
			bad(field+"Peer", s.Peer, "is this node")
		case peers[s.Peer]:
			bad(field+"Peer", s.Peer, "has a serial link already")
		}
		peers[s.Peer] = true
		if s.Device == "" {
			bad(field+"Device", "", "is required")
		}
		if s.Baud < 0 {
			bad(field+"Baud", strconv.Itoa(s.Baud), "must be positive")
		}
		if len(s.Key) < minSerialKey {
			bad(field+"Key", "(secret)", "must be at least %d bytes", minSerialKey)
		}
		checkMin(field+"Keepalive", s.Keepalive, minTimeout)
		if s.Deadtime < 2*s.Keepalive {
			bad(field+"Deadtime", s.Deadtime.String(), "must be at least twice Keepalive (%s), or one late frame marks the link down", s.Keepalive)
		}
	}
	if c.Protocol < 0 || c.Protocol > fsm.ProtocolVersion {
		bad("Protocol", strconv.Itoa(c.Protocol), "must be from 1 to %d, the protocol this build speaks (0: %d)", fsm.ProtocolVersion, fsm.ProtocolVersion)
	}
	if len(c.NodeID) > maxIDLen && len(c.Serial) > 0 {
		bad("NodeID", c.NodeID, "must be at most %d bytes to be sent over a serial link", maxIDLen)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a numeric port; port 0 only if listen is set.
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	if p == 0 && !listen {
		return fmt.Errorf("port must not be 0")
	}
	if !listen {
		if host == "" {
			return fmt.Errorf("host is required")
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("%s is not an address other servers can reach", host)
		}
	}
	return nil
}

// withDefaults fills the fields whose zero value means "default".
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Protocol == 0 {
		c.Protocol = fsm.ProtocolVersion
	}
	if c.Gossip != nil {
		g := *c.Gossip
		g.Join, g.Key = slices.Clone(g.Join), slices.Clone(g.Key)
		c.Gossip = &g
	}
	c.Serial = slices.Clone(c.Serial)
	for i := range c.Serial {
		c.Serial[i] = c.Serial[i].withDefaults()
	}
	return c
}
