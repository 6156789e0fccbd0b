package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/probe"
)

// checks is the agent's health checking: every director runs every check (a new leader starts
// warm), and the committer records the leader's verdicts in Raft.
type checks struct {
	engine    *probe.Engine
	committer *probe.Committer
}

// newChecks builds the checks; observe (nil: none) hears of every finished check (metrics).
func newChecks(f *fsm.FSM, node *cluster.Node, observe func(probe.Target, probe.Result), log *slog.Logger) (*checks, error) {
	eng, err := probe.NewEngine(probe.Options{Source: f, Log: log, Observe: observe})
	if err != nil {
		return nil, err
	}
	com, err := probe.NewCommitter(probe.CommitterOptions{Engine: eng, Table: node, Applier: node, Leadership: node, Log: log})
	if err != nil {
		return nil, err
	}
	return &checks{engine: eng, committer: com}, nil
}

// run runs the checks and the committer until ctx ends.
func (c *checks) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.committer.Run(ctx) })
	c.engine.Run(ctx)
	wg.Wait()
}
