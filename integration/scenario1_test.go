package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/director/netfake"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/probe"
)

// inProcessDirector is one director assembled from the packages as the agent assembles them,
// with the kernel faked: Raft over TCP on loopback, the FSM, the health checks and their
// committer, the director reconciling a fake IPVS, and the event stream.
type inProcessDirector struct {
	id     string
	node   *cluster.Node
	fsm    *fsm.FSM
	ipvs   *ipvsfake.IPVS
	events *api.Events
}

// startDirectors starts n in-process directors on 127.0.0.1 and stops them when the test ends.
func startDirectors(t *testing.T, n int) []*inProcessDirector {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var peers []cluster.PeerConfig
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, cluster.PeerConfig{ID: fmt.Sprintf("d%d", i+1), Address: l.Addr().String()})
		l.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var out []*inProcessDirector
	for _, p := range peers {
		cfg := cluster.DefaultConfig()
		cfg.NodeID, cfg.BindAddr, cfg.Peers, cfg.Logger = p.ID, p.Address, peers, log
		cfg.DataDir = filepath.Join(t.TempDir(), p.ID)
		f := fsm.New(log)
		node, err := cluster.New(cfg, f)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := probe.NewEngine(probe.Options{Source: f, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		com, err := probe.NewCommitter(probe.CommitterOptions{Engine: eng, Table: node, Applier: node, Leadership: node, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		k := ipvsfake.New()
		addrs := netfake.NewAddresses(nil)
		addrs.AddInterface("eth0", net.HardwareAddr{2, 0, 0, 0, 0, byte(len(out) + 1)})
		dir, err := director.New(director.Config{Interface: "eth0", ReconcileInterval: time.Second},
			director.Deps{FSM: f, Pool: node, IPVS: k, Owned: director.NewOwnership(), Addresses: addrs,
				Announcer: netfake.NewAnnouncer(nil, addrs), Log: log})
		if err != nil {
			t.Fatal(err)
		}
		ev := api.NewEvents(1000, nil)
		feed := ev.FeedHealth(f)
		for _, run := range []func(context.Context){
			func(ctx context.Context) { node.Run(ctx) }, func(ctx context.Context) { eng.Run(ctx) },
			func(ctx context.Context) { com.Run(ctx) }, func(ctx context.Context) { dir.Run(ctx) }, feed,
		} {
			wg.Go(func() { run(ctx) })
		}
		out = append(out, &inProcessDirector{id: p.ID, node: node, fsm: f, ipvs: k, events: ev})
	}
	return out
}

// realServer is an HTTP server on one loopback address that can be stopped and started again.
type realServer struct {
	t    *testing.T
	addr string
	page string
	mu   sync.Mutex
	srv  *http.Server
}

func (rs *realServer) start() {
	rs.t.Helper()
	l, err := net.Listen("tcp", rs.addr)
	if err != nil {
		rs.t.Fatalf("real server %s: %v", rs.addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, rs.page)
	})}
	go srv.Serve(l)
	rs.mu.Lock()
	rs.srv = srv
	rs.mu.Unlock()
}

func (rs *realServer) stop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.srv != nil {
		rs.srv.Close()
		rs.srv = nil
	}
}

// freeLoopbackPort finds a port free on every given loopback address.
func freeLoopbackPort(t *testing.T, hosts ...string) uint16 {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		free := true
		for _, h := range hosts[1:] {
			l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", h, port))
			if err != nil {
				free = false
				break
			}
			l2.Close()
		}
		l.Close()
		if free {
			return uint16(port)
		}
	}
	t.Fatal("no port free on all real-server addresses")
	return 0
}

