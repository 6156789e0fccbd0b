package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

// deployDir is the repository's deploy directory, seen from this package's.
const deployDir = "../../deploy"

// TestDeployExamplePool parses the three-director pool in deploy/examples/pool as the agent and
// `troop apply` would, and checks that the directors agree on their peers.
func TestDeployExamplePool(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(deployDir, "examples/pool/d*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("deploy/examples/pool has %d director files (%q), want 3", len(files), files)
	}
	var first []config.Peer
	var firstFile string
	ids := map[string]string{}
	for _, f := range files {
		a := parseAgentFile(t, f)
		if other, dup := ids[a.NodeID]; dup {
			t.Errorf("%s and %s both have node_id %q", other, f, a.NodeID)
		}
		ids[a.NodeID] = f
		if want := strings.TrimSuffix(filepath.Base(f), ".hcl"); a.NodeID != want {
			t.Errorf("%s: node_id %q, want %q (the file's name)", f, a.NodeID, want)
		}
		if !a.Gossip.Enabled || a.Gossip.KeyFile != "/etc/troop/gossip.key" {
			t.Errorf("%s: gossip key_file %q (gossip block: %v), want /etc/troop/gossip.key", f, a.Gossip.KeyFile, a.Gossip.Enabled)
		}
		if sd := a.Director.SyncDaemon; sd == nil || sd.Interface != "eth0" {
			t.Errorf("%s: director sync_daemon %+v, want one on eth0", f, sd)
		}
		// This director's Raft address is its own peer entry's.
		i := slices.IndexFunc(a.Raft.Peers, func(p config.Peer) bool { return p.ID == a.NodeID })
		if i < 0 || a.Raft.Peers[i].Address != a.Raft.Address {
			t.Errorf("%s: raft address %q is not peer %q's address in %+v", f, a.Raft.Address, a.NodeID, a.Raft.Peers)
		}
		peers := slices.Clone(a.Raft.Peers)
		slices.SortFunc(peers, func(x, y config.Peer) int { return strings.Compare(x.ID, y.ID) })
		if first == nil {
			first, firstFile = peers, f
			continue
		}
		if diff := cmp.Diff(first, peers); diff != "" {
			t.Errorf("raft peers differ between %s and %s (-first +this):\n%s", firstFile, f, diff)
		}
	}
	if len(first) != 3 {
		t.Errorf("%s lists %d raft peers, want 3", firstFile, len(first))
	}

	tablePath := filepath.Join(deployDir, "examples/pool/table.hcl")
	src, err := os.ReadFile(tablePath)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := config.ParseTable(tablePath, src)
	if err != nil {
		t.Fatalf("ParseTable: %v", err)
	}
	if len(tb.Services) != 1 || tb.Services[0].VIP.String() != "192.0.2.100" || tb.Services[0].Port != 80 {
		t.Errorf("%s: services %+v, want one on 192.0.2.100:80", tablePath, tb.Services)
	}
}

