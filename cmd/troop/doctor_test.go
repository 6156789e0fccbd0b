package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/director/netfake"
)

// doctorHost is a director host that passes every check: a directory stands in for /proc, /sys
// and /lib/modules, and the rest answers as a healthy host would. Tests change one thing each.
type doctorHost struct {
	t    *testing.T
	sys  doctorSystem
	lo   *netfake.Addresses
	busy map[string]error // network/addr → listen error
}

func newDoctorHost(t *testing.T) *doctorHost {
	h := &doctorHost{t: t, lo: netfake.NewAddresses(nil), busy: map[string]error{}}
	h.lo.AddInterface("lo", nil, netip.MustParsePrefix("127.0.0.1/8"))
	h.sys = doctorSystem{
		root:       t.TempDir(),
		listen:     func(network, addr string) error { return h.busy[network+"/"+addr] },
		ipvsFamily: func() error { return errors.New("no such family") },
		addresses:  h.lo,
		writable:   func(string) error { return nil },
		now:        func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) },
		timeSync:   func() (bool, error) { return true, nil },
	}
	for name, v := range map[string]string{
		"proc/net/ip_vs":                                 "IP Virtual Server version 1.2.1 (size=4096)\n",
		"proc/sys/kernel/osrelease":                      "6.1.0-test\n",
		"proc/self/status":                               "Name:\ttroop\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n",
		"proc/sys/net/ipv4/vs/expire_nodest_conn":        "1\n",
		"proc/sys/net/ipv4/vs/expire_quiescent_template": "1\n",
		"proc/sys/net/ipv4/ip_forward":                   "1\n",
		"sys/class/net/eth0/flags":                       "0x1003\n",
		"sys/class/net/eth0/operstate":                   "up\n",
		"proc/net/route":                                 "Iface\tDestination\tGateway\tFlags\nenp1s0\t00000000\t0102000A\t0003\n",
		"proc/sys/net/ipv4/conf/all/arp_ignore":          "1\n",
		"proc/sys/net/ipv4/conf/all/arp_announce":        "2\n",
		"proc/sys/net/ipv4/conf/lo/arp_ignore":           "1\n",
		"proc/sys/net/ipv4/conf/lo/arp_announce":         "2\n",
		"proc/sys/net/ipv4/conf/all/rp_filter":           "0\n",
		"proc/sys/net/ipv4/conf/enp1s0/rp_filter":        "2\n",
		"proc/sys/net/ipv4/conf/eth1/rp_filter":          "0\n",
	} {
		h.write(name, v)
	}
	return h
}

