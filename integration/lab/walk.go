package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/troop-lb/troop/integration/lvs"
)

// walkConfig is what the walkthrough needs from the command line.
type walkConfig struct {
	troop string // static or not: it runs on this kernel
	keep  bool   // leave the pool running afterwards
	where string // for the report
}

const pageURL = "http://" + lvs.VIP + "/index.html"

// The kernel's names for the service and its destinations, as `ipvsadm -Ln` prints them.
var (
	vipPort   = lvs.VIP + ":80"
	r1Dest    = lvs.RealAddr(1) + ":80"
	r2Dest    = lvs.RealAddr(2) + ":80"
	sorryDest = lvs.FallbackAddr + ":80"
)

// labTable is the seed's service with the sorry server as its fallback.
var labTable = lvs.WebService(lvs.FallbackBlock)

// lab is one walkthrough: the pool, where its output goes and what the report will say.
type lab struct {
	ctx    context.Context
	p      *lvs.Pool
	out    io.Writer
	start  time.Time
	leader string
	rep    report
}

// walkthrough builds the pool, runs the seed's scenarios on it with commentary on out, prints
// the report and removes the pool (unless cfg.keep and all went well). It fails on any error and
// when something did not behave as it should (the report lists what).
func walkthrough(ctx context.Context, cfg walkConfig, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	l := &lab{ctx: ctx, out: out, start: time.Now(), rep: report{where: cfg.where}}
	dir, err := os.MkdirTemp("", "troop-lab-")
	if err != nil {
		return err
	}
	l.heading("Building the topology: a bridge; directors d1 d2 d3; real servers r1 r2; the sorry server; a client")
	p, err := lvs.New(ctx, lvs.Config{Bin: cfg.troop, Dir: dir, Gossip: true, Log: &indent{w: out, prefix: "   · "}})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	l.p = p
	l.say("one network namespace each (%s-*), addresses 192.0.2.0/24, VIP %s; agent logs in %s", p.Prefix(), lvs.VIP, dir)
	kept := false
	defer func() {
		if kept {
			return
		}
		if err != nil {
			l.dumpLogs()
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				err = errors.New("interrupted")
			}
		}
		fmt.Fprintf(out, "\nremoving the pool: agents, servers, namespaces %s-*, %s\n", p.Prefix(), dir)
		p.Close()
		os.RemoveAll(dir)
	}()
	for _, step := range []func() error{l.startPool, l.applyTable, l.firstLook, l.scenario1, l.scenario2} {
		if err := step(); err != nil {
			return err
		}
	}
	l.rep.total = time.Since(l.start)
	l.heading("Report")
	io.WriteString(out, l.rep.String())
	if len(l.rep.surprises) > 0 {
		return fmt.Errorf("%d thing(s) did not behave as they should (listed above)", len(l.rep.surprises))
	}
	if cfg.keep {
		if err := l.keepRunning(dir); err != nil {
			return err
		}
		kept = true
	}
	return nil
}

