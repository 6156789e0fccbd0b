package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// initVerbs generate a new pool's files on this machine; they talk to no agent.
var initVerbs = []verb{
	{name: "init", maxArgs: 0, flags: initFlags,
		synopsis: "Write a new pool's files to -out: each director's agent config, gossip key, bootstrap token, CA and certificates, systemd unit, a starter table (local)"},
}

// systemdUnit is deploy/systemd/troop.service. go:embed cannot reach outside this package's
// directory, so initdata/troop.service is a copy that TestInitUnitMatchesDeploy keeps equal.
//
//go:embed initdata/troop.service
var systemdUnit []byte

// Where `troop init` points the agent files: the paths on the director once installed, as
// deploy/systemd/troop.service has them.
const (
	initConfigDir = "/etc/troop"
	initDataDir   = "/var/lib/troop"
)

// initOptions is what `troop init` needs to know about the pool.
type initOptions struct {
	n         int
	prefix    string
	ips       []string
	iface     string
	vip       string
	out       string
	configDir string // where the files go on a director (initConfigDir)
	dataDir   string // initDataDir
}

// missing names the options the pool cannot be written without.
func (o *initOptions) missing() bool {
	return o.n == 0 || len(o.ips) < o.n || o.iface == "" || o.vip == "" || o.out == ""
}

var initNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,60}$`)

// validate checks every option before anything is written, naming the flag at fault.
func (o *initOptions) validate() error {
	switch {
	case o.n < 1:
		return usageErrorf("-n %d: a pool needs at least one director (three to survive a failure)", o.n)
	case len(o.ips) != o.n:
		return usageErrorf("-ip given %d times for -n %d: give one address per director, d1's first", len(o.ips), o.n)
	case !initNameRE.MatchString(o.prefix):
		return usageErrorf("-name-prefix %q: want 1-60 of A-Z a-z 0-9 . _ -", o.prefix)
	case o.iface == "" || !ifaceRE.MatchString(o.iface):
		return usageErrorf("-interface %q: want the director's network interface facing the clients (eth0)", o.iface)
	case o.out == "":
		return usageErrorf("-out DIR is required")
	}
	seen := map[netip.Addr]bool{}
	for _, s := range o.ips {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			return usageErrorf("-ip %q: not a director's IP address", s)
		}
		if seen[a] {
			return usageErrorf("-ip %s given twice", s)
		}
		seen[a] = true
	}
	if a, err := netip.ParseAddr(o.vip); err != nil || a.Zone() != "" || a.IsUnspecified() || seen[a] {
		return usageErrorf("-vip %q: want an IP address that is not a director's own", o.vip)
	}
	return nil
}

var ifaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,14}$`)

func initFlags(fs *flag.FlagSet) action {
	o := &initOptions{configDir: initConfigDir, dataDir: initDataDir}
	fs.IntVar(&o.n, "n", 0, "the `number` of directors (3 or more survive a failure)")
	fs.StringVar(&o.prefix, "name-prefix", "d", "directors are named `PREFIX`1, PREFIX2, ... (their node IDs)")
	fs.Var((*stringList)(&o.ips), "ip", "a director's IP `address`, once per director in order (its Raft, gossip and API address)")
	fs.StringVar(&o.iface, "interface", "", "the directors' network `interface` that holds the VIP and runs the sync daemon")
	fs.StringVar(&o.vip, "vip", "", "the starter table's virtual IP `address`")
	fs.StringVar(&o.out, "out", "", "write the pool's files into this new `directory` (an existing one is refused)")
	return func(_ context.Context, c *call) error {
		if o.missing() && isTerminal(os.Stdin) {
			if err := promptInit(os.Stdin, c.stdout, o); err != nil {
				return err
			}
		}
		if err := o.validate(); err != nil {
			return err
		}
		if err := writePool(o, time.Now()); err != nil {
			return err
		}
		printNextSteps(c.stdout, o)
		return nil
	}
}

