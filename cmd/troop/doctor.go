package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/director"
)

// doctorVerbs check this host before it runs a director or serves as a real server; they change
// nothing and talk to no agent.
var doctorVerbs = []verb{
	{name: "doctor", maxArgs: 0, flags: doctorFlags,
		synopsis: "Check this host as a director (IPVS, interface, capabilities, sysctls, ports, data_dir, clock), or with -realserver VIP as a real server; exit 1 on a FAIL (local)"},
}

// doctorSystem is what the checks read of the host. Files (/proc, /sys, /lib/modules) are read
// below root, so a test stands a directory in for them; the rest are functions a test fakes.
type doctorSystem struct {
	// root is "/" on the host.
	root string
	// listen reports whether a listener could be opened on addr ("tcp" or "udp"), and closes it.
	listen func(network, addr string) error
	// ipvsFamily reports whether the generic netlink family IPVS exists (nil: it does).
	ipvsFamily func() error
	// addresses lists lo's addresses (real-server checks).
	addresses director.Addresses
	// writable reports whether a file can be created in dir; an error matching os.ErrNotExist
	// when dir does not exist.
	writable func(dir string) error
	now      func() time.Time
	// timeSync reports whether the clock is synchronised (NTP); an error when nothing can tell.
	timeSync func() (bool, error)
}

// hostSystem is this host.
func hostSystem() doctorSystem {
	return doctorSystem{
		root:       "/",
		listen:     listenOnce,
		ipvsFamily: genlIPVS,
		addresses:  director.NewNetlinkAddresses(nil),
		writable:   dirWritable,
		now:        time.Now,
		timeSync:   ntpSynced,
	}
}

func (s doctorSystem) readFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.root, name))
}

