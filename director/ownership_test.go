package director_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

func TestOwnershipFileSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), director.OwnershipFile)
	o, err := director.LoadOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	if o.Len() != 0 {
		t.Fatalf("a missing file is an empty set, got %v", o.Keys())
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("loading must not create the file: %v", err)
	}
	web := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("192.0.2.10"), Port: 80}
	mark := director.ServiceKey{Family: fsm.IPv6, FWMark: 7}
	dns := director.ServiceKey{Family: fsm.IPv6, Protocol: fsm.UDP, Address: addr("2001:db8::53"), Port: 53}
	if err := o.Add(web, mark, dns); err != nil {
		t.Fatal(err)
	}
	if err := o.Remove(dns); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	diffText(t, "ownership file", string(b), `{
  "format": 1,
  "services": [
    "TCP 192.0.2.10:80",
    "FWM 7 IPv6"
  ]
}`)
	again, err := director.LoadOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Owns(web) || !again.Owns(mark) || again.Owns(dns) || again.Len() != 2 {
		t.Fatalf("reopened set = %v", again.Keys())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestOwnershipWriteFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", director.OwnershipFile)
	o, err := director.LoadOwnership(path) // the directory does not exist: writes fail
	if err != nil {
		t.Fatal(err)
	}
	k := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("192.0.2.10"), Port: 80}
	if err := o.Add(k); err == nil {
		t.Fatal("Add succeeded without a directory to write to")
	}
	if o.Owns(k) {
		t.Fatal("a failed Add changed the set")
	}
}

func TestOwnershipRefusesABadFile(t *testing.T) {
	for name, content := range map[string]string{
		"not json":     "{",
		"newer format": `{"format": 2, "services": []}`,
		"bad key":      `{"format": 1, "services": ["TCP nowhere"]}`,
		"unknown key":  `{"format": 1, "services": [], "extra": 1}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), director.OwnershipFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := director.LoadOwnership(path)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadOwnership = %v, want an error naming %s", err, path)
			}
		})
	}
}

func TestParseServiceKeyRefuses(t *testing.T) {
	for _, s := range []string{"", "TCP", "ICMP 192.0.2.1:1", "TCP 192.0.2.1", "FWM 0 IPv4", "FWM 7 IPX", "FWM x IPv4"} {
		if k, err := director.ParseServiceKey(s); err == nil {
			t.Errorf("ParseServiceKey(%q) = %v, want an error", s, k)
		}
	}
}
