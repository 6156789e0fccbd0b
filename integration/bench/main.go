// Command bench measures Troop on this machine and rewrites its section of docs/benchmarks.md.
//
// Raft: three Raft nodes in this process, over TCP on 127.0.0.1 with raft-boltdb on disk (the
// agent's own code path, minus HTTP), apply one small command at a time (latency) and from many
// goroutines at once (throughput). Beside it, in the same run, the floor it cannot beat: one
// bbolt transaction with fsync on the same disk, which the leader and each follower pay once per
// batch of entries.
//
// Reconcile: the IPVS reconciler programming a 10,000 × 10 table into the fake kernel, a full
// comparison with nothing to do, and one-real changes: time, CPU, memory and IPVS calls.
//
// Probe: the health-check engine with the HTTP checker against 1,000 and 10,000 real servers on
// loopback, and Debian's ldirectord checking the same 1,000 (about two and a half minutes;
// -probe-quick runs the 1,000-server rows alone).
//
// Failover: the VM tier's leader-crash and graceful-stop scenarios (real IPVS in Debian's kernel
// under qemu), -failover-runs failovers per kind and Raft profile, as the client sees them, and
// the same for keepalived in the same guest; a PNG of the distributions goes beside -out.
//
// Usage: go run ./integration/bench -out docs/benchmarks.md [-only raft,reconcile,probe,failover] [-failover-runs 20] [-probe-quick]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
	bolt "go.etcd.io/bbolt"
)

