package main

import (
	"context"
	"fmt"
	"io"
)

// runAgent is a placeholder so that the package builds until the agent command lands; the owner
// of `troop agent` replaces this file.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "troop agent: not built yet")
	return exitError
}