// isTerminal reports whether f is a terminal (so `troop init` may ask for what is missing).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptInit asks, on out, for each option still missing and reads the answers from in, one
// line each; an empty answer keeps the default shown in brackets.
func promptInit(in io.Reader, out io.Writer, o *initOptions) error {
	r := bufio.NewReader(in)
	ask := func(q, def string) (string, error) {
		if def != "" {
			fmt.Fprintf(out, "%s [%s]: ", q, def)
		} else {
			fmt.Fprintf(out, "%s: ", q)
		}
		line, err := r.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return "", fmt.Errorf("read the answer to %q: %w", q, err)
		}
		if line = strings.TrimSpace(line); line == "" {
			return def, nil
		}
		return line, nil
	}
	if o.n == 0 {
		s, err := ask("How many directors", "3")
		if err != nil {
			return err
		}
		if o.n, err = strconv.Atoi(s); err != nil {
			return usageErrorf("number of directors %q: not a number", s)
		}
	}
	for i := len(o.ips); i < o.n; i++ {
		s, err := ask(fmt.Sprintf("IP address of %s%d", o.prefix, i+1), "")
		if err != nil {
			return err
		}
		o.ips = append(o.ips, s)
	}
	for _, q := range []struct {
		text string
		v    *string
		def  string
	}{
		{"Network interface of the directors", &o.iface, "eth0"},
		{"Virtual IP of the starter table", &o.vip, ""},
		{"Directory to write the pool's files into", &o.out, "troop-pool"},
	} {
		if *q.v != "" {
			continue
		}
		s, err := ask(q.text, q.def)
		if err != nil {
			return err
		}
		*q.v = s
	}
	return nil
}

// initFile is one file of the pool's directory.
type initFile struct {
	name   string // relative to the output directory
	data   []byte
	secret bool // 0600
}

// writePool writes the pool's files into o.out, which must not exist yet: a second run would
// make keys and a CA that the installed directors do not share.
//
//	OUT/ca/ca.pem, ca-key.pem          the CA (its key stays here, on no director)
//	OUT/bootstrap.token                the bootstrap token, for the operator's CLI
//	OUT/table.hcl                      a starter table with the VIP and no real servers
//	OUT/NAME/agent.hcl                 each director's /etc/troop: its agent file, gossip.key,
//	OUT/NAME/...                       bootstrap.token, ca.pem, NAME.pem, NAME-key.pem, troop.service
func writePool(o *initOptions, now time.Time) (err error) {
	if _, err := os.Lstat(o.out); err == nil {
		return fmt.Errorf("%s already exists: nothing written (remove it or choose another -out; the directors must share one run's keys)", o.out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(o.out)), 0o755); err != nil {
		return err
	}
	// Mkdir, not MkdirAll: a directory made meanwhile is refused too.
	if err := os.Mkdir(o.out, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil { // all or nothing: the directory is this run's own
			os.RemoveAll(o.out)
		}
	}()
	caDir := filepath.Join(o.out, "ca")
	if err := createCA(caDir, "Troop CA", now); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		return err
	}
	gossipKey, token := newKey(), newKey()
	files := []initFile{
		{name: "bootstrap.token", data: []byte(token + "\n"), secret: true},
		{name: "table.hcl", data: starterTable(o)},
	}
	for i := range o.n {
		name := o.name(i)
		ip := net.ParseIP(o.ips[i])
		if err := createCert(caDir, certRequest{name: name, ips: []net.IP{ip}}, now); err != nil {
			return err
		}
		// createCert writes next to the CA; the pair belongs in the director's directory.
		dir := filepath.Join(o.out, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		for _, f := range []string{name + ".pem", name + "-key.pem"} {
			if err := os.Rename(filepath.Join(caDir, f), filepath.Join(dir, f)); err != nil {
				return err
			}
		}
		files = append(files,
			initFile{name: filepath.Join(name, "agent.hcl"), data: agentFile(o, i)},
			initFile{name: filepath.Join(name, "gossip.key"), data: []byte(gossipKey + "\n"), secret: true},
			initFile{name: filepath.Join(name, "bootstrap.token"), data: []byte(token + "\n"), secret: true},
			initFile{name: filepath.Join(name, "ca.pem"), data: caPEM},
			initFile{name: filepath.Join(name, "troop.service"), data: systemdUnit},
		)
	}
	for _, f := range files {
		mode := os.FileMode(0o644)
		if f.secret {
			mode = 0o600
		}
		if err := writeNew(filepath.Join(o.out, f.name), f.data, mode); err != nil {
			return err
		}
	}
	return nil
}

// name is director i's (0-based) node ID.
func (o *initOptions) name(i int) string { return o.prefix + strconv.Itoa(i+1) }

