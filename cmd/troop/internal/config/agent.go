package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/troop-lb/troop/fsm"
)

// Agent is the agent configuration file, decoded. A zero field means "not set": the caller
// starts from its defaults (cluster.DefaultConfig, DefaultAPIAddress, DefaultRaftAddress) and
// overlays what is set here, so that the file, flags and -dev are interchangeable sources.
// Because zero means "not set", a file may not write a zero duration or count: it is refused
// rather than silently ignored.
type Agent struct {
	// NodeID is this director's Raft server ID: 1–63 of [A-Za-z0-9._-]. Required.
	NodeID string
	// DataDir holds the Raft log, stable store and snapshots. Required.
	DataDir string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Witness makes the agent a witness: a Raft voter that runs no dataplane and no health
	// checks and hands leadership to a director whenever it wins an election (the -witness
	// flag sets it too). Its director block, if any, is ignored.
	Witness  bool
	API      API
	Raft     Raft
	Director Director
	// Gossip, when the file has a gossip block, runs memberlist gossip. Its zero value means no
	// block.
	Gossip Gossip
	// Serial lists serial heartbeat links, one per peer at most.
	Serial []Serial
	// ACL is the acl block: API access control.
	ACL ACL
}

// Gossip is the `gossip { ... }` block: memberlist gossip for membership, liveness and discovery.
type Gossip struct {
	// Enabled is true when the file has a gossip block.
	Enabled bool
	// Address is the host:port gossip listens on (TCP and UDP); the Raft address's host with
	// port DefaultGossipPort if empty.
	Address   string
	Advertise string
	// Join lists gossip addresses of members to contact; if empty, the Raft peers' and Raft
	// join hosts at this node's gossip port.
	Join []string
	// Key is the pool's gossip key, base64 of 16, 24 or 32 bytes (`troop keygen`); or KeyFile
	// names a file holding it. Exactly one is required.
	Key     string
	KeyFile string

	ProbeInterval     time.Duration
	ProbeTimeout      time.Duration
	GossipInterval    time.Duration
	SuspicionMult     int
	StabilizationTime time.Duration
	// DeadServerCleanup is how long a dead director stays in Raft before the leader removes
	// it; NeverCleanup (the text "never") keeps it until an operator removes it.
	DeadServerCleanup time.Duration
	MinQuorum         int
}

// DefaultGossipPort is gossip's port when the gossip block sets no address, next to the API's 9700 and Raft's 9701.
const DefaultGossipPort = 9702

// NeverCleanup is Gossip.DeadServerCleanup when the file says dead_server_cleanup = "never".
const NeverCleanup = time.Duration(-1)

// DecodeGossipKey decodes a gossip key as the file writes it: base64 of 16, 24 or 32 bytes.
func DecodeGossipKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("must be base64 (`troop keygen` makes one)")
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("must decode to 16, 24 or 32 bytes (AES-128, -192 or -256), not %d", n)
	}
	return key, nil
}

// Serial is one serial heartbeat link (a `serial { ... }` block): the successor of Heartbeat's
// serial, baud, keepalive, deadtime and authkeys. Zero Baud, Keepalive and Deadtime take
// cluster's defaults (19200 baud, 200ms, 1s).
type Serial struct {
	// Peer is the node ID of the director at the other end of the cable. Required.
	Peer string
	// Device is the serial port, /dev/ttyS0. Required.
	Device    string
	Baud      int
	Keepalive time.Duration
	Deadtime  time.Duration
	// Key is the shared HMAC key, at least MinSerialKey bytes; or KeyFile names a file holding
	// it (read by the agent at start, trailing newlines dropped). Exactly one is required.
	Key     string
	KeyFile string
}

// MinSerialKey is the shortest serial link key accepted (128 bits, as cluster requires).
const MinSerialKey = 16

// API configures the HTTP API.
type API struct {
	// Address is the host:port to listen on; DefaultAPIAddress if empty.
	Address string
	// TLS serves the API (and the console) over HTTPS (cert_file, key_file).
	TLS TLS
}

