package main

import (
	"context"
	"flag"
	"strconv"

	"github.com/troop-lb/troop/fsm"
)

// A real server is named ADDR[:PORT]; without a port it is the service's port.
var realVerbs = []verb{
	{name: "real add", args: "SERVICE ADDR[:PORT]", minArgs: 2, maxArgs: 2, flags: realAddFlags,
		synopsis: "Add or replace a real server of a service"},
	{name: "real rm", args: "SERVICE ADDR[:PORT]", minArgs: 2, maxArgs: 2, flags: noFlags(realRemove),
		synopsis: "Remove a real server (drain it first to let connections finish)"},
	{name: "real weight", args: "SERVICE ADDR[:PORT] WEIGHT", minArgs: 3, maxArgs: 3, flags: noFlags(realWeight),
		synopsis: "Set a real server's weight (0–65535)"},
	{name: "real drain", args: "SERVICE ADDR[:PORT]", minArgs: 2, maxArgs: 2, flags: noFlags(realAdmin(fsm.Draining)),
		synopsis: "Drain a real server: weight 0 in IPVS, existing connections finish"},
	{name: "real enable", args: "SERVICE ADDR[:PORT]", minArgs: 2, maxArgs: 2, flags: noFlags(realAdmin(fsm.Enabled)),
		synopsis: "Put a drained or disabled real server back in service"},
	{name: "real disable", args: "SERVICE ADDR[:PORT]", minArgs: 2, maxArgs: 2, flags: noFlags(realAdmin(fsm.Disabled)),
		synopsis: "Take a real server out of IPVS"},
}

// realArgs parses the SERVICE ADDR[:PORT] arguments.
func realArgs(c *call) (service string, rs addrPort, err error) {
	rs, err = parseAddrPort(c.args[1])
	if err != nil {
		return "", addrPort{}, usageErrorf("real server %q: %v", c.args[1], err)
	}
	return c.args[0], rs, nil
}

func realAddFlags(fs *flag.FlagSet) action {
	var r fsm.Real
	weight := fs.Int("weight", fsm.DefaultWeight, "`weight` 0–65535")
	forwarding := fs.String("forwarding", "", "`method` for this server: dr, nat or tun (default the service's)")
	upper := fs.Uint("upper-threshold", 0, "connection `limit` above which the server gets no new connections (0: none)")
	lower := fs.Uint("lower-threshold", 0, "connection `count` below which it gets new ones again")
	admin := fs.String("admin", "", "initial admin `state`: enabled, draining or disabled (default enabled)")
	return func(ctx context.Context, c *call) error {
		service, rs, err := realArgs(c)
		if err != nil {
			return err
		}
		if *upper > 1<<32-1 || *lower > 1<<32-1 {
			return usageErrorf("-upper-threshold and -lower-threshold must fit in 32 bits")
		}
		r.Address, r.Port = rs.addr, rs.port
		r.Weight, r.Forwarding, r.Admin = weight, fsm.Forwarding(*forwarding), fsm.AdminState(*admin)
		r.UpperThreshold, r.LowerThreshold = uint32(*upper), uint32(*lower)
		res, err := c.client.PutReal(ctx, service, rs.id(), r)
		return c.wrote(res.Index, err, "Real server %s of %q written", rs.id(), service)
	}
}

func realRemove(ctx context.Context, c *call) error {
	service, rs, err := realArgs(c)
	if err != nil {
		return err
	}
	res, err := c.client.DeleteReal(ctx, service, rs.id())
	return c.wrote(res.Index, err, "Real server %s of %q removed", rs.id(), service)
}

func realWeight(ctx context.Context, c *call) error {
	service, rs, err := realArgs(c)
	if err != nil {
		return err
	}
	w, err := strconv.Atoi(c.args[2])
	if err != nil {
		return usageErrorf("weight %q is not a whole number", c.args[2])
	}
	res, err := c.client.SetWeight(ctx, service, rs.id(), w)
	return c.wrote(res.Index, err, "Real server %s of %q set to weight %d", rs.id(), service, w)
}

func realAdmin(state fsm.AdminState) action {
	return func(ctx context.Context, c *call) error {
		service, rs, err := realArgs(c)
		if err != nil {
			return err
		}
		res, err := c.client.SetAdmin(ctx, service, rs.id(), state)
		return c.wrote(res.Index, err, "Real server %s of %q is %s", rs.id(), service, state)
	}
}
