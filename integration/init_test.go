package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/integration/lvs"
)

// Issue 9: a fresh pool built from `troop init` output comes up in the namespace tier. `troop
// init` writes the three directors' files; each agent runs in its namespace with its own
// agent.hcl as written, but for the paths: it is installed as a director would have it
// (/etc/troop → its directory, /var/lib/troop → a data directory under it), since the three
// share this host's file system. With the generated CA and bootstrap token, from the client's
// namespace: the pool elects a leader over mutual TLS and gossips with the generated key, `troop
// members` lists three alive, `troop apply -f` of the generated table works and the leader
// takes its VIP, and a client without the token is refused. The host kernel may have no IPVS:
// the agents then run VIP-only.
func TestInitPoolComesUp(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := troopBinary(t)
	out := filepath.Join(t.TempDir(), "pool")
	args := []string{"init", "-n", "3", "-name-prefix", "d", "-interface", "eth0", "-vip", lvs.VIP, "-out", out}
	for n := 1; n <= 3; n++ {
		args = append(args, "-ip", lvs.DirectorAddr(n))
	}
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("troop init: %v\n%s", err, b)
	}
	installed := func(n int) string {
		dir := filepath.Join(out, fmt.Sprintf("d%d", n))
		b, err := os.ReadFile(filepath.Join(dir, "agent.hcl"))
		if err != nil {
			t.Error(err)
			return ""
		}
		s := strings.ReplaceAll(string(b), `"/etc/troop/`, `"`+dir+`/`)
		return strings.ReplaceAll(s, `"/var/lib/troop"`, `"`+filepath.Join(dir, "data")+`"`)
	}
	p, err := lvs.New(ctx, lvs.Config{Bin: bin, Dir: t.TempDir(), Reals: 1, AgentConfig: installed, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			for _, d := range p.Directors() {
				b, _ := os.ReadFile(filepath.Join(p.Dir(), d+".log"))
				t.Logf("%s's log:\n%s", d, b)
			}
		}
	})
	// troop doctor in d1's namespace, with d1's file: its interface and ports pass (IPVS is the
	// host kernel's affair); once the agent runs, its ports are in use.
	d1File := filepath.Join(p.Dir(), "d1-installed.hcl")
	if err := os.WriteFile(d1File, []byte(installed(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	doctor := func(wants ...string) {
		t.Helper()
		report, _ := p.Exec(ctx, "d1", bin, "doctor", "-config", d1File)
		for _, w := range wants {
			if !strings.Contains(report, w) {
				t.Errorf("troop doctor on d1 lacks %q:\n%s", w, report)
			}
		}
		t.Logf("troop doctor on d1:\n%s", report)
	}
	doctor("OK    interface     eth0 exists and is up\n", "OK    port          api 192.0.2.1:9700/tcp is free\n",
		"OK    port          gossip 192.0.2.1:9702/udp is free\n", "OK    capabilities")
	if err := p.StartAll(); err != nil {
		t.Fatal(err)
	}

	caFile := filepath.Join(out, "ca", "ca.pem")
	tokenB, err := os.ReadFile(filepath.Join(out, "bootstrap.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenB))
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       p.Node(lvs.ClientName).NS.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	url := func(d string) string { return fmt.Sprintf("https://%s:9700", p.Node(d).Addr) }
	client := func(d string) *api.Client { return api.NewClient(url(d), hc).WithToken(token) }

	var leader string
	took := waitFor(t, 30*time.Second, "every director names one leader", func() error {
		leaders := map[string]bool{}
		for _, d := range p.Directors() {
			st, _, err := client(d).Status(ctx, api.ReadOptions{})
			if err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			leaders[st.LeaderID] = true
			leader = st.LeaderID
		}
		if len(leaders) != 1 || !slices.Contains(p.Directors(), leader) {
			return fmt.Errorf("leaders %v", leaders)
		}
		return nil
	})
	t.Logf("leader %s, agreed %s after the start", leader, took.Round(time.Millisecond))
	doctor("FAIL  port          api 192.0.2.1:9700/tcp is in use\n", "FAIL  port          raft 192.0.2.1:9701/tcp is in use\n")

	// troop doctor -realserver on r1: it fails before `troop realserver setup` and passes the VIP
	// and ARP checks after it.
	rs := func() string {
		out, _ := p.Exec(ctx, "r1", bin, "doctor", "-realserver", lvs.VIP, "-interface", "eth0")
		return out
	}
	if out := rs(); !strings.Contains(out, "FAIL  vip           needs: add 192.0.2.100/32 to lo") {
		t.Errorf("troop doctor -realserver before setup:\n%s", out)
	}
	if out, err := p.Exec(ctx, "r1", bin, "realserver", "setup", "-vip", lvs.VIP); err != nil {
		t.Fatalf("realserver setup: %v\n%s", err, out)
	}
	out1 := rs()
	if !strings.Contains(out1, "OK    vip           192.0.2.100/32 on lo") || !strings.Contains(out1, "rp_filter     not strict on eth0") || strings.Contains(out1, "FAIL  arp") {
		t.Errorf("troop doctor -realserver after setup:\n%s", out1)
	}
	t.Logf("troop doctor -realserver on r1 after setup:\n%s", out1)

	cli := func(d string, args ...string) (string, error) {
		return p.Exec(ctx, lvs.ClientName, append([]string{bin}, append(args, "-address", url(d), "-ca-file", caFile, "-token", token)...)...)
	}
	var members string
	waitFor(t, 30*time.Second, "troop members lists three alive", func() error {
		members, err = cli("d2", "members")
		if err != nil {
			return err
		}
		if n := strings.Count(members, " alive "); n != 3 {
			return fmt.Errorf("%d alive:\n%s", n, members)
		}
		return nil
	})
	t.Logf("troop members:\n%s", members)

	applied, err := cli("d3", "apply", "-f", filepath.Join(out, "table.hcl"))
	if err != nil {
		t.Fatalf("troop apply -f table.hcl: %v\n%s", err, applied)
	}
	t.Logf("troop apply:\n%s", applied)
	for _, d := range p.Directors() {
		waitFor(t, 10*time.Second, d+" has the table", func() error {
			st, _, err := client(d).Status(ctx, api.ReadOptions{})
			if err != nil || st.Services != 1 {
				return fmt.Errorf("%d services (%v)", st.Services, err)
			}
			return nil
		})
	}
	waitFor(t, 10*time.Second, "the leader holds the VIP", func() error {
		if h := p.Holders(lvs.VIP); !slices.Equal(h, []string{leader}) {
			return fmt.Errorf("held by %v, want %s", h, leader)
		}
		return nil
	})

	// No token: refused, over the API and from the CLI, and nothing is changed.
	var apiErr *api.Error
	if _, _, err := api.NewClient(url(leader), hc).Status(ctx, api.ReadOptions{}); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("status without a token: %v, want a 401 refusal", err)
	}
	refused, err := p.Exec(ctx, lvs.ClientName, bin, "service", "rm", "web", "-address", url(leader), "-ca-file", caFile)
	if err == nil || !strings.Contains(refused, "needs an ACL token") {
		t.Errorf("troop service rm without a token: %v\n%s", err, refused)
	}
	t.Logf("without a token: %s", strings.TrimSpace(refused))
	if st, _, err := client(leader).Status(ctx, api.ReadOptions{}); err != nil || st.Services != 1 {
		t.Errorf("after the refused write: %d services (%v), want the table unchanged", st.Services, err)
	}
	// Plain HTTP is not served: the API is TLS only.
	if _, _, err := api.NewClient(strings.Replace(url(leader), "https", "http", 1), hc).WithToken(token).Status(ctx, api.ReadOptions{}); err == nil {
		t.Error("the API answered plain HTTP")
	}
}
