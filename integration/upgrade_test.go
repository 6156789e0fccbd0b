package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/integration/lvs"
)

// Issue 7: the pool rolls from an older build (built with -tags troop_protocol1: it lacks the
// newest entry type, set_host_admin) to the current one, one director at a time and the leader
// last, each stopped gracefully and started on the new binary, while the client makes new
// connections without pause and keeps one long-lived connection open. Not one request fails, the
// long-lived connection survives, and the new entry type is refused until every voter runs the
// new build, then accepted.
func TestLVSRollingUpgrade(t *testing.T) {
	oldBin := os.Getenv("TROOP_OLD_BIN")
	if oldBin == "" {
		t.Skip("needs TROOP_OLD_BIN, a troop built with -tags troop_protocol1 (the VM tier builds one)")
	}
	const echoPort = 7000
	table := lvs.WebService("") + lvs.Service("echo", echoPort, "dr", lvs.TCPCheck,
		fmt.Sprintf("%s:%d", lvs.RealAddr(1), echoPort), fmt.Sprintf("%s:%d", lvs.RealAddr(2), echoPort))
	cfg := lvs.Config{Gossip: true}
	newBin := troopBinary(t)
	p := newLVSPoolWith(t, cfg, table, func(p *lvs.Pool) {
		for _, d := range p.Directors() {
			p.SetBinary(d, oldBin)
		}
	})
	for _, r := range p.Reals() {
		if err := p.ServeEcho(r, echoPort); err != nil {
			t.Fatal(err)
		}
	}
	vipPort := fmt.Sprintf("%s:%d", lvs.VIP, echoPort)
	p.waitIPVS(p.leader, vipPort, 10*time.Second, "echo reals up", func(m map[string]int) bool { return len(m) == 2 })

	// The long-lived connection: one line echoed every 100 ms for the whole roll.
	conn, err := p.Dial(p.ctx, vipPort)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoErr := make(chan error, 1)
	stopEcho := make(chan struct{})
	go func() {
		rd := bufio.NewReader(conn)
		for i := 0; ; i++ {
			select {
			case <-stopEcho:
				echoErr <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(conn, "line %d\n", i); err != nil {
				echoErr <- fmt.Errorf("write line %d: %w", i, err)
				return
			}
			reply, err := rd.ReadString('\n')
			if err != nil || !strings.HasSuffix(strings.TrimSpace(reply), fmt.Sprintf("line %d", i)) {
				echoErr <- fmt.Errorf("line %d: %q, %v (the long-lived connection broke)", i, reply, err)
				return
			}
		}
	}()
	load := p.StartLoad(p.ctx, webURL, 20*time.Millisecond, 5*time.Second)

	drain := func(via string) error {
		_, err := p.API(via).SetHostAdmin(p.ctx, netip.MustParseAddr(lvs.RealAddr(2)), fsm.Draining)
		return err
	}
	// The old build cannot even express the new entry.
	if err := drain(p.leader); !errors.Is(err, fsm.ErrInvalid) || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("set_host_admin through an old leader: %v, want a 400 naming the unknown command", err)
	}

	var order []string
	for range p.Directors() {
		// Followers first; the leader once it is the last on the old build.
		var next string
		for _, d := range p.Directors() {
			if !slices.Contains(order, d) && (d != p.leader || len(order) == len(p.Directors())-1) {
				next = d
				break
			}
		}
		wasLeader := next == p.leader
		if err := p.Stop(next, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		if wasLeader {
			// An upgraded director leads now, the old leader is down and still a voter: the new
			// leader's gate refuses the new entry (a server it cannot ask counts as old).
			p.leader = p.waitLeader()
			if err := drain(p.leader); !errors.Is(err, cluster.ErrFeatureUnavailable) {
				t.Fatalf("set_host_admin through the new leader %s with %s not upgraded: %v, want feature unavailable", p.leader, next, err)
			}
		}
		p.SetBinary(next, newBin)
		if err := p.Start(next); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 30*time.Second, next+" ready on the new build", func() error {
			r, err := p.API(next).Ready(p.ctx)
			if err == nil && !r.Ready {
				err = fmt.Errorf("not ready: %s", strings.Join(r.Reasons, "; "))
			}
			return err
		})
		order = append(order, next)
		p.leader = p.waitLeader()
		t.Logf("upgraded %s (leader: %v) — ready %s after its start; the leader is %s", next, wasLeader, took.Round(time.Millisecond), p.leader)
		if wasLeader != (len(order) == len(p.Directors())) {
			t.Errorf("%s was the leader: %v, at step %d of %d (the leader goes last)", next, wasLeader, len(order), len(p.Directors()))
		}
	}
	time.Sleep(time.Second) // traffic on the upgraded pool
	samples := load.Stop()
	close(stopEcho)
	if err := <-echoErr; err != nil {
		t.Error(err)
	}
	var failed []lvs.Sample
	slowest := time.Duration(0)
	for _, s := range samples {
		slowest = max(slowest, s.Took)
		if s.Err != nil {
			failed = append(failed, s)
		}
	}
	t.Logf("rolled %v: %d requests, %d failed, slowest %s; the long-lived connection lived through it", order, len(samples), len(failed), slowest.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed during the roll:\n%s", len(failed), len(samples), describeSamples(failed))
	}

	// Every voter runs the new build: the new entry type is accepted, and IPVS follows it.
	if err := drain(p.leader); err != nil {
		t.Fatalf("set_host_admin on the upgraded pool: %v", err)
	}
	p.waitIPVS(p.leader, lvs.VIP+":80", 10*time.Second, "r2 drained to weight 0", func(m map[string]int) bool {
		w, ok := m[lvs.RealAddr(2)+":80"]
		return ok && w == 0
	})
}
