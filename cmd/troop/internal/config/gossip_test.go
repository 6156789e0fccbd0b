package config

import (
	"reflect"
	"testing"
	"time"
)

// testGossipKeyB64 is base64 of 32 bytes.
const testGossipKeyB64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func TestParseAgentGossip(t *testing.T) {
	src := head + `gossip {
  address             = "192.0.2.11:9702"
  join                = ["192.0.2.12:9702", "192.0.2.13:9702"]
  key                 = "` + testGossipKeyB64 + `"
  probe_interval      = "500ms"
  probe_timeout       = "200ms"
  suspicion_mult      = 3
  stabilization_time  = "2s"
  dead_server_cleanup = "10m"
  min_quorum          = 5
}
`
	a, err := ParseAgent("agent.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Gossip{
		Enabled: true, Address: "192.0.2.11:9702", Join: []string{"192.0.2.12:9702", "192.0.2.13:9702"}, Key: testGossipKeyB64,
		ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond, SuspicionMult: 3,
		StabilizationTime: 2 * time.Second, DeadServerCleanup: 10 * time.Minute, MinQuorum: 5,
	}
	if !reflect.DeepEqual(a.Gossip, want) {
		t.Errorf("gossip: %+v\nwant   %+v", a.Gossip, want)
	}

	a, err = ParseAgent("agent.hcl", []byte(head+"gossip {\n  key_file = \"/etc/troop/gossip.key\"\n  dead_server_cleanup = \"never\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Gossip{Enabled: true, KeyFile: "/etc/troop/gossip.key", DeadServerCleanup: NeverCleanup}); !reflect.DeepEqual(a.Gossip, want) {
		t.Errorf("gossip: %+v, want %+v", a.Gossip, want)
	}
}

func TestParseAgentGossipErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "no key",
			src:  head + "gossip {\n}\n",
			want: []string{"agent.hcl:3:1: gossip key: give exactly one of key or key_file: the pool's shared gossip key (`troop keygen`)"},
		},
		{
			name: "not base64",
			src:  head + "gossip {\n  key = \"not a key!\"\n}\n",
			want: []string{"agent.hcl:4:3: gossip key: \"(secret)\": must be base64 (`troop keygen` makes one)"},
		},
		{
			name: "20 bytes",
			src:  head + "gossip {\n  key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM=\"\n}\n",
			want: []string{`agent.hcl:4:3: gossip key: "(secret)": must decode to 16, 24 or 32 bytes (AES-128, -192 or -256), not 20`},
		},
		{
			name: "bad cleanup",
			src:  head + "gossip {\n  key = \"" + testGossipKeyB64 + "\"\n  dead_server_cleanup = \"soon\"\n}\n",
			want: []string{
				`agent.hcl:5:3: gossip dead_server_cleanup: "soon": must be a positive duration ("10m") or "never"`,
			},
		},
		{
			name: "address and timing",
			src: head + "gossip {\n  key = \"" + testGossipKeyB64 + "\"\n  address = \"0.0.0.0:9702\"\n  join = [\"nohost\"]\n" +
				"  probe_interval = \"100ms\"\n  probe_timeout = \"100ms\"\n}\n",
			want: []string{
				`agent.hcl:5:3: gossip address: "0.0.0.0:9702": listens on all interfaces, which peers cannot reach; set gossip advertise`,
				`agent.hcl:6:11: gossip join: "nohost": must be host:port, with an IPv6 host in brackets ([2001:db8::1]:9701)`,
				`agent.hcl:8:3: gossip probe_timeout: "100ms": must be shorter than probe_interval 100ms`,
			},
		},
		{
			name: "twice",
			src:  head + "gossip {\n  key = \"" + testGossipKeyB64 + "\"\n}\ngossip {\n  key = \"" + testGossipKeyB64 + "\"\n}\n",
			want: []string{`agent.hcl:6:1: gossip: is defined twice, first at agent.hcl:3:1`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAgent("agent.hcl", []byte(tc.src))
			if !reflect.DeepEqual(got, Agent{}) {
				t.Errorf("bad input returned a config: %+v", got)
			}
			checkDiagnostics(t, err, tc.want...)
		})
	}
}
