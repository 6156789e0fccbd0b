package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	labVIP4 = "192.0.2.100"
	labVIP6 = "2001:db8::100"
)

// directorLab is three directors and a client on one bridge, each director running an agent.
type directorLab struct {
	*lab
	bin    string
	agents map[string]*agentProc
}

type agentProc struct {
	cmd *os.Process
	log string
}

func newDirectorLab(t *testing.T) *directorLab {
	t.Helper()
	l := &directorLab{lab: newLab(t), bin: troopBinary(t), agents: map[string]*agentProc{}}
	for i := 1; i <= 3; i++ {
		l.add(fmt.Sprintf("d%d", i), fmt.Sprintf("192.0.2.%d/24", i), fmt.Sprintf("2001:db8::%d/64", i))
	}
	l.add("client", "192.0.2.200/24", "2001:db8::200/64")
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("d%d", i)
		cfg := filepath.Join(dir, node+".hcl")
		if err := os.WriteFile(cfg, []byte(directorConfig(filepath.Join(dir, node), i)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := l.start(node, node+".log", l.bin, "agent", "-config", cfg)
		l.agents[node] = &agentProc{cmd: cmd.Process}
	}
	return l
}

// askVIP asks, from the client, the agent answering on the VIP who it is. It returns "" when
// nobody answers.
func (l *directorLab) askVIP(vip string) string {
	host := vip
	if strings.Contains(vip, ":") {
		host = "[" + vip + "]"
	}
	out, err := l.try("client", l.bin, "status", "-json", "-address", "http://"+host+":9700")
	if err != nil {
		return ""
	}
	var st struct {
		Status struct {
			ID string `json:"id"`
		} `json:"status"`
	}
	if json.Unmarshal([]byte(out), &st) != nil {
		return ""
	}
	return st.Status.ID
}

// holders lists the directors whose eth0 holds vip.
func (l *directorLab) holders(vip string, nodes []string) []string {
	var out []string
	for _, n := range nodes {
		if l.holds(n, vip) {
			out = append(out, n)
		}
	}
	return out
}

func (l *directorLab) leaderOf(node string) string {
	out, err := l.try(node, l.bin, "status", "-json", "-address", "http://127.0.0.1:9700")
	if err != nil {
		return ""
	}
	var st struct {
		Status struct {
			LeaderID string `json:"leader_id"`
		} `json:"status"`
	}
	json.Unmarshal([]byte(out), &st)
	return st.Status.LeaderID
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not true after %s: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The seed's scenario 2 in VIP-only mode on the host kernel: exactly one director (the Raft
// leader) holds the VIPs and answers on them; when it dies (SIGKILL and its link cut) the VIPs
// move, and the client's neighbour entries follow the gratuitous ARP / unsolicited NA of the new
// leader without the client sending anything.
func TestDirectorsMoveTheVIP(t *testing.T) {
	l := newDirectorLab(t)
	all := []string{"d1", "d2", "d3"}
	var leader string
	waitFor(t, 20*time.Second, "a leader", func() error {
		if leader = l.leaderOf("d1"); leader == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	table := filepath.Join(t.TempDir(), "table.hcl")
	os.WriteFile(table, []byte(fmt.Sprintf(`
service "web" {
  vip  = %q
  port = 80
  real "192.0.2.21" {}
}
service "web6" {
  vip  = %q
  port = 80
  real "2001:db8::21" {}
}
`, labVIP4, labVIP6)), 0o644)
	if out, err := l.try("d1", l.bin, "apply", "-f", table, "-address", "http://127.0.0.1:9700"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}

	for _, vip := range []string{labVIP4, labVIP6} {
		waitFor(t, 10*time.Second, "exactly the leader holds "+vip, func() error {
			if h := l.holders(vip, all); !slices.Equal(h, []string{leader}) {
				return fmt.Errorf("held by %v, leader %s", h, leader)
			}
			return nil
		})
		// The client reaches the VIP, and reaches the leader there.
		waitFor(t, 10*time.Second, "client reaches the leader on "+vip, func() error {
			if who := l.askVIP(vip); who != leader {
				return fmt.Errorf("%s answered", who)
			}
			return nil
		})
		if mac := l.neighbour("client", vip); mac != l.mac(leader) {
			t.Fatalf("client's neighbour entry for %s is %q, want the leader's %s", vip, mac, l.mac(leader))
		}
	}

	// The leader's host dies: process killed, link cut.
	oldMAC := l.mac(leader)
	died := time.Now()
	l.agents[leader].cmd.Signal(syscall.SIGKILL)
	l.in(l.ns(leader), "ip", "link", "set", "eth0", "down")
	var rest []string
	for _, n := range all {
		if n != leader {
			rest = append(rest, n)
		}
	}
	var newLeader string
	for _, vip := range []string{labVIP4, labVIP6} {
		took := waitFor(t, 15*time.Second, "the VIP "+vip+" moves to one survivor", func() error {
			h := l.holders(vip, rest)
			if len(h) != 1 {
				return fmt.Errorf("held by %v", h)
			}
			newLeader = h[0]
			return nil
		})
		// Without the client sending anything, its neighbour entry now names the new holder.
		waitFor(t, 10*time.Second, "client's neighbour entry for "+vip+" follows", func() error {
			mac := l.neighbour("client", vip)
			if mac == oldMAC || mac != l.mac(newLeader) {
				return fmt.Errorf("entry %q (old leader %s, new %s)", mac, oldMAC, l.mac(newLeader))
			}
			return nil
		})
		t.Logf("%s: held by %s %s after the crash was noticed; client's entry updated by %s after the kill",
			vip, newLeader, took.Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
		if who := l.askVIP(vip); who != newLeader {
			t.Errorf("client asking %s reached %q, want %s", vip, who, newLeader)
		}
	}
	if got := l.leaderOf(rest[0]); got != newLeader {
		t.Errorf("the VIP holder %s is not the Raft leader %s", newLeader, got)
	}
}
