package cluster

import (
	"testing"
	"time"

	"github.com/troop-lb/troop/cluster/serialtest"
)

// Issue 6 (b) in one process: two directors share a serial link; cutting the network between
// them makes both say "network cut", not "dead"; stopping one makes the other say "dead".
func TestSerialTellsNetworkCutFromDead(t *testing.T) {
	devA, devB := serialtest.NullModem(t)
	link := func(dev, peer string) []SerialConfig {
		return []SerialConfig{{Device: dev, Peer: peer, Keepalive: 20 * time.Millisecond, Deadtime: 300 * time.Millisecond, Key: testKey}}
	}
	c := newTestCluster(t, 3, clusterOpts{config: func(cfg *Config) {
		switch cfg.NodeID {
		case "n1":
			cfg.Serial = link(devA, "n2")
		case "n2":
			cfg.Serial = link(devB, "n1")
		}
	}})
	if l := c.leader(5 * time.Second); l.ID() != "n1" {
		if err := l.TransferLeadership(ctxTimeout(t, 5*time.Second), "n1"); err != nil {
			t.Fatal(err)
		}
	}
	n1, n2 := c.nodes["n1"], c.nodes["n2"]
	peerView := func(n *testNode) SerialStatus { return n.Status().Serial[0] }
	waitFor(t, 5*time.Second, "n1 leads and both see each other alive", func() bool {
		a, b := peerView(n1), peerView(n2)
		return n1.Status().Role == Leader && a.Verdict == PeerAlive && a.RaftContact == ContactOK && a.State == LinkUp &&
			b.Verdict == PeerAlive && b.RaftContact == ContactOK && b.State == LinkUp
	})

	c.net.Partition("n2:7946")
	waitFor(t, 5*time.Second, "both say network cut", func() bool {
		return peerView(n1).Verdict == PeerNetworkCut && peerView(n2).Verdict == PeerNetworkCut
	})
	if st := n1.Status(); st.Role != Leader {
		t.Errorf("n1 is %s after n2 alone was cut off; want leader", st.Role)
	}

	c.stop("n2")
	waitFor(t, 5*time.Second, "n1 says dead", func() bool {
		v := peerView(n1)
		return v.Verdict == PeerDead && v.State == LinkDown
	})
}

// A leader that hears over the serial link of a newer term with another leader publishes lost
// leadership at once, while Raft still calls it leader; older or equal terms, and frames naming
// itself, change nothing.
func TestSerialFenceDropsLeadership(t *testing.T) {
	c := newTestCluster(t, 1, clusterOpts{})
	n := c.leader(5 * time.Second)
	w := n.WatchLeadership(ctxTimeout(t, 5*time.Second))
	var l Leadership
	latest := func() Leadership {
		deadline := time.After(100 * time.Millisecond)
		for {
			select {
			case l = <-w:
			case <-deadline:
				return l
			}
		}
	}
	if l := latest(); !l.IsLeader {
		t.Fatalf("leader's watch says %+v", l)
	}
	term := n.Status().Term
	for _, f := range []Frame{
		{NodeID: "n2", Term: term, Leader: "n2"},
		{NodeID: "n2", Term: term + 1, Leader: "n1"},
		{NodeID: "n2", Term: term + 1, Leader: ""},
	} {
		n.fenceFrom(f)
		if l := latest(); !l.IsLeader {
			t.Fatalf("frame %+v fenced the leader", f)
		}
	}
	n.fenceFrom(Frame{NodeID: "n2", Term: term + 1, Leader: "n2"})
	if l := latest(); l.IsLeader || l.Term != term {
		t.Fatalf("after a frame of term %d led by n2: %+v, want not leader in term %d", term+1, l, term)
	}
	if st := n.Status(); st.Role != Leader {
		t.Fatalf("Raft role %s; the fence is the director's signal, Raft steps down on its own", st.Role)
	}
}
