package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"reflect"
	"testing"

	"github.com/troop-lb/troop/fsm"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func dump(t fsm.Table) string {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// roundTrip asserts that a parsed table survives FormatTable and ParseTable unchanged, and that
// formatting is idempotent.
func roundTrip(t *testing.T, tb fsm.Table) {
	t.Helper()
	out := FormatTable(tb)
	back, err := ParseTable("formatted.hcl", out)
	if err != nil {
		t.Fatalf("formatted table does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, tb) {
		t.Fatalf("round trip changed the table:\n got %s\nwant %s\nformatted:\n%s", dump(back), dump(tb), out)
	}
	if again := FormatTable(back); !bytes.Equal(again, out) {
		t.Fatalf("formatting is not idempotent:\n%s\nthen\n%s", out, again)
	}
}

// fullTable sets every field of every fsm struct in at least one place, so that the round trip
// covers the whole model (TestFullTableIsFull keeps it that way as fsm grows).
func fullTable() fsm.Table {
	return fsm.Table{
		Services: []fsm.Service{
			{
				Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 443, Protocol: fsm.TCP, Family: fsm.IPv4,
				Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHPort, fsm.FlagSHFallback},
				Persistence: &fsm.Persistence{Timeout: ms(300_000), Netmask: 24},
				Forwarding:  fsm.NAT,
				Check: &fsm.HealthCheck{
					Type: "https", Port: 8443, Interval: ms(5000), Timeout: ms(1500), Rise: 3, Fall: 4,
					InitialState: fsm.HealthDown, Method: "GET", Path: "/health", Host: "www.example.org",
					ExpectStatus: []string{"200-299", "301"}, Expect: "ok", ExpectRegexp: `^ok\s+"quoted" ${not} %{a template}$`,
					TLSSkipVerify: true, CAFile: "/etc/troop/ca.pem", Send: "PING\r\n",
					Query: "example.org", QueryType: "AAAA", ExpectRcode: "NXDOMAIN", ExpectAnswer: "2001:db8::1",
					Command: []string{"/bin/check", "--name=ünïcode", ""},
				},
				Fallback:  &fsm.Fallback{Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Forwarding: fsm.NAT},
				Quiescent: true,
				Reals: []fsm.Real{
					{Address: netip.MustParseAddr("192.0.2.22"), Port: 443},
					{
						Address: netip.MustParseAddr("192.0.2.21"), Port: 8443, Weight: weight(0), Forwarding: fsm.NAT,
						UpperThreshold: 1000, LowerThreshold: 10, Admin: fsm.Disabled,
					},
					{Address: netip.MustParseAddr("::ffff:192.0.2.23"), Weight: weight(1), Admin: fsm.Draining},
				},
			},
			{
				Name: "mark", FWMark: 4294967295, Family: fsm.IPv6, Scheduler: "mh",
				SchedFlags:  []fsm.SchedulerFlag{fsm.FlagMHPort},
				Persistence: &fsm.Persistence{Timeout: ms(1000)},
				Forwarding:  fsm.TUN,
				Check:       &fsm.HealthCheck{Type: "icmp", Interval: ms(500)},
				Fallback:    &fsm.Fallback{Address: netip.MustParseAddr("::1")},
				Reals: []fsm.Real{
					{Address: netip.MustParseAddr("2001:db8::21")},
					{Address: netip.MustParseAddr("2001:db8::22"), Port: 53, Forwarding: fsm.DR},
				},
			},
			{Name: "bare", VIP: netip.MustParseAddr("2001:db8::10"), Port: 53, Protocol: fsm.UDP},
		},
		VIPGroups: []fsm.VIPGroup{
			{Name: "v6", VIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::10/64")}},
			{Name: "front", Interface: "eth0.100", VIPs: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.9/25"),
			}},
		},
	}
}

func normalized(t fsm.Table) fsm.Table {
	t = t.Clone()
	fsm.NormalizeTable(&t)
	return t
}

func TestFullTableIsFull(t *testing.T) {
	set := map[string]bool{}
	all := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if v.Type().PkgPath() != reflect.TypeFor[fsm.Table]().PkgPath() {
				return // netip.Addr and friends are values, not parts of the model
			}
			for i := range v.NumField() {
				name := v.Type().Name() + "." + v.Type().Field(i).Name
				all[name] = true
				if !v.Field(i).IsZero() {
					set[name] = true
				}
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(fullTable()))
	for name := range all {
		if !set[name] {
			t.Errorf("fullTable never sets %s: add it there, to ParseTable and to FormatTable", name)
		}
	}
}

func TestFormatTableRoundTrip(t *testing.T) {
	full := fullTable()
	if err := fsm.ValidateTable(new(normalized(full))); err != nil {
		t.Fatalf("fullTable is not valid: %v", err)
	}
	for name, tb := range map[string]fsm.Table{
		"full":  full,
		"empty": {},
		"seed": {Services: []fsm.Service{{
			Name: "web", VIP: netip.MustParseAddr("192.0.2.6"), Port: 80,
			Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.25")}},
		}}},
	} {
		t.Run(name, func(t *testing.T) {
			before := dump(tb)
			out := FormatTable(tb)
			if dump(tb) != before {
				t.Errorf("FormatTable modified its argument")
			}
			got, err := ParseTable("formatted.hcl", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if want := normalized(tb); !reflect.DeepEqual(got, want) {
				t.Errorf("ParseTable(FormatTable(t)):\n got %s\nwant %s\nformatted:\n%s", dump(got), dump(want), out)
			}
			roundTrip(t, got)
		})
	}
}

// TestFormatTableGolden shows what FormatTable writes: sorted, defaults left out, aligned.
func TestFormatTableGolden(t *testing.T) {
	got := FormatTable(fullTable())
	const golden = "testdata/full.golden.hcl"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("FormatTable output differs from %s (go test -update to accept):\n%s", golden, got)
	}
}

// TestFormatTableSeed checks that the seed file is already in the shape FormatTable gives,
// comments and explicit defaults aside: its table formats to the minimal form.
func TestFormatTableSeed(t *testing.T) {
	src, err := os.ReadFile("testdata/seed.hcl")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := ParseTable("seed.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	want := `service "web" {
  vip       = "192.0.2.6"
  port      = 80
  scheduler = "rr"
  quiescent = true
  check "http" {
    interval = "1s"
    rise     = 1
    fall     = 1
    path     = "/index.html"
    expect   = "Test Page"
  }
  fallback {
    address = "127.0.0.1"
  }
  real "192.0.2.25" {}
  real "192.0.2.27" {}
}

vip_group "front" {
  interface = "eth0"
  vips      = ["192.0.2.6/25"]
}
`
	if got := string(FormatTable(tb)); got != want {
		t.Errorf("FormatTable(seed):\n%s\nwant:\n%s", got, want)
	}
}
