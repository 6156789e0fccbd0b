package config

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

func TestParseAgent(t *testing.T) {
	src := `
node_id   = "d1"
data_dir  = "/var/lib/troop"
log_level = "debug"
witness   = true

api {
  address = "127.0.0.1:9700"
}

raft {
  address   = "0.0.0.0:9701"
  advertise = "192.0.2.1:9701"
  join      = ["192.0.2.2:9701", "d3.example.org:9701"]
  peer "d1" { address = "192.0.2.1:9701" }
  peer "d2" { address = "192.0.2.2:9701" }
  peer "d3" { address = "[2001:db8::3]:9701" }
  heartbeat_timeout    = "300ms"
  election_timeout     = "300ms"
  leader_lease_timeout = "150ms"
  commit_timeout       = "50ms"
  snapshot_threshold   = 8192
  snapshot_interval    = "2m"
  trailing_logs        = 10240
}
`
	got, err := ParseAgent("agent.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{
		NodeID: "d1", DataDir: "/var/lib/troop", LogLevel: "debug", Witness: true,
		API: API{Address: "127.0.0.1:9700"},
		Raft: Raft{
			Address: "0.0.0.0:9701", Advertise: "192.0.2.1:9701",
			Join: []string{"192.0.2.2:9701", "d3.example.org:9701"},
			Peers: []Peer{
				{ID: "d1", Address: "192.0.2.1:9701"},
				{ID: "d2", Address: "192.0.2.2:9701"},
				{ID: "d3", Address: "[2001:db8::3]:9701"},
			},
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 50 * time.Millisecond,
			SnapshotThreshold: 8192, SnapshotInterval: 2 * time.Minute, TrailingLogs: 10240,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseAgent:\n got %+v\nwant %+v", got, want)
	}
}

// TestParseAgentMinimal shows that only node_id and data_dir are required.
func TestParseAgentMinimal(t *testing.T) {
	got, err := ParseAgent("agent.hcl", []byte("node_id = \"d1\"\ndata_dir = \"/var/lib/troop\"\nraft { bootstrap_expect = 3 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{NodeID: "d1", DataDir: "/var/lib/troop", Raft: Raft{BootstrapExpect: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// head is the required part of an agent file, for cases about the rest.
const head = "node_id = \"d1\"\ndata_dir = \"/var/lib/troop\"\n"

// agentErrorCases are the mistakes an agent file can make; they also seed FuzzParseAgent.
var agentErrorCases = []struct {
	name, src string
	want      []string
}{
	{
		name: "required",
		src:  "log_level = \"info\"\n",
		want: []string{
			`agent.hcl:1:1: node_id: is required`,
			`agent.hcl:1:1: data_dir: is required`,
		},
	},
	{
		name: "unknown keys and blocks",
		src:  head + "consul {\n  address = \"0.0.0.0:9702\"\n}\nraft {\n  adress = \"0.0.0.0:9701\"\n  peers = []\n}\nloglevel = \"info\"\n",
		want: []string{
			`agent.hcl:3:1: unknown block "consul"`,
			`agent.hcl:7:3: raft: unknown key "adress"; did you mean "address"?`,
			`agent.hcl:8:3: raft: unknown key "peers"; did you mean "peer"?`,
			`agent.hcl:10:1: unknown key "loglevel"; did you mean "log_level"?`,
		},
	},
	{
		name: "witness",
		src:  head + "witness = \"yes\"\n",
		want: []string{`agent.hcl:3:1: witness: "yes": must be true or false`},
	},
	{
		name: "values",
		src: `node_id = "d 1"
data_dir = "/var/lib/troop"
log_level = "verbose"
api { address = "localhost" }
raft {
  address = "0.0.0.0:9701"
  join = ["192.0.2.2:9701", "192.0.2.3", ":9701", "0.0.0.0:9701", "bad_host:9701", "192.0.2.4:70000"]
}
`,
		want: []string{
			`agent.hcl:1:1: node_id: "d 1": must be 1–63 letters, digits, '.', '_' or '-'`,
			`agent.hcl:3:1: log_level: "verbose": must be one of debug, info, warn, error`,
			`agent.hcl:4:7: api address: "localhost": must be host:port, with an IPv6 host in brackets ([2001:db8::1]:9701)`,
			`agent.hcl:6:3: raft address: "0.0.0.0:9701": listens on all interfaces, which peers cannot dial; set raft advertise`,
			`agent.hcl:7:29: raft join: "192.0.2.3": must be host:port, with an IPv6 host in brackets ([2001:db8::1]:9701)`,
			`agent.hcl:7:42: raft join: ":9701": needs a host that other directors can dial`,
			`agent.hcl:7:51: raft join: "0.0.0.0:9701": needs a host that other directors can dial, not 0.0.0.0`,
			`agent.hcl:7:67: raft join: "bad_host:9701": host must be an IP address or a DNS name`,
			`agent.hcl:7:84: raft join: "192.0.2.4:70000": port must be 1–65535`,
		},
	},
	{
		name: "types and zero values",
		src: head + `raft {
  bootstrap_expect = 0
  heartbeat_timeout = "0s"
  election_timeout = 300
  snapshot_threshold = -1
  trailing_logs = 0
  advertise = 9701
}
`,
		want: []string{
			`agent.hcl:4:3: raft bootstrap_expect: "0": must be at least 1`,
			`agent.hcl:5:3: raft heartbeat_timeout: "0s": must be positive`,
			`agent.hcl:6:3: raft election_timeout: "300": must be a duration string like "5s"`,
			`agent.hcl:7:3: raft snapshot_threshold: "-1": must be at least 1`,
			`agent.hcl:8:3: raft trailing_logs: "0": must be at least 1`,
			`agent.hcl:9:3: raft advertise: "9701": must be a string`,
		},
	},
	{
		name: "raft timing",
		src: head + `raft {
  heartbeat_timeout = "200ms"
  election_timeout = "100ms"
  leader_lease_timeout = "300ms"
  commit_timeout = "500us"
  snapshot_interval = "1ms"
}
`,
		want: []string{
			`agent.hcl:5:3: raft election_timeout: "100ms": must be at least heartbeat_timeout 200ms`,
			`agent.hcl:6:3: raft leader_lease_timeout: "300ms": must not exceed heartbeat_timeout 200ms`,
			`agent.hcl:7:3: raft commit_timeout: "500µs": must be at least 1ms`,
			`agent.hcl:8:3: raft snapshot_interval: "1ms": must be at least 5ms`,
		},
	},
	{
		name: "commit timeout above heartbeat",
		src:  head + "raft {\n  heartbeat_timeout = \"100ms\"\n  commit_timeout = \"200ms\"\n}\n",
		want: []string{
			`agent.hcl:5:3: raft commit_timeout: "200ms": must not exceed heartbeat_timeout 100ms`,
		},
	},
	{
		name: "peers twice and without a label",
		src: head + `raft {
  peer "d1" { address = "192.0.2.1:9701" }
  peer "d1" { address = "192.0.2.2:9701" }
  peer { address = "192.0.2.3:9701" }
}
`,
		want: []string{
			`agent.hcl:5:3: raft peer "d1": is defined twice, first at agent.hcl:4:3`,
			`agent.hcl:6:3: raft: block "peer" needs a label: peer "id" { ... }`,
		},
	},
	{
		name: "peers and bootstrap_expect",
		src:  head + "raft {\n  bootstrap_expect = 3\n  peer \"d1\" { address = \"192.0.2.1:9701\" }\n}\n",
		want: []string{
			`agent.hcl:4:3: raft bootstrap_expect: "3": peer blocks and bootstrap_expect are mutually exclusive: list the peers or wait for the expected count, not both`,
		},
	},
	{
		name: "peer contents",
		src: head + `raft {
  peer "d2" { address = "192.0.2.2:9701" }
  peer "d 3" { address = "192.0.2.3:9701" }
  peer "d4" {}
  peer "d5" { address = "192.0.2.2:9701" }
  peer "d6" { address = "192.0.2.6" }
}
`,
		want: []string{
			`agent.hcl:3:1: raft peer: must include this node (node_id "d1")`,
			`agent.hcl:5:3: raft peer: "d 3": must be 1–63 letters, digits, '.', '_' or '-'`,
			`agent.hcl:6:3: raft peer "d4" address: is required`,
			`agent.hcl:7:15: raft peer "d5" address: "192.0.2.2:9701": is also peer "d2"'s address`,
			`agent.hcl:8:15: raft peer "d6" address: "192.0.2.6": must be host:port, with an IPv6 host in brackets ([2001:db8::1]:9701)`,
		},
	},
	{
		name: "director values",
		src:  head + "director {\n  sync_daemon { sync_id = 300 }\n  ipvs { enabled = \"no\" }\n}\n",
		want: []string{
			`agent.hcl:4:17: director sync_daemon sync_id: "300": must be 0–255`,
			`agent.hcl:5:10: director ipvs enabled: "no": must be true or false`,
		},
	},
	{
		name: "director rules",
		src:  head + "director {\n  interface = \"eth 0\"\n  announce { interval = \"500ms\" }\n  sync_daemon { sync_id = 1 }\n}\n",
		want: []string{
			`agent.hcl:4:3: director interface: "eth 0": is not a valid interface name`,
			`agent.hcl:5:14: director announce interval: "500ms": must be at least 1.1s: Linux ignores a second ARP update within its 1 s locktime`,
			`agent.hcl:6:3: director sync_daemon interface: is required`,
		},
	},
	{
		name: "blocks twice",
		src:  head + "api {}\napi {}\nraft {}\nraft {}\n",
		want: []string{
			`agent.hcl:4:1: api: is defined twice, first at agent.hcl:3:1`,
			`agent.hcl:6:1: raft: is defined twice, first at agent.hcl:5:1`,
		},
	},
}

func TestParseAgentErrors(t *testing.T) {
	for _, tc := range agentErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAgent("agent.hcl", []byte(tc.src))
			if !reflect.DeepEqual(got, Agent{}) {
				t.Errorf("bad input returned a config: %+v", got)
			}
			checkDiagnostics(t, err, tc.want...)
		})
	}
}

// TestAgentValidate covers configurations built without a file (flags, -dev): the same rules,
// as *fsm.FieldError values.
func TestAgentValidate(t *testing.T) {
	if err := (Agent{NodeID: "dev", DataDir: "/tmp/troop"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	err := Agent{NodeID: "d1", DataDir: "/x", Raft: Raft{
		BootstrapExpect:  -1,
		HeartbeatTimeout: -time.Second,
		Peers:            []Peer{{ID: "d1", Address: "192.0.2.1:9701"}, {ID: "d1", Address: "192.0.2.2:9701"}},
	}}.Validate()
	var fe *fsm.FieldError
	if !errors.As(err, &fe) || !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("Validate() = %v, want *fsm.FieldError", err)
	}
	want := `raft bootstrap_expect: "-1": must be at least 1
raft bootstrap_expect: "-1": peer blocks and bootstrap_expect are mutually exclusive: list the peers or wait for the expected count, not both
raft peer: "d1": is defined twice
raft heartbeat_timeout: "-1s": must be at least 5ms`
	if err.Error() != want {
		t.Errorf("Validate():\n%v\nwant:\n%s", err, want)
	}
}

func TestParseAgentDirector(t *testing.T) {
	src := `node_id = "d1"
data_dir = "/var/lib/troop"
director {
  interface          = "eth0"
  reconcile_interval = "10s"
  drain_period       = "1m"
  ipvs { enabled = false }
  announce {
    repeats  = 3
    interval = "2s"
    refresh  = "1m"
  }
  sync_daemon {
    interface = "eth1"
    sync_id   = 7
  }
}
`
	got, err := ParseAgent("agent.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := Director{
		Interface: "eth0", IPVS: &no, ReconcileInterval: 10 * time.Second, DrainPeriod: time.Minute,
		Announce:   Announce{Repeats: 3, Interval: 2 * time.Second, Refresh: time.Minute},
		SyncDaemon: &SyncDaemon{Interface: "eth1", SyncID: 7},
	}
	if !reflect.DeepEqual(got.Director, want) {
		t.Errorf("director:\n got %+v\nwant %+v", got.Director, want)
	}
	off, err := ParseAgent("agent.hcl", []byte(`node_id = "d1"
data_dir = "/x"
director { enabled = false }
`))
	if err != nil || off.Director.Enabled == nil || *off.Director.Enabled {
		t.Errorf("enabled = false: %+v, %v", off.Director.Enabled, err)
	}
}
