package config

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/troop-lb/troop/fsm"
)

// checkFuzzDiagnostics asserts the shape every rejection must have: a non-empty Diagnostics
// whose entries all have a position and a message.
func checkFuzzDiagnostics(t *testing.T, err error) {
	t.Helper()
	var ds Diagnostics
	if !errors.As(err, &ds) || len(ds) == 0 {
		t.Fatalf("error %v (%T) is not a non-empty Diagnostics", err, err)
	}
	for _, d := range ds {
		if d.Line < 1 || d.Column < 1 || d.Message == "" || d.File != "fuzz.hcl" {
			t.Fatalf("diagnostic without a position or message: %#v", d)
		}
	}
}

func addFiles(f *testing.F, paths ...string) {
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
}

// FuzzParseTable: ParseTable never panics, rejects with positioned diagnostics and no table, and
// whatever it accepts survives FormatTable and ParseTable unchanged.
func FuzzParseTable(f *testing.F) {
	addFiles(f, "testdata/seed.hcl", "testdata/full.golden.hcl")
	for _, tc := range tableErrorCases {
		f.Add([]byte(tc.src))
	}
	f.Add([]byte(`service "x" { fwmark = 1
family = "ipv4"
real "192.0.2.1:0" {}
}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		tb, err := ParseTable("fuzz.hcl", src)
		if err != nil {
			checkFuzzDiagnostics(t, err)
			if !reflect.DeepEqual(tb, fsm.Table{}) {
				t.Fatalf("rejected input returned a table: %s", dump(tb))
			}
			return
		}
		roundTrip(t, tb)
	})
}

// FuzzParseAgent: ParseAgent never panics, rejects with positioned diagnostics and no config, and
// what it accepts passes Validate.
func FuzzParseAgent(f *testing.F) {
	f.Add([]byte(head + "raft {\n  address = \"0.0.0.0:9701\"\n  advertise = \"192.0.2.1:9701\"\n  peer \"d1\" { address = \"192.0.2.1:9701\" }\n  heartbeat_timeout = \"300ms\"\n}\n"))
	for _, tc := range agentErrorCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		a, err := ParseAgent("fuzz.hcl", src)
		if err != nil {
			checkFuzzDiagnostics(t, err)
			if !reflect.DeepEqual(a, Agent{}) {
				t.Fatalf("rejected input returned a config: %+v", a)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}