// served returns "addr:port=weight" of every destination of key in d's fake kernel.
func (d *inProcessDirector) served(key director.ServiceKey) string {
	dests, err := d.ipvs.Destinations(key)
	if err != nil {
		return "error: " + err.Error()
	}
	var out []string
	for _, x := range dests {
		out = append(out, fmt.Sprintf("%s=%d", x.DestinationKey, x.Weight))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// The seed's scenario 1 (a real server goes down and comes back) through every layer but the
// kernel: three directors check two real HTTP servers; the leader commits the verdicts; every
// director's IPVS table follows; the event stream says why.
func TestScenarioRealServerDownAndBack(t *testing.T) {
	ds := startDirectors(t, 3)
	port := freeLoopbackPort(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	rs1 := &realServer{t: t, addr: fmt.Sprintf("127.0.0.2:%d", port), page: "Test Page of www1"}
	rs2 := &realServer{t: t, addr: fmt.Sprintf("127.0.0.3:%d", port), page: "Test Page of www2"}
	sorry := &realServer{t: t, addr: fmt.Sprintf("127.0.0.4:%d", port), page: "Sorry"}
	for _, rs := range []*realServer{rs1, rs2, sorry} {
		rs.start()
		t.Cleanup(rs.stop)
	}
	const interval, fall, rise = 200 * time.Millisecond, 2, 2
	svc := fsm.Service{
		Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: port, Scheduler: "rr",
		Check: &fsm.HealthCheck{Type: "http", Path: "/index.html", Expect: "Test Page",
			Interval: fsm.Duration(interval), Timeout: fsm.Duration(100 * time.Millisecond), Rise: rise, Fall: fall},
		Fallback: &fsm.Fallback{Address: netip.MustParseAddr("127.0.0.4")},
		Reals:    []fsm.Real{{Address: netip.MustParseAddr("127.0.0.2")}, {Address: netip.MustParseAddr("127.0.0.3")}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := leaderOf(t, ds).node.Apply(ctx, fsm.UpsertService(svc)); err != nil {
		t.Fatal(err)
	}
	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: svc.VIP, Port: port}
	r1, r2, fb := rs1.addr, rs2.addr, sorry.addr
	everywhere := func(what, want string) time.Duration {
		t.Helper()
		return waitFor(t, 15*time.Second, what, func() error {
			for _, d := range ds {
				if got := d.served(key); got != want {
					return fmt.Errorf("%s serves %q, want %q", d.id, got, want)
				}
			}
			return nil
		})
	}
	everywhere("both real servers served", r1+"=1 "+r2+"=1")

	// www1's web server stops: it leaves the served set once fall checks in a row failed.
	rs1.stop()
	took := everywhere("www1 removed", r2+"=1")
	t.Logf("www1 down: removed from every director's IPVS %s after it stopped (fall %d × interval %s)", took.Round(time.Millisecond), fall, interval)
	if took < (fall-1)*interval {
		t.Errorf("www1 removed after %s, before %d failed checks could have happened", took, fall)
	}

	// A leader change while www1 is down does not flap it back up.
	leader := leaderOf(t, ds)
	if err := leader.node.TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	newLeader := leaderOf(t, ds)
	time.Sleep(5 * interval) // several check rounds under the new leader
	if h := newLeader.fsm.View().Health("web", r1); h.State != fsm.HealthDown {
		t.Errorf("after a leader change (%s → %s) www1's committed health is %s", leader.id, newLeader.id, h.State)
	}
	for _, d := range ds {
		if got := d.served(key); got != r2+"=1" {
			t.Errorf("after a leader change %s serves %q", d.id, got)
		}
	}

	// It comes back after rise successes.
	rs1.start()
	took = everywhere("www1 back", r1+"=1 "+r2+"=1")
	t.Logf("www1 up: back in every director's IPVS %s after it started (rise %d × interval %s)", took.Round(time.Millisecond), rise, interval)

	// Quiescent: a failed server stays at weight 0 instead of leaving.
	svc.Quiescent = true
	svc.Reals = nil // keep them
	if _, err := newLeader.node.Apply(ctx, fsm.UpsertService(svc)); err != nil {
		t.Fatal(err)
	}
	rs1.stop()
	everywhere("www1 quiesced", r1+"=0 "+r2+"=1")

	// Both down: the fallback server answers.
	rs2.stop()
	everywhere("fallback in", r1+"=0 "+r2+"=0 "+fb+"=1")
	// One back: the fallback leaves.
	rs2.start()
	everywhere("fallback out", r1+"=0 "+r2+"=1")

	// The event stream told each step, with the reason.
	evs, _ := newLeader.events.Since(0)
	var lines []string
	for _, e := range evs {
		lines = append(lines, e.Kind+" "+e.Real+" "+e.Message)
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"health " + r1 + " down: connection refused",
		"health " + r1 + " up: status 200",
		"health " + r2 + " down: connection refused",
		"health " + r2 + " up: status 200",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("events lack %q:\n%s", want, got)
		}
	}
}

// leaderOf waits until the directors agree on a leader and returns it.
func leaderOf(t *testing.T, ds []*inProcessDirector) *inProcessDirector {
	t.Helper()
	var leader *inProcessDirector
	waitFor(t, 10*time.Second, "a leader", func() error {
		leader = nil
		for _, d := range ds {
			if d.node.Status().Role == cluster.Leader {
				leader = d
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}
