package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/troop-lb/troop/api"
)

var statusVerbs = []verb{
	{name: "status", maxArgs: 0, read: true, json: true, flags: noFlags(status),
		synopsis: "Show the agent's Raft state and the table as ipvsadm -Ln shows IPVS"},
}

// statusJSON is what `troop status -json` prints.
type statusJSON struct {
	Status   api.Status          `json:"status"`
	Services []api.ServiceStatus `json:"services"`
}

func status(ctx context.Context, c *call) error {
	st, meta, err := c.client.Status(ctx, c.read)
	if err != nil {
		return err
	}
	services, _, err := c.client.Services(ctx, c.read)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, statusJSON{Status: st, Services: services})
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 1, ' ', 0)
	leader := "(none)"
	if st.LeaderID != "" {
		leader = fmt.Sprintf("%s (%s)", st.LeaderID, st.LeaderAddr)
	}
	fmt.Fprintf(tw, "Node:\t%s (%s)\n", st.ID, st.Role)
	fmt.Fprintf(tw, "Leader:\t%s\n", leader)
	fmt.Fprintf(tw, "Term:\t%d\n", st.Term)
	fmt.Fprintf(tw, "Commit index:\t%d\n", st.CommitIndex)
	fmt.Fprintf(tw, "Applied index:\t%d\n", st.AppliedIndex)
	fmt.Fprintf(tw, "Table:\t%s, %s at index %d (%s)\n", count(st.Services, "service"), count(st.Reals, "real server"), st.Index, meta.Consistency)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	writeIPVSHeader(c.stdout)
	for _, s := range services {
		writeIPVSService(c.stdout, s, false)
	}
	return nil
}

// count writes n and the noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
