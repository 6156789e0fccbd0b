package main

import (
	"fmt"
	"strings"
	"time"
)

// report is what the walkthrough measured and what surprised it.
type report struct {
	where      string
	elected    time.Duration // agents started → one leader agreed by all
	programmed time.Duration // table applied → in every director's IPVS
	realDown   time.Duration // r1 stopped serving → out of the leader's IPVS
	fallbackIn time.Duration // r2 stopped too → the sorry server alone in IPVS
	realsBack  time.Duration // both serve again → both in IPVS, the sorry server out
	newLeader  time.Duration // leader crashed → the survivors agree on a new one
	outage     time.Duration // last ping answer from the old leader's MAC → first from the new one's
	rejoined   time.Duration // old leader restarted on an empty kernel → follower with the table

	requests, failed                 int // the walkthrough's own requests, one at a time
	failoverRequests, failoverFailed int // the client load during the crash
	surprises                        []string
	total                            time.Duration
}

func (r report) String() string {
	var b strings.Builder
	row := func(what, value string) { fmt.Fprintf(&b, "   %-44s %s\n", what, value) }
	row("where", r.where)
	row("leader elected after the agents started", round(r.elected))
	row("table in all three kernels after the apply", round(r.programmed))
	row("scenario 1: r1 stopped → out of IPVS", round(r.realDown)+" (check every 500 ms, fall 2)")
	row("           r2 stopped too → sorry server in", round(r.fallbackIn))
	row("           both back → in IPVS, sorry out", round(r.realsBack)+" (rise 2)")
	row("scenario 2: leader crashed → new leader", round(r.newLeader))
	row("           client-visible outage", r.outage.Round(time.Millisecond).String()+" (last ping answer from the old leader's MAC to the first from the new one's)")
	row("           page fetches during the failover", fmt.Sprintf("%d made, %d failed", r.failoverRequests, r.failoverFailed))
	row("           old leader back as a follower", round(r.rejoined))
	row("requests shown one by one", fmt.Sprintf("%d made, %d failed", r.requests, r.failed))
	if len(r.surprises) == 0 {
		row("behaviour", "as expected throughout")
	} else {
		row("behaviour", fmt.Sprintf("%d surprise(s):", len(r.surprises)))
		for _, s := range r.surprises {
			fmt.Fprintf(&b, "     ✗ %s\n", s)
		}
	}
	row("walkthrough took", r.total.Round(100*time.Millisecond).String())
	return b.String()
}
