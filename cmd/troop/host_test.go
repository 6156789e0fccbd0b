package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/troop-lb/troop/fsm"
)

func TestHostVerbs(t *testing.T) {
	c := newCLI(t)
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-real", "192.0.2.21", "-real", "192.0.2.22")
	c.ok("service", "add", "api", "-vip", "192.0.2.11", "-port", "443", "-forwarding", "nat", "-real", "192.0.2.21:8080", "-real", "192.0.2.23:8080")
	c.ok("service", "add", "dns", "-vip", "192.0.2.53", "-port", "53", "-protocol", "udp")

	diffText(t, "host drain", c.ok("host", "drain", "192.0.2.21"), `2 real servers at 192.0.2.21 are now draining (index 4):
  api  192.0.2.21:8080  draining
  web  192.0.2.21:80    draining
`)
	diffText(t, "host drain again", c.ok("host", "drain", "192.0.2.21"), "Every real server at 192.0.2.21 was draining already (index 5).\n")
	c.ok("real", "enable", "web", "192.0.2.21")
	diffText(t, "host disable", c.ok("host", "disable", "192.0.2.21"), `2 real servers at 192.0.2.21 are now disabled (index 7):
  api  192.0.2.21:8080  disabled
  web  192.0.2.21:80    disabled
`)
	diffText(t, "host enable", c.ok("host", "enable", "192.0.2.23"), "Every real server at 192.0.2.23 was enabled already (index 8).\n")
	show := c.ok("service", "show", "web")
	if !strings.Contains(show, "192.0.2.21:80                Route   1      unknown disabled") || !strings.Contains(show, "192.0.2.22:80                Route   1      unknown enabled") {
		t.Errorf("service show web after host disable:\n%s", show)
	}

	before := c.index()
	if errOut := c.fails(exitError, "host", "drain", "192.0.2.99"); errOut != "Error: host: \"192.0.2.99\": is not the address of a real server of any service\n" {
		t.Errorf("unknown host: %q", errOut)
	}
	if errOut := c.fails(exitUsage, "host", "drain", "192.0.2.21:80"); !strings.Contains(errOut, `host "192.0.2.21:80" is not an IP address`) {
		t.Errorf("host with a port: %q", errOut)
	}
	c.fails(exitUsage, "host", "drain")
	if c.index() != before {
		t.Errorf("refused host commands changed the index from %d to %d", before, c.index())
	}
}

// An agent whose FSM halted says so in troop status.
func TestStatusShowsHalt(t *testing.T) {
	c := newCLI(t)
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80")
	// An entry of a type this build does not know, as a newer leader would write it.
	c.b.ProposeUnchecked(true)
	res, err := c.b.Apply(context.Background(), fsm.Command{Op: "teleport"})
	if err != nil || !errors.Is(res.Err, fsm.ErrHalted) {
		t.Fatalf("apply of an unknown type: %+v, %v; want a halt", res, err)
	}
	out := c.ok("status")
	want := `HALTED:        this agent stopped applying the log at entry 2 (type "teleport"): decode command: type "teleport": unknown command; upgrade this agent: it catches up by replaying the log`
	if !strings.Contains(out, want+"\n") || !strings.Contains(out, "Table:         1 service, 0 real servers at index 1 (local)") {
		t.Errorf("status of a halted agent:\n%s\nwant a line\n%s", out, want)
	}
	if ok := c.ok("status", "-json"); !strings.Contains(ok, `"halted": "stopped applying the log at entry 2`) {
		t.Errorf("status -json lacks the halt:\n%s", ok)
	}
}