// Raft configures the Raft node. Durations and counts override hashicorp/raft's defaults.
type Raft struct {
	// Address is the host:port the Raft TCP transport listens on; DefaultRaftAddress if empty.
	Address string
	// Advertise is the host:port other directors dial; the listen address if empty. It is
	// required when Address listens on all interfaces, which peers cannot dial.
	Advertise string
	// BootstrapExpect makes the node wait for this many servers (found through Join) before
	// bootstrapping. Mutually exclusive with Peers.
	BootstrapExpect int
	// Join lists Raft addresses of existing members to ask for admission.
	Join []string
	// Peers is a static bootstrap configuration that must include this node.
	Peers []Peer
	// TLS makes Raft and the directors' RPC mutual TLS (ca_file, cert_file, key_file).
	TLS TLS

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
}

// Peer is one server of a static bootstrap configuration.
type Peer struct {
	ID      string
	Address string
}

// Default listen addresses. Both are loopback so that an agent started with a minimal file
// exposes nothing it was not told to; a pool sets raft.address (and, for 0.0.0.0,
// raft.advertise). 9700 is the API's port and 9701 Raft's.
const (
	DefaultAPIAddress  = "127.0.0.1:9700"
	DefaultRaftAddress = "127.0.0.1:9701"
)

// LogLevels lists the accepted log_level values, as slog names them.
var LogLevels = []string{"debug", "info", "warn", "error"}

// ParseAgent reads an agent configuration file and validates it (Agent.Validate). On any problem
// it returns a zero Agent and a Diagnostics error listing them all.
func ParseAgent(filename string, src []byte) (Agent, error) {
	d, root := parse(filename, src)
	if root == nil {
		return Agent{}, d.result()
	}
	var a Agent
	d.body(root, "", schema{
		attrs: map[string]setter{
			"node_id":   text(&a.NodeID),
			"data_dir":  text(&a.DataDir),
			"log_level": text(&a.LogLevel),
			"witness":   boolean(&a.Witness),
		},
		blocks: map[string]blockSpec{
			"api": {decode: func(b *hclsyntax.Block) {
				if d.define("api", b) {
					d.body(b.Body, "api", schema{
						attrs: map[string]setter{"address": text(&a.API.Address)},
						blocks: map[string]blockSpec{"tls": {decode: func(b *hclsyntax.Block) {
							if d.define("api tls", b) {
								d.tls(b, "api", &a.API.TLS, false)
							}
						}}},
					})
				}
			}},
			"raft": {decode: func(b *hclsyntax.Block) {
				if d.define("raft", b) {
					d.raft(b, &a.Raft)
				}
			}},
			"director": {decode: func(b *hclsyntax.Block) {
				if d.define("director", b) {
					d.director(b, &a.Director)
				}
			}},
			"gossip": {decode: func(b *hclsyntax.Block) {
				if d.define("gossip", b) {
					d.gossip(b, &a.Gossip)
				}
			}},
			"serial": {decode: func(b *hclsyntax.Block) { d.serial(b, &a.Serial) }},
			"acl": {decode: func(b *hclsyntax.Block) {
				if d.define("acl", b) {
					d.acl(b, &a.ACL)
				}
			}},
		},
	})
	if len(d.diags) > 0 {
		return Agent{}, d.result()
	}
	for _, err := range a.problems() {
		d.fail(err)
	}
	if err := d.result(); err != nil {
		return Agent{}, err
	}
	return a, nil
}

func (d *decoder) raft(b *hclsyntax.Block, r *Raft) {
	// Zero is "not set" in Raft, so the counts start at 1 and the durations must be positive.
	d.body(b.Body, "raft", schema{
		attrs: map[string]setter{
			"address":              text(&r.Address),
			"advertise":            text(&r.Advertise),
			"bootstrap_expect":     number(&r.BootstrapExpect, 1, math.MaxInt32),
			"join":                 texts(&r.Join),
			"heartbeat_timeout":    duration(&r.HeartbeatTimeout, 1),
			"election_timeout":     duration(&r.ElectionTimeout, 1),
			"leader_lease_timeout": duration(&r.LeaderLeaseTimeout, 1),
			"commit_timeout":       duration(&r.CommitTimeout, 1),
			"snapshot_threshold":   number(&r.SnapshotThreshold, 1, math.MaxUint64),
			"snapshot_interval":    duration(&r.SnapshotInterval, 1),
			"trailing_logs":        number(&r.TrailingLogs, 1, math.MaxUint64),
		},
		blocks: map[string]blockSpec{
			"peer": {labels: []string{"id"}, decode: func(b *hclsyntax.Block) {
				p := Peer{ID: b.Labels[0]}
				path := "raft peer " + strconv.Quote(p.ID)
				if !d.define(path, b) {
					return
				}
				d.body(b.Body, path, schema{attrs: map[string]setter{"address": text(&p.Address)}})
				r.Peers = append(r.Peers, p)
			}},
			"tls": {decode: func(b *hclsyntax.Block) {
				if d.define("raft tls", b) {
					d.tls(b, "raft", &r.TLS, true)
				}
			}},
		},
	})
}