func (l *lab) heading(format string, args ...any) {
	fmt.Fprintf(l.out, "\n[%5.1fs] == %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

func (l *lab) say(format string, args ...any) {
	fmt.Fprintf(l.out, "   %s\n", fmt.Sprintf(format, args...))
}

// expect records a surprise (and says so at once) unless ok.
func (l *lab) expect(ok bool, format string, args ...any) {
	if !ok {
		msg := fmt.Sprintf(format, args...)
		l.rep.surprises = append(l.rep.surprises, msg)
		l.say("✗ UNEXPECTED: %s", msg)
	}
}

func (l *lab) startPool() error {
	l.heading("Starting the agents (troop agent in d1 d2 d3, Raft with the agent's default timing)")
	t0 := time.Now()
	if err := l.p.StartAll(); err != nil {
		return err
	}
	leader, err := l.p.WaitLeader(l.ctx, 30*time.Second)
	if err != nil {
		return err
	}
	l.leader = leader
	l.rep.elected = time.Since(t0)
	l.say("leader: %s, agreed by all three %s after the start", leader, round(l.rep.elected))
	for _, r := range append(l.p.Reals(), lvs.FallbackName) {
		if err := l.p.PrepareReal(l.ctx, r, lvs.VIP); err != nil {
			return err
		}
		if err := l.p.Serve(r, 80); err != nil {
			return err
		}
	}
	l.say("r1, r2 and sorry ran `troop realserver setup -vip %s` (LVS-DR real servers) and answer \"Test Page from NAME\"", lvs.VIP)
	return nil
}

func (l *lab) applyTable() error {
	via := l.follower()
	l.heading("Applying the seed's table through the follower %s (`troop apply`; the leader %s commits it)", via, l.leader)
	fmt.Fprint(&indent{w: l.out, prefix: "   | "}, labTable)
	t0 := time.Now()
	if err := l.p.Apply(l.ctx, via, labTable); err != nil {
		return err
	}
	for _, d := range l.p.Directors() {
		if _, _, err := l.waitDests(d, 20*time.Second, both); err != nil {
			return fmt.Errorf("the table on %s: %w", d, err)
		}
	}
	l.rep.programmed = time.Since(t0)
	l.say("all three directors have r1 and r2 in their own kernel's IPVS %s after the apply: the followers stand by hot",
		round(l.rep.programmed))
	return nil
}

func (l *lab) firstLook() error {
	l.heading("troop members on %s (gossip, encrypted with the pool's key, next to Raft)", l.leader)
	out, err := l.p.Exec(l.ctx, lvs.ClientName, l.p.Bin(), "members", "-address", "http://"+l.p.Node(l.leader).Addr+":9700")
	if err != nil {
		return fmt.Errorf("troop members: %w", err)
	}
	fmt.Fprint(&indent{w: l.out, prefix: "   | "}, out)
	l.heading("ipvsadm -Ln on the leader %s (the kernel's own account)", l.leader)
	if err := l.showIPVS(l.leader); err != nil {
		return err
	}
	l.heading("10 requests to %s from the client, each on a new connection", pageURL)
	var seen []string
	for i := 1; i <= 10; i++ {
		t0 := time.Now()
		server, err := l.get()
		if err != nil {
			l.say("%2d  failed: %v", i, err)
			continue
		}
		seen = append(seen, server)
		l.say("%2d  %-5s %s", i, server, round(time.Since(t0)))
	}
	l.expect(alternates(seen, "r1", "r2"), "round robin should alternate r1 and r2; got %v", seen)
	return nil
}

func (l *lab) scenario1() error {
	l.heading("Scenario 1: a real server goes down and comes back (the seed's \"real server down/up\")")
	l.say("the health check: GET /index.html expecting \"Test Page\", every 500 ms, 2 failures to fail, 2 successes to rise")
	if err := l.p.StopServing("r1", 80); err != nil {
		return err
	}
	took, _, err := l.waitDests(l.leader, 15*time.Second, func(m map[string]int) bool { return sameDests(m, r2Dest) })
	if err != nil {
		return fmt.Errorf("r1 leaving IPVS: %w", err)
	}
	l.rep.realDown = took
	l.say("+%s  r1 (%s) left the leader's IPVS table:", round(took), r1Dest)
	if err := l.showIPVS(l.leader); err != nil {
		return err
	}
	got := l.requests(6)
	l.expect(only(got, "r2"), "with r1 down only r2 should answer; got %v", got)

	l.say("")
	l.say("and r2 too: no real server is left")
	if err := l.p.StopServing("r2", 80); err != nil {
		return err
	}
	took, _, err = l.waitDests(l.leader, 15*time.Second, func(m map[string]int) bool { return sameDests(m, sorryDest) })
	if err != nil {
		return fmt.Errorf("the sorry server coming in: %w", err)
	}
	l.rep.fallbackIn = took
	l.say("+%s  the sorry server (%s) is the only destination", round(took), sorryDest)
	got = l.requests(4)
	l.expect(only(got, lvs.FallbackName), "with both reals down only the sorry server should answer; got %v", got)

	l.say("")
	l.say("both come back")
	for _, r := range l.p.Reals() {
		if err := l.p.Serve(r, 80); err != nil {
			return err
		}
	}
	took, _, err = l.waitDests(l.leader, 15*time.Second, both)
	if err != nil {
		return fmt.Errorf("r1 and r2 coming back: %w", err)
	}
	l.rep.realsBack = took
	l.say("+%s  r1 and r2 are back in IPVS and the sorry server is out:", round(took))
	if err := l.showIPVS(l.leader); err != nil {
		return err
	}
	got = l.requests(6)
	l.expect(alternates(got, "r1", "r2"), "after the reals came back r1 and r2 should alternate; got %v", got)
	return nil
}

func (l *lab) scenario2() error {
	old := l.leader
	l.heading("Scenario 2: the leader %s dies and comes back (the seed's \"master director down/up\")", old)
	oldMAC, err := l.p.MAC(old)
	if err != nil {
		return err
	}
	watch, err := l.p.WatchAddr(l.ctx, lvs.VIP, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer watch.Stop()
	// 3 s per request: a SYN lost during the switch is retransmitted after 1 s.
	load := l.p.StartLoad(l.ctx, pageURL, 20*time.Millisecond, 3*time.Second)
	defer load.Stop()
	l.say("the client pings the VIP every 10 ms, noting the MAC that answers (%s's is %s), and fetches the page every 20 ms", old, oldMAC)
	if err := sleep(l.ctx, 500*time.Millisecond); err != nil {
		return err
	}
	l.say("%s's host crashes: its link is cut and its agent SIGKILLed", old)
	t0 := time.Now()
	if err := l.p.Crash(l.ctx, old); err != nil {
		return err
	}
	leader, err := l.p.WaitLeader(l.ctx, 15*time.Second)
	if err != nil {
		return err
	}
	l.leader = leader
	l.rep.newLeader = time.Since(t0)
	newMAC, err := l.p.MAC(leader)
	if err != nil {
		return err
	}
	l.say("+%s  %s is the new leader (both survivors agree)", round(l.rep.newLeader), leader)
	if err := l.waitFor(5*time.Second, func() bool { return answered(watch.Replies(), newMAC) }); err != nil {
		return fmt.Errorf("%s's MAC %s never answered the client's pings: %w", leader, newMAC, err)
	}
	if err := sleep(l.ctx, time.Second); err != nil { // traffic after the switch
		return err
	}
	replies := watch.Stop()
	samples := load.Stop()
	if l.rep.outage, err = lvs.Outage(replies, oldMAC, newMAC); err != nil {
		return err
	}
	l.say("the VIP answered the pings from %s's MAC until the crash and from %s's (%s) after: client-visible outage %s",
		old, leader, newMAC, l.rep.outage.Round(time.Millisecond))
	l.rep.failoverRequests = len(samples)
	var slowest time.Duration
	for _, s := range samples {
		if s.Err != nil {
			l.rep.failoverFailed++
		}
		slowest = max(slowest, s.Took)
	}
	l.say("page fetches meanwhile: %d made, %d failed, the slowest took %s", len(samples), l.rep.failoverFailed, round(slowest))
	l.expect(l.rep.outage < 5*time.Second, "the outage should stay well under 5 s; it was %s", l.rep.outage)

	l.say("")
	l.say("ipvsadm -Ln on the new leader %s:", leader)
	if err := l.showIPVS(leader); err != nil {
		return err
	}
	got := l.requests(6)
	l.expect(alternates(got, "r1", "r2"), "the new leader should alternate r1 and r2; got %v", got)

	l.say("")
	l.say("%s comes back: a fresh namespace (an empty kernel, as after a reboot), then its agent", old)
	t1 := time.Now()
	if err := l.p.Reboot(l.ctx, old); err != nil {
		return err
	}
	if err := l.p.Start(old); err != nil {
		return err
	}
	role := ""
	err = l.waitFor(30*time.Second, func() bool {
		st, err := l.p.Status(l.ctx, old)
		role = string(st.Role)
		if err != nil || role != "follower" {
			return false
		}
		m, err := l.p.Dests(l.ctx, old, vipPort)
		return err == nil && both(m)
	})
	if err != nil {
		return fmt.Errorf("%s rejoining (role %q): %w", old, role, err)
	}
	l.rep.rejoined = time.Since(t1)
	now, err := l.p.WaitLeader(l.ctx, 10*time.Second)
	if err != nil {
		return err
	}
	holders := l.p.Holders(lvs.VIP)
	l.say("+%s  %s is a follower again, with the table in its IPVS; the leader is %s, the VIP is on %v",
		round(l.rep.rejoined), old, now, holders)
	l.expect(now == leader, "the leader should stay %s when %s returns; it is %s", leader, old, now)
	l.expect(slices.Equal(holders, []string{leader}), "only %s should hold the VIP; %v do", leader, holders)
	return nil
}

// follower is a director that is not the leader.
func (l *lab) follower() string {
	for _, d := range l.p.Directors() {
		if d != l.leader {
			return d
		}
	}
	return ""
}

// get fetches the page once, counting it for the report.
func (l *lab) get() (string, error) {
	server, err := l.p.Get(l.ctx, pageURL, 2*time.Second)
	l.rep.requests++
	if err != nil {
		l.rep.failed++
	}
	return server, err
}

// requests fetches the page n times, prints who answered each and returns the answers ("✗"
// for a failed request).
func (l *lab) requests(n int) []string {
	var got []string
	for range n {
		server, err := l.get()
		if err != nil {
			server = "✗"
		}
		got = append(got, server)
	}
	l.say("%d requests answered by: %s", n, strings.Join(got, " "))
	return got
}

// showIPVS prints `ipvsadm -Ln` on director.
func (l *lab) showIPVS(director string) error {
	out, err := l.p.IPVS(l.ctx, director)
	if err != nil {
		return err
	}
	fmt.Fprint(&indent{w: l.out, prefix: "   | "}, out)
	return nil
}

// waitDests polls director's IPVS until cond holds for the service's destinations and returns
// how long that took.
func (l *lab) waitDests(director string, timeout time.Duration, cond func(map[string]int) bool) (time.Duration, map[string]int, error) {
	start := time.Now()
	var last map[string]int
	err := l.waitFor(timeout, func() bool {
		m, err := l.p.Dests(l.ctx, director, vipPort)
		if err != nil {
			return false
		}
		last = m
		return cond(m)
	})
	if err != nil {
		return 0, last, fmt.Errorf("%s's IPVS has %v for %s: %w", director, last, vipPort, err)
	}
	return time.Since(start), last, nil
}

// waitFor polls cond every 25 ms for up to timeout.
func (l *lab) waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		if err := sleep(l.ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// dumpLogs prints the end of each agent's log, for a walkthrough that failed.
func (l *lab) dumpLogs() {
	for _, d := range l.p.Directors() {
		b, err := os.ReadFile(filepath.Join(l.p.Dir(), d+".log"))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintf(l.out, "--- %s agent log (last lines) ---\n", d)
		fmt.Fprintln(l.out, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// both is the healthy table: r1 and r2 at weight 1, nothing else.
func both(m map[string]int) bool { return sameDests(m, r1Dest, r2Dest) }

// sameDests reports whether m holds exactly dests, each at weight 1.
func sameDests(m map[string]int, dests ...string) bool {
	if len(m) != len(dests) {
		return false
	}
	for _, d := range dests {
		if m[d] != 1 {
			return false
		}
	}
	return true
}

// alternates reports whether got takes turns between a and b (starting with either), as round
// robin over two servers does.
func alternates(got []string, a, b string) bool {
	if len(got) < 2 {
		return false
	}
	for i, s := range got {
		if (s != a && s != b) || (i > 0 && s == got[i-1]) {
			return false
		}
	}
	return true
}

// only reports whether every answer in got is name.
func only(got []string, name string) bool {
	for _, s := range got {
		if s != name {
			return false
		}
	}
	return len(got) > 0
}

// answered reports whether mac answered any ping.
func answered(replies []lvs.Reply, mac string) bool {
	return slices.ContainsFunc(replies, func(r lvs.Reply) bool { return r.MAC == mac })
}

func round(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// indent prefixes every line written through it.
type indent struct {
	w      io.Writer
	prefix string
	mid    bool // inside a line
}

func (in *indent) Write(b []byte) (int, error) {
	var buf bytes.Buffer
	for rest := b; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if !in.mid {
			if i == 0 { // an empty line gets no trailing blanks
				buf.WriteString(strings.TrimRight(in.prefix, " "))
			} else {
				buf.WriteString(in.prefix)
			}
			in.mid = true
		}
		if i < 0 {
			buf.Write(rest)
			break
		}
		buf.Write(rest[:i+1])
		rest = rest[i+1:]
		in.mid = false
	}
	_, err := in.w.Write(buf.Bytes())
	return len(b), err
}
