// Package lvs builds a throwaway Troop director pool in network namespaces: one bridge (in a
// namespace of its own, so nothing touches the host's interfaces), a client, directors running
// `troop agent` as a Raft pool, and real servers prepared with `troop realserver setup` serving
// an HTTP page that names them. The VM tier's scenarios and `make lab` drive it. It needs root
// and iproute2, and a kernel with IPVS for the dataplane. Addresses are from 192.0.2.0/24.
package lvs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troop-lb/troop/api"
)

// Addresses of the pool, on one /24 and one /64: host .N is also 2001:db8::N.
const (
	VIP        = "192.0.2.100"
	VIP6       = "2001:db8::100"
	ClientAddr = "192.0.2.200"
	// FallbackAddr is the "sorry" server's address; it serves like a real server.
	FallbackAddr = "192.0.2.29"
	apiPort      = 9700
	raftPort     = 9701
	// GossipPort is where directors gossip (the agent's default: the Raft host at 9702).
	GossipPort = 9702
)

// DirectorAddr is director n's (1-based) address.
func DirectorAddr(n int) string { return fmt.Sprintf("192.0.2.%d", n) }

// RealAddr is real server n's (1-based) address.
func RealAddr(n int) string { return fmt.Sprintf("192.0.2.%d", 20+n) }

// Timing is a Raft timing profile; zero fields leave the agent's defaults.
type Timing struct {
	Name                        string
	Heartbeat, Election, Leader time.Duration
}

// Profiles the failover figures are measured with. Default is the agent's built-in timing.
var (
	DefaultTiming = Timing{Name: "default (300/300/150 ms)", Heartbeat: 300 * time.Millisecond,
		Election: 300 * time.Millisecond, Leader: 150 * time.Millisecond}
	FastTiming = Timing{Name: "fast (100/100/50 ms)", Heartbeat: 100 * time.Millisecond,
		Election: 100 * time.Millisecond, Leader: 50 * time.Millisecond}
)

// Config shapes a pool.
type Config struct {
	Bin       string // the troop binary
	Dir       string // configs, data dirs and logs go here
	Directors int    // default 3
	Reals     int    // default 2
	Timing    Timing
	// ReconcileInterval is the directors' full comparison with the kernel; 0 keeps the default.
	ReconcileInterval time.Duration
	// Gossip gives every director a gossip block with the pool's key (generated per pool) and
	// GossipExtra inside it (timings, say).
	Gossip      bool
	GossipExtra string
	// Founders is how many directors (d1 up) are in the static Raft peer list; 0 means all. The
	// others, joiners, have no Raft bootstrap source: they gossip into the pool through d1 and
	// wait for the leader to add them. StartAll starts the founders only.
	Founders int
	// DirectorExtra is HCL appended, at the top level, to the named directors' agent files
	// ("d1" → a serial block, say); directors not named get none.
	DirectorExtra map[string]string
	// AgentConfig, when set, is director n's (1-based) whole agent file in place of the pool's
	// own (one `troop init` wrote, say); the settings above that shape agent files then do not
	// apply.
	AgentConfig func(n int) string
	// Log receives a line per step ("start d1", "kill d2"); nil discards.
	Log io.Writer
}

// Node is one host of the pool: a namespace with eth0 on the bridge.
type Node struct {
	Name string
	NS   Netns
	Addr string // IPv4 address on eth0
	link string // the bridge's end of its veth, in the hub namespace
}

// Addr6 is the node's IPv6 address: 2001:db8:: and the last octet of its IPv4 one.
func (n *Node) Addr6() string { return "2001:db8::" + n.Addr[strings.LastIndex(n.Addr, ".")+1:] }

// Pool is a running topology.
type Pool struct {
	cfg    Config
	prefix string
	hub    Netns
	nodes  map[string]*Node
	http   *http.Client

	mu      sync.Mutex
	agents  map[string]*agent
	servers map[string]*http.Server
	closers []io.Closer // echo listeners
	// gossipKey is the pool's gossip key (base64), when Config.Gossip is set.
	gossipKey string
	// bins are directors' troop binaries other than Config.Bin (SetBinary), guarded by mu.
	bins map[string]string
}