func (d *decoder) gossip(b *hclsyntax.Block, g *Gossip) {
	g.Enabled = true
	var cleanup string
	d.body(b.Body, "gossip", schema{attrs: map[string]setter{
		"address":             text(&g.Address),
		"advertise":           text(&g.Advertise),
		"join":                texts(&g.Join),
		"key":                 text(&g.Key),
		"key_file":            text(&g.KeyFile),
		"probe_interval":      duration(&g.ProbeInterval, 1),
		"probe_timeout":       duration(&g.ProbeTimeout, 1),
		"gossip_interval":     duration(&g.GossipInterval, 1),
		"suspicion_mult":      number(&g.SuspicionMult, 1, 100),
		"stabilization_time":  duration(&g.StabilizationTime, 1),
		"dead_server_cleanup": text(&cleanup),
		"min_quorum":          number(&g.MinQuorum, 1, 100),
	}})
	switch cleanup {
	case "":
	case "never":
		g.DeadServerCleanup = NeverCleanup
	default:
		v, err := time.ParseDuration(cleanup)
		if err != nil || v <= 0 {
			d.fail(invalid("gossip dead_server_cleanup", cleanup, `must be a positive duration ("10m") or "never"`))
			return
		}
		g.DeadServerCleanup = v
	}
}

// serial decodes one serial block. Its field path names the peer (`serial "d2" device`), so
// that a second link to the same peer is refused and errors point at the right block.
func (d *decoder) serial(b *hclsyntax.Block, links *[]Serial) {
	var s Serial
	if a, ok := b.Body.Attributes["peer"]; ok {
		if v, hds := a.Expr.Value(nil); !hds.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			s.Peer = v.AsString()
		}
	}
	path := "serial " + strconv.Quote(s.Peer)
	if !d.define(path, b) {
		return
	}
	d.body(b.Body, path, schema{attrs: map[string]setter{
		"peer":      text(&s.Peer),
		"device":    text(&s.Device),
		"baud":      number(&s.Baud, 1, math.MaxInt32),
		"keepalive": duration(&s.Keepalive, 1),
		"deadtime":  duration(&s.Deadtime, 1),
		"key":       text(&s.Key),
		"key_file":  text(&s.KeyFile),
	}})
	*links = append(*links, s)
}

// Validate checks what the configuration alone can tell, whatever it was built from: required
// fields, address syntax, and the rules hashicorp/raft's ValidateConfig would otherwise only
// report at start-up, without a line number. It returns every problem found, each a
// *fsm.FieldError naming the field as the file spells it, joined with errors.Join.
func (a Agent) Validate() error {
	var errs []error
	for _, fe := range a.problems() {
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// nodeIDRE is the accepted node ID: Raft server IDs appear in paths, metrics and logs.
var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

const nodeIDRule = "must be 1–63 letters, digits, '.', '_' or '-'"

// Raft's own lower limits (raft.ValidateConfig in hashicorp/raft v1.8.0).
const (
	raftMinTimeout       = 5 * time.Millisecond
	raftMinCommitTimeout = time.Millisecond
)

// invalid builds the error for one rejected field, in fsm's vocabulary.
func invalid(field, value, reason string, args ...any) *fsm.FieldError {
	return &fsm.FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...), Kind: fsm.ErrInvalid}
}

