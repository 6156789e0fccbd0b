package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
)

// cli runs the troop command line in-process against an agent API served over httptest by an
// apitest.Backend, a real FSM.
type cli struct {
	t *testing.T
	b *apitest.Backend
}

func newCLI(t *testing.T) *cli { return newCLIWithDataplane(t, nil) }

// newCLIWithDataplane serves dp as the agent's dataplane too (nil: the agent runs none).
func newCLIWithDataplane(t *testing.T, dp api.Dataplane) *cli {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b := apitest.NewBackend(log)
	srv := api.NewServer(b, log)
	if dp != nil {
		srv.SetDataplane(dp)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	t.Setenv("TROOP_ADDR", ts.URL)
	return &cli{t: t, b: b}
}

// run runs a command line and returns its exit code and output.
func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// ok runs a command line that must succeed and returns its output.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("troop %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs a command line that must fail with the exit code and returns its standard error.
func (c *cli) fails(code int, args ...string) string {
	c.t.Helper()
	got, out, errOut := c.run(args...)
	if got != code {
		c.t.Fatalf("troop %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, code, out, errOut)
	}
	return errOut
}

// index is the backend's state index, which a refused command leaves as it was.
func (c *cli) index() uint64 { return c.b.View().Index() }

func diffText(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
	}
}

func TestExitCodes(t *testing.T) {
	c := newCLI(t)
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80")
	c.ok("real", "add", "web", "192.0.2.21")
	before := c.index()
	tests := []struct {
		args   []string
		code   int
		stderr string // a line standard error must contain
	}{
		{nil, exitUsage, "Usage: troop <command>"},
		{[]string{"frobnicate"}, exitUsage, `troop: unknown command "frobnicate"`},
		{[]string{"service"}, exitUsage, "troop service: expected one of these commands:"},
		{[]string{"operator", "raft"}, exitUsage, "  operator raft list-peers"},
		{[]string{"service", "add"}, exitUsage, "troop service add: wrong number of arguments: want NAME, got 0"},
		{[]string{"service", "add", "web", "www"}, exitUsage, "want NAME, got 2"},
		{[]string{"service", "add", "web", "-vip", "192.0.2.300"}, exitUsage, `invalid value "192.0.2.300" for flag -vip`},
		{[]string{"service", "add", "web", "-nosuchflag"}, exitUsage, "flag provided but not defined: -nosuchflag"},
		{[]string{"service", "add", "web", "-port", "65536"}, exitUsage, "-port and -check-port must be 0–65535"},
		{[]string{"service", "add", "web", "-persistent", "soon"}, exitUsage, `invalid value "soon" for flag -persistent: want seconds (300) or a duration (5m)`},
		{[]string{"service", "add", "web", "-check-path", "/"}, exitUsage, "-check-path needs -check-type"},
		{[]string{"service", "add", "web", "-netmask", "24"}, exitUsage, "-netmask needs -persistent"},
		{[]string{"real", "add", "web", "192.0.2.21:http"}, exitUsage, `troop real add: real server "192.0.2.21:http": want ADDR or ADDR:PORT ([IPv6]:PORT)`},
		{[]string{"real", "weight", "web", "192.0.2.21", "heavy"}, exitUsage, `troop real weight: weight "heavy" is not a whole number`},
		{[]string{"plan"}, exitUsage, "troop plan: -f TABLE is required"},
		{[]string{"status", "extra"}, exitUsage, `troop status: takes no arguments, got ["extra"]`},
		// Refused by the API: exit 1 with the server's message.
		{[]string{"service", "show", "nope"}, exitError, `Error: service: "nope": does not exist`},
		{[]string{"service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-scheduler", "fastest"}, exitError,
			`Error: service "web" scheduler: "fastest": must be one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh`},
		{[]string{"real", "add", "web", "192.0.2.21:8080"}, exitError,
			`Error: service "web" real "192.0.2.21:8080" port: "8080": forwarding dr cannot change the port; use nat or port 80`},
		{[]string{"real", "weight", "web", "192.0.2.99", "2"}, exitError, `Error: service "web" real: "192.0.2.99:80": does not exist`},
		{[]string{"real", "weight", "web", "192.0.2.21", "70000"}, exitError, `Error: service "web" real "192.0.2.21:80" weight: "70000": must be 0–65535`},
		{[]string{"service", "add", "www", "-vip", "192.0.2.10", "-port", "80"}, exitError, `Error: service "www": "tcp 192.0.2.10:80": is already served by service "web"`},
		{[]string{"plan", "-f", "/nonexistent/table.hcl"}, exitError, "Error: open /nonexistent/table.hcl: no such file or directory"},
		{[]string{"operator", "raft", "remove-peer", "z"}, exitError, `Error: remove peer "z": unknown peer`},
		{[]string{"status", "-address", "http://127.0.0.1:1"}, exitError, `Error: Get "http://127.0.0.1:1/v1/status": dial tcp 127.0.0.1:1: connect: connection refused`},
	}
	for _, tt := range tests {
		errOut := c.fails(tt.code, tt.args...)
		if !strings.Contains(errOut, tt.stderr) {
			t.Errorf("troop %s: stderr:\n%s\nwant a line with %q", strings.Join(tt.args, " "), errOut, tt.stderr)
		}
	}
	if c.index() != before {
		t.Errorf("refused commands changed the state: index %d → %d", before, c.index())
	}
}

func TestHelpAndVersion(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("help"); !strings.Contains(out, "  real drain ") || !strings.Contains(out, "$TROOP_ADDR") {
		t.Errorf("help:\n%s", out)
	}
	out := c.ok("real", "add", "-h")
	for _, want := range []string{"Usage: troop real add [flags] SERVICE ADDR[:PORT]", "  -weight weight", "  -address URL", "  -forwarding method"} {
		if !strings.Contains(out, want) {
			t.Errorf("real add -h lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("service", "list", "-h"); !strings.Contains(out, "  -consistent") || !strings.Contains(out, "  -json") {
		t.Errorf("service list -h lacks -consistent or -json:\n%s", out)
	}
	if out := c.ok("version"); !strings.HasPrefix(out, "troop dev (go") {
		t.Errorf("version: %q", out)
	}
}

func TestAddressFlagOverridesEnvironment(t *testing.T) {
	c := newCLI(t)
	t.Setenv("TROOP_ADDR", "http://127.0.0.1:1")
	c.fails(exitError, "service", "list")
	srv := httptest.NewServer(api.NewServer(c.b, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	// A bare host:port works too.
	if out := c.ok("service", "list", "-address", strings.TrimPrefix(srv.URL, "http://")); out != "No services.\n" {
		t.Errorf("service list: %q", out)
	}
}
