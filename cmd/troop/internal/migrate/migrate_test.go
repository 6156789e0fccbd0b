package migrate

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata")

// golden compares got with the file, or rewrites the file under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// tableImporters are the importers of a single file into a table.
var tableImporters = map[string]func(string, []byte) (*TableResult, error){
	"ldirectord": Ldirectord,
	"keepalived": Keepalived,
}

// TestTableCorpus imports every file of testdata/ldirectord and testdata/keepalived: the good
// ones must give a table ParseTable accepts, with the HCL and findings of their .golden file;
// the broken ones an *Error naming the file and line, and nothing else.
func TestTableCorpus(t *testing.T) {
	for kind, conv := range tableImporters {
		good := inputs(t, filepath.Join("testdata", kind))
		bad := inputs(t, filepath.Join("testdata", kind, "broken"))
		if len(good) < 2 || len(bad) < 5 {
			t.Fatalf("%s: corpus too small: %d good, %d broken", kind, len(good), len(bad))
		}
		for _, path := range good {
			t.Run(path, func(t *testing.T) {
				src, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				r, err := conv(path, src)
				if err != nil {
					t.Fatalf("import: %v", err)
				}
				if _, err := config.ParseTable(path, r.HCL); err != nil {
					t.Fatalf("the imported table does not parse: %v\n%s", err, r.HCL)
				}
				for _, f := range r.Findings {
					if f.File != path {
						t.Errorf("finding %q names another file", f)
					}
				}
				golden(t, path+".golden", append(append(r.HCL, "--- findings ---\n"...), findingsText(r.Findings)...))
			})
		}
		for _, path := range bad {
			t.Run(path, func(t *testing.T) {
				src, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				r, err := conv(path, src)
				var e *Error
				if !errors.As(err, &e) || r != nil {
					t.Fatalf("import = %v, %v; want only an *Error", r, err)
				}
				if e.File != path || e.Line < 1 || !strings.HasPrefix(err.Error(), path+":") {
					t.Errorf("error %q does not name the file and a line", err)
				}
				golden(t, path+".golden", []byte(err.Error()+"\n"))
			})
		}
	}
}

// inputs lists the configuration files (not the golden files) of dir.
func inputs(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.cf", "*.conf"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

// countingReader is a deterministic stand-in for crypto/rand in golden files.
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

func readHeartbeat(t *testing.T, dir string) HeartbeatInput {
	t.Helper()
	in := HeartbeatInput{HaCFName: "ha.cf", HaResourcesName: "haresources", AuthKeysName: "authkeys", Rand: &countingReader{}}
	var err error
	if in.HaCF, err = os.ReadFile(filepath.Join(dir, "ha.cf")); err != nil {
		t.Fatal(err)
	}
	if in.HaResources, err = os.ReadFile(filepath.Join(dir, "haresources")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "authkeys")); err == nil {
		in.AuthKeys = b
	}
	return in
}

func heartbeatText(r *HeartbeatResult) []byte {
	var b bytes.Buffer
	for _, f := range r.Files {
		b.WriteString("# ==> " + f.Name + " <==\n")
		b.Write(f.Content)
		b.WriteString("\n")
	}
	b.WriteString("--- findings ---\n" + findingsText(r.Findings))
	return b.Bytes()
}

