package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/troop-lb/troop/fsm"
)

var snapshotVerbs = []verb{
	{name: "snapshot save", args: "FILE", minArgs: 1, maxArgs: 1, flags: snapshotSaveFlags,
		synopsis: "Save the pool's whole state (table and health) to a file"},
	{name: "snapshot restore", args: "FILE", minArgs: 1, maxArgs: 1, json: true, flags: noFlags(snapshotRestore),
		synopsis: "Replace the pool's whole state with a snapshot file's, atomically"},
}

func snapshotSaveFlags(fs *flag.FlagSet) action {
	stale := fs.Bool("stale", false, "save the agent's local state, which works without a leader (default: leader-verified)")
	return func(ctx context.Context, c *call) error {
		return saveSnapshot(ctx, c, c.args[0], *stale)
	}
}

// saveSnapshot writes the snapshot next to file, checks that it reads back, and renames it into
// place, so that file is either the old one or a complete new one.
func saveSnapshot(ctx context.Context, c *call, file string, stale bool) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	meta, err := c.client.SaveSnapshot(ctx, tmp, stale)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	// Check the file reads back before it replaces anything: a transfer cut short can end cleanly.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := fsm.ReadSnapshot(tmp); err != nil {
		return fmt.Errorf("snapshot from %s is unusable, %s not written: %w", c.address, file, err)
	}
	info, err := tmp.Stat()
	if err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Saved the state at index %d (%s) to %s (%d bytes).\n", meta.Index, meta.Consistency, file, info.Size())
	return err
}

func snapshotRestore(ctx context.Context, c *call) error {
	f, err := os.Open(c.args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := c.client.RestoreSnapshot(ctx, f)
	if err != nil {
		return err
	}
	return printApplied(c.stdout, c.json, d, c.args[0])
}
