package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testFSM(t *testing.T) *FSM {
	t.Helper()
	return New(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// applier feeds commands to an FSM with increasing indexes, as the Raft log would.
type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (a *applier) apply(c Command) Result {
	a.t.Helper()
	b, err := EncodeCommand(c)
	if err != nil {
		a.t.Fatalf("encode: %v", err)
	}
	a.index++
	return a.f.Apply(a.index, b)
}

func (a *applier) mustApply(c Command) Result {
	a.t.Helper()
	r := a.apply(c)
	if r.Err != nil {
		a.t.Fatalf("apply %s: %v", c.Op, r.Err)
	}
	return r
}

func web() Service {
	return Service{
		Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80,
		Check: &HealthCheck{Type: "http", Path: "/index.html", Expect: "Test Page"},
		Reals: []Real{
			{Address: netip.MustParseAddr("192.0.2.22")},
			{Address: netip.MustParseAddr("192.0.2.21")},
		},
	}
}

func weight(w int) *int { return &w }

func TestUpsertServiceNormalizesAndKeepsReals(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	res := a.mustApply(UpsertService(web()))
	if got := strings.Join(res.Changed, ","); got != "web" {
		t.Fatalf("changed = %q, want web", got)
	}
	s, ok := a.f.View().Service("web")
	if !ok {
		t.Fatal("service web missing after upsert")
	}
	if s.Scheduler != "wlc" || s.Protocol != TCP || s.Forwarding != DR {
		t.Errorf("defaults not filled: scheduler %q protocol %q forwarding %q", s.Scheduler, s.Protocol, s.Forwarding)
	}
	if s.Reals[0].ID() != "192.0.2.21:80" || s.Reals[1].ID() != "192.0.2.22:80" {
		t.Errorf("reals not sorted with the service port: %v, %v", s.Reals[0].ID(), s.Reals[1].ID())
	}
	if s.Check.Interval != Duration(DefaultCheckInterval) || s.Check.Rise != DefaultCheckRise || s.Check.Method != "GET" {
		t.Errorf("check defaults not filled: %+v", s.Check)
	}

	// An upsert without reals changes the service but keeps its real servers.
	upd := web()
	upd.Reals = nil
	upd.Scheduler = "wrr"
	a.mustApply(UpsertService(upd))
	s, _ = a.f.View().Service("web")
	if s.Scheduler != "wrr" || len(s.Reals) != 2 {
		t.Errorf("after update: scheduler %q with %d reals, want wrr with 2", s.Scheduler, len(s.Reals))
	}
}

func TestRealCommands(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	a.mustApply(UpsertReal("web", Real{Address: netip.MustParseAddr("192.0.2.23"), Weight: weight(5)}))
	a.mustApply(SetWeight("web", "192.0.2.21:80", 0))
	a.mustApply(SetAdmin("web", "192.0.2.22:80", Draining))
	a.mustApply(DeleteReal("web", "192.0.2.23:80"))

	s, _ := a.f.View().Service("web")
	if len(s.Reals) != 2 {
		t.Fatalf("got %d reals, want 2", len(s.Reals))
	}
	if w := s.Reals[0].EffectiveWeight(); w != 0 {
		t.Errorf("weight of 192.0.2.21:80 = %d, want 0", w)
	}
	if s.Reals[1].Admin != Draining {
		t.Errorf("admin of 192.0.2.22:80 = %q, want draining", s.Reals[1].Admin)
	}
}

func TestRefusedCommandsChangeNothing(t *testing.T) {
	other := web()
	other.Name = "other"
	other.Reals = nil
	v6 := web()
	v6.Name = "v6"
	v6.VIP = netip.MustParseAddr("2001:db8::10")
	v6.Reals = []Real{{Address: netip.MustParseAddr("192.0.2.30")}}
	badSched := web()
	badSched.Scheduler = "fastest"
	badPort := web()
	badPort.Port = 0
	dupReal := web()
	dupReal.Reals = append(dupReal.Reals, Real{Address: netip.MustParseAddr("192.0.2.21"), Port: 80})
	drPort := web()
	drPort.Reals = []Real{{Address: netip.MustParseAddr("192.0.2.21"), Port: 8080}}

	tests := []struct {
		name      string
		cmd       Command
		kind      error
		wantInErr string
	}{
		{"same kernel key", UpsertService(other), ErrConflict, `"tcp 192.0.2.10:80": is already served by service "web"`},
		{"family mismatch", UpsertService(v6), ErrInvalid, `address: "192.0.2.30": is ipv4 but the service is ipv6`},
		{"unknown scheduler", UpsertService(badSched), ErrInvalid, `scheduler: "fastest": must be one of rr, wrr`},
		{"port 0", UpsertService(badPort), ErrInvalid, `service "web" port: "0": must be 1–65535`},
		{"duplicate real", UpsertService(dupReal), ErrConflict, `real: "192.0.2.21:80": is listed twice`},
		{"dr port change", UpsertService(drPort), ErrInvalid, `forwarding dr cannot change the port`},
		{"weight out of range", SetWeight("web", "192.0.2.21:80", 70000), ErrInvalid, `weight: "70000": must be 0–65535`},
		{"negative weight", SetWeight("web", "192.0.2.21:80", -1), ErrInvalid, `weight: "-1"`},
		{"bad admin", SetAdmin("web", "192.0.2.21:80", "paused"), ErrInvalid, `admin: "paused"`},
		{"missing service", DeleteService("nope"), ErrNotFound, `service: "nope": does not exist`},
		{"missing real", DeleteReal("web", "192.0.2.99:80"), ErrNotFound, `real: "192.0.2.99:80": does not exist`},
		{"real of missing service", UpsertReal("nope", Real{Address: netip.MustParseAddr("192.0.2.21")}), ErrNotFound, `"nope"`},
		{"bad health state", RecordHealth(time.Unix(0, 0), []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: "sideways"}}), ErrInvalid, `"sideways"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &applier{t: t, f: testFSM(t)}
			a.mustApply(UpsertService(web()))
			var before bytes.Buffer
			a.f.View().WriteTo(&before)

			// Prepare refuses it before it is proposed...
			c := tt.cmd
			if err := a.f.Prepare(&c); !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("Prepare error = %v, want %v containing %q", err, tt.kind, tt.wantInErr)
			}
			// ...and Apply refuses it too if it reaches the log anyway.
			res := a.apply(tt.cmd)
			if !errors.Is(res.Err, tt.kind) {
				t.Errorf("Apply error = %v, want %v", res.Err, tt.kind)
			}
			var after bytes.Buffer
			a.f.View().WriteTo(&after)
			// Only the applied index may differ.
			if b, af := stripIndex(before.String()), stripIndex(after.String()); b != af {
				t.Errorf("state changed by a refused command:\nbefore %s\nafter  %s", b, af)
			}
		})
	}
}

func stripIndex(snap string) string {
	i := strings.Index(snap, `"index":`)
	j := strings.Index(snap[i:], ",")
	return snap[:i] + snap[i+j:]
}

func TestHealthTransitions(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	res := a.mustApply(RecordHealth(at, []HealthTransition{
		{Service: "web", Real: "192.0.2.21:80", State: HealthDown, Reason: "connection refused"},
		{Service: "gone", Real: "192.0.2.50:80", State: HealthDown}, // deleted meanwhile: dropped
		{Service: "web", Real: "192.0.2.99:80", State: HealthDown},  // deleted meanwhile: dropped
	}))
	if strings.Join(res.Changed, ",") != "web" {
		t.Errorf("changed = %v, want [web]", res.Changed)
	}
	st := a.f.View()
	if h := st.Health("web", "192.0.2.21:80"); h.State != HealthDown || h.Reason != "connection refused" || !h.Since.Equal(at) {
		t.Errorf("health = %+v", h)
	}
	if h := st.Health("web", "192.0.2.22:80"); h.State != HealthUnknown {
		t.Errorf("untouched real health = %q, want unknown", h.State)
	}
	// Deleting the real forgets its health; re-adding starts unknown.
	a.mustApply(DeleteReal("web", "192.0.2.21:80"))
	a.mustApply(UpsertReal("web", Real{Address: netip.MustParseAddr("192.0.2.21")}))
	if h := a.f.View().Health("web", "192.0.2.21:80"); h.State != HealthUnknown {
		t.Errorf("re-added real health = %q, want unknown", h.State)
	}
	// The frozen view taken before is unaffected by later applies.
	if h := st.Health("web", "192.0.2.21:80"); h.State != HealthDown {
		t.Errorf("frozen view changed: %q", h.State)
	}
}

func TestApplyTableReplacesAndKeepsHealth(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	dns := Service{Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Port: 53, Protocol: UDP,
		Reals: []Real{{Address: netip.MustParseAddr("192.0.2.60")}}}
	a.mustApply(UpsertService(dns))
	a.mustApply(RecordHealth(time.Unix(1, 0), []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: HealthDown}}))

	w := web()
	w.Scheduler = "rr"
	res := a.mustApply(ApplyTable(Table{
		Services:  []Service{w},
		VIPGroups: []VIPGroup{{Name: "front", Interface: "eth0", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}}},
	}))
	if strings.Join(res.Changed, ",") != "dns,web" {
		t.Errorf("changed = %v, want [dns web]", res.Changed)
	}
	st := a.f.View()
	if strings.Join(st.ServiceNames(), ",") != "web" {
		t.Errorf("services = %v, want [web]", st.ServiceNames())
	}
	if h := st.Health("web", "192.0.2.21:80"); h.State != HealthDown {
		t.Errorf("health of a kept real lost: %q", h.State)
	}
	if len(st.Table().VIPGroups) != 1 {
		t.Errorf("vip groups = %v", st.Table().VIPGroups)
	}

	// A table with a VIP in two groups is refused whole.
	bad := Table{Services: []Service{web()}, VIPGroups: []VIPGroup{
		{Name: "a", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}},
		{Name: "b", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}},
	}}
	if r := a.apply(ApplyTable(bad)); !errors.Is(r.Err, ErrConflict) {
		t.Errorf("duplicate VIP across groups: err = %v, want conflict", r.Err)
	}
	if got := a.f.View().Table().Services[0].Scheduler; got != "rr" {
		t.Errorf("refused table partially applied: scheduler %q", got)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	a.mustApply(RecordHealth(time.Unix(5, 0), []HealthTransition{{Service: "web", Real: "192.0.2.22:80", State: HealthUp}}))
	frozen := a.f.View()
	// Applies after the snapshot was taken must not leak into it.
	a.mustApply(DeleteService("web"))

	var buf bytes.Buffer
	if _, err := frozen.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g := testFSM(t)
	if err := g.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	g.View().WriteTo(&again)
	if buf.String() != again.String() {
		t.Errorf("restore did not round-trip:\n%s\n%s", buf.String(), again.String())
	}
	if g.View().Index() != 2 {
		t.Errorf("restored index = %d, want 2", g.View().Index())
	}

	newer := strings.Replace(buf.String(), `"format":1`, `"format":9`, 1)
	if err := g.Restore(strings.NewReader(newer)); !errors.Is(err, ErrNewerVersion) {
		t.Errorf("newer snapshot: err = %v, want ErrNewerVersion", err)
	}
}

func TestValidationMessages(t *testing.T) {
	fw := Service{Name: "fw", FWMark: 7, Reals: []Real{{Address: netip.MustParseAddr("192.0.2.21")}}}
	tests := []struct {
		name string
		edit func(*Service)
		want string
	}{
		{"bad name", func(s *Service) { s.Name = "web service" }, `service name: "web service": must be`},
		{"no vip", func(s *Service) { s.VIP = netip.Addr{} }, `service "web" vip: is required (or set fwmark)`},
		{"multicast vip", func(s *Service) { s.VIP = netip.MustParseAddr("224.0.0.1") }, `vip: "224.0.0.1": must be a unicast address`},
		{"bad protocol", func(s *Service) { s.Protocol = "icmp" }, `protocol: "icmp": must be one of tcp, udp, sctp`},
		{"flag of other scheduler", func(s *Service) { s.Scheduler = "rr"; s.SchedFlags = []SchedulerFlag{FlagSHPort} }, `sched_flags: "sh-port": applies only to scheduler sh, not rr`},
		{"persistence fraction", func(s *Service) { s.Persistence = &Persistence{Timeout: Duration(1500 * time.Millisecond)} }, `persistence timeout: "1.5s": must be whole seconds`},
		{"persistence mask", func(s *Service) { s.Persistence = &Persistence{Timeout: Duration(time.Minute), Netmask: 33} }, `persistence netmask: "33"`},
		{"check timeout", func(s *Service) { s.Check.Timeout = Duration(5 * time.Second) }, `check timeout: "5s": must be positive and shorter than the interval 2s`},
		{"check timeout equal to interval", func(s *Service) { s.Check.Timeout = Duration(2 * time.Second) }, `check timeout: "2s": must be positive and shorter than the interval 2s`},
		{"check type", func(s *Service) { s.Check.Type = "smtp" }, `check type: "smtp"`},
		{"check status", func(s *Service) { s.Check.ExpectStatus = []string{"299-200"} }, `expect_status: "299-200"`},
		{"check regexp", func(s *Service) { s.Check.ExpectRegexp = "(" }, `expect_regexp: "("`},
		{"HEAD with expect", func(s *Service) { s.Check.Method = "HEAD" }, `check method: "HEAD": a HEAD response has no body`},
		{"relative exec", func(s *Service) { s.Check = &HealthCheck{Type: "exec", Command: []string{"check.sh"}} }, `check command: "check.sh": must be an absolute path`},
		{"dns type", func(s *Service) { s.Check = &HealthCheck{Type: "dns", Query: "example.org", QueryType: "AXFR"} }, `check query_type: "AXFR": must be one of A, AAAA`},
		{"dns rcode", func(s *Service) { s.Check = &HealthCheck{Type: "dns", Query: "example.org", ExpectRcode: "OK"} }, `check expect_rcode: "OK": must be one of NOERROR`},
		{"fallback family", func(s *Service) { s.Fallback = &Fallback{Address: netip.MustParseAddr("::1")} }, `fallback address: "::1": is ipv6 but the service is ipv4`},
		{"thresholds", func(s *Service) { s.Reals[0].UpperThreshold = 10; s.Reals[0].LowerThreshold = 20 }, `lower_threshold: "20": is above upper_threshold 10`},
		{"lower without upper", func(s *Service) { s.Reals[0].LowerThreshold = 5 }, `lower_threshold: "5": needs an upper_threshold at or above it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := web()
			tt.edit(&s)
			NormalizeService(&s)
			err := ValidateService(&s)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	NormalizeService(&fw)
	if err := ValidateService(&fw); err == nil || !strings.Contains(err.Error(), "needs family ipv4 or ipv6") {
		t.Errorf("fwmark without family: err = %v", err)
	}
	fw.Family = IPv4
	if err := ValidateService(&fw); err != nil {
		t.Errorf("valid fwmark service refused: %v", err)
	}
}

// A service upsert without reals, prepared before a real server was added, must not remove
// that real server when it is applied after it.
func TestStaleUpsertKeepsRealsAddedMeanwhile(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	upd := web()
	upd.Reals = nil
	upd.Scheduler = "rr"
	stale := UpsertService(upd)
	if err := a.f.Prepare(&stale); err != nil {
		t.Fatal(err)
	}
	a.mustApply(UpsertReal("web", Real{Address: netip.MustParseAddr("192.0.2.23")}))
	a.mustApply(stale)
	s, _ := a.f.View().Service("web")
	if len(s.Reals) != 3 || s.Scheduler != "rr" {
		t.Errorf("after a stale upsert: %d reals with scheduler %q, want 3 with rr", len(s.Reals), s.Scheduler)
	}
}

// Restoring a snapshot taken before any health verdict clears today's verdicts.
func TestRestoreWithoutHealthClearsHealth(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	snap := a.f.View().Snapshot()
	a.mustApply(RecordHealth(time.Unix(9, 0), []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: HealthDown}}))
	a.mustApply(Restore(snap))
	if h := a.f.View().Health("web", "192.0.2.21:80"); h.State != HealthUnknown {
		t.Errorf("health after restoring a snapshot without verdicts = %q, want unknown", h.State)
	}
}

