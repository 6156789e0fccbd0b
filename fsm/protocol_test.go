//go:build !troop_protocol1

package fsm

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestProtocolOfOps(t *testing.T) {
	if ProtocolVersion != 3 {
		t.Errorf("ProtocolVersion = %d, want 3", ProtocolVersion)
	}
	for op := range protocol1Ops {
		if got := op.MinProtocol(); got != 1 {
			t.Errorf("%s needs protocol %d, want 1", op, got)
		}
	}
	if got := OpSetHostAdmin.MinProtocol(); got != 2 {
		t.Errorf("set_host_admin needs protocol %d, want 2", got)
	}
	for _, op := range []Op{OpUpsertToken, OpDeleteToken} {
		if got := op.MinProtocol(); got != 3 {
			t.Errorf("%s needs protocol %d, want 3", op, got)
		}
	}
	if got := Op("teleport").MinProtocol(); got != 0 {
		t.Errorf("unknown op needs protocol %d, want 0", got)
	}
	for op, p := range laterOps {
		if p > ProtocolVersion || protocol1Ops[op] {
			t.Errorf("later op %s: protocol %d (this build speaks %d), also in protocol 1: %v", op, p, ProtocolVersion, protocol1Ops[op])
		}
	}
}

// hostPool is web (192.0.2.21 and .22 on port 80) and api (192.0.2.21 on 8080 and on 8081,
// 192.0.2.23), with health recorded for 192.0.2.21:80.
func hostPool(t *testing.T) *applier {
	t.Helper()
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	a.mustApply(UpsertService(Service{Name: "api", VIP: netip.MustParseAddr("192.0.2.11"), Port: 443, Forwarding: NAT, Reals: []Real{
		{Address: netip.MustParseAddr("192.0.2.21"), Port: 8080},
		{Address: netip.MustParseAddr("192.0.2.21"), Port: 8081},
		{Address: netip.MustParseAddr("192.0.2.23"), Port: 8080},
	}}))
	a.mustApply(UpsertService(Service{Name: "dns", VIP: netip.MustParseAddr("192.0.2.53"), Port: 53, Protocol: UDP}))
	a.mustApply(RecordHealth(time.Unix(5, 0), []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: HealthUp}}))
	return a
}

func adminOf(st *State) map[string]AdminState {
	out := map[string]AdminState{}
	for _, name := range st.ServiceNames() {
		s, _ := st.Service(name)
		for _, r := range s.Reals {
			out[name+" "+r.ID()] = r.Admin
		}
	}
	return out
}

func TestSetHostAdmin(t *testing.T) {
	a := hostPool(t)
	// An IPv4-mapped address names the same host.
	res := a.mustApply(SetHostAdmin(netip.MustParseAddr("::ffff:192.0.2.21"), Draining))
	if want := []string{"api", "web"}; !slices.Equal(res.Changed, want) {
		t.Errorf("changed %v, want %v", res.Changed, want)
	}
	want := map[string]AdminState{
		"api 192.0.2.21:8080": Draining, "api 192.0.2.21:8081": Draining, "api 192.0.2.23:8080": Enabled,
		"web 192.0.2.21:80": Draining, "web 192.0.2.22:80": Enabled,
	}
	st := a.f.View()
	if got := adminOf(st); !maps.Equal(got, want) {
		t.Errorf("admin states %v, want %v", got, want)
	}
	if h := st.Health("web", "192.0.2.21:80"); h.State != HealthUp {
		t.Errorf("health of a drained server = %v, want up (kept)", h)
	}

	// Again: nothing changes, and nothing is listed.
	if res := a.mustApply(SetHostAdmin(netip.MustParseAddr("192.0.2.21"), Draining)); len(res.Changed) != 0 {
		t.Errorf("repeat changed %v, want none", res.Changed)
	}
	// One service already disabled there: only the other is listed.
	a.mustApply(SetAdmin("web", "192.0.2.21:80", Disabled))
	if res := a.mustApply(SetHostAdmin(netip.MustParseAddr("192.0.2.21"), Disabled)); !slices.Equal(res.Changed, []string{"api"}) {
		t.Errorf("changed %v, want [api]", res.Changed)
	}
	a.mustApply(SetHostAdmin(netip.MustParseAddr("192.0.2.21"), Enabled))
	for id, s := range adminOf(a.f.View()) {
		if s != Enabled {
			t.Errorf("%s is %s after enable", id, s)
		}
	}
}

// Refusals name the field and the value, change nothing, and do not halt.
func TestSetHostAdminRefusals(t *testing.T) {
	a := hostPool(t)
	before := snapshotBytes(t, a.f)
	for _, tt := range []struct {
		c            Command
		kind         error
		field, value string
	}{
		{SetHostAdmin(netip.MustParseAddr("192.0.2.99"), Draining), ErrNotFound, "host", "192.0.2.99"},
		{SetHostAdmin(netip.MustParseAddr("192.0.2.11"), Draining), ErrNotFound, "host", "192.0.2.11"}, // a VIP, not a real server
		{SetHostAdmin(netip.MustParseAddr("192.0.2.21"), "sleeping"), ErrInvalid, "admin", "sleeping"},
		{SetHostAdmin(netip.MustParseAddr("192.0.2.21"), ""), ErrInvalid, "admin", ""},
		{SetHostAdmin(netip.Addr{}, Draining), ErrInvalid, "host", ""},
	} {
		c := tt.c
		if err := a.f.Prepare(&c); !errors.Is(err, tt.kind) {
			t.Errorf("Prepare(%+v) = %v, want %v", tt.c, err, tt.kind)
		}
		r := a.apply(tt.c)
		var fe *FieldError
		if !errors.As(r.Err, &fe) || !errors.Is(r.Err, tt.kind) || fe.Field != tt.field || fe.Value != tt.value {
			t.Errorf("%+v: err = %v, want %v on field %q value %q", tt.c, r.Err, tt.kind, tt.field, tt.value)
		}
	}
	if a.f.Halted() != nil {
		t.Fatalf("halted: %v", a.f.Halted())
	}
	if after := snapshotBytes(t, a.f); stripIndex(string(after)) != stripIndex(string(before)) {
		t.Errorf("a refused set_host_admin changed the state:\n%s", after)
	}
}

// The command round-trips through the log encoding.
func TestSetHostAdminEncoding(t *testing.T) {
	c := SetHostAdmin(netip.MustParseAddr("2001:db8::21"), Disabled)
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"op":"set_host_admin","admin":"disabled","host":"2001:db8::21"}`; string(b) != want {
		t.Errorf("encoded %s, want %s", b, want)
	}
	d, err := DecodeCommand(b)
	if err != nil || d.Host != c.Host || d.Admin != Disabled {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	if again, _ := EncodeCommand(*d); !bytes.Equal(again, b) {
		t.Errorf("re-encoded %s", again)
	}
}
