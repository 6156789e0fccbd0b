package main

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// Flag values and argument parsers for the types the CLI takes.

// seconds is a duration flag that also takes a bare number of seconds, as ipvsadm -p and
// ldirectord's persistent= do.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want seconds (300) or a duration (5m)")
	}
	*s = seconds(d)
	return nil
}

// durationValue is a flag holding an fsm.Duration.
type durationValue struct{ d *fsm.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration like 2s or 500ms")
	}
	*v.d = fsm.Duration(d)
	return nil
}

// addrPort is an ADDR[:PORT] flag or argument; port 0 means "not given".
type addrPort struct {
	addr netip.Addr
	port uint16
}

func (a *addrPort) String() string {
	if a == nil || !a.addr.IsValid() {
		return ""
	}
	return a.id()
}

func (a *addrPort) Set(s string) error {
	v, err := parseAddrPort(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// id is the form the API takes a real server's ID in: "192.0.2.21:80", "[2001:db8::21]:80", or
// a bare address, which the server completes with the service's port.
func (a addrPort) id() string {
	if a.port == 0 {
		return a.addr.String()
	}
	return netip.AddrPortFrom(a.addr, a.port).String()
}

// addrPorts is a repeatable ADDR[:PORT] flag.
type addrPorts []addrPort

func (as *addrPorts) String() string {
	if as == nil {
		return ""
	}
	s := make([]string, len(*as))
	for i, a := range *as {
		s[i] = a.id()
	}
	return strings.Join(s, ",")
}

func (as *addrPorts) Set(s string) error {
	v, err := parseAddrPort(s)
	if err != nil {
		return err
	}
	*as = append(*as, v)
	return nil
}

// parseAddrPort parses "192.0.2.21", "192.0.2.21:80", "2001:db8::21", "[2001:db8::21]" or
// "[2001:db8::21]:80".
func parseAddrPort(s string) (addrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return addrPort{}, errors.New("port 0 is not a port; leave it out for the service's port")
		}
		return addrPort{addr: ap.Addr().Unmap(), port: ap.Port()}, nil
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && a.Zone() == "" {
		return addrPort{addr: a.Unmap()}, nil
	}
	return addrPort{}, errors.New("want ADDR or ADDR:PORT ([IPv6]:PORT)")
}