// readInt reads a file holding one decimal number (a sysctl).
func (s doctorSystem) readInt(name string) (int, error) {
	b, err := s.readFile(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func listenOnce(network, addr string) error {
	if network == "udp" {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	return l.Close()
}

func genlIPVS() error {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.GetFamily("IPVS")
	return err
}

func dirWritable(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".troop-doctor-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// ntpSynced asks timedatectl, then chronyc, whether the clock is synchronised.
func ntpSynced() (bool, error) {
	if out, err := exec.Command("timedatectl", "show", "-p", "NTPSynchronized", "--value").Output(); err == nil {
		return strings.TrimSpace(string(out)) == "yes", nil
	}
	out, err := exec.Command("chronyc", "-n", "tracking").Output()
	if err != nil {
		return false, errors.New("neither timedatectl nor chronyc answered")
	}
	return strings.Contains(string(out), "Leap status     : Normal"), nil
}

// Verdicts of a check.
const (
	doctorOK   = "OK"
	doctorWarn = "WARN"
	doctorFail = "FAIL"
)

// finding is one check's verdict: what was found and, unless OK, how to fix it.
type finding struct {
	status, check, text, fix string
}

func okf(check, format string, args ...any) finding {
	return finding{status: doctorOK, check: check, text: fmt.Sprintf(format, args...)}
}

func warnf(check, fix, format string, args ...any) finding {
	return finding{status: doctorWarn, check: check, text: fmt.Sprintf(format, args...), fix: fix}
}

func failf(check, fix, format string, args ...any) finding {
	return finding{status: doctorFail, check: check, text: fmt.Sprintf(format, args...), fix: fix}
}

// directorTarget is what the director checks look at: the agent file's values, or defaults.
type directorTarget struct {
	needIPVS   bool
	interfaces []string // director interface, sync daemon interface
	api, raft  string
	gossip     string // "" without gossip
	dataDir    string
}

// targetOf reads the agent file's values the checks need; a nil a means no file: the defaults.
func targetOf(a *config.Agent, iface string) directorTarget {
	t := directorTarget{needIPVS: true, api: config.DefaultAPIAddress, raft: config.DefaultRaftAddress,
		gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(config.DefaultGossipPort)), dataDir: initDataDir}
	if a != nil {
		dc := a.Director
		t.needIPVS = !a.Witness && (dc.Enabled == nil || *dc.Enabled) && (dc.IPVS == nil || *dc.IPVS)
		if a.Witness || (dc.Enabled != nil && !*dc.Enabled) {
			dc = config.Director{}
		}
		t.api, t.raft, t.dataDir = cmpOr(a.API.Address, t.api), cmpOr(a.Raft.Address, t.raft), cmpOr(a.DataDir, t.dataDir)
		t.gossip = ""
		if a.Gossip.Enabled {
			host, _, _ := net.SplitHostPort(t.raft)
			t.gossip = cmpOr(a.Gossip.Address, net.JoinHostPort(host, strconv.Itoa(config.DefaultGossipPort)))
		}
		if dc.Interface != "" {
			t.interfaces = append(t.interfaces, dc.Interface)
		}
		if sd := dc.SyncDaemon; sd != nil && sd.Interface != "" && sd.Interface != dc.Interface {
			t.interfaces = append(t.interfaces, sd.Interface)
		}
	}
	if iface != "" && !slices.Contains(t.interfaces, iface) {
		t.interfaces = append(t.interfaces, iface)
	}
	return t
}

func cmpOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// directorChecks runs every director check, in the order they are printed.
func directorChecks(s doctorSystem, t directorTarget) []finding {
	var fs []finding
	fs = append(fs, checkIPVS(s, t.needIPVS))
	fs = append(fs, checkInterfaces(s, t.interfaces)...)
	fs = append(fs, checkCapabilities(s))
	fs = append(fs, checkDirectorSysctls(s, t.needIPVS)...)
	fs = append(fs, checkPorts(s, t)...)
	fs = append(fs, checkDataDir(s, t.dataDir))
	fs = append(fs, checkClock(s))
	return fs
}

const modulesFix = "modprobe ip_vs, and load it at every boot: echo ip_vs > /etc/modules-load.d/troop.conf (deploy/systemd/troop-modules.conf)"

// checkIPVS: the kernel's IPVS is there (/proc/net/ip_vs, or the generic netlink family), or
// its module can be loaded (/lib/modules/RELEASE has ip_vs.ko*).
func checkIPVS(s doctorSystem, need bool) finding {
	const c = "ipvs"
	if !need {
		return okf(c, "not needed: the agent file runs no IPVS (VIP-only, no dataplane, or a witness)")
	}
	if _, err := s.readFile("/proc/net/ip_vs"); err == nil {
		return okf(c, "the kernel's IPVS is loaded (/proc/net/ip_vs)")
	}
	if err := s.ipvsFamily(); err == nil {
		return okf(c, "the kernel's IPVS answers (generic netlink family IPVS)")
	}
	rel, err := s.readFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return failf(c, "install a kernel with IPVS (CONFIG_IP_VS), or run VIP-only: director { ipvs { enabled = false } }",
			"IPVS is not loaded and the kernel release is unknown (%v)", err)
	}
	release := strings.TrimSpace(string(rel))
	dir := filepath.Join("/lib/modules", release)
	mods, _ := filepath.Glob(filepath.Join(s.root, dir, "kernel/net/netfilter/ipvs/ip_vs.ko*"))
	dep, _ := s.readFile(filepath.Join(dir, "modules.dep"))
	if len(mods) > 0 || strings.Contains(string(dep), "/ip_vs.ko") {
		return warnf(c, modulesFix, "IPVS is not loaded; `modprobe ip_vs` would load it (%s has ip_vs.ko)", dir)
	}
	return failf(c, "install a kernel with IPVS (CONFIG_IP_VS, Debian's linux-image-amd64 has it), or run VIP-only: director { ipvs { enabled = false } }",
		"no IPVS in this kernel (%s) and no ip_vs module in %s: the agent would serve VIPs only", release, dir)
}

// IFF_UP in /sys/class/net/IFACE/flags.
const iffUp = 0x1

// checkInterfaces: each configured interface exists and is up.
func checkInterfaces(s doctorSystem, ifaces []string) []finding {
	const c = "interface"
	if len(ifaces) == 0 {
		return []finding{warnf(c, "give -config FILE (its director { interface }) or -interface IFACE",
			"no director interface to check: VIPs of services in no vip_group would not be held")}
	}
	var fs []finding
	for _, name := range ifaces {
		b, err := s.readFile("/sys/class/net/" + name + "/flags")
		if err != nil {
			fs = append(fs, failf(c, "set director { interface } to one of `ip -br link`'s names", "%s does not exist", name))
			continue
		}
		flags, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
		if err != nil {
			fs = append(fs, failf(c, "check /sys/class/net/"+name, "%s: flags %q unreadable", name, strings.TrimSpace(string(b))))
			continue
		}
		if flags&iffUp == 0 {
			fs = append(fs, failf(c, "ip link set "+name+" up (and in the system's network configuration)", "%s is down", name))
			continue
		}
		state, _ := s.readFile("/sys/class/net/" + name + "/operstate")
		if st := strings.TrimSpace(string(state)); st == "down" || st == "lowerlayerdown" {
			fs = append(fs, failf(c, "check the cable or the switch port (ip link show "+name+")", "%s is up but has no carrier (operstate %s)", name, st))
			continue
		}
		fs = append(fs, okf(c, "%s exists and is up", name))
	}
	return fs
}

// Capability bits in /proc/self/status's CapEff.
const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// checkCapabilities: CAP_NET_ADMIN and CAP_NET_RAW are in this process's effective set.
func checkCapabilities(s doctorSystem) finding {
	const c = "capabilities"
	const fix = "run the agent as root, or under deploy/systemd/troop.service (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW); run troop doctor the same way"
	b, err := s.readFile("/proc/self/status")
	if err != nil {
		return failf(c, fix, "cannot read /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		hex, found := strings.CutPrefix(line, "CapEff:")
		if !found {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return failf(c, fix, "CapEff %q unreadable", strings.TrimSpace(hex))
		}
		var missing []string
		if eff&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN (IPVS, VIPs, sync daemon, sysctls)")
		}
		if eff&(1<<capNetRaw) == 0 {
			missing = append(missing, "CAP_NET_RAW (gratuitous ARP / unsolicited NA, icmp checks)")
		}
		if len(missing) > 0 {
			return failf(c, fix, "not in the effective set: %s", strings.Join(missing, ", "))
		}
		return okf(c, "CAP_NET_ADMIN and CAP_NET_RAW are effective")
	}
	return failf(c, fix, "no CapEff line in /proc/self/status")
}

// checkDirectorSysctls: the IPVS expiry sysctls the agent sets at start, and ip_forward, which
// only NAT services need (the table is not known here).
func checkDirectorSysctls(s doctorSystem, needIPVS bool) []finding {
	const c = "sysctl"
	var fs []finding
	if needIPVS {
		for _, name := range []string{"expire_nodest_conn", "expire_quiescent_template"} {
			key := "net.ipv4.vs." + name
			v, err := s.readInt("/proc/sys/net/ipv4/vs/" + name)
			switch {
			case err != nil:
				fs = append(fs, warnf(c, "load IPVS first ("+modulesFix+"); the agent then sets it at start",
					"%s unreadable (IPVS not loaded?)", key))
			case v != 1:
				fs = append(fs, warnf(c, "the agent sets it at start (it needs /proc/sys/net writable, as the unit allows); now: sysctl -w "+key+"=1",
					"%s = %d, recommended 1 (a connection to a removed real server otherwise hangs)", key, v))
			default:
				fs = append(fs, okf(c, "%s = 1", key))
			}
		}
	}
	if v, err := s.readInt("/proc/sys/net/ipv4/ip_forward"); err == nil && v == 1 {
		fs = append(fs, okf(c, "net.ipv4.ip_forward = 1 (NAT services forward replies)"))
	} else {
		fs = append(fs, warnf(c, "if the table has forwarding = \"nat\" services: sysctl -w net.ipv4.ip_forward=1 and set it in /etc/sysctl.d/",
			"net.ipv4.ip_forward is not 1: NAT services would not forward (DR and TUN do not need it)"))
	}
	return fs
}

// checkPorts: the API, Raft and gossip addresses can be listened on.
func checkPorts(s doctorSystem, t directorTarget) []finding {
	const c = "port"
	type port struct{ what, network, addr string }
	ports := []port{{"api", "tcp", t.api}, {"raft", "tcp", t.raft}}
	if t.gossip != "" {
		ports = append(ports, port{"gossip", "tcp", t.gossip}, port{"gossip", "udp", t.gossip})
	}
	var fs []finding
	for _, p := range ports {
		err := s.listen(p.network, p.addr)
		_, portNum, _ := net.SplitHostPort(p.addr)
		switch {
		case err == nil:
			fs = append(fs, okf(c, "%s %s/%s is free", p.what, p.addr, p.network))
		case errors.Is(err, syscall.EADDRINUSE):
			fs = append(fs, failf(c, fmt.Sprintf("ss -lnp 'sport = :%s' shows who holds it (a running troop agent does: run doctor before starting it); stop it or move the %s port", portNum, p.what),
				"%s %s/%s is in use", p.what, p.addr, p.network))
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			fs = append(fs, failf(c, "use one of this host's addresses (ip -br addr) in the agent file",
				"%s %s/%s: the address is not on this host", p.what, p.addr, p.network))
		default:
			fs = append(fs, failf(c, "check the address in the agent file", "%s %s/%s: %v", p.what, p.addr, p.network, err))
		}
	}
	return fs
}

// checkDataDir: the agent can write its data_dir.
func checkDataDir(s doctorSystem, dir string) finding {
	const c = "data_dir"
	err := s.writable(dir)
	switch {
	case err == nil:
		return okf(c, "%s is writable", dir)
	case errors.Is(err, os.ErrNotExist):
		fix := "the agent creates it when it may write the parent; or: install -d -o troop -g troop -m 0750 " + dir
		if dir == initDataDir {
			fix = "under deploy/systemd/troop.service systemd creates it (StateDirectory=troop); otherwise: install -d -o troop -g troop -m 0750 " + dir
		}
		return warnf(c, fix, "%s does not exist yet", dir)
	}
	return failf(c, "chown troop:troop "+dir+" (the user the agent runs as)", "%s is not writable: %v", dir, err)
}

// checkClock: the clock is plausible (certificates are checked against it) and, when something
// can tell, synchronised.
func checkClock(s doctorSystem) finding {
	const c = "clock"
	now := s.now()
	if now.Year() < 2024 {
		return failf(c, "set the clock and keep it synchronised: timedatectl set-ntp true (or chrony)",
			"the clock says %s: certificates would not verify", now.UTC().Format(time.RFC3339))
	}
	synced, err := s.timeSync()
	switch {
	case err != nil:
		return okf(c, "%s (synchronisation unknown: %v)", now.UTC().Format(time.RFC3339), err)
	case !synced:
		return warnf(c, "timedatectl set-ntp true (or chrony): TLS certificates and logs need a right clock",
			"%s, not synchronised", now.UTC().Format(time.RFC3339))
	}
	return okf(c, "%s, synchronised", now.UTC().Format(time.RFC3339))
}

// realServerChecks runs the real-server checks: what `troop realserver setup` would change (as
// a dry run of the very same steps), then rp_filter on the interface facing the director.
func realServerChecks(s doctorSystem, vips []netip.Addr, iface string) []finding {
	fix := "troop realserver setup " + vipFlags(vips)
	rs := director.RealServer{Addresses: s.addresses, SysctlRoot: filepath.Join(s.root, "proc/sys"), Loopback: "lo"}
	steps, err := rs.Setup(vips, true)
	var fs []finding
	for _, st := range steps {
		check := "vip"
		if strings.Contains(st, "net.ipv4.conf.") {
			check = "arp"
		}
		switch {
		case strings.HasPrefix(st, "already "):
			fs = append(fs, okf(check, "%s", strings.TrimPrefix(st, "already ")))
		case strings.HasPrefix(st, "set "):
			fs = append(fs, failf(check, fix, "needs: %s (else this host answers or sends ARP for the VIP and takes its traffic)", strings.TrimPrefix(st, "set ")))
		default: // "add VIP to lo"
			fs = append(fs, failf(check, fix, "needs: %s (else this host drops what the director forwards to the VIP)", st))
		}
	}
	if err != nil {
		fs = append(fs, failf("vip", fix, "%v", err))
	}
	return append(fs, checkRPFilter(s, iface))
}

func vipFlags(vips []netip.Addr) string {
	var b strings.Builder
	for i, v := range vips {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("-vip " + v.String())
	}
	return b.String()
}

// checkRPFilter: strict reverse-path filtering (1) on the interface facing the director drops
// forwarded packets whenever the way back to the client is not that interface; the kernel uses
// the larger of all's and the interface's value.
func checkRPFilter(s doctorSystem, iface string) finding {
	const c = "rp_filter"
	if iface == "" {
		iface = defaultRouteInterface(s)
	}
	if iface == "" {
		return warnf(c, "give -interface IFACE, the interface the director's packets arrive on", "no default route: the interface facing the director is unknown")
	}
	all, err1 := s.readInt("/proc/sys/net/ipv4/conf/all/rp_filter")
	own, err2 := s.readInt("/proc/sys/net/ipv4/conf/" + iface + "/rp_filter")
	if err := errors.Join(err1, err2); err != nil {
		return failf(c, "check -interface "+iface, "rp_filter of %s unreadable: %v", iface, err)
	}
	if max(all, own) == 1 {
		return warnf(c, fmt.Sprintf("sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2 (loose), and in /etc/sysctl.d/", iface),
			"strict on %s (all=%d, %s=%d): packets whose client is routed back another way are dropped", iface, all, iface, own)
	}
	return okf(c, "not strict on %s (all=%d, %s=%d)", iface, all, iface, own)
}

// defaultRouteInterface is the interface of the IPv4 default route (/proc/net/route), or "".
func defaultRouteInterface(s doctorSystem) string {
	b, err := s.readFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" && f[0] != "Iface" {
			return f[0]
		}
	}
	return ""
}

