package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

const seedDir = "internal/migrate/testdata/seed"

// TestImportLdirectordSeed: the seed's ldirectord.cf becomes a table on stdout that `troop plan`
// would accept, with the findings on stderr; -o writes it instead.
func TestImportLdirectordSeed(t *testing.T) {
	out, errOut, code := runCLI(t, "import", "ldirectord", "-f", filepath.Join(seedDir, "ldirectord.cf"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tbl, err := config.ParseTable("stdout", []byte(out))
	if err != nil {
		t.Fatalf("stdout is not a table: %v\n%s", err, out)
	}
	if s := tbl.Services[0]; s.VIP.String() != "211.58.250.6" || s.Scheduler != "rr" || s.Check.Path != "/index.html" || s.Check.Expect != "Test Page" {
		t.Errorf("imported %+v", s)
	}
	if !strings.Contains(errOut, "ldirectord.cf:1: check timeout 3s") {
		t.Errorf("stderr lacks the findings:\n%s", errOut)
	}

	file := filepath.Join(t.TempDir(), "table.hcl")
	out, errOut, code = runCLI(t, "import", "ldirectord", "-f", filepath.Join(seedDir, "ldirectord.cf"), "-o", file)
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, out, errOut)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), `service "http"`) {
		t.Errorf("-o file: %v\n%s", err, b)
	}
}

// TestImportBroken: a file the importer cannot read exits 1 naming the line, with nothing on
// stdout and no -o file.
func TestImportBroken(t *testing.T) {
	for _, tc := range []struct{ verb, file, want string }{
		{"ldirectord", "internal/migrate/testdata/ldirectord/broken/bad-scheduler.cf", "bad-scheduler.cf:4: "},
		{"keepalived", "internal/migrate/testdata/keepalived/broken/unclosed.conf", "unclosed.conf:1: { is never closed"},
	} {
		file := filepath.Join(t.TempDir(), "table.hcl")
		out, errOut, code := runCLI(t, "import", tc.verb, "-f", tc.file, "-o", file)
		if code != exitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1, nothing, %q", tc.file, code, out, errOut, tc.want)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s: -o file written: %v", tc.file, err)
		}
	}
}

// TestImportHeartbeatDir: one agent file per director (and the witness), 0600, and a second
// run into the same directory writes nothing (its keys would not match the first's).
func TestImportHeartbeatDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agents")
	args := []string{"import", "heartbeat", "-ha-cf", filepath.Join(seedDir, "ha.cf"), "-haresources", filepath.Join(seedDir, "haresources"), "-authkeys", filepath.Join(seedDir, "authkeys")}
	out, errOut, code := runCLI(t, append(args, "-o", dir)...)
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "authkeys:2: INSECURE: crc") {
		t.Errorf("crc not flagged:\n%s", errOut)
	}
	for _, name := range []string{"ha1.hcl", "ha2.hcl", "witness.hcl"} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", name, err, st)
		}
		b, _ := os.ReadFile(p)
		if _, err := config.ParseAgent(name, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ha1.hcl"))
	if _, errOut, code := runCLI(t, append(args, "-o", dir)...); code != exitError || !strings.Contains(errOut, "already exists") {
		t.Errorf("second run: exit %d: %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ha1.hcl")); string(after) != string(before) {
		t.Error("second run changed ha1.hcl")
	}

	// Without -o, every file on stdout under a header naming it.
	out, _, code = runCLI(t, args...)
	if code != exitOK || !strings.Contains(out, "# ==> ha1.hcl <==") || !strings.Contains(out, "# ==> vip-group.hcl <==") {
		t.Errorf("stdout (exit %d):\n%s", code, out)
	}
}

// runCLI runs a troop command line that needs no agent.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}
