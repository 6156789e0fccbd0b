package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

var operatorVerbs = []verb{
	{name: "operator raft list-peers", maxArgs: 0, read: true, json: true, flags: noFlags(listPeers),
		synopsis: "List the servers of the Raft configuration"},
	{name: "operator raft remove-peer", args: "ID", minArgs: 1, maxArgs: 1, flags: noFlags(removePeer),
		synopsis: "Remove a server from the Raft configuration"},
	{name: "operator raft transfer-leader", args: "[ID]", maxArgs: 1, flags: noFlags(transferLeader),
		synopsis: "Hand leadership (and the VIPs) to server ID, or to the most up-to-date follower"},
}

func listPeers(ctx context.Context, c *call) error {
	peers, _, err := c.client.Peers(ctx, c.read)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, peers)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tVOTER")
	for _, p := range peers {
		state := "follower"
		if p.Leader {
			state = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", p.ID, p.Address, state, p.Voter)
	}
	return tw.Flush()
}

func removePeer(ctx context.Context, c *call) error {
	if err := c.client.RemovePeer(ctx, c.args[0]); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "Removed peer %q from the Raft configuration.\n", c.args[0])
	return err
}

func transferLeader(ctx context.Context, c *call) error {
	var id string
	if len(c.args) == 1 {
		id = c.args[0]
	}
	if err := c.client.TransferLeadership(ctx, id); err != nil {
		return err
	}
	// The transfer is done when the call returns; say where leadership went.
	st, _, err := c.client.Status(ctx, c.read)
	if err != nil || st.LeaderID == "" {
		_, err = fmt.Fprintln(c.stdout, "Leadership transferred.")
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Leadership transferred: the leader is %q (term %d).\n", st.LeaderID, st.Term)
	return err
}
