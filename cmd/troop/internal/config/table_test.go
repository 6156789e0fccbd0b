package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// checkDiagnostics asserts that err is a Diagnostics whose lines are exactly want.
func checkDiagnostics(t *testing.T, err error, want ...string) {
	t.Helper()
	var ds Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("error %v (%T) is not Diagnostics", err, err)
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func weight(w int) *int { return &w }

func ms(n int) fsm.Duration { return fsm.Duration(time.Duration(n) * time.Millisecond) }

func TestParseTableFields(t *testing.T) {
	src := `
service "web" {
  vip         = "192.0.2.10"
  port        = 80
  protocol    = "tcp"
  scheduler   = "sh"
  sched_flags = ["sh-port", "sh-fallback"]
  forwarding  = "dr"
  quiescent   = true
  persistence {
    timeout = "300s"
    netmask = 24
  }
  check "https" {
    port            = 8443
    interval        = "3s"
    timeout         = "2s"
    rise            = 3
    fall            = 4
    initial_state   = "down"
    method          = "GET"
    path            = "/index.html"
    host            = "www.example.org"
    expect_status   = ["200-299", "301"]
    expect          = "Test Page"
    expect_regexp   = "Test.*Page"
    tls_skip_verify = true
    ca_file         = "/etc/troop/ca.pem"
  }
  fallback {
    address    = "127.0.0.1"
    port       = 8080
    forwarding = "nat"
  }
  real "192.0.2.21:8080" {
    weight          = 3
    forwarding      = "nat"
    upper_threshold = 100
    lower_threshold = 50
    admin           = "draining"
  }
  real "192.0.2.22" {}
  real "192.0.2.20" { weight = 0 }
}

service "dns" {
  fwmark = 7
  family = "ipv6"
  check "dns" {
    query         = "example.org"
    query_type    = "AAAA"
    expect_rcode  = "NXDOMAIN"
    expect_answer = "2001:db8::53"
  }
  real "[2001:db8::53]:53" {}
  real "2001:db8::54" {}
}

service "exec" {
  vip = "2001:db8::10"
  port = 25
  protocol = "sctp"
  check "exec" { command = ["/usr/local/bin/check", "--x"] }
}

service "smtp" {
  vip = "192.0.2.11"
  port = 25
  check "tcp" {
    send   = "HELO troop\r\n"
    expect = "250"
    port   = null # null is "not set"
  }
}

vip_group "front" {
  interface = "eth0"
  vips      = ["192.0.2.10", "2001:db8::10/64"]
}
`
	got, err := ParseTable("table.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := fsm.Table{
		Services: []fsm.Service{
			{
				Name: "dns", FWMark: 7, Family: fsm.IPv6, Scheduler: "wlc", Forwarding: fsm.DR,
				Check: &fsm.HealthCheck{
					Type: "dns", Interval: ms(2000), Timeout: ms(1000), Rise: 2, Fall: 2, InitialState: fsm.HealthUp,
					Query: "example.org", QueryType: "AAAA", ExpectRcode: "NXDOMAIN", ExpectAnswer: "2001:db8::53",
				},
				Reals: []fsm.Real{
					{Address: netip.MustParseAddr("2001:db8::53"), Port: 53, Admin: fsm.Enabled},
					{Address: netip.MustParseAddr("2001:db8::54"), Admin: fsm.Enabled},
				},
			},
			{
				Name: "exec", VIP: netip.MustParseAddr("2001:db8::10"), Port: 25, Protocol: fsm.SCTP, Scheduler: "wlc", Forwarding: fsm.DR,
				Check: &fsm.HealthCheck{
					Type: "exec", Interval: ms(2000), Timeout: ms(1000), Rise: 2, Fall: 2, InitialState: fsm.HealthUp,
					Command: []string{"/usr/local/bin/check", "--x"},
				},
			},
			{
				Name: "smtp", VIP: netip.MustParseAddr("192.0.2.11"), Port: 25, Protocol: fsm.TCP, Scheduler: "wlc", Forwarding: fsm.DR,
				Check: &fsm.HealthCheck{
					Type: "tcp", Interval: ms(2000), Timeout: ms(1000), Rise: 2, Fall: 2, InitialState: fsm.HealthUp,
					Send: "HELO troop\r\n", Expect: "250",
				},
			},
			{
				Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: fsm.TCP,
				Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHFallback, fsm.FlagSHPort},
				Forwarding: fsm.DR, Quiescent: true,
				Persistence: &fsm.Persistence{Timeout: ms(300_000), Netmask: 24},
				Check: &fsm.HealthCheck{
					Type: "https", Port: 8443, Interval: ms(3000), Timeout: ms(2000), Rise: 3, Fall: 4,
					InitialState: fsm.HealthDown, Method: "GET", Path: "/index.html", Host: "www.example.org",
					ExpectStatus: []string{"200-299", "301"}, Expect: "Test Page", ExpectRegexp: "Test.*Page",
					TLSSkipVerify: true, CAFile: "/etc/troop/ca.pem",
				},
				Fallback: &fsm.Fallback{Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Forwarding: fsm.NAT},
				Reals: []fsm.Real{
					{Address: netip.MustParseAddr("192.0.2.20"), Port: 80, Weight: weight(0), Admin: fsm.Enabled},
					{
						Address: netip.MustParseAddr("192.0.2.21"), Port: 8080, Weight: weight(3), Forwarding: fsm.NAT,
						UpperThreshold: 100, LowerThreshold: 50, Admin: fsm.Draining,
					},
					{Address: netip.MustParseAddr("192.0.2.22"), Port: 80, Admin: fsm.Enabled},
				},
			},
		},
		VIPGroups: []fsm.VIPGroup{{
			Name: "front", Interface: "eth0",
			VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::10/64")},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseTable:\n got %s\nwant %s", dump(got), dump(want))
	}
}

// TestSeedExample reads the slides' ldirectord.cf deployment, as Troop writes it.
func TestSeedExample(t *testing.T) {
	src, err := os.ReadFile("testdata/seed.hcl")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTable("testdata/seed.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	want := fsm.Table{
		Services: []fsm.Service{{
			Name: "web", VIP: netip.MustParseAddr("192.0.2.6"), Port: 80, Protocol: fsm.TCP,
			Scheduler: "rr", Forwarding: fsm.DR, Quiescent: true,
			Check: &fsm.HealthCheck{
				Type: "http", Interval: ms(1000), Timeout: ms(500), Rise: 1, Fall: 1, InitialState: fsm.HealthUp,
				Method: "GET", Path: "/index.html", Expect: "Test Page",
			},
			Fallback: &fsm.Fallback{Address: netip.MustParseAddr("127.0.0.1"), Port: 80},
			Reals: []fsm.Real{
				{Address: netip.MustParseAddr("192.0.2.25"), Port: 80, Admin: fsm.Enabled},
				{Address: netip.MustParseAddr("192.0.2.27"), Port: 80, Admin: fsm.Enabled},
			},
		}},
		VIPGroups: []fsm.VIPGroup{{
			Name: "front", Interface: "eth0", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.6/25")},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("seed:\n got %s\nwant %s", dump(got), dump(want))
	}
	roundTrip(t, got)
}

func TestParseTableEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing yet\n"} {
		got, err := ParseTable("table.hcl", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got.Services == nil || len(got.Services) != 0 || got.VIPGroups != nil {
			t.Errorf("%q: got %#v, want the normalized empty table", src, got)
		}
	}
}

// tableErrorCases has one case per class of mistake: each must name the key or field, quote
// the value, and point at the line and column the user has to change. They also seed
// FuzzParseTable.
var tableErrorCases = []struct {
	name, src string
	want      []string
}{
	{
		name: "syntax",
		src:  "service \"web\" {\n  port = 80\n",
		want: []string{`table.hcl:1:15: Unclosed configuration block: There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`},
	},
	{
		name: "unknown top-level key and block",
		src:  "colour = \"red\"\nservces \"web\" {}\n",
		want: []string{
			`table.hcl:1:1: unknown key "colour"`,
			`table.hcl:2:1: unknown block "servces"; did you mean "service"?`,
		},
	},
	{
		name: "unknown keys in every block",
		src: `service "web" {
  vip = "192.0.2.10"
  port = 80
  protocl = "tcp"
  persistence {
    timeout = "60s"
    netmsk  = 24
  }
  check "http" { retries = 3 }
  fallback { addr = "127.0.0.1" }
  real "192.0.2.21" { weigth = 2 }
  health {}
}
vip_group "front" { vip = "192.0.2.10" }
`,
		want: []string{
			`table.hcl:4:3: service "web": unknown key "protocl"; did you mean "protocol"?`,
			`table.hcl:7:5: service "web" persistence: unknown key "netmsk"; did you mean "netmask"?`,
			`table.hcl:9:18: service "web" check: unknown key "retries"`,
			`table.hcl:10:14: service "web" fallback: unknown key "addr"`,
			`table.hcl:11:23: service "web" real "192.0.2.21:80": unknown key "weigth"; did you mean "weight"?`,
			`table.hcl:12:3: service "web": unknown block "health"`,
			`table.hcl:14:21: vip_group "front": unknown key "vip"; did you mean "vips"?`,
		},
	},
	{
		name: "key written as a block and block written as a key",
		src:  "service \"web\" {\n  vip { }\n  persistence = 300\n}\n",
		want: []string{
			`table.hcl:2:3: service "web": "vip" is a key, not a block: write vip = ...`,
			`table.hcl:3:3: service "web": "persistence" is a block, not a key: write persistence { ... }`,
		},
	},
	{
		name: "labels",
		src: `service {}
service "a" "b" {}
service "web" {
  persistence "sticky" {}
  check {}
  real {}
}
`,
		want: []string{
			`table.hcl:1:1: block "service" needs a label: service "name" { ... }`,
			`table.hcl:2:13: block "service" takes one label (name), got "b"`,
			`table.hcl:4:15: service "web": block "persistence" takes no label, got "sticky"`,
			`table.hcl:5:3: service "web": block "check" needs a label: check "type" { ... }`,
			`table.hcl:6:3: service "web": block "real" needs a label: real "address" { ... }`,
		},
	},
	{
		name: "wrong types",
		src: `service "web" {
  vip = 192
  port = "80"
  quiescent = "yes"
  sched_flags = "sh-port"
  persistence { timeout = 300 }
  check "http" {
    expect_status = ["200", 301]
    rise = 1.5
  }
}
`,
		want: []string{
			`table.hcl:2:3: service "web" vip: "192": must be an IP address string`,
			`table.hcl:3:3: service "web" port: "80": must be a whole number`,
			`table.hcl:4:3: service "web" quiescent: "yes": must be true or false`,
			`table.hcl:5:3: service "web" sched_flags: "sh-port": must be a list of strings, like ["a", "b"]`,
			`table.hcl:6:17: service "web" persistence timeout: "300": must be a duration string like "5s"`,
			`table.hcl:8:29: service "web" check expect_status: "301": must be a string`,
			`table.hcl:9:5: service "web" check rise: "1.5": must be a whole number`,
		},
	},
	{
		name: "rise of 0",
		src:  "service \"web\" {\n  vip = \"192.0.2.10\"\n  port = 80\n  check \"tcp\" { rise = 0 }\n}\n",
		want: []string{`table.hcl:4:17: service "web" check rise: "0": must be 1–100`},
	},
	{
		name: "out of range numbers",
		src: `service "web" {
  vip = "192.0.2.10"
  port = 70000
  fwmark = -1
  check "http" { fall = 1e12 }
}
`,
		want: []string{
			`table.hcl:3:3: service "web" port: "70000": must be 0–65535`,
			`table.hcl:4:3: service "web" fwmark: "-1": must be 0–4294967295`,
			`table.hcl:5:18: service "web" check fall: "1e12": must be 1–100`,
		},
	},
	{
		name: "unparsable values",
		src: `service "web" {
  vip = "192.0.2.300"
  check "http" {
    interval = "2 seconds"
    timeout  = "-1s"
  }
  fallback { address = "localhost" }
  real "www1.example.org" {}
  real "192.0.2.21:http" {}
}
vip_group "front" { vips = ["192.0.2.10", "192.0.2.11/33"] }
`,
		want: []string{
			`table.hcl:2:3: service "web" vip: "192.0.2.300": must be an IPv4 or IPv6 address`,
			`table.hcl:4:5: service "web" check interval: "2 seconds": must be a duration like "5s" or "250ms"`,
			`table.hcl:5:5: service "web" check timeout: "-1s": must not be negative`,
			`table.hcl:7:14: service "web" fallback address: "localhost": must be an IPv4 or IPv6 address`,
			`table.hcl:8:8: service "web" real: "www1.example.org": must be an address, address:port or [IPv6]:port`,
			`table.hcl:9:8: service "web" real: "192.0.2.21:http": must be an address, address:port or [IPv6]:port`,
			`table.hcl:11:43: vip_group "front" vips: "192.0.2.11/33": must be an address or address/prefix-length`,
		},
	},
	{
		name: "duplicates",
		src: `service "web" {
  vip = "192.0.2.10"
  port = 80
  check "http" {}
  check "tcp" {}
  persistence { timeout = "60s" }
  persistence { timeout = "60s" }
  fallback { address = "127.0.0.1" }
  fallback { address = "127.0.0.1" }
  real "192.0.2.21" {}
  real "192.0.2.21:80" {}
  real "::ffff:192.0.2.21" {}
}
service "web" {}
vip_group "front" { vips = ["192.0.2.10"] }
vip_group "front" { vips = ["192.0.2.11"] }
`,
		want: []string{
			`table.hcl:5:3: service "web" check: is defined twice, first at table.hcl:4:3`,
			`table.hcl:7:3: service "web" persistence: is defined twice, first at table.hcl:6:3`,
			`table.hcl:9:3: service "web" fallback: is defined twice, first at table.hcl:8:3`,
			`table.hcl:11:3: service "web" real "192.0.2.21:80": is defined twice, first at table.hcl:10:3`,
			`table.hcl:12:3: service "web" real "192.0.2.21:80": is defined twice, first at table.hcl:10:3`,
			`table.hcl:14:1: service "web": is defined twice, first at table.hcl:1:1`,
			`table.hcl:16:1: vip_group "front": is defined twice, first at table.hcl:15:1`,
		},
	},
	{
		// Reals are keyed by their normalized ID, whatever the order of port and real blocks.
		name: "duplicate real before the port",
		src:  "service \"web\" {\n  real \"192.0.2.21:80\" {}\n  vip = \"192.0.2.10\"\n  real \"192.0.2.21\" {}\n  port = 80\n}\n",
		want: []string{`table.hcl:4:3: service "web" real "192.0.2.21:80": is defined twice, first at table.hcl:2:3`},
	},
	{
		name: "repeated attribute",
		src:  "service \"web\" {\n  port = 80\n  port = 81\n}\n",
		want: []string{`table.hcl:3:3: Attribute redefined: The argument "port" was already set at table.hcl:2,3-7. Each argument may be set only once.`},
	},
	{
		name: "only literals",
		src: `service "web" {
  port = var.port
  vip = cidrhost("192.0.2.0/24", 10)
  sched_flags = ["a", "${x}"]
  scheduler = "wrr-${s}"
  fwmark = 1 + 1
  quiescent = true
  protocol = null
  persistence {
    netmask = -24
  }
}
`,
		want: []string{
			`table.hcl:2:10: service "web" port: "var.port": must be a literal string, number, bool or list; expressions are not evaluated`,
			`table.hcl:3:9: service "web" vip: "cidrhost(\"192.0.2.0/24\", 10)": must be a literal string, number, bool or list; expressions are not evaluated`,
			`table.hcl:4:23: service "web" sched_flags: "${x}": must be a literal string, number, bool or list; expressions are not evaluated`,
			`table.hcl:5:15: service "web" scheduler: "wrr-${s}": must be a literal string, number, bool or list; expressions are not evaluated`,
			`table.hcl:6:12: service "web" fwmark: "1 + 1": must be a literal string, number, bool or list; expressions are not evaluated`,
		},
	},
	{
		// The example of the brief: validation errors land on the attribute they are about.
		name: "validation: weight",
		src: `# Front-end web service.
service "web" {
  vip  = "192.0.2.10"
  port = 80

  check "http" {
    path = "/index.html"
  }

  real "192.0.2.21" {
    forwarding = "dr"
    weight     = 70000
  }
}
`,
		want: []string{`table.hcl:12:5: service "web" real "192.0.2.21:80" weight: "70000": must be 0–65535`},
	},
	{
		name: "validation: one problem per service, at the field",
		src: `service "a" {
  vip = "192.0.2.10"
  port = 80
  scheduler = "wrr"
  sched_flags = ["sh-port"]
}
service "b" {
  port = 80
}
service "c d" {
  vip = "192.0.2.12"
  port = 80
}
service "e" {
  vip = "192.0.2.13"
  port = 80
  check "htp" {}
}
service "f" {
  vip = "192.0.2.14"
  port = 80
  persistence { timeout = "1500ms" }
}
service "g" {
  vip = "192.0.2.15"
  port = 80
  real "192.0.2.31:8080" {}
}
service "h" {
  vip = "192.0.2.16"
  port = 80
  fallback { address = "::1" }
}
service "i" {
  vip = "192.0.2.17"
  port = 80
  real "192.0.2.32" { admin = "paused" }
}
`,
		want: []string{
			`table.hcl:5:18: service "a" sched_flags: "sh-port": applies only to scheduler sh, not wrr`,
			`table.hcl:7:1: service "b" vip: is required (or set fwmark)`,
			`table.hcl:10:1: service name: "c d": must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
			`table.hcl:17:9: service "e" check type: "htp": must be one of http, https, tcp, dns, exec, icmp, none`,
			`table.hcl:22:17: service "f" persistence timeout: "1.5s": must be whole seconds between 1s and 8760h0m0s`,
			`table.hcl:27:8: service "g" real "192.0.2.31:8080" port: "8080": forwarding dr cannot change the port; use nat or port 80`,
			`table.hcl:32:14: service "h" fallback address: "::1": is ipv6 but the service is ipv4`,
			`table.hcl:37:23: service "i" real "192.0.2.32:80" admin: "paused": must be one of enabled, draining, disabled`,
		},
	},
	{
		name: "validation: vip group",
		src: `vip_group "front" {
  interface = "a-very-long-interface-name"
  vips = ["192.0.2.10"]
}
vip_group "back" {
  vips = ["192.0.2.20", "192.0.2.20/24"]
}
vip_group "empty" {}
`,
		want: []string{
			`table.hcl:2:3: vip_group "front" interface: "a-very-long-interface-name": is not a valid interface name`,
			`table.hcl:6:11: vip_group "back" vips: "192.0.2.20": is listed twice`,
			`table.hcl:8:1: vip_group "empty" vips: must list at least one VIP`,
		},
	},
	{
		name: "validation: across the table",
		src: `service "a" {
  vip = "192.0.2.10"
  port = 80
}
service "b" {
  vip = "192.0.2.10"
  port = 80
}
`,
		want: []string{`table.hcl:5:1: service "b": "tcp 192.0.2.10:80": is already served by service "a"`},
	},
	{
		name: "validation: a VIP in two groups",
		src: `vip_group "a" { vips = ["192.0.2.10"] }
vip_group "b" { vips = ["192.0.2.11", "192.0.2.10"] }
`,
		want: []string{`table.hcl:2:39: vip_group "b" vips: "192.0.2.10": is already in vip_group "a"`},
	},
}

func TestParseTableErrors(t *testing.T) {
	for _, tc := range tableErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTable("table.hcl", []byte(tc.src))
			if !reflect.DeepEqual(got, fsm.Table{}) {
				t.Errorf("bad input returned a table: %#v", got)
			}
			checkDiagnostics(t, err, tc.want...)
		})
	}
}

// TestParseTableErrorKinds checks that callers can branch on what went wrong.
func TestParseTableErrorKinds(t *testing.T) {
	_, err := ParseTable("t.hcl", []byte("service \"a\" {}\nservice \"a\" {}\n"))
	if !errors.Is(err, fsm.ErrConflict) {
		t.Errorf("duplicate service: %v is not ErrConflict", err)
	}
	_, err = ParseTable("t.hcl", []byte("service \"a\" {\n  vip = \"192.0.2.1\"\n  port = 80\n  real \"192.0.2.2\" { weight = -1 }\n}\n"))
	var fe *fsm.FieldError
	if !errors.As(err, &fe) || fe.Field != `service "a" real "192.0.2.2:80" weight` || !errors.Is(err, fsm.ErrInvalid) {
		t.Errorf("bad weight: %v does not carry its *fsm.FieldError", err)
	}
	var ds Diagnostics
	if !errors.As(err, &ds) || len(ds) != 1 || ds[0].File != "t.hcl" || ds[0].Line != 4 || ds[0].Column != 22 {
		t.Errorf("bad weight: diagnostics %#v", ds)
	}
}
