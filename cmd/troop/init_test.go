package main

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

var initArgs = []string{"init", "-n", "3", "-name-prefix", "d", "-ip", "192.0.2.11", "-ip", "192.0.2.12",
	"-ip", "192.0.2.13", "-interface", "eth0", "-vip", "192.0.2.100"}

// TestInitWritesAPool runs `troop init` for three directors and reads back what the agent and
// `troop apply` would: every agent file parses and names the same peers, the keys and the
// token are shared, the certificates name their director and verify against the CA, secrets
// are 0600, and the table holds the VIP.
func TestInitWritesAPool(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pool")
	code, stdout, stderr := runTroop(t, nil, append(initArgs, "-out", out)...)
	if code != exitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"Next steps", "troop.service", "troop apply -f " + out + "/table.hcl", "TROOP_TOKEN=$(cat " + out + "/bootstrap.token)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init's output lacks %q:\n%s", want, stdout)
		}
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caPEM := read("ca/ca.pem")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	token := read("bootstrap.token")
	if len(strings.TrimSpace(string(token))) < 16 {
		t.Errorf("bootstrap token %q: shorter than the agent accepts", token)
	}
	var gossipKey []byte
	ips := []string{"192.0.2.11", "192.0.2.12", "192.0.2.13"}
	wantPeers := []config.Peer{{ID: "d1", Address: "192.0.2.11:9701"}, {ID: "d2", Address: "192.0.2.12:9701"}, {ID: "d3", Address: "192.0.2.13:9701"}}
	for i, name := range []string{"d1", "d2", "d3"} {
		a, err := config.ParseAgent(name+"/agent.hcl", read(name+"/agent.hcl"))
		if err != nil {
			t.Fatalf("%s/agent.hcl: %v", name, err)
		}
		etc := func(f string) string { return "/etc/troop/" + f }
		switch {
		case a.NodeID != name || a.DataDir != "/var/lib/troop":
			t.Errorf("%s: node_id %q data_dir %q", name, a.NodeID, a.DataDir)
		case a.Raft.Address != ips[i]+":9701" || !slices.Equal(a.Raft.Peers, wantPeers):
			t.Errorf("%s: raft address %q peers %+v, want %s:9701 and %+v", name, a.Raft.Address, a.Raft.Peers, ips[i], wantPeers)
		case a.API.Address != ips[i]+":9700" || a.API.TLS != config.TLS{Enabled: true, CertFile: etc(name + ".pem"), KeyFile: etc(name + "-key.pem")}:
			t.Errorf("%s: api %+v", name, a.API)
		case a.Raft.TLS != config.TLS{Enabled: true, CAFile: etc("ca.pem"), CertFile: etc(name + ".pem"), KeyFile: etc(name + "-key.pem")}:
			t.Errorf("%s: raft tls %+v", name, a.Raft.TLS)
		case !a.Gossip.Enabled || a.Gossip.KeyFile != etc("gossip.key"):
			t.Errorf("%s: gossip %+v", name, a.Gossip)
		case !a.ACL.Enabled || a.ACL.BootstrapTokenFile != etc("bootstrap.token"):
			t.Errorf("%s: acl %+v", name, a.ACL)
		case a.Director.Interface != "eth0" || a.Director.SyncDaemon == nil || a.Director.SyncDaemon.Interface != "eth0":
			t.Errorf("%s: director %+v", name, a.Director)
		}
		key := read(name + "/gossip.key")
		if _, err := config.DecodeGossipKey(string(key)); err != nil {
			t.Errorf("%s/gossip.key: %v", name, err)
		}
		if gossipKey == nil {
			gossipKey = key
		} else if !bytes.Equal(key, gossipKey) {
			t.Errorf("%s/gossip.key differs from d1's", name)
		}
		if !bytes.Equal(read(name+"/bootstrap.token"), token) || !bytes.Equal(read(name+"/ca.pem"), caPEM) {
			t.Errorf("%s: bootstrap.token or ca.pem differs from the pool's", name)
		}
		if !bytes.Equal(read(name+"/troop.service"), read("d1/troop.service")) {
			t.Errorf("%s/troop.service differs from d1's", name)
		}
		cert := readCert(t, filepath.Join(out, name, name+".pem"))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s.pem: %v", name, err)
		}
		if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP(ips[i])) || cert.Subject.CommonName != name {
			t.Errorf("%s.pem: CN %q IPs %v, want %s and %s", name, cert.Subject.CommonName, cert.IPAddresses, name, ips[i])
		}
		if _, err := os.Stat(filepath.Join(out, name, "ca-key.pem")); err == nil {
			t.Errorf("%s holds the CA's key", name)
		}
	}
	if !bytes.Equal(read("d1/troop.service"), systemdUnit) {
		t.Error("d1/troop.service is not the embedded unit")
	}
	for _, f := range []string{"bootstrap.token", "ca/ca-key.pem", "d1/gossip.key", "d1/bootstrap.token", "d1/d1-key.pem", "d3/d3-key.pem"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
	}
	table, err := config.ParseTable("table.hcl", read("table.hcl"))
	if err != nil {
		t.Fatalf("table.hcl: %v", err)
	}
	if len(table.Services) != 1 || table.Services[0].VIP.String() != "192.0.2.100" || len(table.Services[0].Reals) != 0 {
		t.Errorf("table.hcl: %+v, want one service on 192.0.2.100 with no real servers", table.Services)
	}
}

