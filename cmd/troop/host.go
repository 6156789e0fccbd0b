package main

import (
	"context"
	"fmt"
	"net/netip"
	"text/tabwriter"

	"github.com/troop-lb/troop/fsm"
)

// A host is one machine's address: its real servers in every service, whatever their ports.
var hostVerbs = []verb{
	{name: "host drain", args: "ADDR", minArgs: 1, maxArgs: 1, flags: noFlags(hostAdmin(fsm.Draining)),
		synopsis: "Drain every real server at ADDR, in every service: weight 0 in IPVS, existing connections finish"},
	{name: "host enable", args: "ADDR", minArgs: 1, maxArgs: 1, flags: noFlags(hostAdmin(fsm.Enabled)),
		synopsis: "Put every real server at ADDR, in every service, back in service"},
	{name: "host disable", args: "ADDR", minArgs: 1, maxArgs: 1, flags: noFlags(hostAdmin(fsm.Disabled)),
		synopsis: "Take every real server at ADDR, in every service, out of IPVS"},
}

func hostAdmin(state fsm.AdminState) action {
	return func(ctx context.Context, c *call) error {
		addr, err := netip.ParseAddr(c.args[0])
		if err != nil {
			return usageErrorf("host %q is not an IP address (give it without a port)", c.args[0])
		}
		res, err := c.client.SetHostAdmin(ctx, addr, state)
		if err != nil {
			return err
		}
		if len(res.Changed) == 0 {
			_, err := fmt.Fprintf(c.stdout, "Every real server at %s was %s already (index %d).\n", addr, state, res.Index)
			return err
		}
		fmt.Fprintf(c.stdout, "%s at %s %s now %s (index %d):\n", count(len(res.Changed), "real server"), addr, isAre(len(res.Changed)), state, res.Index)
		tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
		for _, r := range res.Changed {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Service, r.Real, state)
		}
		return tw.Flush()
	}
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