func main() {
	if code, child := probeRole(); child {
		os.Exit(code)
	}
	out := flag.String("out", "docs/benchmarks.md", "markdown `file` whose Raft section is rewritten")
	sequential := flag.Int("n", 2000, "sequential applies for the latency figures")
	writers := flag.Int("writers", 64, "concurrent writers for the throughput figure")
	duration := flag.Duration("duration", 5*time.Second, "how long the throughput run lasts")
	failoverRuns := flag.Int("failover-runs", 20, "failovers per kind and profile in the VM, for Troop and for keepalived")
	only := flag.String("only", "", "comma-separated `sections` to run (raft, reconcile, probe, failover); default all")
	probeQuick := flag.Bool("probe-quick", false, "probe section: only the 1,000-server row and ldirectord's beside it")
	flag.Parse()
	var sections []string
	if *only != "" {
		sections = strings.Split(*only, ",")
	}
	if err := run(*out, sections, *sequential, *writers, *duration, *failoverRuns, *probeQuick); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(out string, only []string, n, writers int, duration time.Duration, failoverRuns int, probeQuick bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	sections := []struct {
		name  string
		bench func() (string, error)
	}{
		{"raft", func() (string, error) { return benchRaft(ctx, n, writers, duration) }},
		{"reconcile", benchReconcile},
		{"probe", func() (string, error) { return benchProbe(probeQuick) }},
		{"failover", func() (string, error) {
			return benchFailover(ctx, failoverRuns, filepath.Join(filepath.Dir(out), "failover.png"))
		}},
		{"table", func() (string, error) { return benchTable(ctx) }},
	}
	for _, sec := range sections {
		if len(only) > 0 && !slices.Contains(only, sec.name) {
			continue
		}
		body, err := sec.bench()
		if err != nil {
			return fmt.Errorf("%s: %w", sec.name, err)
		}
		if err := writeSection(out, sec.name, body); err != nil {
			return err
		}
	}
	return nil
}

// benchRaft measures Raft applies on three in-process nodes beside the fsync floor.
func benchRaft(ctx context.Context, n, writers int, duration time.Duration) (string, error) {
	dir, err := os.MkdirTemp("", "troop-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)

	fsyncLat, err := measureFsync(filepath.Join(dir, "floor.db"), n)
	if err != nil {
		return "", fmt.Errorf("fsync floor: %w", err)
	}
	p, err := startPool(ctx, dir)
	if err != nil {
		return "", err
	}
	defer p.stop()
	seq, err := p.sequential(ctx, n)
	if err != nil {
		return "", fmt.Errorf("sequential applies: %w", err)
	}
	fwd, err := p.forwarded(ctx, n/4)
	if err != nil {
		return "", fmt.Errorf("forwarded applies: %w", err)
	}
	tput, err := p.throughput(ctx, writers, duration)
	if err != nil {
		return "", fmt.Errorf("throughput: %w", err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Raft apply (three nodes, TCP loopback, raft-boltdb)\n\n")
	fmt.Fprintf(&b, "Measured %s on %s; %s, %s, %d CPUs, kernel %s. `make bench` rewrites this section.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostname(), cpuModel(), runtime.Version(), runtime.NumCPU(), kernel())
	fmt.Fprintf(&b, "Three `cluster.Node`s in one process over TCP on 127.0.0.1, each with raft-boltdb and file snapshots in a temp dir, default timing (heartbeat %s). Each apply is one `set_weight` command, committed and applied by the leader's FSM. The floor is one bbolt write transaction with fsync on the same disk, measured in the same run: a commit needs at least the leader's and one follower's.\n\n", cluster.DefaultHeartbeatTimeout)
	b.WriteString("| measurement | n | p50 | p99 | max | vs. fsync floor (p50) |\n|---|---|---|---|---|---|\n")
	row := func(name string, lat []time.Duration) {
		q := quantiles(lat)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1f× |\n", name, len(lat), ms(q.p50), ms(q.p99), ms(q.max), float64(q.p50)/float64(quantiles(fsyncLat).p50))
	}
	row("bbolt write + fsync (floor)", fsyncLat)
	row("apply on the leader, one at a time", seq)
	row("apply on a follower (forwarded), one at a time", fwd)
	fmt.Fprintf(&b, "\nThroughput: %d writers applying concurrently on the leader for %s: **%.0f applies/s** (%d applies; Raft batches concurrent entries into one disk write).\n",
		writers, duration, float64(tput.count)/tput.elapsed.Seconds(), tput.count)
	return b.String(), nil
}

// pool is three in-process Raft nodes over TCP loopback.
type pool struct {
	nodes  []*cluster.Node
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startPool(ctx context.Context, dir string) (*pool, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	var peers []cluster.PeerConfig
	for i, port := range ports {
		peers = append(peers, cluster.PeerConfig{ID: fmt.Sprintf("b%d", i+1), Address: port})
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &pool{cancel: cancel}
	for i, peer := range peers {
		cfg := cluster.DefaultConfig()
		cfg.NodeID, cfg.BindAddr, cfg.Peers, cfg.Logger = peer.ID, peer.Address, peers, log
		cfg.DataDir = filepath.Join(dir, peer.ID)
		node, err := cluster.New(cfg, fsm.New(log))
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		p.nodes = append(p.nodes, node)
		p.wg.Go(func() { node.Run(runCtx) })
	}
	// One service with one real: every measured command changes its weight.
	svc := fsm.Service{Name: "bench", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80,
		Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}}}
	if err := p.apply(ctx, p.nodes[0], fsm.UpsertService(svc)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *pool) stop() {
	p.cancel()
	p.wg.Wait()
}

func (p *pool) apply(ctx context.Context, n *cluster.Node, c fsm.Command) error {
	res, err := n.Apply(ctx, c)
	if err == nil {
		err = res.Err
	}
	return err
}

func (p *pool) leader() (leader, follower *cluster.Node) {
	for _, n := range p.nodes {
		if n.Status().Role == cluster.Leader {
			leader = n
		} else {
			follower = n
		}
	}
	return leader, follower
}

func (p *pool) timed(ctx context.Context, n *cluster.Node, count int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, count)
	for i := range count {
		start := time.Now()
		if err := p.apply(ctx, n, fsm.SetWeight("bench", "192.0.2.21:80", i%100)); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

func (p *pool) sequential(ctx context.Context, count int) ([]time.Duration, error) {
	leader, _ := p.leader()
	if leader == nil {
		return nil, errors.New("no leader")
	}
	return p.timed(ctx, leader, count)
}

func (p *pool) forwarded(ctx context.Context, count int) ([]time.Duration, error) {
	_, follower := p.leader()
	return p.timed(ctx, follower, count)
}

type throughputResult struct {
	count   int64
	elapsed time.Duration
}

func (p *pool) throughput(ctx context.Context, writers int, d time.Duration) (throughputResult, error) {
	leader, _ := p.leader()
	if leader == nil {
		return throughputResult{}, errors.New("no leader")
	}
	var count atomic.Int64
	var firstErr atomic.Value
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; runCtx.Err() == nil; i++ {
				if err := p.apply(ctx, leader, fsm.SetWeight("bench", "192.0.2.21:80", (w+i)%100)); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return throughputResult{}, err
	}
	return throughputResult{count: count.Load(), elapsed: time.Since(start)}, nil
}

// measureFsync times n bbolt write transactions, each fsynced, on the disk the pool uses.
func measureFsync(path string, n int) ([]time.Duration, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	lat := make([]time.Duration, 0, n)
	val := bytes.Repeat([]byte("x"), 128)
	for i := range n {
		start := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			return b.Put(fmt.Appendf(nil, "%020d", i), val)
		})
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

type quantileSet struct{ p50, p99, max time.Duration }

func quantiles(lat []time.Duration) quantileSet {
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return quantileSet{p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