func TestGroupNormalizesMappedVIP(t *testing.T) {
	g := VIPGroup{Name: "g", VIPs: []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.1/128"), netip.MustParsePrefix("::ffff:198.51.100.2/120")}}
	NormalizeGroup(&g)
	if err := ValidateGroup(&g); err != nil {
		t.Fatal(err)
	}
	if g.VIPs[0].String() != "198.51.100.1/32" || g.VIPs[1].String() != "198.51.100.2/24" {
		t.Errorf("mapped VIPs normalized to %v", g.VIPs)
	}
}

func TestTableCloneIsDeep(t *testing.T) {
	orig := Table{Services: []Service{web()}, VIPGroups: []VIPGroup{{Name: "g", VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}}}}
	c := orig.Clone()
	NormalizeTable(&c)
	c.Services[0].Reals[0].Port = 1
	c.Services[0].Check.Path = "/x"
	c.VIPGroups[0].VIPs[0] = netip.MustParsePrefix("192.0.2.11/32")
	if orig.Services[0].Reals[0].Port != 0 || orig.Services[0].Check.Path != "/index.html" || orig.VIPGroups[0].VIPs[0].Addr().String() != "192.0.2.10" {
		t.Errorf("editing a clone changed the original: %+v", orig)
	}
}

func TestWatcherCoalescesChanges(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	w := a.f.Watch()
	a.mustApply(UpsertService(web()))
	dns := Service{Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Port: 53, Protocol: UDP}
	a.mustApply(UpsertService(dns))
	a.mustApply(SetWeight("web", "192.0.2.21:80", 4))
	a.apply(DeleteService("nope")) // refused: changes nothing
	select {
	case <-w.C:
	default:
		t.Fatal("no signal after applies")
	}
	if names, all := w.Take(); strings.Join(names, ",") != "dns,web" || all {
		t.Errorf("Take = %v, %v; want [dns web], false", names, all)
	}
	if names, all := w.Take(); len(names) != 0 || all {
		t.Errorf("second Take = %v, %v; want nothing", names, all)
	}
	var snap bytes.Buffer
	a.f.View().WriteTo(&snap)
	if err := a.f.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if _, all := w.Take(); !all {
		t.Error("a restore did not mark everything changed")
	}
	a.f.Unwatch(w)
	a.mustApply(DeleteService("dns"))
	if names, _ := w.Take(); len(names) != 0 {
		t.Errorf("an unwatched watcher still hears: %v", names)
	}
}

