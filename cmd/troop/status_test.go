package main

import (
	"encoding/json"
	"testing"
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