// TestDeployCloudInit substitutes sample values for the placeholders of
// deploy/cloud-init/director.yaml and parses the agent file it writes. It also checks that the
// unit and module list it writes are those of deploy/systemd.
func TestDeployCloudInit(t *testing.T) {
	path := filepath.Join(deployDir, "cloud-init/director.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "#cloud-config\n") {
		t.Errorf("%s does not start with #cloud-config", path)
	}
	samples := map[string]string{
		"<NODE_ID>":      "d2",
		"<ADDRESS>":      "192.0.2.12",
		"<D1_ADDRESS>":   "192.0.2.11",
		"<D2_ADDRESS>":   "192.0.2.12",
		"<D3_ADDRESS>":   "192.0.2.13",
		"<GOSSIP_KEY>":   "mJEEAXb567EmMoP5UcJQnrzYo6BetCoomnofBN6NHnw=",
		"<TROOP_URL>":    "https://releases.example.com/troop/v0.3.0/troop_linux_amd64.tar.gz",
		"<TROOP_SHA256>": strings.Repeat("0", 64),
	}
	// Every placeholder the file uses has a sample here, so none reaches the parser unreplaced.
	for _, ph := range regexp.MustCompile(`<[A-Z][A-Z0-9_]*>`).FindAllString(string(raw), -1) {
		if _, ok := samples[ph]; !ok {
			t.Errorf("%s uses placeholder %s, which this test has no sample value for", path, ph)
		}
	}
	var pairs []string
	for k, v := range samples {
		pairs = append(pairs, k, v)
	}
	text := strings.NewReplacer(pairs...).Replace(string(raw))
	files := cloudInitFiles(t, path, text)

	agentSrc, ok := files["/etc/troop/agent.hcl"]
	if !ok {
		t.Fatalf("%s writes no /etc/troop/agent.hcl (it writes %q)", path, slices.Sorted(maps.Keys(files)))
	}
	a, err := config.ParseAgent(path+": /etc/troop/agent.hcl", []byte(agentSrc))
	if err != nil {
		t.Fatalf("the agent file it writes does not parse: %v\n%s", err, agentSrc)
	}
	if a.NodeID != "d2" || a.Raft.Address != "192.0.2.12:9701" || len(a.Raft.Peers) != 3 {
		t.Errorf("agent file: node_id %q, raft address %q, %d peers; want d2, 192.0.2.12:9701, 3", a.NodeID, a.Raft.Address, len(a.Raft.Peers))
	}
	if a.Gossip.KeyFile != "/etc/troop/gossip.key" {
		t.Errorf("agent file: gossip key_file %q, want /etc/troop/gossip.key", a.Gossip.KeyFile)
	}
	if key := files["/etc/troop/gossip.key"]; key == "" {
		t.Errorf("%s writes no /etc/troop/gossip.key", path)
	} else if _, err := config.DecodeGossipKey(key); err != nil {
		t.Errorf("gossip key with the sample value: %v", err)
	}

	for dst, src := range map[string]string{
		"/etc/systemd/system/troop.service": "systemd/troop.service",
		"/etc/modules-load.d/troop.conf":    "systemd/troop-modules.conf",
	} {
		want, err := os.ReadFile(filepath.Join(deployDir, src))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), files[dst]); diff != "" {
			t.Errorf("%s writes a %s that is not deploy/%s (-want +got):\n%s", path, dst, src, diff)
		}
	}
}

func parseAgentFile(t *testing.T, path string) config.Agent {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := config.ParseAgent(path, src)
	if err != nil {
		t.Fatalf("ParseAgent: %v", err)
	}
	return a
}

// cloudInitFiles returns the write_files entries of a cloud-config, path to content. It reads the
// only shape director.yaml uses (no YAML library is in go.mod): each entry's "- path: P" comes
// before its "content: |" literal block, whose lines are indented deeper than the key.
func cloudInitFiles(t *testing.T, name, text string) map[string]string {
	t.Helper()
	files := map[string]string{}
	lines := strings.Split(text, "\n")
	path := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		switch {
		case strings.HasPrefix(trimmed, "- path: "):
			path = strings.TrimSpace(strings.TrimPrefix(trimmed, "- path: "))
		case trimmed == "content: |" && path != "":
			var body []string
			blockIndent := -1
			for i+1 < len(lines) {
				next := lines[i+1]
				nt := strings.TrimLeft(next, " ")
				if nt != "" && len(next)-len(nt) <= indent {
					break
				}
				i++
				if nt == "" {
					body = append(body, "")
					continue
				}
				if blockIndent < 0 {
					blockIndent = len(next) - len(nt)
				}
				if len(next)-len(nt) < blockIndent {
					t.Fatalf("%s:%d: line less indented than its block", name, i+1)
				}
				body = append(body, next[blockIndent:])
			}
			// YAML's "|" keeps one final newline and clips the trailing blank lines.
			for len(body) > 0 && body[len(body)-1] == "" {
				body = body[:len(body)-1]
			}
			files[path] = strings.Join(body, "\n") + "\n"
			path = ""
		}
	}
	return files
}
