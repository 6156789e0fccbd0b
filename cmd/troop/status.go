package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

var statusVerbs = []verb{
	{name: "status", maxArgs: 0, read: true, json: true, flags: statusFlags,
		synopsis: "Show the agent's Raft state and the table as ipvsadm -Ln shows IPVS; -v adds this director's own health checks"},
}

// statusJSON is what `troop status -json` prints.
type statusJSON struct {
	Status   api.Status          `json:"status"`
	Services []api.ServiceStatus `json:"services"`
	// Dataplane is the agent's own kernel view; absent when it runs no dataplane.
	Dataplane *api.DataplaneInfo `json:"dataplane,omitempty"`
	// Checks is the agent's own health-check view (with -v).
	Checks *api.ChecksInfo `json:"checks,omitempty"`
}

func statusFlags(fs *flag.FlagSet) action {
	verbose := fs.Bool("v", false, "also show this director's own health checks of every real server")
	return func(ctx context.Context, c *call) error { return status(ctx, c, *verbose) }
}

func status(ctx context.Context, c *call, verbose bool) error {
	st, meta, err := c.client.Status(ctx, c.read)
	if err != nil {
		return err
	}
	services, _, err := c.client.Services(ctx, c.read)
	if err != nil {
		return err
	}
	dp, err := c.client.Dataplane(ctx)
	var dpInfo *api.DataplaneInfo
	switch {
	case err == nil:
		dpInfo = &dp
	case !errors.Is(err, fsm.ErrNotFound): // 404: this agent runs no dataplane
		return err
	}
	var checks *api.ChecksInfo
	if verbose {
		ci, err := c.client.Checks(ctx)
		if err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return err
		}
		if err == nil {
			checks = &ci
		}
	}
	if c.json {
		return printJSON(c.stdout, statusJSON{Status: st, Services: services, Dataplane: dpInfo, Checks: checks})
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 1, ' ', 0)
	leader := "(none)"
	if st.LeaderID != "" {
		leader = fmt.Sprintf("%s (%s)", st.LeaderID, st.LeaderAddr)
	}
	role := string(st.Role)
	if st.Witness {
		role += ", witness: votes, holds no VIP, hands leadership to a director"
	}
	fmt.Fprintf(tw, "Node:\t%s (%s)\n", st.ID, role)
	fmt.Fprintf(tw, "Leader:\t%s\n", leader)
	fmt.Fprintf(tw, "Term:\t%d\n", st.Term)
	fmt.Fprintf(tw, "Commit index:\t%d\n", st.CommitIndex)
	fmt.Fprintf(tw, "Applied index:\t%d\n", st.AppliedIndex)
	if st.Halted != "" {
		// The table below is frozen at the entry before the one this agent could not read.
		fmt.Fprintf(tw, "HALTED:\tthis agent %s\n", st.Halted)
	}
	fmt.Fprintf(tw, "Table:\t%s, %s at index %d (%s)\n", count(st.Services, "service"), count(st.Reals, "real server"), st.Index, meta.Consistency)
	if dpInfo != nil {
		fmt.Fprintf(tw, "Dataplane:\t%s\n", dataplaneSummary(dpInfo.Status))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	writeIPVSHeader(c.stdout)
	for _, s := range services {
		writeIPVSService(c.stdout, s, false)
	}
	if dpInfo != nil && len(dpInfo.Services) > 0 {
		fmt.Fprintln(c.stdout, "\nKernel IPVS table (! marks a difference from the table above):")
		writeKernelTable(c.stdout, dpInfo.Services)
	}
	writeSerial(c.stdout, st.Serial, time.Now())
	if checks != nil {
		writeChecks(c.stdout, *checks)
	}
	return nil
}

// writeChecks lists this director's own verdict on every real server beside the pool's, so a
// server that one director cannot reach stands out ("! pool says up").
func writeChecks(w io.Writer, ci api.ChecksInfo) {
	s := ci.Stats
	fmt.Fprintf(w, "\nHealth checks from %s: %s (%d up, %d down); %d checks run, %d failed\n",
		ci.Node, count(s.Targets, "real server"), s.Up, s.Down, s.Checks, s.Failures)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, t := range ci.Targets {
		line := fmt.Sprintf("  %s\t%s\t%s\t%s", t.Service, t.Real, t.Type, t.State)
		if !t.Decided {
			line += " (undecided)"
		}
		if t.Last != nil {
			line += "\t" + t.Last.Reason
		} else {
			line += "\tnot checked yet"
		}
		if t.Committed != fsm.HealthUnknown && t.Committed != t.State {
			line += fmt.Sprintf("\t! pool says %s", t.Committed)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// dataplaneSummary says in one line what the director does: IPVS, VIPs, last reconcile.
func dataplaneSummary(s director.Status) string {
	var parts []string
	parts = append(parts, "IPVS "+s.IPVS)
	switch {
	case len(s.VIPs) > 0:
		parts = append(parts, "holding "+strings.Join(s.VIPs, ", "))
	case s.Leader:
		parts = append(parts, "leader, holding no VIP")
	default:
		parts = append(parts, "no VIP (standing by)")
	}
	if s.IPVS == "enabled" {
		parts = append(parts, fmt.Sprintf("synced at index %d, %s repaired", s.SyncedIndex, count(s.Repairs, "out-of-band edit")))
	}
	if s.LastError != "" {
		parts = append(parts, "last error: "+s.LastError)
	}
	return strings.Join(parts, "; ")
}

// count writes n and the noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