func (a Agent) problems() []*fsm.FieldError {
	var ps []*fsm.FieldError
	bad := func(field, value, reason string, args ...any) {
		ps = append(ps, invalid(field, value, reason, args...))
	}
	switch {
	case a.NodeID == "":
		bad("node_id", "", "is required")
	case !nodeIDRE.MatchString(a.NodeID):
		bad("node_id", a.NodeID, nodeIDRule)
	}
	if a.DataDir == "" {
		bad("data_dir", "", "is required")
	}
	if a.LogLevel != "" && !slices.Contains(LogLevels, a.LogLevel) {
		bad("log_level", a.LogLevel, "must be one of %s", strings.Join(LogLevels, ", "))
	}
	if a.API.Address != "" {
		if reason := hostPortProblem(a.API.Address, true); reason != "" {
			bad("api address", a.API.Address, "%s", reason)
		}
	}

	r := a.Raft
	if r.Address != "" {
		if reason := hostPortProblem(r.Address, true); reason != "" {
			bad("raft address", r.Address, "%s", reason)
		} else if r.Advertise == "" && listensEverywhere(r.Address) {
			bad("raft address", r.Address, "listens on all interfaces, which peers cannot dial; set raft advertise")
		}
	}
	if r.Advertise != "" {
		if reason := hostPortProblem(r.Advertise, false); reason != "" {
			bad("raft advertise", r.Advertise, "%s", reason)
		}
	}
	if r.BootstrapExpect < 0 {
		bad("raft bootstrap_expect", strconv.Itoa(r.BootstrapExpect), "must be at least 1")
	}
	if r.BootstrapExpect != 0 && len(r.Peers) > 0 {
		bad("raft bootstrap_expect", strconv.Itoa(r.BootstrapExpect), "peer blocks and bootstrap_expect are mutually exclusive: list the peers or wait for the expected count, not both")
	}
	for _, j := range r.Join {
		if reason := hostPortProblem(j, false); reason != "" {
			bad("raft join", j, "%s", reason)
		}
	}
	ps = append(ps, peerProblems(a.NodeID, r.Peers)...)
	ps = append(ps, a.Director.problems()...)
	ps = append(ps, serialProblems(a.NodeID, a.Serial)...)
	ps = append(ps, a.Gossip.problems()...)
	ps = append(ps, a.ACL.problems()...)
	ps = append(ps, a.API.TLS.problems("api", false)...)
	ps = append(ps, r.TLS.problems("raft", true)...)

	timeouts := []struct {
		field string
		v     time.Duration
		min   time.Duration
	}{
		{"raft heartbeat_timeout", r.HeartbeatTimeout, raftMinTimeout},
		{"raft election_timeout", r.ElectionTimeout, raftMinTimeout},
		{"raft leader_lease_timeout", r.LeaderLeaseTimeout, raftMinTimeout},
		{"raft commit_timeout", r.CommitTimeout, raftMinCommitTimeout},
		{"raft snapshot_interval", r.SnapshotInterval, raftMinTimeout},
	}
	for _, t := range timeouts {
		if t.v != 0 && t.v < t.min {
			bad(t.field, t.v.String(), "must be at least %s", t.min)
		}
	}
	// The cross-checks raft (and cluster.Config.Validate) make, when the file sets both sides; a
	// default on one side is the caller's to check against.
	if r.LeaderLeaseTimeout != 0 && r.HeartbeatTimeout != 0 && r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		bad("raft leader_lease_timeout", r.LeaderLeaseTimeout.String(), "must not exceed heartbeat_timeout %s", r.HeartbeatTimeout)
	}
	if r.ElectionTimeout != 0 && r.HeartbeatTimeout != 0 && r.ElectionTimeout < r.HeartbeatTimeout {
		bad("raft election_timeout", r.ElectionTimeout.String(), "must be at least heartbeat_timeout %s", r.HeartbeatTimeout)
	}
	if r.CommitTimeout != 0 && r.HeartbeatTimeout != 0 && r.CommitTimeout > r.HeartbeatTimeout {
		bad("raft commit_timeout", r.CommitTimeout.String(), "must not exceed heartbeat_timeout %s", r.HeartbeatTimeout)
	}
	return ps
}

func (g Gossip) problems() []*fsm.FieldError {
	if !g.Enabled {
		return nil
	}
	var ps []*fsm.FieldError
	bad := func(field, value, reason string, args ...any) {
		ps = append(ps, invalid("gossip "+field, value, reason, args...))
	}
	if g.Address != "" {
		if reason := hostPortProblem(g.Address, true); reason != "" {
			bad("address", g.Address, "%s", reason)
		} else if g.Advertise == "" && listensEverywhere(g.Address) {
			bad("address", g.Address, "listens on all interfaces, which peers cannot reach; set gossip advertise")
		}
	}
	if g.Advertise != "" {
		if reason := hostPortProblem(g.Advertise, false); reason != "" {
			bad("advertise", g.Advertise, "%s", reason)
		}
	}
	for _, j := range g.Join {
		if reason := hostPortProblem(j, false); reason != "" {
			bad("join", j, "%s", reason)
		}
	}
	switch {
	case (g.Key == "") == (g.KeyFile == ""):
		bad("key", "", "give exactly one of key or key_file: the pool's shared gossip key (`troop keygen`)")
	case g.Key != "":
		if _, err := DecodeGossipKey(g.Key); err != nil {
			bad("key", "(secret)", "%v", err)
		}
	}
	if g.ProbeInterval != 0 && g.ProbeTimeout != 0 && g.ProbeTimeout >= g.ProbeInterval {
		bad("probe_timeout", g.ProbeTimeout.String(), "must be shorter than probe_interval %s", g.ProbeInterval)
	}
	return ps
}

