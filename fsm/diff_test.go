package fsm

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func webService(reals ...Real) Service {
	return Service{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Reals: reals}
}

func realAt(addr string, weight int) Real {
	return Real{Address: netip.MustParseAddr(addr), Weight: &weight}
}

func TestDiff(t *testing.T) {
	dns := Service{Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Port: 53, Protocol: UDP, Scheduler: "rr",
		Reals: []Real{realAt("192.0.2.31", 1)}}
	fw := Service{Name: "mail", FWMark: 7, Family: IPv6, Reals: []Real{{Address: netip.MustParseAddr("2001:db8::25")}}}
	edge := VIPGroup{Name: "edge", Interface: "eth0", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}}
	tests := []struct {
		name     string
		from, to Table
		want     string
	}{
		{name: "empty"},
		{
			name: "add service with reals",
			to:   Table{Services: []Service{webService(realAt("192.0.2.22", 1), realAt("192.0.2.21", 3))}},
			want: `+ service "web" (tcp 192.0.2.10:80)
+ real "192.0.2.21:80" in "web" weight 3
+ real "192.0.2.22:80" in "web" weight 1
`,
		},
		{
			name: "remove service with reals",
			from: Table{Services: []Service{fw}},
			want: `- service "mail" (fwmark 7 ipv6)
- real "[2001:db8::25]:0" in "mail" weight 1
`,
		},
		{
			name: "defaults spelled out or left out are equal",
			from: Table{Services: []Service{webService(Real{Address: netip.MustParseAddr("192.0.2.21")})}},
			to: Table{Services: []Service{{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Protocol: TCP,
				Scheduler: DefaultScheduler, Forwarding: DR, Reals: []Real{{Address: netip.MustParseAddr("192.0.2.21"), Port: 80, Weight: new(1), Admin: Enabled}}}}},
		},
		{
			name: "change service fields",
			from: Table{Services: []Service{webService()}},
			to: func() Table {
				s := webService()
				s.Scheduler = "wrr"
				s.Quiescent = true
				s.Persistence = &Persistence{Timeout: Duration(300 * time.Second)}
				return Table{Services: []Service{s}}
			}(),
			want: `~ service "web": scheduler "wlc" → "wrr"
~ service "web": persistence (unset) → {"timeout":"5m0s"}
~ service "web": quiescent false → true
`,
		},
		{
			name: "an added health check is one change, with its defaults",
			from: Table{Services: []Service{webService()}},
			to: func() Table {
				s := webService()
				s.Check = &HealthCheck{Type: "http", Path: "/healthz", ExpectStatus: []string{"200-299"}}
				return Table{Services: []Service{s}}
			}(),
			want: `~ service "web": check (unset) → {"type":"http","interval":"2s","timeout":"1s","rise":2,"fall":2,"initial_state":"up","method":"GET","path":"/healthz","expect_status":["200-299"]}
`,
		},
		{
			name: "change within a health check names the field",
			from: func() Table {
				s := webService()
				s.Check = &HealthCheck{Type: "http", Path: "/healthz", Expect: "ok"}
				return Table{Services: []Service{s}}
			}(),
			to: func() Table {
				s := webService()
				s.Check = &HealthCheck{Type: "http", Path: "/ready", Interval: Duration(5 * time.Second)}
				return Table{Services: []Service{s}}
			}(),
			want: `~ service "web": check.interval "2s" → "5s"
~ service "web": check.path "/healthz" → "/ready"
~ service "web": check.expect "ok" → (unset)
`,
		},
		{
			name: "remove a health check",
			from: func() Table {
				s := webService()
				s.Check = &HealthCheck{Type: "tcp"}
				return Table{Services: []Service{s}}
			}(),
			to: Table{Services: []Service{webService()}},
			want: `~ service "web": check {"type":"tcp","interval":"2s","timeout":"1s","rise":2,"fall":2,"initial_state":"up"} → (unset)
`,
		},
		{
			name: "real added, changed and removed",
			from: Table{Services: []Service{webService(realAt("192.0.2.21", 1), realAt("192.0.2.22", 1))}},
			to: func() Table {
				s := webService(realAt("192.0.2.22", 5), realAt("192.0.2.23", 0))
				s.Reals[0].Admin = Draining
				s.Reals[1].Admin = Disabled
				s.Reals[1].Forwarding = NAT
				return Table{Services: []Service{s}}
			}(),
			want: `- real "192.0.2.21:80" in "web" weight 1
~ real "192.0.2.22:80" in "web": weight 1 → 5
~ real "192.0.2.22:80" in "web": admin "enabled" → "draining"
+ real "192.0.2.23:80" in "web" weight 0 forwarding nat admin disabled
`,
		},
		{
			name: "services in name order, then vip groups",
			from: Table{Services: []Service{webService(), fw}, VIPGroups: []VIPGroup{edge}},
			to: func() Table {
				e := edge
				e.VIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.53/32")}
				core := VIPGroup{Name: "core", VIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}}
				return Table{Services: []Service{webService(), dns}, VIPGroups: []VIPGroup{e, core}}
			}(),
			want: `+ service "dns" (udp 192.0.2.53:53)
+ real "192.0.2.31:53" in "dns" weight 1
- service "mail" (fwmark 7 ipv6)
- real "[2001:db8::25]:0" in "mail" weight 1
+ vip_group "core" (2001:db8::1/128)
~ vip_group "edge": vips ["192.0.2.10/32"] → ["192.0.2.10/32","192.0.2.53/32"]
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromJSON, toJSON := mustJSON(t, tt.from), mustJSON(t, tt.to)
			got := FormatDiff(Diff(tt.from, tt.to))
			if got != tt.want {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tt.want)
			}
			if mustJSON(t, tt.from) != fromJSON || mustJSON(t, tt.to) != toJSON {
				t.Errorf("Diff modified its arguments")
			}
		})
	}
}

func TestDiffJSON(t *testing.T) {
	from := Table{Services: []Service{webService(realAt("192.0.2.21", 1))}}
	to := Table{Services: []Service{webService(realAt("192.0.2.21", 2))}}
	got := mustJSON(t, Diff(from, to))
	want := `[{"kind":"change","object":"real","name":"192.0.2.21:80","service":"web","changes":[{"field":"weight","before":1,"after":2}]}]`
	if got != want {
		t.Errorf("Diff as JSON:\n%s\nwant\n%s", got, want)
	}
}

// TestDiffProperties checks on random tables that a table has no difference from itself, nor from
// a shuffled copy of itself, and that two tables differ exactly when their normalized forms do.
func TestDiffProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genTable(t, "a"), genTable(t, "b")
		if d := Diff(a, a); len(d) != 0 {
			t.Fatalf("Diff(a, a) = %v", d)
		}
		shuffled := diffCopy(a)
		slices.Reverse(shuffled.Services)
		if d := Diff(a, shuffled); len(d) != 0 {
			t.Fatalf("Diff(a, reversed a) = %v", d)
		}
		na, nb := diffCopy(a), diffCopy(b)
		equal := reflect.DeepEqual(na, nb)
		if d := Diff(a, b); (len(d) == 0) != equal {
			t.Fatalf("Diff(a, b) = %v but normalized tables equal = %v", d, equal)
		}
		if got, again := FormatDiff(Diff(a, b)), FormatDiff(Diff(a, b)); got != again {
			t.Fatalf("Diff is not deterministic:\n%s\n%s", got, again)
		}
	})
}

func genTable(t *rapid.T, label string) Table {
	names := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"web", "dns", "mail", "api"}), 0, 3, rapid.ID[string]).Draw(t, label+" names")
	var tb Table
	for _, name := range names {
		s := Service{
			Name:      name,
			VIP:       netip.AddrFrom4([4]byte{192, 0, 2, rapid.ByteRange(1, 3).Draw(t, label+" vip")}),
			Port:      uint16(rapid.IntRange(80, 81).Draw(t, label+" port")),
			Scheduler: rapid.SampledFrom([]Scheduler{"", "wlc", "rr"}).Draw(t, label+" scheduler"),
			Quiescent: rapid.Bool().Draw(t, label+" quiescent"),
		}
		if rapid.Bool().Draw(t, label+" check") {
			s.Check = &HealthCheck{Type: "tcp", Rise: rapid.IntRange(0, 3).Draw(t, label+" rise")}
		}
		hosts := rapid.SliceOfNDistinct(rapid.ByteRange(20, 23), 0, 3, rapid.ID[byte]).Draw(t, label+" reals")
		for _, h := range hosts {
			r := Real{Address: netip.AddrFrom4([4]byte{192, 0, 2, h})}
			if w := rapid.IntRange(-1, 2).Draw(t, label+" weight"); w >= 0 {
				r.Weight = &w
			}
			s.Reals = append(s.Reals, r)
		}
		tb.Services = append(tb.Services, s)
	}
	return tb
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
