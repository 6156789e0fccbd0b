package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/troop-lb/troop/fsm"
)

var serviceVerbs = []verb{
	{name: "service add", args: "NAME", minArgs: 1, maxArgs: 1, flags: serviceAddFlags,
		synopsis: "Create or replace a virtual service (its real servers are kept unless -real is given)"},
	{name: "service list", maxArgs: 0, read: true, json: true, flags: noFlags(serviceList),
		synopsis: "List the virtual services"},
	{name: "service show", args: "NAME", minArgs: 1, maxArgs: 1, read: true, json: true, flags: noFlags(serviceShow),
		synopsis: "Show a virtual service with its real servers and their health"},
	{name: "service rm", args: "NAME", minArgs: 1, maxArgs: 1, flags: noFlags(serviceRemove),
		synopsis: "Remove a virtual service and its real servers"},
}

// noFlags is the flags function of a verb without flags of its own.
func noFlags(a action) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action { return a }
}

// serviceAddFlags has the ldirectord-like fields of a service; a table file covers the rest.
func serviceAddFlags(fs *flag.FlagSet) action {
	var svc fsm.Service
	fs.TextVar(&svc.VIP, "vip", netip.Addr{}, "virtual IP `address`")
	port := fs.Uint("port", 0, "virtual `port`")
	protocol := fs.String("protocol", "", "`protocol`: tcp, udp or sctp (default tcp)")
	fwmark := fs.Uint("fwmark", 0, "firewall `mark` to balance instead of a VIP and port")
	family := fs.String("family", "", "`family` of a -fwmark service without -vip: ipv4 or ipv6")
	scheduler := fs.String("scheduler", "", "IPVS `scheduler`: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh (default wlc)")
	schedFlags := fs.String("sched-flags", "", "comma-separated scheduler `flags`: sh-fallback, sh-port, mh-fallback, mh-port")
	forwarding := fs.String("forwarding", "", "`method`: dr (direct routing, ldirectord's gate), nat (masq) or tun (ipip) (default dr)")
	var persistent seconds
	fs.Var(&persistent, "persistent", "persistence `timeout`, in seconds or as a duration (300, 5m)")
	netmask := fs.Int("netmask", 0, "persistence netmask as a prefix `length` (default a single host)")
	quiescent := fs.Bool("quiescent", false, "keep failed real servers at weight 0 instead of removing them")
	var fallback addrPort
	fs.Var(&fallback, "fallback", "sorry server `ADDR[:PORT]` installed when every real server is down")
	var reals addrPorts
	fs.Var(&reals, "real", "real server `ADDR[:PORT]`, repeatable; replaces the service's real servers")

	var check fsm.HealthCheck
	fs.StringVar(&check.Type, "check-type", "", "health check `type`: http, https, tcp, dns, exec, icmp or none")
	checkPort := fs.Uint("check-port", 0, "`port` to check instead of the real server's")
	var interval, timeout fsm.Duration
	fs.Var(durationValue{&interval}, "check-interval", "`interval` between checks (default 2s)")
	fs.Var(durationValue{&timeout}, "check-timeout", "`timeout` of one check (default 1s)")
	fs.IntVar(&check.Rise, "check-rise", 0, "consecutive successes that mark a server up (default 2)")
	fs.IntVar(&check.Fall, "check-fall", 0, "consecutive failures that mark a server down (default 2)")
	fs.StringVar(&check.Method, "check-method", "", "HTTP `method`: GET or HEAD (default GET)")
	fs.StringVar(&check.Path, "check-path", "", "HTTP request `path` (ldirectord's request; default /)")
	fs.StringVar(&check.Host, "check-host", "", "HTTP Host `header` (ldirectord's virtualhost)")
	fs.StringVar(&check.Expect, "check-expect", "", "`text` the reply must contain (ldirectord's receive)")
	expectStatus := fs.String("check-expect-status", "", "comma-separated HTTP `statuses` or ranges (200,300-399)")

	return func(ctx context.Context, c *call) error {
		svc.Name = c.args[0]
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if *port > 65535 || *checkPort > 65535 {
			return usageErrorf("-port and -check-port must be 0–65535")
		}
		if *fwmark > 1<<32-1 {
			return usageErrorf("-fwmark %d is larger than 32 bits", *fwmark)
		}
		svc.Port, svc.FWMark = uint16(*port), uint32(*fwmark)
		svc.Protocol, svc.Family, svc.Scheduler = fsm.Protocol(*protocol), fsm.Family(*family), fsm.Scheduler(*scheduler)
		svc.Forwarding, svc.Quiescent = fsm.Forwarding(*forwarding), *quiescent
		for f := range strings.SplitSeq(*schedFlags, ",") {
			if f = strings.TrimSpace(f); f != "" {
				svc.SchedFlags = append(svc.SchedFlags, fsm.SchedulerFlag(f))
			}
		}
		switch {
		case set["persistent"]:
			svc.Persistence = &fsm.Persistence{Timeout: fsm.Duration(persistent), Netmask: *netmask}
		case set["netmask"]:
			return usageErrorf("-netmask needs -persistent")
		}
		if set["fallback"] {
			svc.Fallback = &fsm.Fallback{Address: fallback.addr, Port: fallback.port}
		}
		for _, r := range reals {
			svc.Reals = append(svc.Reals, fsm.Real{Address: r.addr, Port: r.port})
		}
		if check.Type != "" {
			check.Port, check.Interval, check.Timeout = uint16(*checkPort), interval, timeout
			for s := range strings.SplitSeq(*expectStatus, ",") {
				if s = strings.TrimSpace(s); s != "" {
					check.ExpectStatus = append(check.ExpectStatus, s)
				}
			}
			svc.Check = &check
		} else {
			for name := range set {
				if strings.HasPrefix(name, "check-") {
					return usageErrorf("-%s needs -check-type", name)
				}
			}
		}
		res, err := c.client.PutService(ctx, svc)
		return c.wrote(res.Index, err, "Service %q written", svc.Name)
	}
}

