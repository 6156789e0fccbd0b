package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/troop-lb/troop/api"
)

func TestSnapshotSaveRestore(t *testing.T) {
	c := newCLI(t)
	seedPool(t, c)
	file := filepath.Join(t.TempDir(), "pool.snap")
	var want bytes.Buffer
	if _, err := c.b.View().WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	diffText(t, "snapshot save", c.ok("snapshot", "save", file),
		fmt.Sprintf("Saved the state at index 9 (leader-verified) to %s (%d bytes).\n", file, want.Len()))
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("saved file differs from State.WriteTo (%v):\n%s\n%s", err, got, want.Bytes())
	}

	c.ok("service", "rm", "web")
	c.ok("real", "weight", "web6", "[2001:db8::21]:8443", "4")
	diffText(t, "snapshot restore", c.ok("snapshot", "restore", file), `+ service "web" (tcp 192.0.2.10:80)
+ real "192.0.2.21:80" in "web" weight 1
+ real "192.0.2.22:80" in "web" weight 1 admin draining
+ real "192.0.2.23:80" in "web" weight 3
~ real "[2001:db8::21]:8443" in "web6": weight 4 → 0

Applied `+file+` at index 12: 4 added, 1 changed, 0 removed.
`)
	if h := c.b.View().Health("web", "192.0.2.22:80"); h.Reason != "HTTP 503" {
		t.Errorf("health after restore: %+v, want the snapshot's", h)
	}

	// Without a leader only -stale saves; nothing is left behind by the failed save.
	c.b.SetLeaderless(true)
	stale := filepath.Join(t.TempDir(), "stale.snap")
	diffText(t, "snapshot save without leader", c.fails(exitError, "snapshot", "save", stale),
		"Error: consistent read: read index: no leader\n")
	if entries, _ := os.ReadDir(filepath.Dir(stale)); len(entries) != 0 {
		t.Errorf("failed save left %v", entries)
	}
	c.ok("snapshot", "save", "-stale", stale)
	missing := filepath.Join(t.TempDir(), "none.snap")
	diffText(t, "restore of a missing file", c.fails(exitError, "snapshot", "restore", missing),
		"Error: open "+missing+": no such file or directory\n")
}

// TestSnapshotSaveTruncated checks that a snapshot cut short in transit does not replace the file.
func TestSnapshotSaveTruncated(t *testing.T) {
	c := newCLI(t)
	seedPool(t, c)
	srv := api.NewServer(c.b, nil)
	truncating := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
	}))
	defer truncating.Close()
	file := filepath.Join(t.TempDir(), "pool.snap")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut := c.fails(exitError, "snapshot", "save", "-address", truncating.URL, file)
	if want := "Error: snapshot from " + truncating.URL + " is unusable, " + file + " not written: read snapshot: unexpected EOF\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	if got, _ := os.ReadFile(file); string(got) != "old" {
		t.Errorf("file replaced by %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 1 {
		t.Errorf("temporary file left behind: %v", entries)
	}
}
