package director_test

import (
	"testing"
	"time"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

func TestDesiredTable(t *testing.T) {
	tb := newTable(t, web(), dns(), fwm())
	got := director.Desired(tb.state(), director.ReconcilerOptions{}, nil, newClock().Now())
	diffText(t, "desired table", renderDesired(got), `
UDP 192.0.2.53:53 rr (dns) persistent 300 mask 24
  -> 198.51.100.1:5353 nat 1 u100 l10
FWM 7 IPv6 sh (mark) sh-fallback sh-port mask 128
  -> [2001:db8::21]:0 tun 2
TCP 192.0.2.10:80 wlc (web) mask 32
  -> 192.0.2.21:80 dr 5
  -> 192.0.2.22:80 dr 1
`)
}

// TestDesiredRealStates is the table of how a real server's admin state, health and the
// service's quiescent flag map to IPVS.
func TestDesiredRealStates(t *testing.T) {
	tests := []struct {
		name      string
		admin     fsm.AdminState
		health    fsm.Health // committed; "" records nothing
		quiescent bool
		check     *fsm.HealthCheck
		want      string
	}{
		{name: "enabled healthy", admin: fsm.Enabled, health: fsm.HealthUp, want: "  -> 192.0.2.21:80 dr 5"},
		{name: "enabled unknown, check starts up", admin: fsm.Enabled, want: "  -> 192.0.2.21:80 dr 5"},
		{name: "enabled unknown, check starts down", admin: fsm.Enabled,
			check: &fsm.HealthCheck{Type: "tcp", InitialState: fsm.HealthDown}, want: "  remove now 192.0.2.21:80"},
		{name: "enabled unknown, check starts down, quiescent", admin: fsm.Enabled, quiescent: true,
			check: &fsm.HealthCheck{Type: "tcp", InitialState: fsm.HealthDown}, want: "  -> 192.0.2.21:80 dr 0"},
		{name: "down, not quiescent: removed at once", admin: fsm.Enabled, health: fsm.HealthDown, want: "  remove now 192.0.2.21:80"},
		{name: "down, quiescent: weight 0", admin: fsm.Enabled, health: fsm.HealthDown, quiescent: true, want: "  -> 192.0.2.21:80 dr 0"},
		{name: "draining: weight 0", admin: fsm.Draining, health: fsm.HealthUp, want: "  -> 192.0.2.21:80 dr 0"},
		{name: "draining and down, quiescent", admin: fsm.Draining, health: fsm.HealthDown, quiescent: true, want: "  -> 192.0.2.21:80 dr 0"},
		{name: "draining and down, not quiescent", admin: fsm.Draining, health: fsm.HealthDown, want: "  remove now 192.0.2.21:80"},
		{name: "disabled: absent (drained by the reconciler)", admin: fsm.Disabled, health: fsm.HealthUp, want: ""},
		{name: "disabled and down, quiescent", admin: fsm.Disabled, health: fsm.HealthDown, quiescent: true, want: ""},
		{name: "no check: verdicts do not apply", admin: fsm.Enabled, health: fsm.HealthDown, check: &fsm.HealthCheck{Type: "none"},
			want: "  -> 192.0.2.21:80 dr 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fsm.Service{
				Name: "web", VIP: addr("192.0.2.10"), Port: 80, Quiescent: tt.quiescent,
				Check: &fsm.HealthCheck{Type: "tcp"},
				Reals: []fsm.Real{{Address: addr("192.0.2.21"), Weight: weight(5), Admin: tt.admin}},
			}
			if tt.check != nil {
				s.Check = tt.check
			}
			tb := newTable(t, s)
			if tt.health != "" {
				tb.health("web", "192.0.2.21:80", tt.health)
			}
			got := director.Desired(tb.state(), director.ReconcilerOptions{}, nil, time.Now())
			diffText(t, "desired", renderDesired(got), "TCP 192.0.2.10:80 wlc (web) mask 32\n"+tt.want)
		})
	}
}