// agentFile is director i's agent configuration, with every path as installed on it.
func agentFile(o *initOptions, i int) []byte {
	name, cd := o.name(i), o.configDir
	at := func(port int) string { return net.JoinHostPort(o.ips[i], strconv.Itoa(port)) }
	var b strings.Builder
	fmt.Fprintf(&b, "# Director %s of a pool of %d, written by `troop init`. Install as %s/agent.hcl\n", name, o.n, cd)
	fmt.Fprintf(&b, "# with the other files of this directory in %s.\n", cd)
	fmt.Fprintf(&b, "node_id   = %q\ndata_dir  = %q\nlog_level = \"info\"\n\n", name, o.dataDir)
	fmt.Fprintf(&b, "api {\n  address = %q\n  tls {\n    cert_file = %q\n    key_file  = %q\n  }\n}\n\n",
		at(9700), cd+"/"+name+".pem", cd+"/"+name+"-key.pem")
	fmt.Fprintf(&b, "raft {\n  address = %q\n", at(9701))
	for j := range o.n {
		fmt.Fprintf(&b, "  peer %q { address = %q }\n", o.name(j), net.JoinHostPort(o.ips[j], "9701"))
	}
	fmt.Fprintf(&b, "  tls {\n    ca_file   = %q\n    cert_file = %q\n    key_file  = %q\n  }\n}\n\n",
		cd+"/ca.pem", cd+"/"+name+".pem", cd+"/"+name+"-key.pem")
	fmt.Fprintf(&b, "gossip {\n  key_file = %q\n}\n\n", cd+"/gossip.key")
	fmt.Fprintf(&b, "acl {\n  enabled              = true\n  bootstrap_token_file = %q\n}\n\n", cd+"/bootstrap.token")
	fmt.Fprintf(&b, "director {\n  interface = %q\n  sync_daemon {\n    interface = %q\n    sync_id   = 1\n  }\n}\n", o.iface, o.iface)
	return []byte(b.String())
}

// starterTable is a table with the VIP's web service and no real servers yet.
func starterTable(o *initOptions) []byte {
	return fmt.Appendf(nil, `# The pool's table, written by `+"`troop init`"+`. Add the real servers, then:
#   troop plan -f table.hcl && troop apply -f table.hcl
# Each real server needs `+"`troop realserver setup -vip %[1]s`"+` (LVS-DR; check it with
# `+"`troop doctor -realserver %[1]s`"+`).
service "web" {
  vip        = %[1]q
  port       = 80
  protocol   = "tcp"
  scheduler  = "wlc"
  forwarding = "dr"
  check "http" {
    path = "/"
  }
  # real "192.0.2.21" {}
  # real "192.0.2.22" { weight = 2 }
}
`, o.vip)
}

// printNextSteps tells the operator how to install what writePool wrote.
func printNextSteps(w io.Writer, o *initOptions) {
	fmt.Fprintf(w, "Wrote a pool of %d directors to %s:\n", o.n, o.out)
	for i := range o.n {
		fmt.Fprintf(w, "  %s/%s/  director %s (%s)\n", o.out, o.name(i), o.name(i), o.ips[i])
	}
	fmt.Fprintf(w, "  %s/ca/  the CA; its key (ca-key.pem) stays here, on no director\n", o.out)
	fmt.Fprintf(w, "  %s/table.hcl, %s/bootstrap.token  the starter table and the admin token\n\n", o.out, o.out)
	cd := o.configDir
	fmt.Fprintf(w, `Next steps:
 1. Copy each director's directory to it, as %[1]s (secrets stay 0600):
      scp -rp %[2]s/%[3]s/. root@%[4]s:%[1]s/     # and so on for each director
 2. On each director, as root:
      useradd --system --no-create-home --home-dir %[5]s --shell /usr/sbin/nologin troop
      chown troop: %[1]s/*-key.pem %[1]s/gossip.key %[1]s/bootstrap.token
      echo ip_vs > /etc/modules-load.d/troop.conf && modprobe ip_vs
      install -m 0644 %[1]s/troop.service /etc/systemd/system/troop.service
      troop doctor -config %[1]s/agent.hcl
      systemctl daemon-reload && systemctl enable --now --no-block troop
 3. From here, once they are up:
      export TROOP_ADDR=https://%[6]s TROOP_CACERT=%[2]s/ca/ca.pem TROOP_TOKEN=$(cat %[2]s/bootstrap.token)
      troop members                  # %[7]d alive, one leader
      troop apply -f %[2]s/table.hcl   # after adding the real servers to it
`, cd, o.out, o.name(0), o.ips[0], o.dataDir, net.JoinHostPort(o.ips[0], "9700"), o.n)
}
