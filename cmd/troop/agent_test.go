package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

func TestAgentCommandLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte("node_id = \"d1\"\ndata_dir = \"/tmp/x\"\nraft {\n  adress = \"127.0.0.1:9701\"\n}\n"), 0o644)
	good := filepath.Join(dir, "good.hcl")
	os.WriteFile(good, []byte("node_id = \"d1\"\ndata_dir = \"/tmp/x\"\n"), 0o644)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"neither", nil, exitUsage, "give exactly one of -config FILE or -dev"},
		{"both", []string{"-dev", "-config", good}, exitUsage, "give exactly one of -config FILE or -dev"},
		{"unknown key", []string{"-config", bad}, exitError, `bad.hcl:4:3: raft: unknown key "adress"; did you mean "address"?`},
		{"missing file", []string{"-config", filepath.Join(dir, "nope.hcl")}, exitError, "no such file"},
		{"bad level override", []string{"-config", good, "-log-level", "loud"}, exitError, `"loud"`},
		{"dev with data dir", []string{"-dev", "-data-dir", dir}, exitError, "-data-dir: a -dev agent keeps nothing on disk"},
		{"dev with bad level", []string{"-dev", "-log-level", "loud"}, exitError, `-log-level "loud"`},
		{"dev witness", []string{"-dev", "-witness"}, exitError, "-witness: a -dev agent is alone"},
		{"bad api address override", []string{"-config", good, "-api-address", "localhost"}, exitError, `api address: "localhost": must be host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code := runAgent(ctx, tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d containing %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// -api-address moves the API, of a -dev agent too (the console's browser test runs one on a
// free port).
func TestAgentAPIAddressOverride(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.hcl")
	os.WriteFile(file, []byte("node_id = \"d1\"\ndata_dir = \"/tmp/x\"\napi {\n  address = \"127.0.0.1:9700\"\n}\n"), 0o644)
	for _, o := range []agentOptions{{dev: true, apiAddress: "127.0.0.1:9799"}, {configFile: file, apiAddress: "127.0.0.1:9799"}} {
		ac, err := loadAgentConfig(o)
		if err != nil || ac.API.Address != "127.0.0.1:9799" {
			t.Errorf("loadAgentConfig(%+v): api address %q, %v; want 127.0.0.1:9799", o, ac.API.Address, err)
		}
	}
}

func TestClusterConfigOverlaysTheFile(t *testing.T) {
	ac := config.Agent{NodeID: "d1", DataDir: "/var/lib/troop", Raft: config.Raft{
		Address: "192.0.2.1:9701", ElectionTimeout: 500 * time.Millisecond,
		Peers: []config.Peer{{ID: "d1", Address: "192.0.2.1:9701"}, {ID: "d2", Address: "192.0.2.2:9701"}},
	}}
	c := clusterConfig(ac, false, nil)
	if c.NodeID != "d1" || c.DataDir != "/var/lib/troop" || c.BindAddr != "192.0.2.1:9701" {
		t.Errorf("identity not taken from the file: %+v", c)
	}
	if c.ElectionTimeout != 500*time.Millisecond {
		t.Errorf("election timeout %s, want the file's 500ms", c.ElectionTimeout)
	}
	if c.HeartbeatTimeout != cluster.DefaultHeartbeatTimeout || c.TrailingLogs != cluster.DefaultTrailingLogs {
		t.Errorf("unset values lost their defaults: heartbeat %s, trailing logs %d", c.HeartbeatTimeout, c.TrailingLogs)
	}
	if len(c.Peers) != 2 || c.Peers[1] != (cluster.PeerConfig{ID: "d2", Address: "192.0.2.2:9701"}) {
		t.Errorf("peers = %+v", c.Peers)
	}
	if d := clusterConfig(config.Agent{}, false, nil); d.BindAddr != config.DefaultRaftAddress {
		t.Errorf("default bind address %q, want %q", d.BindAddr, config.DefaultRaftAddress)
	}
}

// A part that cannot start releases what was opened before it: here the API port is taken, and
// the Raft port and data dir must be free again for the next attempt.
func TestAgentReleasesPartsOnFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	raftPort, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := raftPort.Addr().String()
	raftPort.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id = "d1"
data_dir = %q
api { address = %q }
raft {
  address = %q
  peer "d1" { address = %q }
}
director { enabled = false }
`, filepath.Join(dir, "data"), taken.Addr().String(), raftAddr, raftAddr)), 0o644)
	var stderr bytes.Buffer
	if code := runAgent(context.Background(), []string{"-config", cfg}, io.Discard, &stderr); code != exitError || !strings.Contains(stderr.String(), "listen for the API on") {
		t.Fatalf("exit %d, stderr %q; want a refusal naming the API address", code, stderr.String())
	}
	// The Raft port and the data dir's lock were released.
	l, err := net.Listen("tcp", raftAddr)
	if err != nil {
		t.Fatalf("raft port still held after the failed start: %v", err)
	}
	l.Close()
	taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if code := runAgent(ctx, []string{"-config", cfg}, io.Discard, &stderr); code != exitOK {
		t.Fatalf("second start on the same data dir: exit %d: %s", code, stderr.String())
	}
}

// A witness builds no dataplane and no health checks, and says what it is: a lone witness leads
// (no director to hand over to), yet its API has no dataplane and no checks to show.
func TestWitnessRunsNoDataplane(t *testing.T) {
	dir := t.TempDir()
	ac := config.Agent{NodeID: "w1", DataDir: dir, Witness: true,
		API: config.API{Address: "127.0.0.1:0"}, Raft: config.Raft{Address: "127.0.0.1:0", BootstrapExpect: 1}}
	a, err := newAgent(ac, agentOptions{}, newLogger(io.Discard, "error"))
	if err != nil {
		t.Fatal(err)
	}
	if a.dp != nil || a.checks != nil {
		t.Fatalf("a witness built a dataplane (%v) or health checks (%v)", a.dp != nil, a.checks != nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, agentOptions{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := api.NewClient("http://"+a.ln.Addr().String(), nil)
	var st api.Status
	deadline := time.Now().Add(10 * time.Second)
	for st.Role != cluster.Leader && time.Now().Before(deadline) {
		st, _, _ = c.Status(ctx, api.ReadOptions{})
		time.Sleep(10 * time.Millisecond)
	}
	if st.Role != cluster.Leader || !st.Witness {
		t.Fatalf("status: role %q, witness %v; want a leading witness", st.Role, st.Witness)
	}
	if _, err := c.Dataplane(ctx); !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("GET dataplane on a witness: %v, want not found", err)
	}
	if _, err := c.Checks(ctx); !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("GET checks on a witness: %v, want not found", err)
	}
}

// -witness and `witness = true` both make a witness, down to the cluster's config.
func TestWitnessFlagAndKey(t *testing.T) {
	for _, tc := range []struct {
		key, flag, want bool
	}{{false, false, false}, {false, true, true}, {true, false, true}} {
		file := filepath.Join(t.TempDir(), "agent.hcl")
		os.WriteFile(file, fmt.Appendf(nil, "node_id = \"w1\"\ndata_dir = \"/tmp/x\"\nwitness = %v\n", tc.key), 0o644)
		ac, err := loadAgentConfig(agentOptions{configFile: file, witness: tc.flag})
		if err != nil {
			t.Fatal(err)
		}
		if ac.Witness != tc.want || clusterConfig(ac, false, nil).Witness != tc.want {
			t.Errorf("witness = %v, -witness=%v: witness %v, want %v", tc.key, tc.flag, ac.Witness, tc.want)
		}
	}
}
