package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"

	"github.com/troop-lb/troop/api"
)

// defaultAddress is the agent API a client command talks to without -address or $TROOP_ADDR.
const defaultAddress = "http://127.0.0.1:9700"

// verb is one client command: its name, arguments and flags, and what it does. The plumbing
// every verb shares (flag parsing, -address, -consistent, -json, argument counts, exit codes,
// error printing) is in verb.run.
type verb struct {
	name string // "service add"
	// args names the positional arguments for the usage line; minArgs and maxArgs bound their
	// count (maxArgs < 0: no bound).
	args             string
	minArgs, maxArgs int
	synopsis         string
	// read verbs take -consistent; json verbs take -json.
	read, json bool
	// flags declares the verb's own flags and returns the action, which reads them once parsed.
	flags func(fs *flag.FlagSet) action
}

// action runs a verb once its flags and arguments are parsed.
type action func(ctx context.Context, c *call) error

// call is one invocation of a verb.
type call struct {
	args []string
	// address is the agent's API, for messages; client talks to it.
	address string
	client  *api.Client
	read    api.ReadOptions
	json    bool
	stdout  io.Writer
}

// verbs is every client command, in the order help lists them.
var verbs = slices.Concat(serviceVerbs, realVerbs, hostVerbs, tableVerbs, statusVerbs, memberVerbs, eventVerbs, operatorVerbs, upgradeVerbs, snapshotVerbs, realserverVerbs, importVerbs, aclVerbs, pkiVerbs, initVerbs, doctorVerbs)

// findVerb returns the verb named by the first words of args (the longest match) and the rest.
func findVerb(args []string) (*verb, []string) {
	var best *verb
	var rest []string
	for i := range verbs {
		words := strings.Fields(verbs[i].name)
		if len(words) <= len(args) && slices.Equal(words, args[:len(words)]) && (best == nil || len(words) > len(strings.Fields(best.name))) {
			best, rest = &verbs[i], args[len(words):]
		}
	}
	return best, rest
}

// groupOf returns the longest prefix of args that is a group of verbs ("service", "operator
// raft"), or "".
func groupOf(args []string) string {
	group := ""
	for n := 1; n <= len(args); n++ {
		prefix := strings.Join(args[:n], " ") + " "
		if slices.ContainsFunc(verbs, func(v verb) bool { return strings.HasPrefix(v.name, prefix) }) {
			group = strings.TrimSpace(prefix)
		}
	}
	return group
}

// usageError is a mistake on the command line found after flag parsing: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run parses args for v, runs it and returns the exit code.
func (v *verb) run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("troop "+v.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // help is printed below, to stdout for -h and briefly to stderr for errors
	address := fs.String("address", envOr("TROOP_ADDR", defaultAddress), "the agent's API `URL` (env TROOP_ADDR)")
	token := fs.String("token", os.Getenv("TROOP_TOKEN"), "the ACL token `secret` to send (env TROOP_TOKEN)")
	caFile := fs.String("ca-file", os.Getenv("TROOP_CACERT"), "verify an https agent's certificate against this CA `file` (env TROOP_CACERT)")
	c := &call{stdout: stdout}
	if v.read {
		fs.BoolVar(&c.read.Consistent, "consistent", false, "read the leader-verified state instead of the agent's local one")
	}
	if v.json {
		fs.BoolVar(&c.json, "json", false, "print JSON")
	}
	act := v.flags(fs)

	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		v.printHelp(fs, stdout)
		return exitOK
	case err != nil: // the flag package has printed what is wrong
		v.printShortUsage(stderr)
		return exitUsage
	case len(pos) < v.minArgs || (v.maxArgs >= 0 && len(pos) > v.maxArgs):
		if v.args == "" {
			fmt.Fprintf(stderr, "troop %s: takes no arguments, got %q\n", v.name, pos)
		} else {
			fmt.Fprintf(stderr, "troop %s: wrong number of arguments: want %s, got %d\n", v.name, v.args, len(pos))
		}
		v.printShortUsage(stderr)
		return exitUsage
	}
	c.args, c.address = pos, *address
	hc, err := cliHTTPClient(*caFile)
	if err != nil {
		fmt.Fprintf(stderr, "Error: -ca-file: %v\n", err)
		return exitError
	}
	c.client = api.NewClient(*address, hc).WithActor(actorName()).WithToken(*token)

	err = act(ctx, c)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "troop %s: %v\n", v.name, err)
		v.printShortUsage(stderr)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return exitError
	}
}

func (v *verb) usageLine() string {
	return strings.TrimSpace(fmt.Sprintf("Usage: troop %s [flags] %s", v.name, v.args))
}

func (v *verb) printShortUsage(w io.Writer) {
	fmt.Fprintf(w, "%s\nRun \"troop %s -h\" for its flags.\n", v.usageLine(), v.name)
}

func (v *verb) printHelp(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "%s\n\n%s.\n\nFlags:\n", v.usageLine(), v.synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// parseInterspersed parses flags wherever they are among the arguments, as operators write
// `troop real add web 192.0.2.21 -weight 3`, and returns the positional arguments. "--" ends
// the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// Parse drops a "--" it stops at; then everything after it is positional.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// actorName names the operator in the events stream: user@host.
func actorName() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	switch {
	case name == "":
		return host
	case host == "":
		return name
	}
	return name + "@" + host
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