func (h *doctorHost) write(name, content string) {
	h.t.Helper()
	p := filepath.Join(h.sys.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *doctorHost) remove(name string) {
	h.t.Helper()
	if err := os.Remove(filepath.Join(h.sys.root, name)); err != nil {
		h.t.Fatal(err)
	}
}

// want checks one finding's verdict and that its text (and fix, unless OK) say what is expected.
func want(t *testing.T, f finding, status, text, fix string) {
	t.Helper()
	if f.status != status || !strings.Contains(f.text, text) || !strings.Contains(f.fix, fix) || (status != doctorOK && f.fix == "") {
		t.Errorf("got %s %s: %q (fix %q)\nwant %s with %q (fix containing %q)", f.status, f.check, f.text, f.fix, status, text, fix)
	}
}

func TestDoctorIPVS(t *testing.T) {
	h := newDoctorHost(t)
	want(t, checkIPVS(h.sys, true), doctorOK, "IPVS is loaded (/proc/net/ip_vs)", "")
	want(t, checkIPVS(h.sys, false), doctorOK, "not needed", "")
	h.remove("proc/net/ip_vs")
	want(t, checkIPVS(h.sys, true), doctorFail, "no IPVS in this kernel (6.1.0-test) and no ip_vs module in /lib/modules/6.1.0-test", "CONFIG_IP_VS")
	h.write("lib/modules/6.1.0-test/kernel/net/netfilter/ipvs/ip_vs.ko.xz", "")
	want(t, checkIPVS(h.sys, true), doctorWarn, "`modprobe ip_vs` would load it", "modprobe ip_vs")
	h.sys.ipvsFamily = func() error { return nil }
	want(t, checkIPVS(h.sys, true), doctorOK, "generic netlink family IPVS", "")
}

func TestDoctorInterface(t *testing.T) {
	h := newDoctorHost(t)
	fs := checkInterfaces(h.sys, []string{"eth0"})
	want(t, fs[0], doctorOK, "eth0 exists and is up", "")
	want(t, checkInterfaces(h.sys, []string{"eth9"})[0], doctorFail, "eth9 does not exist", "director { interface }")
	h.write("sys/class/net/eth0/operstate", "down\n")
	want(t, checkInterfaces(h.sys, []string{"eth0"})[0], doctorFail, "eth0 is up but has no carrier", "cable")
	h.write("sys/class/net/eth0/flags", "0x1002\n")
	want(t, checkInterfaces(h.sys, []string{"eth0"})[0], doctorFail, "eth0 is down", "ip link set eth0 up")
	want(t, checkInterfaces(h.sys, nil)[0], doctorWarn, "no director interface", "-config FILE")
}

func TestDoctorCapabilities(t *testing.T) {
	h := newDoctorHost(t)
	want(t, checkCapabilities(h.sys), doctorOK, "CAP_NET_ADMIN and CAP_NET_RAW are effective", "")
	h.write("proc/self/status", "CapEff:\t0000000000001000\n") // NET_ADMIN only
	want(t, checkCapabilities(h.sys), doctorFail, "CAP_NET_RAW", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW")
	if f := checkCapabilities(h.sys); strings.Contains(f.text, "CAP_NET_ADMIN") {
		t.Errorf("CAP_NET_ADMIN is effective but reported: %q", f.text)
	}
	h.write("proc/self/status", "CapEff:\t0000000000000000\n")
	want(t, checkCapabilities(h.sys), doctorFail, "CAP_NET_ADMIN (IPVS", "run the agent as root")
}

// TestDoctorSysctls: the agent sets the IPVS expiry sysctls itself, so a wrong value is a WARN,
// as is ip_forward, which only NAT services need.
func TestDoctorSysctls(t *testing.T) {
	h := newDoctorHost(t)
	fs := checkDirectorSysctls(h.sys, true)
	if len(fs) != 3 {
		t.Fatalf("%d findings, want 3: %v", len(fs), fs)
	}
	want(t, fs[0], doctorOK, "net.ipv4.vs.expire_nodest_conn = 1", "")
	want(t, fs[1], doctorOK, "net.ipv4.vs.expire_quiescent_template = 1", "")
	want(t, fs[2], doctorOK, "net.ipv4.ip_forward = 1", "")
	h.write("proc/sys/net/ipv4/vs/expire_nodest_conn", "0\n")
	h.write("proc/sys/net/ipv4/ip_forward", "0\n")
	fs = checkDirectorSysctls(h.sys, true)
	want(t, fs[0], doctorWarn, "expire_nodest_conn = 0, recommended 1", "sysctl -w net.ipv4.vs.expire_nodest_conn=1")
	want(t, fs[2], doctorWarn, "NAT services would not forward", "sysctl -w net.ipv4.ip_forward=1")
	h.remove("proc/sys/net/ipv4/vs/expire_quiescent_template")
	want(t, checkDirectorSysctls(h.sys, true)[1], doctorWarn, "unreadable (IPVS not loaded?)", "modprobe ip_vs")
	if fs := checkDirectorSysctls(h.sys, false); len(fs) != 1 {
		t.Errorf("without IPVS: %v, want ip_forward alone", fs)
	}
}

func TestDoctorPorts(t *testing.T) {
	h := newDoctorHost(t)
	a, err := config.ParseAgent("d1.hcl", []byte(`node_id = "d1"
data_dir = "/srv/troop"
api { address = "192.0.2.1:8500" }
raft { address = "192.0.2.1:8501" }
gossip { key = "`+newKey()+`" }
`))
	if err != nil {
		t.Fatal(err)
	}
	tg := targetOf(&a, "")
	if tg.dataDir != "/srv/troop" || tg.gossip != "192.0.2.1:9702" {
		t.Fatalf("target %+v", tg)
	}
	fs := checkPorts(h.sys, tg)
	if len(fs) != 4 {
		t.Fatalf("%d findings, want api, raft, gossip tcp and udp: %v", len(fs), fs)
	}
	want(t, fs[0], doctorOK, "api 192.0.2.1:8500/tcp is free", "")
	want(t, fs[3], doctorOK, "gossip 192.0.2.1:9702/udp is free", "")
	h.busy["tcp/192.0.2.1:8501"] = fmt.Errorf("listen: %w", syscall.EADDRINUSE)
	h.busy["udp/192.0.2.1:9702"] = fmt.Errorf("listen: %w", syscall.EADDRNOTAVAIL)
	fs = checkPorts(h.sys, tg)
	want(t, fs[1], doctorFail, "raft 192.0.2.1:8501/tcp is in use", "ss -lnp 'sport = :8501'")
	want(t, fs[3], doctorFail, "gossip 192.0.2.1:9702/udp: the address is not on this host", "ip -br addr")
	// Without a file: the defaults, gossip included.
	if fs := checkPorts(h.sys, targetOf(nil, "")); len(fs) != 4 || !strings.Contains(fs[0].text, config.DefaultAPIAddress) {
		t.Errorf("defaults: %v", fs)
	}
}

func TestDoctorDataDir(t *testing.T) {
	h := newDoctorHost(t)
	want(t, checkDataDir(h.sys, "/var/lib/troop"), doctorOK, "/var/lib/troop is writable", "")
	h.sys.writable = func(string) error { return &os.PathError{Op: "stat", Path: "/var/lib/troop", Err: syscall.ENOENT} }
	want(t, checkDataDir(h.sys, "/var/lib/troop"), doctorWarn, "does not exist yet", "StateDirectory=troop")
	h.sys.writable = func(string) error { return &os.PathError{Op: "open", Path: "/var/lib/troop/x", Err: syscall.EACCES} }
	want(t, checkDataDir(h.sys, "/var/lib/troop"), doctorFail, "/var/lib/troop is not writable", "chown troop:troop /var/lib/troop")
	// The host's own function on a real directory.
	if err := dirWritable(t.TempDir()); err != nil {
		t.Errorf("dirWritable on a temporary directory: %v", err)
	}
	if err := dirWritable(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dirWritable on a missing directory: %v, want ErrNotExist", err)
	}
}

func TestDoctorClock(t *testing.T) {
	h := newDoctorHost(t)
	want(t, checkClock(h.sys), doctorOK, "2026-05-01T12:00:00Z, synchronised", "")
	h.sys.timeSync = func() (bool, error) { return false, errors.New("no timedatectl") }
	want(t, checkClock(h.sys), doctorOK, "synchronisation unknown", "")
	h.sys.timeSync = func() (bool, error) { return false, nil }
	want(t, checkClock(h.sys), doctorWarn, "not synchronised", "set-ntp")
	h.sys.now = func() time.Time { return time.Unix(0, 0) }
	want(t, checkClock(h.sys), doctorFail, "1970-01-01T00:00:00Z", "set the clock")
}

// TestDoctorRealServer: the VIP-on-lo and ARP checks are `troop realserver setup`'s own steps,
// dry run: a prepared host passes, a fresh one fails naming each step.
func TestDoctorRealServer(t *testing.T) {
	h := newDoctorHost(t)
	vip := netip.MustParseAddr("192.0.2.100")
	h.lo.AddInterface("lo", nil, netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.0.2.100/32"))
	fs := realServerChecks(h.sys, []netip.Addr{vip}, "")
	if len(fs) != 6 {
		t.Fatalf("%d findings, want 4 sysctls, the VIP and rp_filter: %v", len(fs), fs)
	}
	want(t, fs[0], doctorOK, "net.ipv4.conf.all.arp_ignore = 1", "")
	want(t, fs[3], doctorOK, "net.ipv4.conf.lo.arp_announce = 2", "")
	want(t, fs[4], doctorOK, "192.0.2.100/32 on lo", "")
	want(t, fs[5], doctorOK, "not strict on enp1s0", "")

	h.lo.AddInterface("lo", nil, netip.MustParsePrefix("127.0.0.1/8"))
	h.write("proc/sys/net/ipv4/conf/all/arp_ignore", "0\n")
	h.write("proc/sys/net/ipv4/conf/lo/arp_announce", "0\n")
	fs = realServerChecks(h.sys, []netip.Addr{vip}, "")
	want(t, fs[0], doctorFail, "net.ipv4.conf.all.arp_ignore 0 → 1", "troop realserver setup -vip 192.0.2.100")
	want(t, fs[1], doctorOK, "net.ipv4.conf.all.arp_announce = 2", "")
	want(t, fs[3], doctorFail, "net.ipv4.conf.lo.arp_announce 0 → 2", "troop realserver setup -vip 192.0.2.100")
	want(t, fs[4], doctorFail, "add 192.0.2.100/32 to lo", "troop realserver setup -vip 192.0.2.100")
	if fs[4].check != "vip" || fs[0].check != "arp" {
		t.Errorf("checks named %q and %q, want arp and vip", fs[0].check, fs[4].check)
	}
	h.remove("proc/sys/net/ipv4/conf/lo/arp_ignore")
	fs = realServerChecks(h.sys, []netip.Addr{vip}, "")
	want(t, fs[len(fs)-2], doctorFail, "read net.ipv4.conf.lo.arp_ignore", "troop realserver setup")
}

func TestDoctorRPFilter(t *testing.T) {
	h := newDoctorHost(t)
	want(t, checkRPFilter(h.sys, ""), doctorOK, "not strict on enp1s0 (all=0, enp1s0=2)", "")
	want(t, checkRPFilter(h.sys, "eth1"), doctorOK, "not strict on eth1", "")
	// The kernel uses the larger of all's and the interface's: 1 and 2 is loose, 1 and 0 strict.
	h.write("proc/sys/net/ipv4/conf/all/rp_filter", "1\n")
	want(t, checkRPFilter(h.sys, ""), doctorOK, "not strict on enp1s0 (all=1, enp1s0=2)", "")
	h.write("proc/sys/net/ipv4/conf/enp1s0/rp_filter", "0\n")
	want(t, checkRPFilter(h.sys, ""), doctorWarn, "strict on enp1s0 (all=1, enp1s0=0)", "net.ipv4.conf.enp1s0.rp_filter=2")
	want(t, checkRPFilter(h.sys, "eth7"), doctorFail, "rp_filter of eth7 unreadable", "-interface eth7")
	h.write("proc/net/route", "Iface\tDestination\tGateway\n")
	want(t, checkRPFilter(h.sys, ""), doctorWarn, "interface facing the director is unknown", "-interface IFACE")
}

// TestDoctorReport: runDoctor reads the agent file `troop init` writes, prints every finding
// with its fix, and fails when a check does.
func TestDoctorReport(t *testing.T) {
	o := &initOptions{n: 1, prefix: "d", ips: []string{"192.0.2.11"}, iface: "eth0", vip: "192.0.2.100",
		out: filepath.Join(t.TempDir(), "pool"), configDir: initConfigDir, dataDir: initDataDir}
	if err := writePool(o, time.Now()); err != nil {
		t.Fatal(err)
	}
	h := newDoctorHost(t)
	var out bytes.Buffer
	if err := runDoctor(&out, h.sys, filepath.Join(o.out, "d1", "agent.hcl"), "", nil); err != nil {
		t.Fatalf("a healthy host: %v\n%s", err, out.String())
	}
	for _, line := range []string{
		"OK    interface     eth0 exists and is up\n",
		"OK    port          api 192.0.2.11:9700/tcp is free\n",
		"OK    port          gossip 192.0.2.11:9702/udp is free\n",
		"\n12 OK, 0 WARN, 0 FAIL\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("report lacks %q:\n%s", line, out.String())
		}
	}
	h.busy["tcp/192.0.2.11:9700"] = syscall.EADDRINUSE
	out.Reset()
	err := runDoctor(&out, h.sys, filepath.Join(o.out, "d1", "agent.hcl"), "", nil)
	if err == nil || !strings.Contains(out.String(), "FAIL  port          api 192.0.2.11:9700/tcp is in use\n                    fix: ss -lnp") {
		t.Errorf("a busy API port: %v\n%s", err, out.String())
	}
}
