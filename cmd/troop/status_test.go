package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

func TestStatus(t *testing.T) {
	c := newCLI(t)
	seedPool(t, c)
	want := `Node:          a (leader)
Leader:        a (192.0.2.1:9701)
Term:          1
Commit index:  9
Applied index: 9
Table:         4 services, 5 real servers at index 9 (local)

Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight Health  Admin
UDP  192.0.2.53:53 rr
FWM  7 IPv6 sh sh-fallback sh-port
  -> [2001:db8::25]:0             Tunnel  1      unknown enabled
TCP  192.0.2.10:80 wrr persistent 300 mask 255.255.255.0
  -> 192.0.2.21:80                Route   1      up      enabled
  -> 192.0.2.22:80                Route   1      down    draining
  -> 192.0.2.23:80                Route   3      unknown enabled
TCP  [2001:db8::10]:443 wlc persistent 3600 mask 64
  -> [2001:db8::21]:8443          Masq    0      unknown enabled
`
	diffText(t, "status", c.ok("status"), want)

	c.ok("operator", "raft", "transfer-leader", "b")
	out := c.ok("status", "-consistent")
	wantHead := `Node:          a (follower)
Leader:        b (192.0.2.2:9701)
Term:          2
Commit index:  9
Applied index: 9
Table:         4 services, 5 real servers at index 9 (leader-verified)
`
	diffText(t, "status -consistent after a transfer", out[:len(wantHead)], wantHead)

	var js statusJSON
	if err := json.Unmarshal([]byte(c.ok("status", "-json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Status.LeaderID != "b" || js.Status.Services != 4 || js.Status.Reals != 5 || len(js.Services) != 4 || len(js.Status.Peers) != 3 {
		t.Errorf("status -json: %s", mustJSON(t, js))
	}

	// Without a leader the local state is still shown; a consistent read fails.
	c.b.SetLeaderless(true)
	c.ok("status")
	if errOut := c.fails(exitError, "status", "-consistent"); errOut != "Error: consistent read: read index: no leader\n" {
		t.Errorf("status -consistent without a leader: %q", errOut)
	}
}

func TestCountNouns(t *testing.T) {
	for n, want := range map[int]string{0: "0 real servers", 1: "1 real server", 2: "2 real servers"} {
		if got := count(n, "real server"); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// shownDataplane is a director as the API shows it: fixed values, to check the rendering.
type shownDataplane struct {
	status director.Status
	view   []director.KernelService
}

func (d shownDataplane) Status() director.Status { return d.status }

func (d shownDataplane) KernelView() ([]director.KernelService, error) { return d.view, nil }

func TestStatusShowsTheKernel(t *testing.T) {
	rs := func(a string) director.DestinationKey {
		return director.DestinationKey{Address: netip.MustParseAddr(a), Port: 80}
	}
	dest := func(a string, w int, active, inactive uint32) *director.Destination {
		return &director.Destination{DestinationKey: rs(a), Forwarding: fsm.DR, Weight: w, ActiveConns: active, InactiveConns: inactive,
			Stats: director.Stats{CPS: 12, PPSIn: 340}}
	}
	dp := shownDataplane{
		status: director.Status{IPVS: "enabled", Leader: true, VIPs: []string{"192.0.2.10/32 on eth0"}, SyncedIndex: 9, Repairs: 1},
		view: []director.KernelService{
			{Name: "web", Key: "TCP 192.0.2.10:80", Kernel: &director.Service{Scheduler: "wrr", Persistent: true, Timeout: 300},
				Destinations: []director.KernelDestination{
					{Key: "192.0.2.21:80", Desired: dest("192.0.2.21", 1, 0, 0), Kernel: dest("192.0.2.21", 1, 4, 20)},
					{Key: "192.0.2.22:80", Desired: dest("192.0.2.22", 1, 0, 0), Kernel: dest("192.0.2.22", 5, 0, 0), Drift: "weight"},
					{Key: "192.0.2.23:80", Desired: dest("192.0.2.23", 3, 0, 0), Drift: "missing"},
				}},
			{Name: "dns", Key: "UDP 192.0.2.53:53", Drift: "missing"},
		},
	}
	c := newCLIWithDataplane(t, dp)
	seedPool(t, c)
	out := c.ok("status")
	wantDP := "Dataplane:     IPVS enabled; holding 192.0.2.10/32 on eth0; synced at index 9, 1 out-of-band edit repaired\n"
	if !strings.Contains(out, wantDP) {
		t.Errorf("status lacks the dataplane line %q:\n%s", wantDP, out)
	}
	wantKernel := `
Kernel IPVS table (! marks a difference from the table above):
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn CPS    InPPS
TCP 192.0.2.10:80 wrr persistent 300
  -> 192.0.2.21:80                Route   1      4          20        12     340
  -> 192.0.2.22:80                Route   5      0          0         12     340      ! weight (table: 1)
  -> 192.0.2.23:80                -       -      -          -         -      -        ! missing
UDP 192.0.2.53:53  ! missing
`
	if i := strings.Index(out, "\nKernel IPVS table"); i < 0 {
		t.Errorf("status lacks the kernel table:\n%s", out)
	} else {
		diffText(t, "kernel table", out[i:], wantKernel)
	}
	var js statusJSON
	if err := json.Unmarshal([]byte(c.ok("status", "-json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Dataplane == nil || js.Dataplane.Status.Repairs != 1 || len(js.Dataplane.Services) != 2 {
		t.Errorf("status -json dataplane: %+v", js.Dataplane)
	}
}
