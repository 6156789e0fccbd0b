// Command troop is Troop's single binary: the director agent (`troop agent`) and the CLI that
// manages a pool through an agent's HTTP API (`troop service add`, `troop apply -f`, ...).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed: the API refused it, the agent is unreachable, a file is bad
	exitUsage = 2 // the command line is wrong
)

// run runs the command line args (without the program name) and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "troop %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "agent":
		return runAgent(ctx, args[1:], stdout, stderr)
	}
	v, rest := findVerb(args)
	if v == nil {
		group := groupOf(args)
		if group == "" {
			fmt.Fprintf(stderr, "troop: unknown command %q\n\n", strings.Join(args[:1], " "))
			printUsage(stderr)
		} else {
			fmt.Fprintf(stderr, "troop %s: expected one of these commands:\n\n", group)
			printVerbs(stderr, group+" ")
		}
		return exitUsage
	}
	return v.run(ctx, rest, stdout, stderr)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: troop <command> [flags] [args]

Troop runs a highly available LVS (IPVS) director pool whose directors replicate the
virtual-service table through Raft, and manages that table through any agent's HTTP API.

Commands:
  agent                          Run a director agent (see "troop agent -h")
`)
	printVerbs(w, "")
	fmt.Fprint(w, `  version                        Print the version

Client commands talk to the agent at -address (or $TROOP_ADDR; default `+defaultAddress+`).
Flags may come before or after arguments. Run "troop <command> -h" for a command's flags.
`)
}

// printVerbs lists the verbs whose names start with prefix.
func printVerbs(w io.Writer, prefix string) {
	for _, v := range verbs {
		if strings.HasPrefix(v.name, prefix) {
			fmt.Fprintf(w, "  %-30s %s\n", v.name, v.synopsis)
		}
	}
}