// TestHeartbeatCorpus proposes agent files for the seed's Heartbeat files and a three-node
// cluster; every file must be an agent file (or, for the VIPs, a table file) that parses.
func TestHeartbeatCorpus(t *testing.T) {
	for _, dir := range []string{"testdata/seed", "testdata/heartbeat/three"} {
		t.Run(dir, func(t *testing.T) {
			r, err := Heartbeat(readHeartbeat(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range r.Files {
				if f.Name == "vip-group.hcl" {
					if _, err := config.ParseTable(f.Name, f.Content); err != nil {
						t.Errorf("%s: %v", f.Name, err)
					}
					continue
				}
				a, err := config.ParseAgent(f.Name, f.Content)
				if err != nil {
					t.Errorf("%s: %v", f.Name, err)
				}
				if !f.Secret {
					t.Errorf("%s holds keys but is not marked secret", f.Name)
				}
				if n := len(a.Raft.Peers); n < 3 {
					t.Errorf("%s: %d Raft voters; a pool needs 3 to fail over", f.Name, n)
				}
			}
			golden(t, filepath.Join(dir, "heartbeat.golden"), heartbeatText(r))
		})
	}
	broken, _ := filepath.Glob("testdata/heartbeat/broken/*")
	for _, dir := range broken {
		t.Run(dir, func(t *testing.T) {
			r, err := Heartbeat(readHeartbeat(t, dir))
			var e *Error
			if !errors.As(err, &e) || r != nil || e.Line < 1 {
				t.Fatalf("import = %v, %v; want only an *Error with a line", r, err)
			}
			golden(t, filepath.Join(dir, "error.golden"), []byte(err.Error()+"\n"))
		})
	}
}

// TestSeedLdirectordMatchesHandTranslation imports the seed's ldirectord.cf (from the slides)
// and compares it with deploy/examples/seed-table.hcl, the same file translated by hand with
// documentation addresses: same VIP and port, real servers, scheduler, forwarding, check
// request, expected string, timing and fallback.
func TestSeedLdirectordMatchesHandTranslation(t *testing.T) {
	src, err := os.ReadFile("testdata/seed/ldirectord.cf")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Ldirectord("ldirectord.cf", src)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/seed/ldirectord.cf.golden", append(append(r.HCL, "--- findings ---\n"...), findingsText(r.Findings)...))
	got, err := config.ParseTable("imported", r.HCL)
	if err != nil {
		t.Fatal(err)
	}
	handSrc, err := os.ReadFile("../../../../deploy/examples/seed-table.hcl")
	if err != nil {
		t.Fatal(err)
	}
	hand, err := config.ParseTable("seed-table.hcl", handSrc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 1 || len(hand.Services) != 1 {
		t.Fatalf("services: imported %d, by hand %d", len(got.Services), len(hand.Services))
	}
	g, h := got.Services[0], hand.Services[0]
	// The slides' addresses and the documentation addresses of the hand translation.
	docs := map[string]string{"211.58.250.6": "192.0.2.6", "211.58.250.25": "192.0.2.21", "211.58.250.27": "192.0.2.22", "127.0.0.1": "127.0.0.1"}
	doc := func(a netip.Addr) string { return docs[a.String()] }
	if doc(g.VIP) != h.VIP.String() || g.Port != h.Port || g.Protocol != h.Protocol {
		t.Errorf("virtual: imported %s %s:%d, by hand %s %s:%d", g.Protocol, g.VIP, g.Port, h.Protocol, h.VIP, h.Port)
	}
	if g.Scheduler != h.Scheduler || g.Forwarding != h.Forwarding {
		t.Errorf("scheduler/forwarding: imported %s/%s, by hand %s/%s", g.Scheduler, g.Forwarding, h.Scheduler, h.Forwarding)
	}
	if len(g.Reals) != len(h.Reals) {
		t.Fatalf("reals: imported %v, by hand %v", g.Reals, h.Reals)
	}
	for i := range g.Reals {
		gr, hr := g.Reals[i], h.Reals[i]
		if doc(gr.Address) != hr.Address.String() || gr.Port != hr.Port || gr.EffectiveWeight() != hr.EffectiveWeight() || gr.Forwarding != hr.Forwarding {
			t.Errorf("real %d: imported %+v, by hand %+v", i, gr, hr)
		}
	}
	gc, hc := g.Check, h.Check
	if gc.Type != hc.Type || gc.Method != hc.Method || gc.Path != hc.Path || gc.Expect != hc.Expect || gc.Interval != hc.Interval || gc.Timeout != hc.Timeout {
		t.Errorf("check: imported %+v, by hand %+v", *gc, *hc)
	}
	if doc(g.Fallback.Address) != h.Fallback.Address.String() || g.Fallback.Port != h.Fallback.Port {
		t.Errorf("fallback: imported %+v, by hand %+v", *g.Fallback, *h.Fallback)
	}
	// Documented differences: ldirectord's own defaults where the seed's file sets nothing.
	if !g.Quiescent || gc.Rise != 1 || gc.Fall != 1 || gc.InitialState != fsm.HealthDown {
		t.Errorf("imported quiescent %v, rise %d, fall %d, initial %s: want ldirectord's yes, 1, 1, down", g.Quiescent, gc.Rise, gc.Fall, gc.InitialState)
	}
	if !strings.Contains(findingsText(r.Findings), "ldirectord.cf:4: virtual=211.58.250.6:80: no quiescent") {
		t.Errorf("the quiescent default is not reported:\n%s", findingsText(r.Findings))
	}
}

// TestLdirectordInheritance checks ldirectord's rule for globals: those before the first
// virtual apply to every virtual unless it sets its own; one after a virtual applies only to
// the virtuals after it.
func TestLdirectordInheritance(t *testing.T) {
	src := "checkinterval=4\nchecktimeout=1\n" +
		"virtual=192.0.2.1:80\n\treal=198.51.100.1:80 gate\n\tchecktype=connect\n" +
		"virtual=192.0.2.1:81\n\treal=198.51.100.1:81 gate\n\tchecktype=connect\n\tchecktimeout=2\n" +
		"checktimeout=3\n" +
		"virtual=192.0.2.1:82\n\treal=198.51.100.1:82 gate\n\tchecktype=connect\n"
	r, err := Ldirectord("x.cf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint16]time.Duration{80: time.Second, 81: 2 * time.Second, 82: 3 * time.Second}
	for _, s := range r.Table.Services {
		if c := s.Check; c.Type != "tcp" || time.Duration(c.Interval) != 4*time.Second || time.Duration(c.Timeout) != want[s.Port] {
			t.Errorf("port %d: check %s interval %s timeout %s, want tcp 4s %s", s.Port, c.Type, c.Interval, c.Timeout, want[s.Port])
		}
	}
	if !strings.Contains(findingsText(r.Findings), "x.cf:10: global checktimeout after the first virtual applies only to the virtuals after it") {
		t.Errorf("the late global is not reported:\n%s", findingsText(r.Findings))
	}
}

// TestHeartbeatNewKeys: the keys are new random ones (crypto/rand), different on each run, of
// the lengths the agent wants, and the authkeys secrets appear nowhere.
func TestHeartbeatNewKeys(t *testing.T) {
	in := readHeartbeat(t, "testdata/heartbeat/three")
	in.Rand = rand.Reader
	seen := map[string]bool{}
	for range 2 {
		r, err := Heartbeat(in)
		if err != nil {
			t.Fatal(err)
		}
		a, err := config.ParseAgent("lb1.hcl", r.Files[0].Content)
		if err != nil {
			t.Fatal(err)
		}
		k, err := base64.StdEncoding.DecodeString(a.Gossip.Key)
		if err != nil || len(k) != 32 || seen[a.Gossip.Key] {
			t.Errorf("gossip key %q: not a fresh 32-byte key", a.Gossip.Key)
		}
		seen[a.Gossip.Key] = true
		for _, f := range r.Files {
			for _, secret := range []string{"ultramonkey-2004", "Hello!"} {
				if bytes.Contains(f.Content, []byte(secret)) {
					t.Errorf("%s reuses the authkeys secret %q", f.Name, secret)
				}
			}
		}
		text := findingsText(r.Findings)
		if !strings.Contains(text, "authkeys:3: sha1: the key is not reused") {
			t.Errorf("the sha1 key's fate is not explained:\n%s", text)
		}
	}
	// The seed's crc is flagged, and its serial link gets a key of its own.
	seed := readHeartbeat(t, "testdata/seed")
	seed.Rand = rand.Reader
	r, err := Heartbeat(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(findingsText(r.Findings), "authkeys:2: INSECURE: crc") {
		t.Errorf("crc is not flagged:\n%s", findingsText(r.Findings))
	}
	a, err := config.ParseAgent("ha1.hcl", r.Files[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Serial) != 1 || a.Serial[0].Peer != "ha2" || a.Serial[0].Device != "/dev/ttyS0" || a.Serial[0].Baud != 19200 ||
		a.Serial[0].Keepalive != 3*time.Second || a.Serial[0].Deadtime != 9*time.Second || len(a.Serial[0].Key) < config.MinSerialKey || a.Serial[0].Key == a.Gossip.Key {
		t.Errorf("serial link: %+v", a.Serial)
	}
	b, err := config.ParseAgent("ha2.hcl", r.Files[1].Content)
	if err != nil {
		t.Fatal(err)
	}
	if b.Serial[0].Key != a.Serial[0].Key || b.Serial[0].Peer != "ha1" {
		t.Errorf("the two ends of the serial link differ: %+v, %+v", a.Serial, b.Serial)
	}
}

// TestKeepalivedSyntax: blocks opened on the next line, on one line, quoted words and both
// comment characters parse alike; a DR real server's port follows the virtual server's.
func TestKeepalivedSyntax(t *testing.T) {
	src := `virtual_server 192.0.2.1 80   # DR web
{
    lb_kind DR ! direct routing
    real_server 198.51.100.1 8080 { weight 2
        TCP_CHECK { connect_timeout 1 } }
    real_server "198.51.100.2" 80
    {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}`
	r, err := Keepalived("k.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Table.Services[0]
	if len(s.Reals) != 2 || s.Reals[0].Port != 80 || s.Reals[0].EffectiveWeight() != 2 || s.Check.Type != "tcp" || time.Duration(s.Check.Timeout) != time.Second {
		t.Errorf("service %+v, check %+v", s, s.Check)
	}
	if !strings.Contains(findingsText(r.Findings), "k.conf:1: real_server 198.51.100.1 8080: port changed to the virtual server's 80") {
		t.Errorf("port change not reported:\n%s", findingsText(r.Findings))
	}
}

// TestSeedPool: the seed's ldirectord.cf and its haresources VIP, imported separately, make one
// table file that `troop plan -f` accepts, with the service's VIP in the group.
func TestSeedPool(t *testing.T) {
	src, err := os.ReadFile("testdata/seed/ldirectord.cf")
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := Ldirectord("ldirectord.cf", src)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := Heartbeat(readHeartbeat(t, "testdata/seed"))
	if err != nil {
		t.Fatal(err)
	}
	var vips []byte
	for _, f := range hb.Files {
		if f.Name == "vip-group.hcl" {
			vips = f.Content
		}
	}
	pool, err := config.ParseTable("table.hcl", append(append(tbl.HCL, '\n'), vips...))
	if err != nil {
		t.Fatal(err)
	}
	if len(pool.VIPGroups) != 1 || pool.VIPGroups[0].VIPs[0].Addr() != pool.Services[0].VIP {
		t.Errorf("groups %+v, service VIP %s", pool.VIPGroups, pool.Services[0].VIP)
	}
}
