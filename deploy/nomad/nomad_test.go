// Package nomad holds the Nomad job for Troop directors (troop.nomad.hcl) and this test, which
// reads the job file as HCL and holds it to what a director pool needs from Nomad.
package nomad

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

const jobFile = "troop.nomad.hcl"

// TestNomadJob checks the job file as committed.
func TestNomadJob(t *testing.T) {
	src, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range jobProblems(t, src) {
		t.Error(p)
	}
}

// TestNomadJobProblemsAreFound edits the job file in memory, one mistake at a time, and checks
// that jobProblems reports each: every rule TestNomadJob relies on can fail.
func TestNomadJobProblemsAreFound(t *testing.T) {
	src, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"service job", `type = "system"`, `type = "service"`, `job type`},
		{"no constraint", `constraint {`, `affinity {`, `constraint`},
		{"bridge network", `mode = "host"`, `mode = "bridge"`, `network mode`},
		{"extra capability", `cap_add  = ["net_admin", "net_raw"]`, `cap_add  = ["net_admin", "net_raw", "sys_admin"]`, `cap_add`},
		{"missing capability", `cap_add  = ["net_admin", "net_raw"]`, `cap_add  = ["NET_ADMIN"]`, `cap_add`},
		{"default capabilities kept", `cap_drop = ["all"]`, `cap_drop = []`, `cap_drop`},
		{"parallel update", `max_parallel     = 1`, `max_parallel     = 2`, `max_parallel`},
		{"health from task states", `health_check     = "checks"`, `health_check     = "task_states"`, `health_check`},
		{"no auto revert", `auto_revert      = true`, `auto_revert      = false`, `auto_revert`},
		{"liveness path", `path     = "/v1/agent/ready"`, `path     = "/v1/status"`, `check path`},
		{"SIGINT", `kill_signal  = "SIGTERM"`, `kill_signal  = "SIGINT"`, `kill_signal`},
		{"short kill timeout", `kill_timeout = "30s"`, `kill_timeout = "5s"`, `kill_timeout`},
		{"docker", `driver = "exec"`, `driver = "docker"`, `driver`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(string(src), tc.old) != 1 {
				t.Fatalf("%s: %q must occur exactly once in %s", tc.name, tc.old, jobFile)
			}
			mutated := strings.Replace(string(src), tc.old, tc.new, 1)
			problems := jobProblems(t, []byte(mutated))
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("after replacing %q by %q, no problem mentions %q; got %q", tc.old, tc.new, tc.want, problems)
			}
		})
	}
}

