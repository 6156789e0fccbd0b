package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lab is a set of network namespaces joined by one bridge, which lives in a namespace of its
// own ("hub") so that nothing touches the host's interfaces. Every namespace gets a veth named
// eth0 on the bridge. Everything is removed when the test ends, pass or fail.
type lab struct {
	t      *testing.T
	prefix string
	hub    string
	nodes  map[string]string // node name -> namespace name
}

// needRoot gates the namespace tier: it creates namespaces, veths and addresses. `make test`
// runs as root on CI, so there it always runs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace tier: needs root to create network namespaces (make test runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("namespace tier: iproute2's ip is not installed")
	}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{t: t, prefix: fmt.Sprintf("tr%d", os.Getpid()%100000), nodes: map[string]string{}}
	l.hub = l.prefix + "-hub"
	t.Cleanup(l.destroy)
	l.run("ip", "netns", "add", l.hub)
	l.in(l.hub, "ip", "link", "add", "br0", "type", "bridge")
	l.in(l.hub, "ip", "link", "set", "br0", "up")
	return l
}

// add creates namespace node with eth0 on the bridge, holding the given addresses.
func (l *lab) add(node string, addrs ...string) {
	l.t.Helper()
	ns := l.prefix + "-" + node
	l.nodes[node] = ns
	l.run("ip", "netns", "add", ns)
	peer := l.prefix + node // the hub's end, named after the node (≤ 15 chars)
	l.run("ip", "link", "add", peer, "netns", l.hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.in(l.hub, "ip", "link", "set", peer, "master", "br0", "up")
	l.in(ns, "ip", "link", "set", "lo", "up")
	l.in(ns, "ip", "link", "set", "eth0", "up")
	// nodad: the test's IPv6 addresses are usable at once, without a duplicate-address wait.
	for _, a := range addrs {
		l.in(ns, "ip", "addr", "add", a, "dev", "eth0", "nodad")
	}
}

func (l *lab) ns(node string) string { return l.nodes[node] }

// in runs a command inside a namespace and returns its output, failing the test on error.
func (l *lab) in(ns string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// try runs a command inside a node's namespace and returns its output and error.
func (l *lab) try(node string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns(node)}, args...)...).CombinedOutput()
	return string(out), err
}

func (l *lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs a long-lived command in a node's namespace, logging to the test's temp dir; it is
// killed when the test ends.
func (l *lab) start(node, logName string, args ...string) *exec.Cmd {
	l.t.Helper()
	logf, err := os.Create(filepath.Join(l.t.TempDir(), logName))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(node)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %s in %s: %v", args[0], node, err)
	}
	l.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if l.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			l.t.Logf("--- %s ---\n%s", logName, tail(string(b), 30))
		}
	})
	return cmd
}

func (l *lab) destroy() {
	for _, ns := range l.nodes {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "netns", "del", l.hub).Run()
}

// mac returns the MAC address of eth0 in a node's namespace.
func (l *lab) mac(node string) string {
	l.t.Helper()
	out := l.in(l.ns(node), "cat", "/sys/class/net/eth0/address")
	return strings.TrimSpace(out)
}

// holds reports whether a node's eth0 has addr (without prefix length) assigned.
func (l *lab) holds(node, addr string) bool {
	out, err := l.try(node, "ip", "-o", "addr", "show", "dev", "eth0")
	return err == nil && strings.Contains(out, " "+addr+"/")
}

// neighbour returns the link-layer address a node's neighbour table has for addr, or "".
func (l *lab) neighbour(node, addr string) string {
	out, _ := l.try(node, "ip", "neigh", "show", addr, "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// directorConfig is the agent config of director n (1-based) of a three-director pool on the
// lab bridge, in VIP-only mode (the host kernel has no IPVS).
func directorConfig(dataDir string, n int) string {
	return fmt.Sprintf(`node_id  = "d%[1]d"
data_dir = %[2]q
api {
  # Every address, the VIP included: the client asks the VIP who answers.
  address = "0.0.0.0:9700"
}
raft {
  address = "192.0.2.%[1]d:9701"
  peer "d1" { address = "192.0.2.1:9701" }
  peer "d2" { address = "192.0.2.2:9701" }
  peer "d3" { address = "192.0.2.3:9701" }
}
director {
  interface = "eth0"
  ipvs { enabled = false }
}
`, n, dataDir)
}