func doctorFlags(fs *flag.FlagSet) action {
	cfgFile := fs.String("config", "", "the agent `file` to check against (interface, ports, data_dir); defaults otherwise")
	iface := fs.String("interface", "", "an `interface` to check: the director's (besides the agent file's), or the real server's facing the director (default: the default route's)")
	var vips vipList
	fs.Var(&vips, "realserver", "check this host as an LVS-DR real server for this `VIP` instead of as a director")
	fs.Var(&vips, "vip", "another `VIP` of the real server (repeatable)")
	return func(_ context.Context, c *call) error {
		return runDoctor(c.stdout, hostSystem(), *cfgFile, *iface, vips)
	}
}

// runDoctor runs the checks, prints them and fails when one did.
func runDoctor(w io.Writer, s doctorSystem, cfgFile, iface string, vips []netip.Addr) error {
	var fs []finding
	if len(vips) > 0 {
		fs = realServerChecks(s, vips, iface)
	} else {
		var a *config.Agent
		if cfgFile != "" {
			src, err := os.ReadFile(cfgFile)
			if err != nil {
				return err
			}
			parsed, err := config.ParseAgent(cfgFile, src)
			if err != nil {
				return err
			}
			a = &parsed
		}
		fs = directorChecks(s, targetOf(a, iface))
	}
	return printFindingsReport(w, fs)
}

func printFindingsReport(w io.Writer, fs []finding) error {
	counts := map[string]int{}
	for _, f := range fs {
		counts[f.status]++
		fmt.Fprintf(w, "%-4s  %-12s  %s\n", f.status, f.check, f.text)
		if f.fix != "" {
			fmt.Fprintf(w, "%-4s  %-12s  fix: %s\n", "", "", f.fix)
		}
	}
	fmt.Fprintf(w, "\n%d OK, %d WARN, %d FAIL\n", counts[doctorOK], counts[doctorWarn], counts[doctorFail])
	if n := counts[doctorFail]; n > 0 {
		return fmt.Errorf("%d check(s) failed", n)
	}
	return nil
}