// ServiceVIPs and VIPGroups give what Table holds of the VIPs, without copying the services.
func TestServiceVIPsAndGroupsMatchTable(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	dns := Service{Name: "dns", VIP: netip.MustParseAddr("192.0.2.5"), Port: 53, Protocol: UDP}
	web2 := web()
	web2.Name, web2.Port = "web-tls", 443 // the same VIP as web
	mark := Service{Name: "mark", FWMark: 7, Family: IPv4}
	groups := []VIPGroup{{Name: "b", VIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}}, {Name: "a", VIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.2/32")}}}
	a.mustApply(ApplyTable(Table{Services: []Service{web(), dns, web2, mark}, VIPGroups: groups}))
	st := a.f.View()
	if got, want := fmt.Sprint(st.ServiceVIPs()), "[192.0.2.5 192.0.2.10]"; got != want {
		t.Errorf("ServiceVIPs = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(st.VIPGroups()), fmt.Sprint(st.Table().VIPGroups); got != want || !strings.HasPrefix(got, "[{a ") {
		t.Errorf("VIPGroups = %s, want %s, sorted by name", got, want)
	}
}

// The readers of one state share one frozen copy; an apply or a restore gives the next View a
// new one, and the old copy stays as it was.
func TestViewsBetweenAppliesAreShared(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	v1 := a.f.View()
	if v2 := a.f.View(); v2 != v1 {
		t.Fatal("two views without an apply in between are different copies")
	}
	a.mustApply(SetWeight("web", "192.0.2.21:80", 7))
	v3 := a.f.View()
	if v3 == v1 || v3.Index() != v1.Index()+1 {
		t.Fatalf("after an apply: view at index %d (the old one at %d), same value %v", v3.Index(), v1.Index(), v3 == v1)
	}
	if s, _ := v1.Service("web"); s.Reals[0].Weight != nil && *s.Reals[0].Weight == 7 {
		t.Fatal("an apply changed an earlier view")
	}
	if a.apply(SetWeight("web", "192.0.2.99:80", 1)).Err == nil {
		t.Fatal("a refused entry was applied")
	}
	if v4 := a.f.View(); v4 == v3 || v4.Index() != v3.Index()+1 {
		t.Fatalf("a refused entry moves the index: view at %d, want %d", v4.Index(), v3.Index()+1)
	}
	var buf bytes.Buffer
	if _, err := v1.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	v5 := a.f.View()
	if err := a.f.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if v6 := a.f.View(); v6 == v5 || v6.Index() != v1.Index() {
		t.Fatalf("after a restore: view at index %d, want %d", v6.Index(), v1.Index())
	}
}
