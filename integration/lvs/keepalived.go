package lvs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Keepalived is a keepalived profile for the pool's directors: VRRP with unicast peers and a
// virtual_server for the VIP, in place of `troop agent` (Pool.StartKeepalived).
type Keepalived struct {
	Name string
	// Bin is keepalived's path; "" means /usr/sbin/keepalived.
	Bin string
	// Advert is the VRRP advertisement interval; below a second the pool speaks VRRPv3, whose
	// interval is in centiseconds.
	Advert time.Duration
}

// Keepalived profiles the failover figures are measured with.
var (
	KeepalivedDefault = Keepalived{Name: "default (advert_int 1, VRRPv2)", Advert: time.Second}
	KeepalivedTuned   = Keepalived{Name: "tuned (advert_int 0.1, VRRPv3)", Advert: 100 * time.Millisecond}
)

// KeepalivedPriority is director n's (1-based) VRRP priority: 150, 100, 50.
func KeepalivedPriority(n int) int { return 200 - 50*n }

// keepalivedConfig is director n's keepalived.conf: one VRRP instance on eth0 speaking unicast
// to the other directors, the VIP, and the web service (LVS-DR, round robin, TCP checks).
func (p *Pool) keepalivedConfig(n int, k Keepalived) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n", directorName(n))
	if k.Advert < time.Second {
		b.WriteString("  vrrp_version 3\n")
	}
	fmt.Fprintf(&b, "  lvs_sync_daemon eth0 VI_1\n}\n")
	fmt.Fprintf(&b, "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority %d\n", KeepalivedPriority(n))
	fmt.Fprintf(&b, "  advert_int %s\n", strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", k.Advert.Seconds()), "0"), "."))
	fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n", DirectorAddr(n))
	for i := 1; i <= p.cfg.Directors; i++ {
		if i != n {
			fmt.Fprintf(&b, "    %s\n", DirectorAddr(i))
		}
	}
	fmt.Fprintf(&b, "  }\n  virtual_ipaddress {\n    %s/24 dev eth0\n  }\n}\n", VIP)
	fmt.Fprintf(&b, "virtual_server %s 80 {\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n", VIP)
	for i := 1; i <= p.cfg.Reals; i++ {
		fmt.Fprintf(&b, "  real_server %s 80 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n", RealAddr(i))
	}
	b.WriteString("}\n")
	return b.String()
}

// StartKeepalived starts keepalived with profile k on director name in place of its agent;
// Kill, Stop, Crash and Running treat it as the director's agent. Kill ends its whole process
// group (the VRRP and checker children too, as a dead host's would); Stop sends SIGTERM to the
// parent, which stops its children (the VRRP child advertises priority 0 first).
func (p *Pool) StartKeepalived(name string, k Keepalived) error {
	var n int
	if _, err := fmt.Sscanf(name, "d%d", &n); err != nil || p.nodes[name] == nil {
		return fmt.Errorf("no director %q", name)
	}
	cfgFile := filepath.Join(p.cfg.Dir, name+"-keepalived.conf")
	if err := os.WriteFile(cfgFile, []byte(p.keepalivedConfig(n, k)), 0o644); err != nil {
		return err
	}
	bin := k.Bin
	if bin == "" {
		bin = "/usr/sbin/keepalived"
	}
	run := filepath.Join(p.cfg.Dir, name+"-run")
	os.MkdirAll(run, 0o755)
	children := []string{filepath.Join(run, "vrrp.pid"), filepath.Join(run, "checkers.pid")}
	for _, f := range append(children, filepath.Join(run, "keepalived.pid")) {
		os.Remove(f) // a killed instance's: keepalived refuses to start beside a live PID in one
	}
	cmd := exec.Command("ip", "netns", "exec", string(p.nodes[name].NS), bin, "--dont-fork", "--log-console", "--log-detail",
		"--use-file", cfgFile, "--pid", filepath.Join(run, "keepalived.pid"),
		"--vrrp_pid", children[0], "--checkers_pid", children[1])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.launch(name, "keepalived", cmd, &agent{group: true, pidFiles: children}); err != nil {
		return err
	}
	p.logf("started keepalived %s (%s)", name, k.Name)
	return nil
}
