package director_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// tester is what the helpers need of *testing.T, *testing.B and *rapid.T.
type tester interface {
	Helper()
	Fatalf(format string, args ...any)
	Log(args ...any)
}

// table feeds commands to a real FSM, as the Raft log would, and hands out its frozen states.
type table struct {
	t     tester
	f     *fsm.FSM
	index uint64
}

func newTable(t tester, services ...fsm.Service) *table {
	t.Helper()
	tb := &table{t: t, f: fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil)))}
	if len(services) > 0 {
		tb.apply(fsm.ApplyTable(fsm.Table{Services: services}))
	}
	return tb
}

// apply applies c and returns the services it changed.
func (tb *table) apply(c fsm.Command) []string {
	tb.t.Helper()
	b, err := fsm.EncodeCommand(c)
	if err != nil {
		tb.t.Fatalf("encode %s: %v", c.Op, err)
	}
	tb.index++
	res := tb.f.Apply(tb.index, b)
	if res.Err != nil {
		tb.t.Fatalf("apply %s: %v", c.Op, res.Err)
	}
	return res.Changed
}

func (tb *table) health(service, real string, h fsm.Health) []string {
	tb.t.Helper()
	return tb.apply(fsm.RecordHealth(time.Unix(1e9, 0), []fsm.HealthTransition{{Service: service, Real: real, State: h}}))
}

func (tb *table) state() *fsm.State { return tb.f.View() }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func weight(w int) *int { return &w }

// web is the seed's service: one VIP, two real servers, DR, an HTTP check.
func web() fsm.Service {
	return fsm.Service{
		Name: "web", VIP: addr("192.0.2.10"), Port: 80,
		Check: &fsm.HealthCheck{Type: "http", Path: "/index.html", Expect: "Test Page"},
		Reals: []fsm.Real{
			{Address: addr("192.0.2.21"), Weight: weight(5)},
			{Address: addr("192.0.2.22")},
		},
	}
}

// dns is a UDP service with persistence and a NAT real on another port.
func dns() fsm.Service {
	return fsm.Service{
		Name: "dns", VIP: addr("192.0.2.53"), Port: 53, Protocol: fsm.UDP, Scheduler: "rr",
		Persistence: &fsm.Persistence{Timeout: fsm.Duration(300 * time.Second), Netmask: 24},
		Reals: []fsm.Real{
			{Address: addr("198.51.100.1"), Port: 5353, Forwarding: fsm.NAT, UpperThreshold: 100, LowerThreshold: 10},
		},
	}
}

// fwm is a firewall-mark service over IPv6.
func fwm() fsm.Service {
	return fsm.Service{
		Name: "mark", FWMark: 7, Family: fsm.IPv6, Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHPort, fsm.FlagSHFallback},
		Reals: []fsm.Real{{Address: addr("2001:db8::21"), Forwarding: fsm.TUN, Weight: weight(2)}},
	}
}

// clock is a fake clock the tests move by hand.
type clock struct{ now time.Time }

func newClock() *clock                   { return &clock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time          { return c.now }
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }

// testLogger routes the reconciler's log lines to t.Log.
func testLogger(t tester) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t tester }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// renderDesired prints a desired table in ipvsadm's shape, with the reconciler's annotations.
func renderDesired(ds []director.DesiredService) string {
	var b bytes.Buffer
	for _, d := range ds {
		s := d.Service
		fmt.Fprintf(&b, "%s %s (%s)", s.ServiceKey, s.Scheduler, d.Name)
		for _, f := range s.SchedFlags {
			fmt.Fprintf(&b, " %s", f)
		}
		if s.Persistent {
			fmt.Fprintf(&b, " persistent %d mask %d", s.Timeout, s.Netmask)
		} else {
			fmt.Fprintf(&b, " mask %d", s.Netmask)
		}
		if d.Fallback {
			b.WriteString(" fallback")
		}
		b.WriteString("\n")
		for _, x := range d.Destinations {
			fmt.Fprintf(&b, "  -> %s %s %d", x.DestinationKey, x.Forwarding, x.Weight)
			if x.UpperThreshold != 0 || x.LowerThreshold != 0 {
				fmt.Fprintf(&b, " u%d l%d", x.UpperThreshold, x.LowerThreshold)
			}
			for _, k := range d.Draining {
				if k == x.DestinationKey {
					b.WriteString(" draining")
				}
			}
			b.WriteString("\n")
		}
		for _, k := range d.RemoveNow {
			fmt.Fprintf(&b, "  remove now %s\n", k)
		}
	}
	return b.String()
}

// diffText fails the test with both texts when they differ, line by line.
func diffText(t tester, what, got, want string) {
	t.Helper()
	got, want = strings.TrimSpace(got), strings.TrimSpace(want)
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		mark := "  "
		if strings.TrimRight(g, " ") != strings.TrimRight(w, " ") {
			mark = "! "
		}
		fmt.Fprintf(&b, "%s%-60s | %s\n", mark, g, w)
	}
	if normalizeSpace(got) == normalizeSpace(want) {
		return
	}
	t.Fatalf("%s differs (got | want):\n%s", what, b.String())
}

// normalizeSpace collapses runs of blanks, so column widths do not matter to the comparison.
func normalizeSpace(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// summary prints the non-zero counts of a report, in a fixed order, for diffing.
func summary(r director.Report) string {
	var parts []string
	add := func(name string, n int) {
		if n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", name, n))
		}
	}
	add("services.created", r.Services.Created)
	add("services.updated", r.Services.Updated)
	add("services.removed", r.Services.Removed)
	add("destinations.created", r.Destinations.Created)
	add("destinations.updated", r.Destinations.Updated)
	add("destinations.removed", r.Destinations.Removed)
	add("adopted", r.Adopted)
	add("drift.services_missing", r.Drift.ServicesMissing)
	add("drift.services_changed", r.Drift.ServicesChanged)
	add("drift.destinations_missing", r.Drift.DestinationsMissing)
	add("drift.destinations_changed", r.Drift.DestinationsChanged)
	add("drift.destinations_stray", r.Drift.DestinationsStray)
	add("drains.started", r.DrainsStarted)
	add("drains.finished", r.DrainsFinished)
	add("draining", r.Draining)
	add("errors", r.Errors)
	parts = append(parts, fmt.Sprintf("calls=%d", r.Calls), fmt.Sprintf("writes=%d", r.Writes))
	return strings.Join(parts, " ")
}