// jobProblems parses a job file and lists every way it falls short of what a director pool
// needs. A file that does not parse fails the test.
func jobProblems(t *testing.T, src []byte) []string {
	t.Helper()
	f, diags := hclsyntax.ParseConfig(src, jobFile, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", jobFile, diags.Error())
	}
	root := f.Body.(*hclsyntax.Body)
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, jobFile+": "+fmt.Sprintf(format, args...))
	}

	job := one(root, "job")
	if job == nil {
		return []string{"no job block"}
	}
	if got := str(job, "type"); got != "system" {
		bad("job type = %q, want \"system\" (one director per director node)", got)
	}
	group := one(job, "group")
	if group == nil {
		return append(problems, "no group block")
	}
	// A constraint may sit on the job, the group or the task; it must name an attribute
	// (node.class or a meta key) and a value.
	task := one(group, "task")
	if task == nil {
		return append(problems, "no task block")
	}
	constrained := false
	for _, b := range []*hclsyntax.Body{job, group, task} {
		for _, c := range all(b, "constraint") {
			if _, ok := c.Attributes["attribute"]; ok && str(c, "value") != "" {
				constrained = true
			}
		}
	}
	if !constrained {
		bad("no constraint with an attribute and a value: the job would run on every client")
	}
	if net := one(group, "network"); net == nil {
		bad("no group network block: network mode must be \"host\"")
	} else if got := str(net, "mode"); got != "host" {
		bad("group network mode = %q, want \"host\" (the agent owns VIPs on the host interface)", got)
	}

	if u := one(group, "update"); u == nil {
		bad("no group update block")
	} else {
		if got := num(u, "max_parallel"); got != 1 {
			bad("update max_parallel = %d, want 1 (one voter out at a time)", got)
		}
		if got := str(u, "health_check"); got != "checks" {
			bad("update health_check = %q, want \"checks\" (readiness decides)", got)
		}
		if got := boolean(u, "auto_revert"); !got {
			bad("update auto_revert = false, want true")
		}
	}

	driver := str(task, "driver")
	if driver != "exec" && driver != "raw_exec" {
		bad("task driver = %q, want exec or raw_exec", driver)
	}
	if cfg := one(task, "config"); cfg == nil {
		bad("no task config block")
	} else {
		add := strs(cfg, "cap_add")
		slices.Sort(add)
		if !slices.Equal(add, []string{"NET_ADMIN", "NET_RAW"}) {
			bad("task config cap_add = %q, want exactly NET_ADMIN and NET_RAW", add)
		}
		// Without cap_drop = ["all"] the task would keep the driver's default set besides.
		if drop := strs(cfg, "cap_drop"); !slices.Equal(drop, []string{"ALL"}) {
			bad("task config cap_drop = %q, want [\"all\"] so that cap_add is the whole set", drop)
		}
	}
	if got := str(task, "kill_signal"); got != "SIGTERM" {
		bad("task kill_signal = %q, want SIGTERM (the agent's graceful handover)", got)
	}
	if got := str(task, "kill_timeout"); got != "30s" {
		bad("task kill_timeout = %q, want \"30s\"", got)
	}

	// The readiness check may be on a task or a group service.
	var paths []string
	for _, b := range []*hclsyntax.Body{group, task} {
		for _, s := range all(b, "service") {
			for _, c := range all(s, "check") {
				if str(c, "type") == "http" {
					paths = append(paths, str(c, "path"))
				}
			}
		}
	}
	if !slices.Contains(paths, "/v1/agent/ready") {
		bad("no service http check path /v1/agent/ready (got %q)", paths)
	}
	return problems
}

// all returns the bodies of b's direct blocks of one type.
func all(b *hclsyntax.Body, typ string) []*hclsyntax.Body {
	var out []*hclsyntax.Body
	for _, blk := range b.Blocks {
		if blk.Type == typ {
			out = append(out, blk.Body)
		}
	}
	return out
}

// one returns the body of b's first block of a type, or nil.
func one(b *hclsyntax.Body, typ string) *hclsyntax.Body {
	if bs := all(b, typ); len(bs) > 0 {
		return bs[0]
	}
	return nil
}

// value evaluates a literal attribute with no variables; cty.NilVal if it is missing or not a
// literal.
func value(b *hclsyntax.Body, name string) cty.Value {
	a, ok := b.Attributes[name]
	if !ok {
		return cty.NilVal
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() {
		return cty.NilVal
	}
	return v
}

func str(b *hclsyntax.Body, name string) string {
	if v := value(b, name); v != cty.NilVal && v.Type() == cty.String {
		return v.AsString()
	}
	return ""
}

func num(b *hclsyntax.Body, name string) int64 {
	if v := value(b, name); v != cty.NilVal && v.Type() == cty.Number {
		n, _ := v.AsBigFloat().Int64()
		return n
	}
	return -1
}

func boolean(b *hclsyntax.Body, name string) bool {
	v := value(b, name)
	return v != cty.NilVal && v.Type() == cty.Bool && v.True()
}

// strs returns a literal list of strings, upper-cased (capability names are case-insensitive).
func strs(b *hclsyntax.Body, name string) []string {
	v := value(b, name)
	if v == cty.NilVal || !(v.Type().IsTupleType() || v.Type().IsListType()) {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() == cty.String {
			out = append(out, strings.ToUpper(e.AsString()))
		}
	}
	return out
}
