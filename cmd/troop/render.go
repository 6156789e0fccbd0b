package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// The table that `troop status` and `troop service show` print follows `ipvsadm -Ln`: the same
// header, service lines and column widths, with Health and Admin in place of the connection
// counters. It shows the replicated table with committed health, not the kernel's table.

// realFormat is ipvsadm's destination line ("  -> %-28s %-7s %-6d ...").
const realFormat = "  -> %-28s %-7s %-6s %-7s %s"

// writeIPVSHeader writes ipvsadm's two header lines.
func writeIPVSHeader(w io.Writer) {
	fmt.Fprintln(w, "Prot LocalAddress:Port Scheduler Flags")
	fmt.Fprintf(w, realFormat+"\n", "RemoteAddress:Port", "Forward", "Weight", "Health", "Admin")
}

// writeIPVSService writes a service line and a line per real server. With reasons, a real
// server's health reason follows its line.
func writeIPVSService(w io.Writer, s api.ServiceStatus, reasons bool) {
	fmt.Fprintln(w, serviceLine(s.Service))
	for _, r := range s.Reals {
		h := s.Health[r.ID()]
		fwd := r.Forwarding
		if fwd == "" {
			fwd = s.Forwarding
		}
		line := fmt.Sprintf(realFormat, r.ID(), director.ForwardingName(fwd), strconv.Itoa(r.EffectiveWeight()), h.State, r.Admin)
		if reasons && h.Reason != "" {
			line += "  " + h.Reason
		}
		fmt.Fprintln(w, line)
	}
}

// serviceLine renders a service as ipvsadm -Ln does: "TCP  192.0.2.10:80 wrr persistent 300".
func serviceLine(s fsm.Service) string {
	var b strings.Builder
	ipv6 := s.VIP.Is6() || (!s.VIP.IsValid() && s.Family == fsm.IPv6)
	if s.FWMark != 0 {
		fmt.Fprintf(&b, "FWM  %d", s.FWMark)
		if ipv6 {
			b.WriteString(" IPv6")
		}
		fmt.Fprintf(&b, " %s", s.Scheduler)
	} else {
		fmt.Fprintf(&b, "%s  %s %s", strings.ToUpper(string(s.Protocol)), netip.AddrPortFrom(s.VIP, s.Port), s.Scheduler)
	}
	if p := s.Persistence; p != nil {
		fmt.Fprintf(&b, " persistent %d", time.Duration(p.Timeout)/time.Second)
		switch {
		case p.Netmask == 0:
		case !ipv6 && p.Netmask < 32:
			fmt.Fprintf(&b, " mask %s", net.IP(net.CIDRMask(p.Netmask, 32)))
		case ipv6 && p.Netmask < 128:
			fmt.Fprintf(&b, " mask %d", p.Netmask)
		}
	}
	for _, f := range s.SchedFlags {
		fmt.Fprintf(&b, " %s", f)
	}
	return b.String()
}

// checkSummary describes a health check on one line.
func checkSummary(c *fsm.HealthCheck) string {
	if c == nil {
		return "none"
	}
	parts := []string{c.Type}
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch c.Type {
	case "http", "https":
		add("%s %s", c.Method, c.Path)
		if c.Host != "" {
			add("host %s", c.Host)
		}
		if len(c.ExpectStatus) > 0 {
			add("status %s", strings.Join(c.ExpectStatus, ","))
		}
	case "dns":
		add("%s %s, rcode %s", c.QueryType, c.Query, c.ExpectRcode)
	case "exec":
		add("%s", strings.Join(c.Command, " "))
	}
	if c.Port != 0 {
		add("port %d", c.Port)
	}
	if c.Send != "" {
		add("send %q", c.Send)
	}
	if c.Expect != "" {
		add("expect %q", c.Expect)
	}
	if c.ExpectRegexp != "" {
		add("expect /%s/", c.ExpectRegexp)
	}
	add("every %s, timeout %s, rise %d, fall %d, initially %s", c.Interval, c.Timeout, c.Rise, c.Fall, c.InitialState)
	return strings.Join(parts, ", ")
}

// healthCounts counts a service's real servers by committed health.
func healthCounts(s api.ServiceStatus) (up, down, unknown int) {
	for _, r := range s.Reals {
		switch s.Health[r.ID()].State {
		case fsm.HealthUp:
			up++
		case fsm.HealthDown:
			down++
		default:
			unknown++
		}
	}
	return up, down, unknown
}

// kernelRealFormat is ipvsadm -Ln --stats/--rate squeezed: weight, connections and the rates.
const kernelRealFormat = "  -> %-28s %-7s %-6s %-10s %-9s %-6s %-8s %s"

// writeKernelTable writes the kernel's IPVS table as `ipvsadm -Ln` does, with the connection
// rate and packet rate columns of `--rate`, marking each difference from the desired table.
func writeKernelTable(w io.Writer, services []director.KernelService) {
	fmt.Fprintln(w, "Prot LocalAddress:Port Scheduler Flags")
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(kernelRealFormat, "RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "CPS", "InPPS", ""), " "))
	for _, s := range services {
		line := s.Key
		if k := s.Kernel; k != nil {
			line += " " + string(k.Scheduler)
			if k.Persistent {
				line += fmt.Sprintf(" persistent %d", k.Timeout)
			}
		}
		if s.Drift != "" {
			line += "  ! " + s.Drift
		}
		fmt.Fprintln(w, line)
		for _, d := range s.Destinations {
			fwd, weight, active, inactive, cps, pps := "-", "-", "-", "-", "-", "-"
			if k := d.Kernel; k != nil {
				fwd, weight = director.ForwardingName(k.Forwarding), strconv.Itoa(k.Weight)
				active, inactive = strconv.FormatUint(uint64(k.ActiveConns), 10), strconv.FormatUint(uint64(k.InactiveConns), 10)
				cps, pps = strconv.FormatUint(k.Stats.CPS, 10), strconv.FormatUint(k.Stats.PPSIn, 10)
			}
			mark := ""
			switch {
			case d.Drift == "weight" && d.Desired != nil:
				mark = fmt.Sprintf("! weight (table: %d)", d.Desired.Weight)
			case d.Drift != "":
				mark = "! " + d.Drift
			}
			fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf(kernelRealFormat, d.Key, fwd, weight, active, inactive, cps, pps, mark), " "))
		}
	}
}
