package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/fsm"
)

// seedPool builds a pool with the service kinds status renders differently, and commits health
// for two real servers.
func seedPool(t *testing.T, c *cli) {
	t.Helper()
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-scheduler", "wrr", "-persistent", "300", "-netmask", "24",
		"-quiescent", "-check-type", "http", "-check-path", "/healthz", "-check-expect", "ok", "-check-expect-status", "200,300-399",
		"-fallback", "127.0.0.1", "-real", "192.0.2.21", "-real", "192.0.2.22")
	c.ok("real", "add", "web", "192.0.2.23", "-weight", "3")
	c.ok("real", "drain", "web", "192.0.2.22:80")
	c.ok("service", "add", "dns", "-vip", "192.0.2.53", "-port", "53", "-protocol", "udp", "-scheduler", "rr")
	c.ok("service", "add", "mail", "-fwmark", "7", "-family", "ipv6", "-scheduler", "sh", "-sched-flags", "sh-port,sh-fallback")
	c.ok("real", "add", "mail", "2001:db8::25", "-forwarding", "tun")
	c.ok("service", "add", "web6", "-vip", "2001:db8::10", "-port", "443", "-forwarding", "nat", "-persistent", "1h", "-netmask", "64")
	c.ok("real", "add", "web6", "[2001:db8::21]:8443", "-weight", "0")
	if _, err := c.b.Apply(context.Background(), fsm.RecordHealth(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), []fsm.HealthTransition{
		{Service: "web", Real: "192.0.2.21:80", State: fsm.HealthUp},
		{Service: "web", Real: "192.0.2.22:80", State: fsm.HealthDown, Reason: "HTTP 503"},
	})); err != nil {
		t.Fatal(err)
	}
}

func TestServiceVerbs(t *testing.T) {
	c := newCLI(t)
	diffText(t, "service list of none", c.ok("service", "list"), "No services.\n")
	diffText(t, "service add", c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-real", "192.0.2.21"),
		"Service \"web\" written (index 1).\n")
	seedPool(t, c)

	diffText(t, "service list", c.ok("service", "list"), `NAME  SERVICE                 SCHEDULER  FORWARDING  REALS  UP  DOWN
dns   udp 192.0.2.53:53       rr         dr          0      0   0
mail  fwmark 7 ipv6           sh         dr          1      0   0
web   tcp 192.0.2.10:80       wrr        dr          3      1   1
web6  tcp [2001:db8::10]:443  wlc        nat         1      0   0
`)
	diffText(t, "service show web", c.ok("service", "show", "web", "-consistent"), `Name        web
Service     tcp 192.0.2.10:80
Scheduler   wrr
Forwarding  dr
Persistent  5m0s
Netmask     /24
Quiescent   yes
Check       http, GET /healthz, status 200,300-399, expect "ok", every 2s, timeout 1s, rise 2, fall 2, initially up
Fallback    127.0.0.1:80
Reals       3 (1 up, 1 down, 1 unknown)

Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight Health  Admin
TCP  192.0.2.10:80 wrr persistent 300 mask 255.255.255.0
  -> 192.0.2.21:80                Route   1      up      enabled
  -> 192.0.2.22:80                Route   1      down    draining  HTTP 503
  -> 192.0.2.23:80                Route   3      unknown enabled
`)
	diffText(t, "service show dns", c.ok("service", "show", "dns"), `Name        dns
Service     udp 192.0.2.53:53
Scheduler   rr
Forwarding  dr
Persistent  no
Quiescent   no
Check       none
Reals       0 (0 up, 0 down, 0 unknown)
`)

	var shown api.ServiceStatus
	if err := json.Unmarshal([]byte(c.ok("service", "show", "-json", "web")), &shown); err != nil {
		t.Fatal(err)
	}
	want, _ := c.b.View().Service("web")
	if got, want := mustJSON(t, shown.Service), mustJSON(t, want); got != want || shown.Health["192.0.2.22:80"].Reason != "HTTP 503" {
		t.Errorf("service show -json:\n%s\nwant\n%s", got, want)
	}
	var list []api.ServiceStatus
	if err := json.Unmarshal([]byte(c.ok("service", "list", "-json")), &list); err != nil || len(list) != 4 {
		t.Errorf("service list -json: %d services, %v", len(list), err)
	}

	diffText(t, "service rm", c.ok("service", "rm", "dns"), "Service \"dns\" removed (index 11).\n")
	if _, ok := c.b.View().Service("dns"); ok {
		t.Errorf("dns still there")
	}
}

func TestServiceAddKeepsReals(t *testing.T) {
	c := newCLI(t)
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-real", "192.0.2.21", "-real", "192.0.2.22")
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-scheduler", "rr")
	if s, _ := c.b.View().Service("web"); len(s.Reals) != 2 || s.Scheduler != "rr" {
		t.Errorf("after a second add without -real: %s", mustJSON(t, s))
	}
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-real", "192.0.2.23")
	if s, _ := c.b.View().Service("web"); len(s.Reals) != 1 {
		t.Errorf("after an add with -real: %s", mustJSON(t, s))
	}
}

func TestRealVerbs(t *testing.T) {
	c := newCLI(t)
	c.ok("service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-forwarding", "nat")
	steps := []struct {
		args []string
		out  string
	}{
		// Flags may follow the arguments.
		{[]string{"real", "add", "web", "192.0.2.21", "-weight", "5", "-upper-threshold", "100", "-lower-threshold", "50"},
			"Real server 192.0.2.21 of \"web\" written (index 2).\n"},
		{[]string{"real", "add", "-weight", "0", "web", "192.0.2.22:8080"}, "Real server 192.0.2.22:8080 of \"web\" written (index 3).\n"},
		{[]string{"real", "weight", "web", "192.0.2.22:8080", "7"}, "Real server 192.0.2.22:8080 of \"web\" set to weight 7 (index 4).\n"},
		{[]string{"real", "drain", "web", "192.0.2.21"}, "Real server 192.0.2.21 of \"web\" is draining (index 5).\n"},
		{[]string{"real", "disable", "web", "192.0.2.22:8080"}, "Real server 192.0.2.22:8080 of \"web\" is disabled (index 6).\n"},
		{[]string{"real", "enable", "web", "192.0.2.22:8080"}, "Real server 192.0.2.22:8080 of \"web\" is enabled (index 7).\n"},
		{[]string{"real", "add", "web", "192.0.2.23", "-admin", "disabled", "-forwarding", "dr"}, "Real server 192.0.2.23 of \"web\" written (index 8).\n"},
		{[]string{"real", "rm", "web", "192.0.2.23:80"}, "Real server 192.0.2.23:80 of \"web\" removed (index 9).\n"},
	}
	for _, s := range steps {
		diffText(t, "troop "+s.args[0]+" "+s.args[1], c.ok(s.args...), s.out)
	}
	got, _ := c.b.View().Service("web")
	want := `[{"address":"192.0.2.21","port":80,"weight":5,"upper_threshold":100,"lower_threshold":50,"admin":"draining"},` +
		`{"address":"192.0.2.22","port":8080,"weight":7,"admin":"enabled"}]`
	if s := mustJSON(t, got.Reals); s != want {
		t.Errorf("reals:\n%s\nwant\n%s", s, want)
	}
	if a := c.b.Log()[1].Actor; a == "" || strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("actor %q, want user@host", a)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
