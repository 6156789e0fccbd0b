package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestHandBackTarget(t *testing.T) {
	voter := func(id string) raft.Server {
		return raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":7946"), Suffrage: raft.Voter}
	}
	director := func(last uint64) *nodeInfo { return &nodeInfo{LastIndex: last} }
	witness := &nodeInfo{Witness: true, LastIndex: 99}
	nonvoter := voter("nv")
	nonvoter.Suffrage = raft.Nonvoter
	for _, tc := range []struct {
		name  string
		peers []peerInfo
		want  string // "" = none
	}{
		{"the most up-to-date director", []peerInfo{{voter("w"), nil}, {voter("a"), director(5)}, {voter("b"), director(7)}}, "b"},
		{"ties go to the smallest ID", []peerInfo{{voter("c"), director(7)}, {voter("b"), director(7)}}, "b"},
		{"never a witness, however up to date", []peerInfo{{voter("w2"), witness}, {voter("a"), director(1)}}, "a"},
		{"never a director that did not answer", []peerInfo{{voter("a"), nil}, {voter("b"), director(1)}}, "b"},
		{"never a non-voter", []peerInfo{{nonvoter, director(9)}, {voter("a"), director(1)}}, "a"},
		{"never itself", []peerInfo{{voter("w"), director(9)}}, ""},
		{"no director answers", []peerInfo{{voter("a"), nil}, {voter("w2"), witness}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := handBackTarget("w", tc.peers)
			if tc.want == "" {
				if ok {
					t.Fatalf("chose %s, want none", got.ID)
				}
				return
			}
			if !ok || string(got.ID) != tc.want {
				t.Fatalf("chose %q (ok %v), want %s", got.ID, ok, tc.want)
			}
		})
	}
}

// A witness made leader hands leadership to a director within moments, and says it is a witness.
func TestWitnessHandsLeadershipBack(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{config: func(cfg *Config) { cfg.Witness = cfg.NodeID == "n3" }})
	w := c.nodes["n3"]
	if !w.Status().Witness || c.nodes["n1"].Status().Witness {
		t.Fatalf("Status().Witness: n3 %v, n1 %v; want true, false", w.Status().Witness, c.nodes["n1"].Status().Witness)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	watch := w.WatchLeadership(ctx)
	for range 3 {
		// The witness stands in elections like any voter and may win one (the pool's first, under
		// load); it must hand over within moments.
		l := c.leader(5 * time.Second)
		for deadline := time.Now().Add(2 * time.Second); l == w && time.Now().Before(deadline); l = c.leader(5 * time.Second) {
			time.Sleep(10 * time.Millisecond)
		}
		if l == w {
			t.Fatal("the witness keeps leading the pool")
		}
		// transferLeader, not TransferLeadership: the latter waits to see the witness lead, which
		// it does only for moments.
		term := l.Status().Term
		start := time.Now()
		if err := l.transferLeader(l.raft.Load(), "n3"); err != nil {
			t.Fatalf("transfer to the witness: %v", err)
		}
		// Values coalesce, and the witness may lead for too short a time to be seen leading; two
		// new terms (the witness's, then a director's) show that it led and handed over.
		waitLeadership(t, watch, func(l Leadership) bool {
			return !l.IsLeader && l.Term >= term+2 && l.LeaderID != "" && l.LeaderID != w.ID()
		})
		took := time.Since(start)
		if got := c.leader(5 * time.Second); got == w {
			t.Fatal("the witness leads again")
		} else {
			t.Logf("the witness handed leadership to %s within %s", got.ID(), took.Round(time.Millisecond))
		}
		if took > 2*time.Second {
			t.Errorf("the witness took %s to hand leadership back", took)
		}
	}
}

// A witness with no director to hand over to stays leader, so the table stays writable; once a
// director is back it hands leadership over.
func TestWitnessLeadsWhenNoDirectorIs(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 3, clusterOpts{config: func(cfg *Config) { cfg.Witness = cfg.NodeID != "n1" }})
	n1Leads := func() bool { return c.nodes["n1"].Status().Role == Leader }
	if err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, n1Leads); err != nil {
		t.Fatalf("the only director n1 does not lead: %s", c.describe())
	}
	c.stop("n1")
	l := c.leader(10 * time.Second)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := l.Apply(ctx, upsert(1)); err != nil {
		t.Fatalf("write with only witnesses up: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if c.leader(time.Second) != l {
		t.Fatalf("the witness %s gave up leadership with no director to take it", l.ID())
	}
	c.start("n1", nil)
	if err := poll(ctxTimeout(t, 10*time.Second), 10*time.Millisecond, n1Leads); err != nil {
		t.Fatalf("the director n1 came back but does not lead: %s", c.describe())
	}
}