// TestInitRefusesAnExistingDirectory: a second run would write keys the installed directors do
// not share, so an existing -out is refused and left as it was.
func TestInitRefusesAnExistingDirectory(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644)
	code, _, stderr := runTroop(t, nil, append(initArgs, "-out", out)...)
	if code != exitError || !strings.Contains(stderr, out+" already exists: nothing written") {
		t.Fatalf("init into an existing directory: exit %d, stderr %q", code, stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("the existing directory was changed: %v", ents)
	}
}

// TestInitUsage: wrong options are usage errors naming the flag, and nothing is written.
func TestInitUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "-n", "3", "-ip", "192.0.2.11", "-interface", "eth0", "-vip", "192.0.2.100"}, "-ip given 1 times for -n 3"},
		{[]string{"init", "-n", "1", "-ip", "192.0.2.11", "-interface", "eth0", "-vip", "192.0.2.11"}, `-vip "192.0.2.11"`},
		{[]string{"init", "-n", "1", "-ip", "nope", "-interface", "eth0", "-vip", "192.0.2.100"}, `-ip "nope"`},
		{[]string{"init", "-n", "2", "-ip", "192.0.2.11", "-ip", "192.0.2.11", "-interface", "eth0", "-vip", "192.0.2.100"}, "-ip 192.0.2.11 given twice"},
		{[]string{"init", "-n", "1", "-ip", "192.0.2.11", "-interface", "eth 0", "-vip", "192.0.2.100"}, `-interface "eth 0"`},
	} {
		out := filepath.Join(t.TempDir(), "pool")
		code, _, stderr := runTroop(t, nil, append(tc.args, "-out", out)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%q: wrote %s", tc.args, out)
		}
	}
}

// TestPromptInit: the interactive path asks only for what the flags left out, with defaults.
func TestPromptInit(t *testing.T) {
	o := &initOptions{prefix: "lb", iface: "bond0"}
	var asked bytes.Buffer
	err := promptInit(strings.NewReader("2\n192.0.2.1\n192.0.2.2\n192.0.2.100\n\n"), &asked, o)
	if err != nil {
		t.Fatal(err)
	}
	if o.n != 2 || !slices.Equal(o.ips, []string{"192.0.2.1", "192.0.2.2"}) || o.iface != "bond0" || o.vip != "192.0.2.100" || o.out != "troop-pool" {
		t.Errorf("options %+v", *o)
	}
	want := "How many directors [3]: IP address of lb1: IP address of lb2: Virtual IP of the starter table: Directory to write the pool's files into [troop-pool]: "
	if asked.String() != want {
		t.Errorf("prompts:\n%q\nwant\n%q", asked.String(), want)
	}
	if err := o.validate(); err != nil {
		t.Error(err)
	}
}

// TestInitUnitMatchesDeploy: go:embed cannot reach deploy/, so the unit `troop init` writes is
// a copy of deploy/systemd/troop.service; this keeps the two one text.
func TestInitUnitMatchesDeploy(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(deployDir, "systemd", "troop.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(systemdUnit, want) {
		t.Fatal("cmd/troop/initdata/troop.service differs from deploy/systemd/troop.service: cp deploy/systemd/troop.service cmd/troop/initdata/")
	}
}