// serialProblems checks the serial blocks; a second block for one peer was refused while
// decoding.
func serialProblems(self string, links []Serial) []*fsm.FieldError {
	var ps []*fsm.FieldError
	for _, s := range links {
		path := "serial " + strconv.Quote(s.Peer)
		bad := func(field, value, reason string, args ...any) {
			ps = append(ps, invalid(join(path, field), value, reason, args...))
		}
		switch {
		case s.Peer == "":
			bad("peer", "", "is required: the node ID of the director at the other end")
		case !nodeIDRE.MatchString(s.Peer):
			bad("peer", s.Peer, nodeIDRule)
		case s.Peer == self:
			bad("peer", s.Peer, "is this node")
		}
		if s.Device == "" {
			bad("device", "", "is required")
		}
		switch {
		case (s.Key == "") == (s.KeyFile == ""):
			bad("key", "", "give exactly one of key or key_file: the secret shared with the peer")
		case s.KeyFile == "" && len(s.Key) < MinSerialKey:
			bad("key", "(secret)", "must be at least %d bytes", MinSerialKey)
		}
		if s.Keepalive != 0 && s.Deadtime != 0 && s.Deadtime < 2*s.Keepalive {
			bad("deadtime", s.Deadtime.String(), "must be at least twice keepalive %s, or one late frame marks the link down", s.Keepalive)
		}
	}
	return ps
}

// peerProblems checks a static bootstrap list: valid unique IDs, dialable unique addresses (raft
// refuses a configuration with a repeated address), and this node among them, since a node
// that bootstraps a configuration without itself can never vote in it.
func peerProblems(self string, peers []Peer) []*fsm.FieldError {
	var ps []*fsm.FieldError
	bad := func(field, value, reason string, args ...any) {
		ps = append(ps, invalid(field, value, reason, args...))
	}
	ids := map[string]bool{}
	addrs := map[string]string{}
	for _, p := range peers {
		path := "raft peer " + strconv.Quote(p.ID)
		switch {
		case !nodeIDRE.MatchString(p.ID):
			bad("raft peer", p.ID, nodeIDRule)
		case ids[p.ID]:
			bad("raft peer", p.ID, "is defined twice")
		}
		ids[p.ID] = true
		if p.Address == "" {
			bad(path+" address", "", "is required")
			continue
		}
		if reason := hostPortProblem(p.Address, false); reason != "" {
			bad(path+" address", p.Address, "%s", reason)
			continue
		}
		if other, dup := addrs[p.Address]; dup {
			bad(path+" address", p.Address, "is also peer %q's address", other)
		}
		addrs[p.Address] = p.ID
	}
	if len(peers) > 0 && self != "" && !ids[self] {
		bad("raft peer", "", "must include this node (node_id %q)", self)
	}
	return ps
}

// dnsNameRE loosely matches a host name: labels of letters, digits and hyphens.
var dnsNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// hostPortProblem says what is wrong with a host:port, or "". A listen address may leave the
// host empty (all interfaces); an address others dial needs a host they can reach.
func hostPortProblem(s string, listen bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be host:port, with an IPv6 host in brackets ([2001:db8::1]:9701)"
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "port must be 1–65535"
	}
	if host == "" {
		if listen {
			return ""
		}
		return "needs a host that other directors can dial"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !listen && ip.IsUnspecified() {
			return "needs a host that other directors can dial, not " + ip.String()
		}
		return ""
	}
	if !dnsNameRE.MatchString(host) {
		return "host must be an IP address or a DNS name"
	}
	return ""
}

// listensEverywhere reports whether a valid listen address binds all interfaces.
func listensEverywhere(s string) bool {
	host, _, _ := net.SplitHostPort(s)
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}