type agent struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
	// group: the agent leads a process group of its own (keepalived and its children), which
	// Kill ends as a whole.
	group bool
	// pidFiles name the agent's children (keepalived's VRRP and checker processes), which Kill
	// ends too, should one have left the group.
	pidFiles []string
}

// kill sends SIGKILL to the agent (and its process group and children, if it has them).
func (a *agent) kill() {
	if a.group {
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, f := range a.pidFiles {
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	a.cmd.Process.Kill()
}

// Names of the pool's hosts.
func directorName(n int) string { return fmt.Sprintf("d%d", n) }
func realName(n int) string     { return fmt.Sprintf("r%d", n) }

// FallbackName is the sorry server's node name.
const FallbackName = "sorry"

// ClientName is the client's node name.
const ClientName = "client"

// New builds the topology (no agent is started yet). On error nothing is left behind.
func New(ctx context.Context, cfg Config) (p *Pool, err error) {
	if cfg.Directors == 0 {
		cfg.Directors = 3
	}
	if cfg.Reals == 0 {
		cfg.Reals = 2
	}
	if cfg.Founders == 0 {
		cfg.Founders = cfg.Directors
	}
	key := make([]byte, 32)
	rand.Read(key)
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	p = &Pool{cfg: cfg, prefix: fmt.Sprintf("tp%d", os.Getpid()%100000), nodes: map[string]*Node{},
		agents: map[string]*agent{}, servers: map[string]*http.Server{}, gossipKey: base64.StdEncoding.EncodeToString(key)}
	p.hub = Netns(p.prefix + "-hub")
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := ip(ctx, "netns", "add", string(p.hub)); err != nil {
		return nil, err
	}
	if err := p.in(ctx, p.hub, "ip", "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := p.in(ctx, p.hub, "ip", "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Directors; i++ {
		if err := p.addNode(ctx, directorName(i), DirectorAddr(i)); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= cfg.Reals; i++ {
		if err := p.addNode(ctx, realName(i), RealAddr(i)); err != nil {
			return nil, err
		}
	}
	if err := p.addNode(ctx, FallbackName, FallbackAddr); err != nil {
		return nil, err
	}
	if err := p.addNode(ctx, ClientName, ClientAddr); err != nil {
		return nil, err
	}
	client := p.nodes[ClientName].NS
	p.http = &http.Client{Transport: &http.Transport{DialContext: client.DialContext, DisableKeepAlives: true}}
	return p, nil
}

// addNode creates a namespace with eth0 on the bridge holding addr/24.
func (p *Pool) addNode(ctx context.Context, name, addr string) error {
	n := &Node{Name: name, NS: Netns(p.prefix + "-" + name), Addr: addr, link: p.prefix + name}
	p.nodes[name] = n
	return p.plug(ctx, n)
}

// plug creates n's namespace and its veth on the bridge.
func (p *Pool) plug(ctx context.Context, n *Node) error {
	steps := [][]string{
		{"ip", "netns", "add", string(n.NS)},
		{"ip", "link", "add", n.link, "netns", string(p.hub), "type", "veth", "peer", "name", "eth0", "netns", string(n.NS)},
	}
	for _, s := range steps {
		if err := run(ctx, nil, s...); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		ns   Netns
		args []string
	}{
		{p.hub, []string{"ip", "link", "set", n.link, "master", "br0", "up"}},
		{n.NS, []string{"ip", "link", "set", "lo", "up"}},
		{n.NS, []string{"ip", "link", "set", "eth0", "up"}},
		{n.NS, []string{"ip", "addr", "add", n.Addr + "/24", "dev", "eth0"}},
		// nodad: usable at once, without the duplicate-address wait.
		{n.NS, []string{"ip", "addr", "add", n.Addr6() + "/64", "dev", "eth0", "nodad"}},
	} {
		if err := p.in(ctx, s.ns, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// Bin is the troop binary the pool runs.
func (p *Pool) Bin() string { return p.cfg.Bin }

// Dir is where the pool keeps configs, data dirs and agent logs (NAME.log).
func (p *Pool) Dir() string { return p.cfg.Dir }

// Node returns the named host, or nil.
func (p *Pool) Node(name string) *Node { return p.nodes[name] }

// Directors lists the directors' names.
func (p *Pool) Directors() []string {
	var ds []string
	for i := 1; i <= p.cfg.Directors; i++ {
		ds = append(ds, directorName(i))
	}
	return ds
}

// Reals lists the real servers' names.
func (p *Pool) Reals() []string {
	var rs []string
	for i := 1; i <= p.cfg.Reals; i++ {
		rs = append(rs, realName(i))
	}
	return rs
}

// Close stops every agent and server and removes every namespace.
func (p *Pool) Close() {
	p.mu.Lock()
	agents := p.agents
	servers := p.servers
	p.agents, p.servers = map[string]*agent{}, map[string]*http.Server{}
	p.mu.Unlock()
	for _, a := range agents {
		a.kill()
		<-a.done
	}
	for _, s := range servers {
		s.Close()
	}
	for _, c := range p.closers {
		c.Close()
	}
	for _, n := range p.nodes {
		exec.Command("ip", "netns", "del", string(n.NS)).Run()
	}
	exec.Command("ip", "netns", "del", string(p.hub)).Run()
}

func (p *Pool) logf(format string, args ...any) {
	fmt.Fprintf(p.cfg.Log, format+"\n", args...)
}

// in runs a command inside ns.
func (p *Pool) in(ctx context.Context, ns Netns, args ...string) error {
	return run(ctx, nil, append([]string{"ip", "netns", "exec", string(ns)}, args...)...)
}

// Exec runs a command on a node and returns its combined output.
func (p *Pool) Exec(ctx context.Context, node string, args ...string) (string, error) {
	var out strings.Builder
	err := run(ctx, &out, append([]string{"ip", "netns", "exec", string(p.nodes[node].NS)}, args...)...)
	return out.String(), err
}

func ip(ctx context.Context, args ...string) error {
	return run(ctx, nil, append([]string{"ip"}, args...)...)
}

// run runs a command; out receives its output, which an error carries too.
func run(ctx context.Context, out io.Writer, args ...string) error {
	var buf strings.Builder
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if out != nil {
		io.WriteString(out, buf.String())
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// agentConfig is director n's agent configuration.
func (p *Pool) agentConfig(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_id = %q\ndata_dir = %q\nlog_level = \"info\"\n", directorName(n),
		filepath.Join(p.cfg.Dir, directorName(n)))
	fmt.Fprintf(&b, "api {\n  address = \"0.0.0.0:%d\"\n}\n", apiPort)
	fmt.Fprintf(&b, "raft {\n  address = \"%s:%d\"\n", DirectorAddr(n), raftPort)
	if n <= p.cfg.Founders {
		for i := 1; i <= p.cfg.Founders; i++ {
			fmt.Fprintf(&b, "  peer %q { address = \"%s:%d\" }\n", directorName(i), DirectorAddr(i), raftPort)
		}
	}
	t := p.cfg.Timing
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"heartbeat_timeout", t.Heartbeat}, {"election_timeout", t.Election}, {"leader_lease_timeout", t.Leader}} {
		if d.v > 0 {
			fmt.Fprintf(&b, "  %s = %q\n", d.key, d.v.String())
		}
	}
	b.WriteString("}\ndirector {\n  interface = \"eth0\"\n")
	if p.cfg.ReconcileInterval > 0 {
		fmt.Fprintf(&b, "  reconcile_interval = %q\n", p.cfg.ReconcileInterval.String())
	}
	b.WriteString("  sync_daemon {\n    interface = \"eth0\"\n    sync_id = 1\n  }\n}\n")
	if p.cfg.Gossip {
		fmt.Fprintf(&b, "gossip {\n  key = %q\n", p.gossipKey)
		if n > p.cfg.Founders {
			fmt.Fprintf(&b, "  join = [\"%s:%d\"]\n", DirectorAddr(1), GossipPort)
		}
		if p.cfg.GossipExtra != "" {
			b.WriteString(p.cfg.GossipExtra + "\n")
		}
		b.WriteString("}\n")
	}
	if extra := p.cfg.DirectorExtra[directorName(n)]; extra != "" {
		b.WriteString(extra)
		if !strings.HasSuffix(extra, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Start starts director name's agent (its data dir survives restarts).
func (p *Pool) Start(name string) error { return p.StartWith(name) }

// StartWith starts director name's agent with extra command-line arguments (-witness, say).
func (p *Pool) StartWith(name string, args ...string) error {
	var n int
	if _, err := fmt.Sscanf(name, "d%d", &n); err != nil || p.nodes[name] == nil {
		return fmt.Errorf("no director %q", name)
	}
	cfgFile := filepath.Join(p.cfg.Dir, name+".hcl")
	text := p.agentConfig(n)
	if p.cfg.AgentConfig != nil {
		text = p.cfg.AgentConfig(n)
	}
	if err := os.WriteFile(cfgFile, []byte(text), 0o644); err != nil {
		return err
	}
	p.mu.Lock()
	bin := cmp.Or(p.bins[name], p.cfg.Bin)
	p.mu.Unlock()
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(p.nodes[name].NS), bin, "agent", "-config", cfgFile}, args...)...)
	if err := p.launch(name, "agent", cmd, &agent{}); err != nil {
		return err
	}
	p.logf("started agent %s", name)
	return nil
}

// launch starts cmd as director name's agent (Troop's, or keepalived standing in for it), its
// output appended to name.log, and tracks it as a until it exits.
func (p *Pool) launch(name, what string, cmd *exec.Cmd, a *agent) error {
	logf, err := os.OpenFile(filepath.Join(p.cfg.Dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s %s: %w", what, name, err)
	}
	a.cmd, a.done, a.log = cmd, make(chan struct{}), logf
	go func() {
		cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	p.mu.Lock()
	p.agents[name] = a
	p.mu.Unlock()
	return nil
}

// SetBinary makes director name run bin from its next start on (an upgrade, say).
func (p *Pool) SetBinary(name, bin string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bins == nil {
		p.bins = map[string]string{}
	}
	p.bins[name] = bin
}

// StartAll starts every founding director's agent (Config.Founders).
func (p *Pool) StartAll() error {
	for _, d := range p.Directors()[:p.cfg.Founders] {
		if err := p.Start(d); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pool) takeAgent(name string) (*agent, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.agents[name]
	if a == nil {
		return nil, fmt.Errorf("agent %s is not running", name)
	}
	delete(p.agents, name)
	return a, nil
}

// Kill kills director name's agent with SIGKILL and waits for it to be gone.
func (p *Pool) Kill(name string) error {
	a, err := p.takeAgent(name)
	if err != nil {
		return err
	}
	a.kill() // `ip netns exec` execs the agent: this is the agent's own PID
	<-a.done
	p.logf("killed agent %s (SIGKILL)", name)
	return nil
}

// Stop sends SIGTERM to director name's agent and waits up to timeout for it to exit.
func (p *Pool) Stop(name string, timeout time.Duration) error {
	a, err := p.takeAgent(name)
	if err != nil {
		return err
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		p.logf("stopped agent %s (SIGTERM)", name)
		return nil
	case <-time.After(timeout):
		a.kill()
		<-a.done
		return fmt.Errorf("agent %s did not exit within %s of SIGTERM", name, timeout)
	}
}

// Crash is director node's host dying: its cable is pulled (the bridge's end of its veth goes
// down), then its agent is killed with SIGKILL. Its kernel state stays, out of reach, as a dead
// host's would; Reboot brings the host back empty.
func (p *Pool) Crash(ctx context.Context, node string) error {
	p.logf("cut %s's link", node)
	if err := p.in(ctx, p.hub, "ip", "link", "set", p.nodes[node].link, "down"); err != nil {
		return err
	}
	return p.Kill(node)
}

// Reboot gives node a fresh namespace, as a host that crashed and came back has an empty
// kernel state: no addresses, no IPVS table. Its agent must not be running; its data dir stays.
func (p *Pool) Reboot(ctx context.Context, node string) error {
	n := p.nodes[node]
	if err := ip(ctx, "netns", "del", string(n.NS)); err != nil {
		return err
	}
	p.in(ctx, p.hub, "ip", "link", "del", n.link) // gone with the namespace already, usually
	p.logf("rebooted %s", node)
	return p.plug(ctx, n)
}

// API returns a client for director name's API, reached from the client host.
func (p *Pool) API(name string) *api.Client { return p.apiAt(p.nodes[name].Addr) }

// apiAt is a client for the agent API on addr (every agent listens on all its addresses).
func (p *Pool) apiAt(addr string) *api.Client {
	return api.NewClient("http://"+net.JoinHostPort(addr, strconv.Itoa(apiPort)), p.http)
}

// Status asks director name for its status.
func (p *Pool) Status(ctx context.Context, name string) (api.Status, error) {
	return p.StatusAt(ctx, p.nodes[name].Addr)
}

// StatusAt asks the agent answering on addr (a VIP, say) for its status.
func (p *Pool) StatusAt(ctx context.Context, addr string) (api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, _, err := p.apiAt(addr).Status(ctx, api.ReadOptions{})
	return st, err
}

// Running lists the directors whose agent runs.
func (p *Pool) Running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for _, d := range p.Directors() {
		if p.agents[d] != nil {
			names = append(names, d)
		}
	}
	return names
}

// WaitLeader waits until every running agent names the same leader, among the running ones,
// and returns it.
func (p *Pool) WaitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		running := p.Running()
		leaders := map[string]bool{}
		for _, d := range running {
			st, err := p.Status(ctx, d)
			if err != nil {
				leaders[""] = true
				break
			}
			leaders[st.LeaderID] = true
		}
		if len(leaders) == 1 {
			for l := range leaders {
				if slices.Contains(running, l) {
					return l, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no agreed leader among %v within %s (answers: %v)", running, timeout, leaders)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Apply applies a table file's text through director via, as `troop apply` does.
func (p *Pool) Apply(ctx context.Context, via, table string) error {
	f := filepath.Join(p.cfg.Dir, "table.hcl")
	if err := os.WriteFile(f, []byte(table), 0o644); err != nil {
		return err
	}
	out, err := p.Exec(ctx, ClientName, p.cfg.Bin, "apply", "-address",
		fmt.Sprintf("http://%s:%d", p.nodes[via].Addr, apiPort), "-f", f)
	if err != nil {
		return fmt.Errorf("troop apply: %w", err)
	}
	p.logf("%s", strings.TrimSpace(out))
	return nil
}

// Holders lists the directors whose eth0 holds addr.
func (p *Pool) Holders(addr string) []string {
	var hs []string
	for _, d := range p.Directors() {
		_, addrs, err := p.nodes[d].NS.Interface("eth0")
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == addr {
				hs = append(hs, d)
			}
		}
	}
	return hs
}

// MAC returns node's eth0 MAC address.
func (p *Pool) MAC(node string) (string, error) {
	mac, _, err := p.nodes[node].NS.Interface("eth0")
	return mac.String(), err
}

// IPVS is `ipvsadm -Ln` on a director: the kernel's own account, not Troop's.
func (p *Pool) IPVS(ctx context.Context, director string) (string, error) {
	return p.Exec(ctx, director, "ipvsadm", "-Ln")
}
