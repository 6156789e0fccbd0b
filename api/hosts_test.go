package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/fsm"
)

func TestClientSetHostAdmin(t *testing.T) {
	ctx := context.Background()
	c, b := newClient(t)
	host := netip.MustParseAddr("192.0.2.21")
	for _, svc := range []fsm.Service{
		{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80, Reals: []fsm.Real{{Address: host}, {Address: netip.MustParseAddr("192.0.2.22")}}},
		{Name: "api", VIP: netip.MustParseAddr("192.0.2.11"), Port: 443, Forwarding: fsm.NAT, Reals: []fsm.Real{{Address: host, Port: 8080}, {Address: host, Port: 8081, Admin: fsm.Draining}}},
	} {
		if _, err := c.PutService(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.WithActor("ops").SetHostAdmin(ctx, host, fsm.Draining)
	if err != nil {
		t.Fatal(err)
	}
	want := api.HostAdminResult{Index: 3, Changed: []api.HostReal{{Service: "api", Real: "192.0.2.21:8080"}, {Service: "web", Real: "192.0.2.21:80"}}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("SetHostAdmin = %+v, want %+v", res, want)
	}
	if last := b.Log()[2]; last.Op != fsm.OpSetHostAdmin || last.Actor != "ops" {
		t.Errorf("logged %+v", last)
	}
	// Again: nothing changes.
	if res, err := c.SetHostAdmin(ctx, host, fsm.Draining); err != nil || len(res.Changed) != 0 {
		t.Errorf("repeat: %+v, %v; want no change", res, err)
	}

	var ae *api.Error
	_, err = c.SetHostAdmin(ctx, netip.MustParseAddr("192.0.2.99"), fsm.Draining)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound || ae.Field != "host" || ae.Value != "192.0.2.99" || !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("unknown host: %#v", err)
	}
	_, err = c.SetHostAdmin(ctx, host, "paused")
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Field != "admin" || ae.Value != "paused" {
		t.Errorf("bad state: %#v", err)
	}
}

func TestHostAdminRouteRefusesBadInput(t *testing.T) {
	srv := api.NewServer(apitest.NewBackend(testLogger(t)), testLogger(t))
	for _, tt := range []struct{ path, body, msg string }{
		{"/v1/hosts/web1/admin", `{"admin":"draining"}`, `must be an IP address","field":"host","value":"web1"`},
		{"/v1/hosts/192.0.2.21/admin", `{}`, `admin: is required (enabled, draining or disabled)`},
	} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("PUT", tt.path, strings.NewReader(tt.body)))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tt.msg) {
			t.Errorf("PUT %s %s: %d %s, want 400 %q", tt.path, tt.body, w.Code, w.Body, tt.msg)
		}
	}
}