func serviceList(ctx context.Context, c *call) error {
	list, _, err := c.client.Services(ctx, c.read)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "No services.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICE\tSCHEDULER\tFORWARDING\tREALS\tUP\tDOWN")
	for _, s := range list {
		up, down, _ := healthCounts(s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.Name, s.Key(), s.Scheduler, s.Forwarding, len(s.Reals), up, down)
	}
	return tw.Flush()
}

func serviceShow(ctx context.Context, c *call) error {
	s, _, err := c.client.Service(ctx, c.args[0], c.read)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, s)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("Name", "%s", s.Name)
	row("Service", "%s", s.Key())
	row("Scheduler", "%s", strings.TrimSpace(fmt.Sprint(s.Scheduler, " ", joinFlags(s.SchedFlags))))
	row("Forwarding", "%s", s.Forwarding)
	if p := s.Persistence; p != nil {
		row("Persistent", "%s", time.Duration(p.Timeout))
		if p.Netmask != 0 {
			row("Netmask", "/%d", p.Netmask)
		}
	} else {
		row("Persistent", "no")
	}
	row("Quiescent", "%s", yesNo(s.Quiescent))
	row("Check", "%s", checkSummary(s.Check))
	if f := s.Fallback; f != nil {
		row("Fallback", "%s", netip.AddrPortFrom(f.Address, f.Port))
	}
	up, down, unknown := healthCounts(s)
	row("Reals", "%d (%d up, %d down, %d unknown)", len(s.Reals), up, down, unknown)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Reals) > 0 {
		fmt.Fprintln(c.stdout)
		writeIPVSHeader(c.stdout)
		writeIPVSService(c.stdout, s, true)
	}
	return nil
}

func serviceRemove(ctx context.Context, c *call) error {
	res, err := c.client.DeleteService(ctx, c.args[0])
	return c.wrote(res.Index, err, "Service %q removed", c.args[0])
}

// wrote reports a write's outcome: the error, or what was done and at which index.
func (c *call) wrote(index uint64, err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, format+" (index %d).\n", append(args, index)...)
	return err
}

func joinFlags(fs []fsm.SchedulerFlag) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
