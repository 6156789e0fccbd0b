package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// The package map of design.md, enforced: data flows change → Raft → FSM → director → kernel,
// fsm does no I/O, probe never touches IPVS, and nothing below api reaches up.
func TestPackageDependencies(t *testing.T) {
	forbidden := map[string][]string{
		"fsm": {"net", "net/http", "os/exec", "github.com/hashicorp/raft", "github.com/troop-lb/troop/cluster",
			"github.com/troop-lb/troop/director", "github.com/troop-lb/troop/probe", "github.com/troop-lb/troop/api"},
		"cluster":  {"github.com/troop-lb/troop/director", "github.com/troop-lb/troop/probe", "github.com/troop-lb/troop/api"},
		"probe":    {"github.com/troop-lb/troop/director", "github.com/cloudflare/ipvs", "github.com/troop-lb/troop/api"},
		"director": {"github.com/troop-lb/troop/probe", "github.com/troop-lb/troop/api"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/troop-lb/troop/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range bad {
			if deps[b] {
				t.Errorf("package %s depends on %s, which the architecture forbids", pkg, b)
			}
		}
	}
}
