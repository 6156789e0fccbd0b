package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/troop-lb/troop/director"
)

// realserverVerbs prepare the host they run on as an LVS direct-routing real server; they talk
// to no agent (the -address every verb takes is unused).
var realserverVerbs = []verb{
	{name: "realserver setup", maxArgs: 0, flags: realserverSetupFlags,
		synopsis: "Make this host an LVS-DR real server: ARP sysctls, then each -vip on lo (local, as root)"},
	{name: "realserver teardown", maxArgs: 0, flags: realserverTeardownFlags,
		synopsis: "Take each -vip off lo; the ARP sysctls stay unless -restore-arp (local, as root)"},
}

// vipList is a repeatable -vip ADDR flag.
type vipList []netip.Addr

func (v *vipList) String() string {
	if v == nil {
		return ""
	}
	s := make([]string, len(*v))
	for i, a := range *v {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (v *vipList) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("not an IP address: %q", s)
	}
	*v = append(*v, a)
	return nil
}

// realserverStep is RealServer.Setup or Teardown with the choices bound.
type realserverStep func(vips []netip.Addr, dryRun bool) ([]string, error)

func realserverSetupFlags(fs *flag.FlagSet) action {
	return realserverFlags(fs, director.RealServerSetup)
}

func realserverTeardownFlags(fs *flag.FlagSet) action {
	restore := fs.Bool("restore-arp", false, "also set arp_ignore/arp_announce back to 0, unless lo still holds another IPv4 VIP")
	return realserverFlags(fs, func(vips []netip.Addr, dryRun bool) ([]string, error) {
		return director.RealServerTeardown(vips, dryRun, *restore) // read once the flags are parsed
	})
}

// realserverFlags declares the flags both verbs share.
func realserverFlags(fs *flag.FlagSet, step realserverStep) action {
	var vips vipList
	fs.Var(&vips, "vip", "virtual IP `address`, repeatable")
	dryRun := fs.Bool("dry-run", false, "print what would be done and change nothing")
	return func(_ context.Context, c *call) error {
		return runRealserver(c.stdout, step, vips, *dryRun)
	}
}

// runRealserver runs step for vips and prints each step, one per line.
func runRealserver(w io.Writer, step realserverStep, vips []netip.Addr, dryRun bool) error {
	if len(vips) == 0 {
		return usageErrorf("at least one -vip is required")
	}
	done, err := step(vips, dryRun)
	for _, d := range done {
		fmt.Fprintln(w, d)
	}
	if err != nil {
		return err
	}
	if dryRun {
		fmt.Fprintln(w, "Dry run: nothing was changed.")
	}
	return nil
}
