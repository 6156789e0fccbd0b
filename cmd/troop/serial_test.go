package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cluster/serialtest"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

func TestSerialConfigsReadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good.key"), filepath.Join(dir, "short.key")
	os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	os.WriteFile(short, []byte("0123456789\n"), 0o600)
	got, err := serialConfigs([]config.Serial{
		{Peer: "d2", Device: "/dev/ttyS0", Baud: 9600, Keepalive: time.Second, Deadtime: 3 * time.Second, Key: "inline key, 16+ bytes"},
		{Peer: "d3", Device: "/dev/ttyS1", KeyFile: good},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Key) != "inline key, 16+ bytes" || got[0].Baud != 9600 || got[0].Deadtime != 3*time.Second ||
		string(got[1].Key) != "0123456789abcdef0123" || got[1].Peer != "d3" || got[1].Device != "/dev/ttyS1" {
		t.Errorf("serial configs: %+v", got)
	}
	for file, want := range map[string]string{short: "at least 16 bytes", filepath.Join(dir, "none"): "no such file"} {
		if _, err := serialConfigs([]config.Serial{{Peer: "d2", Device: "/dev/ttyS0", KeyFile: file}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("key_file %s: %v, want an error saying %q", file, err, want)
		}
	}
}

func TestWriteSerial(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	writeSerial(&b, []cluster.SerialStatus{
		{Peer: "d2", Device: "/dev/ttyS0", State: cluster.LinkUp, LastFrame: now.Add(-120 * time.Millisecond), PeerTerm: 4, PeerLeader: "d3",
			Sent: 50, Received: 48, Corrupt: 1, BadMAC: 2, Replayed: 3, Foreign: 4, RaftContact: cluster.ContactLost, Verdict: cluster.PeerNetworkCut},
		{Peer: "d3", Device: "/dev/ttyS1", State: cluster.LinkDown, Error: "open serial port /dev/ttyS1: no such file",
			RaftContact: cluster.ContactUnknown, Verdict: cluster.PeerUnknown},
	}, now)
	want := `
Serial heartbeat:
  Peer  Verdict      Raft     Link  Device      Last frame  Peer term/leader  Sent  Received  Dropped (corrupt/bad MAC/replayed/foreign)
  d2    network cut  lost     up    /dev/ttyS0  120ms ago   4/d3              50    48        1/2/3/4
  d3    unknown      unknown  down  /dev/ttyS1  never       -                 0     0         0/0/0/0  ! open serial port /dev/ttyS1: no such file
`
	diffText(t, "serial status", b.String(), want)
	b.Reset()
	writeSerial(&b, nil, now)
	diffText(t, "no serial links", b.String(), "")
}

// An event is published for each change of a peer's verdict or link state, and only then.
func TestWatchPeersPublishesChanges(t *testing.T) {
	steps := [][]cluster.SerialStatus{
		{{Peer: "d2", State: cluster.LinkUp, RaftContact: cluster.ContactOK, Verdict: cluster.PeerAlive}},
		{{Peer: "d2", State: cluster.LinkUp, RaftContact: cluster.ContactOK, Verdict: cluster.PeerAlive, Received: 9}},
		{{Peer: "d2", State: cluster.LinkUp, RaftContact: cluster.ContactLost, Verdict: cluster.PeerNetworkCut}},
		{{Peer: "d2", State: cluster.LinkDown, RaftContact: cluster.ContactOK, Verdict: cluster.PeerAlive}},
		{{Peer: "d2", State: cluster.LinkDown, RaftContact: cluster.ContactLost, Verdict: cluster.PeerDead}},
	}
	ctx, links := replay(steps)
	ev := api.NewEvents(16, nil)
	watchPeers(ctx, links, ev)
	got, _ := ev.Since(0)
	var msgs []string
	for _, e := range got {
		if e.Kind != "peer" {
			t.Errorf("event kind %q", e.Kind)
		}
		msgs = append(msgs, e.Message)
	}
	want := []string{
		"d2: alive (raft contact ok, serial link up)",
		"d2: network cut (raft contact lost, serial link up)",
		"d2: alive (raft contact ok, serial link down)",
		"d2: dead (raft contact lost, serial link down)",
	}
	diffText(t, "peer events", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
}

// Two agents joined by a pty null-modem cable (one with key, one with key_file) see each other
// over it, in the status API and in events; when one stops, the other's link goes down.
func TestAgentsShareASerialLink(t *testing.T) {
	devA, devB := serialtest.NullModem(t)
	keyFile := filepath.Join(t.TempDir(), "serial.key")
	os.WriteFile(keyFile, []byte("a shared secret of 32 bytes ...\n"), 0o600)
	agentConfig := func(id, peer, dev string) config.Agent {
		s := config.Serial{Peer: peer, Device: dev, Keepalive: 20 * time.Millisecond, Deadtime: 200 * time.Millisecond}
		if id == "d1" {
			s.Key = "a shared secret of 32 bytes ..."
		} else {
			s.KeyFile = keyFile
		}
		// Witnesses: Raft and the API without a dataplane, each alone in its own pool.
		return config.Agent{NodeID: id, DataDir: t.TempDir(), Witness: true, Serial: []config.Serial{s},
			API: config.API{Address: "127.0.0.1:0"}, Raft: config.Raft{Address: "127.0.0.1:0", BootstrapExpect: 1}}
	}
	start := func(ac config.Agent) (*api.Client, context.CancelFunc, chan error) {
		a, err := newAgent(ac, agentOptions{}, newLogger(io.Discard, "error"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.run(ctx, agentOptions{}) }()
		return api.NewClient("http://"+a.ln.Addr().String(), nil), cancel, done
	}
	c1, stop1, done1 := start(agentConfig("d1", "d2", devA))
	defer func() { stop1(); <-done1 }()
	_, stop2, done2 := start(agentConfig("d2", "d1", devB))
	defer func() { stop2(); <-done2 }()

	ctx := context.Background()
	link := func() cluster.SerialStatus {
		st, _, err := c1.Status(ctx, api.ReadOptions{})
		if err != nil || len(st.Serial) != 1 {
			t.Fatalf("status: %v, serial %+v", err, st.Serial)
		}
		return st.Serial[0]
	}
	waitUntil(t, "d1 sees d2 over the cable", func() bool {
		s := link()
		return s.State == cluster.LinkUp && s.PeerLeader == "d2" && s.Verdict == cluster.PeerAlive
	})
	stopped := time.Now()
	stop2()
	if err := <-done2; err != nil {
		t.Error(err)
	}
	done2 <- nil
	t.Logf("d2 stopped in %s", time.Since(stopped))
	waitUntil(t, "d1 sees the link down", func() bool { return link().State == cluster.LinkDown })
	if s := link(); s.Verdict != cluster.PeerUnknown || s.RaftContact != cluster.ContactUnknown {
		t.Errorf("d2 is in another pool, so Raft cannot tell: %+v", s)
	}
	var msgs []string
	waitUntil(t, "the peer events", func() bool {
		msgs = nil
		c1.Events(ctx, 0, false, func(e api.Event) {
			if e.Kind == "peer" {
				msgs = append(msgs, e.Message)
			}
		})
		return len(msgs) >= 2 && msgs[len(msgs)-1] == "d2: unknown (raft contact unknown, serial link down)"
	})
	if !strings.Contains(strings.Join(msgs, "\n"), "d2: alive (raft contact unknown, serial link up)") {
		t.Errorf("peer events: %q", msgs)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replay returns a function that yields steps in turn (then the last one again) and a context
// it cancels once all have been yielded, for a watcher that polls until its context ends.
func replay[T any](steps []T) (context.Context, func() T) {
	var mu sync.Mutex
	i := 0
	ctx, cancel := context.WithCancel(context.Background())
	return ctx, func() T {
		mu.Lock()
		defer mu.Unlock()
		if i == len(steps) {
			cancel()
			return steps[i-1]
		}
		i++
		return steps[i-1]
	}
}