func TestDesiredFallback(t *testing.T) {
	s := web()
	s.Fallback = &fsm.Fallback{Address: addr("192.0.2.99")}
	s.Quiescent = true
	tb := newTable(t, s)
	now := time.Now()
	desired := func() string {
		return renderDesired(director.Desired(tb.state(), director.ReconcilerOptions{}, nil, now))
	}

	diffText(t, "all up", desired(), `
TCP 192.0.2.10:80 wlc (web) mask 32
  -> 192.0.2.21:80 dr 5
  -> 192.0.2.22:80 dr 1
  remove now 192.0.2.99:80
`)
	tb.health("web", "192.0.2.21:80", fsm.HealthDown)
	tb.health("web", "192.0.2.22:80", fsm.HealthDown)
	diffText(t, "all down (quiescent: weight 0)", desired(), `
TCP 192.0.2.10:80 wlc (web) mask 32 fallback
  -> 192.0.2.21:80 dr 0
  -> 192.0.2.22:80 dr 0
  -> 192.0.2.99:80 dr 1
`)
	s.Quiescent = false
	tb.apply(fsm.UpsertService(s))
	tb.health("web", "192.0.2.21:80", fsm.HealthDown)
	tb.health("web", "192.0.2.22:80", fsm.HealthDown)
	diffText(t, "all down (not quiescent: removed)", desired(), `
TCP 192.0.2.10:80 wlc (web) mask 32 fallback
  -> 192.0.2.99:80 dr 1
  remove now 192.0.2.21:80
  remove now 192.0.2.22:80
`)
	tb.health("web", "192.0.2.22:80", fsm.HealthUp)
	diffText(t, "one back", desired(), `
TCP 192.0.2.10:80 wlc (web) mask 32
  -> 192.0.2.22:80 dr 1
  remove now 192.0.2.21:80
  remove now 192.0.2.99:80
`)
	tb.apply(fsm.SetAdmin("web", "192.0.2.22:80", fsm.Draining))
	diffText(t, "the one left is admin-draining: fallback serves", desired(), `
TCP 192.0.2.10:80 wlc (web) mask 32 fallback
  -> 192.0.2.22:80 dr 0
  -> 192.0.2.99:80 dr 1
  remove now 192.0.2.21:80
`)
}

func TestDesiredKeepsDrainsForTheirPeriod(t *testing.T) {
	tb := newTable(t, web())
	key := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: addr("192.0.2.10"), Port: 80}
	start := newClock().Now()
	gone := director.DestinationKey{Address: addr("192.0.2.23"), Port: 80}
	back := director.DestinationKey{Address: addr("192.0.2.22"), Port: 80}
	drains := director.Drains{key: {
		gone: {Since: start, Destination: director.Destination{DestinationKey: gone, Forwarding: fsm.DR, Weight: 0, ActiveConns: 3}},
		back: {Since: start, Destination: director.Destination{DestinationKey: back, Forwarding: fsm.DR}},
	}}
	opts := director.ReconcilerOptions{DrainPeriod: 10 * time.Second}
	diffText(t, "within the period", renderDesired(director.Desired(tb.state(), opts, drains, start.Add(9*time.Second))), `
TCP 192.0.2.10:80 wlc (web) mask 32
  -> 192.0.2.21:80 dr 5
  -> 192.0.2.22:80 dr 1
  -> 192.0.2.23:80 dr 0 draining
`)
	diffText(t, "after the period", renderDesired(director.Desired(tb.state(), opts, drains, start.Add(10*time.Second))), `
TCP 192.0.2.10:80 wlc (web) mask 32
  -> 192.0.2.21:80 dr 5
  -> 192.0.2.22:80 dr 1
`)
}

func TestKeyOf(t *testing.T) {
	for _, tt := range []struct {
		s    fsm.Service
		want string
	}{
		{web(), "TCP 192.0.2.10:80"},
		{dns(), "UDP 192.0.2.53:53"},
		{fwm(), "FWM 7 IPv6"},
		{fsm.Service{FWMark: 9, VIP: addr("192.0.2.9")}, "FWM 9 IPv4"},
		{fsm.Service{VIP: addr("2001:db8::1"), Port: 443, Protocol: fsm.SCTP}, "SCTP [2001:db8::1]:443"},
	} {
		fsm.NormalizeService(&tt.s)
		k := director.KeyOf(&tt.s)
		if k.String() != tt.want {
			t.Errorf("KeyOf(%s) = %s, want %s", tt.s.Key(), k, tt.want)
		}
		back, err := director.ParseServiceKey(k.String())
		if err != nil || back != k {
			t.Errorf("ParseServiceKey(%q) = %+v, %v; want %+v", k, back, err, k)
		}
	}
}
