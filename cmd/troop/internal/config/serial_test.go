package config

import (
	"reflect"
	"testing"
	"time"
)

func TestParseAgentSerial(t *testing.T) {
	src := head + `serial {
  peer      = "d2"
  device    = "/dev/ttyS0"
  baud      = 19200
  keepalive = "250ms"
  deadtime  = "2s"
  key       = "0123456789abcdef"
}
serial {
  peer     = "d3"
  device   = "/dev/ttyS1"
  key_file = "/etc/troop/serial.key"
}
`
	a, err := ParseAgent("agent.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Serial{
		{Peer: "d2", Device: "/dev/ttyS0", Baud: 19200, Keepalive: 250 * time.Millisecond, Deadtime: 2 * time.Second, Key: "0123456789abcdef"},
		{Peer: "d3", Device: "/dev/ttyS1", KeyFile: "/etc/troop/serial.key"},
	}
	if !reflect.DeepEqual(a.Serial, want) {
		t.Errorf("serial: %+v\nwant   %+v", a.Serial, want)
	}
}

func TestParseAgentSerialErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "twice to one peer",
			src: head + "serial {\n  peer = \"d2\"\n  device = \"/dev/ttyS0\"\n  key = \"0123456789abcdef\"\n}\n" +
				"serial {\n  peer = \"d2\"\n  device = \"/dev/ttyS1\"\n  key = \"0123456789abcdef\"\n}\n",
			want: []string{`agent.hcl:8:1: serial "d2": is defined twice, first at agent.hcl:3:1`},
		},
		{
			name: "missing fields",
			src:  head + "serial {\n}\n",
			want: []string{
				`agent.hcl:3:1: serial "" peer: is required: the node ID of the director at the other end`,
				`agent.hcl:3:1: serial "" device: is required`,
				`agent.hcl:3:1: serial "" key: give exactly one of key or key_file: the secret shared with the peer`,
			},
		},
		{
			name: "zero baud",
			src:  head + "serial {\n  baud = 0\n}\n",
			want: []string{`agent.hcl:4:3: serial "" baud: "0": must be at least 1`},
		},
		{
			name: "bad values",
			src:  head + "serial {\n  peer = \"d1\"\n  device = \"/dev/ttyS0\"\n  key = \"short\"\n  key_file = \"/k\"\n  keepalive = \"1s\"\n  deadtime = \"1s\"\n}\n",
			want: []string{
				`agent.hcl:4:3: serial "d1" peer: "d1": is this node`,
				`agent.hcl:6:3: serial "d1" key: give exactly one of key or key_file: the secret shared with the peer`,
				`agent.hcl:9:3: serial "d1" deadtime: "1s": must be at least twice keepalive 1s, or one late frame marks the link down`,
			},
		},
		{
			name: "short key",
			src:  head + "serial {\n  peer = \"d2\"\n  device = \"/dev/ttyS0\"\n  key = \"short\"\n}\n",
			want: []string{`agent.hcl:6:3: serial "d2" key: "(secret)": must be at least 16 bytes`},
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
