package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const tableHCL = `
service "web" {
  vip       = "192.0.2.10"
  port      = 80
  scheduler = "wlc"
  check "tcp" {}
  real "192.0.2.21" {}
  real "192.0.2.24" { weight = 2 }
}

service "api" {
  vip  = "192.0.2.11"
  port = 8080
}

vip_group "front" {
  interface = "eth0"
  vips      = ["192.0.2.10/24", "192.0.2.11/24"]
}
`

func TestPlanAndApply(t *testing.T) {
	c := newCLI(t)
	seedPool(t, c)
	file := writeFile(t, "pool.hcl", tableHCL)
	wantDiff := `+ service "api" (tcp 192.0.2.11:8080)
- service "dns" (udp 192.0.2.53:53)
- service "mail" (fwmark 7 ipv6)
- real "[2001:db8::25]:0" in "mail" weight 1 forwarding tun
~ service "web": scheduler "wrr" → "wlc"
~ service "web": persistence {"timeout":"5m0s","netmask":24} → (unset)
~ service "web": check.type "http" → "tcp"
~ service "web": check.method "GET" → (unset)
~ service "web": check.path "/healthz" → (unset)
~ service "web": check.expect_status ["200","300-399"] → (unset)
~ service "web": check.expect "ok" → (unset)
~ service "web": fallback {"address":"127.0.0.1","port":80} → (unset)
~ service "web": quiescent true → false
- real "192.0.2.22:80" in "web" weight 1 admin draining
- real "192.0.2.23:80" in "web" weight 3
+ real "192.0.2.24:80" in "web" weight 2
- service "web6" (tcp [2001:db8::10]:443)
- real "[2001:db8::21]:8443" in "web6" weight 0
+ vip_group "front" (eth0: 192.0.2.10/24, 192.0.2.11/24)
`
	diffText(t, "plan", c.ok("plan", "-f", file),
		wantDiff+"\nPlan: 3 to add, 1 to change, 7 to remove (against index 9).\n")
	if c.index() != 9 {
		t.Fatalf("plan changed the state: index %d", c.index())
	}

	diffText(t, "apply", c.ok("apply", "-f", file),
		wantDiff+"\nApplied "+file+" at index 10: 3 added, 1 changed, 7 removed.\n")
	if log := c.b.Log(); len(log) != 10 || log[9].Op != "apply_table" {
		t.Fatalf("apply: want one apply_table entry")
	}
	diffText(t, "plan after apply", c.ok("plan", "-f", file, "-consistent"), "No changes: the table at index 10 matches "+file+".\n")
	diffText(t, "apply again", c.ok("apply", "-f", file), "No changes: the table already matched "+file+" (index 11).\n")
	if out := c.ok("plan", "-json", "-f", file); !strings.Contains(out, `"diff": []`) || !strings.Contains(out, `"base_index": 11`) {
		t.Errorf("plan -json: %s", out)
	}
}

func TestPlanBadTableFile(t *testing.T) {
	c := newCLI(t)
	seedPool(t, c)
	file := writeFile(t, "bad.hcl", `service "web" {
  vip       = "192.0.2.10"
  port      = 80
  wieght    = 2
}
`)
	for _, verb := range []string{"plan", "apply"} {
		errOut := c.fails(exitError, verb, "-f", file)
		want := "Error: table file not valid, nothing sent:\n" + file + `:4:3: service "web": unknown key "wieght"` + "\n"
		diffText(t, verb+" of a bad file", errOut, want)
	}
	if c.index() != 9 {
		t.Errorf("a bad table file changed the state: index %d", c.index())
	}
}
