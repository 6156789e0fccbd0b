package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

var tableVerbs = []verb{
	{name: "plan", maxArgs: 0, read: true, json: true, flags: tableFlags(plan),
		synopsis: "Show what applying a table file would change, changing nothing"},
	{name: "apply", maxArgs: 0, json: true, flags: tableFlags(apply),
		synopsis: "Replace the pool's whole table with a table file, atomically, and show the changes"},
}

// tableFlags declares -f and hands the parsed table file to run.
func tableFlags(run func(ctx context.Context, c *call, file string, t fsm.Table) error) func(*flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		file := fs.String("f", "", "table `file` (HCL)")
		return func(ctx context.Context, c *call) error {
			if *file == "" {
				return usageErrorf("-f TABLE is required")
			}
			src, err := os.ReadFile(*file)
			if err != nil {
				return err // *fs.PathError names the operation and the file
			}
			t, err := config.ParseTable(*file, src)
			if err != nil {
				return fmt.Errorf("table file not valid, nothing sent:\n%w", err)
			}
			return run(ctx, c, *file, t)
		}
	}
}

func plan(ctx context.Context, c *call, file string, t fsm.Table) error {
	d, err := c.client.PlanTable(ctx, t, c.read)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, d)
	}
	if len(d.Diff) == 0 {
		fmt.Fprintf(c.stdout, "No changes: the table at index %d matches %s.\n", d.BaseIndex, file)
		return nil
	}
	add, change, remove := countDiff(d.Diff)
	fmt.Fprintf(c.stdout, "%s\nPlan: %d to add, %d to change, %d to remove (against index %d).\n", fsm.FormatDiff(d.Diff), add, change, remove, d.BaseIndex)
	return nil
}

func apply(ctx context.Context, c *call, file string, t fsm.Table) error {
	d, err := c.client.ApplyTable(ctx, t)
	if err != nil {
		return err
	}
	return printApplied(c.stdout, c.json, d, file)
}

// printApplied reports a table replacement (an apply or a snapshot restore).
func printApplied(w io.Writer, asJSON bool, d api.TableDiff, source string) error {
	if asJSON {
		return printJSON(w, d)
	}
	if len(d.Diff) == 0 {
		_, err := fmt.Fprintf(w, "No changes: the table already matched %s (index %d).\n", source, d.Index)
		return err
	}
	add, change, remove := countDiff(d.Diff)
	_, err := fmt.Fprintf(w, "%s\nApplied %s at index %d: %d added, %d changed, %d removed.\n", fsm.FormatDiff(d.Diff), source, d.Index, add, change, remove)
	return err
}

// countDiff counts the objects added, changed and removed.
func countDiff(ds []fsm.Difference) (add, change, remove int) {
	for _, d := range ds {
		switch d.Kind {
		case fsm.DiffAdd:
			add++
		case fsm.DiffChange:
			change++
		case fsm.DiffRemove:
			remove++
		}
	}
	return add, change, remove
}
