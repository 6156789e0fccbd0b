package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/fsm"
)

// harness serves the API over an apitest.Backend, calling the handler in-process.
type harness struct {
	t   *testing.T
	b   *apitest.Backend
	srv *api.Server
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	b := apitest.NewBackend(testLogger(t))
	return &harness{t: t, b: b, srv: api.NewServer(b, testLogger(t))}
}

// testLogger sends log lines to t.Log, so they show only for failing tests.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do sends a request; headers are given as alternating names and values.
func (h *harness) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	return w
}

// ok sends a request that must succeed with 200 (or 204) and decodes its answer into out.
func (h *harness) ok(method, path, body string, out any) *httptest.ResponseRecorder {
	h.t.Helper()
	w := h.do(method, path, body)
	if w.Code != http.StatusOK && w.Code != http.StatusNoContent {
		h.t.Fatalf("%s %s: status %d: %s", method, path, w.Code, w.Body)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, w.Body, err)
		}
	}
	return w
}

const webJSON = `{"vip":"192.0.2.10","port":80,"scheduler":"wrr","persistence":{"timeout":"300s"},
	"reals":[{"address":"192.0.2.21"},{"address":"192.0.2.22","weight":3}]}`

// seed creates service "web" with two real servers at index 1.
func (h *harness) seed() {
	h.t.Helper()
	h.ok("PUT", "/v1/services/web", webJSON, nil)
}

func TestServiceAndRealRoutes(t *testing.T) {
	h := newHarness(t)
	var wr api.WriteResult
	w := h.ok("PUT", "/v1/services/web", webJSON, &wr)
	if wr.Index != 1 || w.Header().Get(api.HeaderIndex) != "1" {
		t.Fatalf("upsert service: index %d, header %q, want 1", wr.Index, w.Header().Get(api.HeaderIndex))
	}

	// Writes, each one entry. The real-server routes take the ID in any of its forms.
	steps := []struct{ method, path, body string }{
		{"PUT", "/v1/services/web/reals/192.0.2.23:80", `{"weight":2}`},
		{"PUT", "/v1/services/web/reals/192.0.2.24", ``},
		{"POST", "/v1/services/web/reals", `{"address":"192.0.2.25","weight":0}`},
		{"PUT", "/v1/services/web/reals/192.0.2.21/weight", `{"weight":5}`},
		{"PUT", "/v1/services/web/reals/192.0.2.22:80/admin", `{"admin":"draining"}`},
		{"DELETE", "/v1/services/web/reals/192.0.2.25:80", ``},
		// A service upsert without reals keeps them.
		{"PUT", "/v1/services/web", `{"name":"web","vip":"192.0.2.10","port":80,"scheduler":"rr"}`},
	}
	for i, s := range steps {
		h.ok(s.method, s.path, s.body, &wr)
		if want := uint64(i + 2); wr.Index != want {
			t.Fatalf("%s %s: index %d, want %d", s.method, s.path, wr.Index, want)
		}
	}
	if _, err := h.b.Apply(context.Background(), fsm.RecordHealth(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		[]fsm.HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: fsm.HealthDown, Reason: "connection refused"}})); err != nil {
		t.Fatal(err)
	}

	var got api.ServiceStatus
	w = h.ok("GET", "/v1/services/web", "", &got)
	if c, i := w.Header().Get(api.HeaderConsistency), w.Header().Get(api.HeaderIndex); c != "local" || i != "9" {
		t.Errorf("read headers: consistency %q index %q, want local 9", c, i)
	}
	wantReals := `[{"address":"192.0.2.21","port":80,"weight":5,"admin":"enabled"},` +
		`{"address":"192.0.2.22","port":80,"weight":3,"admin":"draining"},` +
		`{"address":"192.0.2.23","port":80,"weight":2,"admin":"enabled"},` +
		`{"address":"192.0.2.24","port":80,"admin":"enabled"}]`
	if s := mustJSON(t, got.Reals); s != wantReals {
		t.Errorf("reals:\n%s\nwant\n%s", s, wantReals)
	}
	if got.Scheduler != "rr" || got.Persistence != nil {
		t.Errorf("service after upsert: scheduler %q persistence %v, want rr and none", got.Scheduler, got.Persistence)
	}
	wantHealth := `{"192.0.2.21:80":{"state":"down","reason":"connection refused","since":"2026-01-02T03:04:05Z"},` +
		`"192.0.2.22:80":{"state":"unknown"},"192.0.2.23:80":{"state":"unknown"},"192.0.2.24:80":{"state":"unknown"}}`
	if s := mustJSON(t, got.Health); s != wantHealth {
		t.Errorf("health:\n%s\nwant\n%s", s, wantHealth)
	}

	var list api.ServiceList
	h.ok("GET", "/v1/services", "", &list)
	if len(list.Services) != 1 || list.Services[0].Name != "web" || len(list.Services[0].Health) != 4 {
		t.Errorf("list: %s", mustJSON(t, list))
	}

	// The actor is the X-Troop-Actor header, or the client's address.
	h.ok("DELETE", "/v1/services/web/reals/192.0.2.24", "", nil)
	if w := h.do("DELETE", "/v1/services/web", "", api.HeaderActor, "alice@ops"); w.Code != http.StatusOK {
		t.Fatalf("delete service: %d %s", w.Code, w.Body)
	}
	log := h.b.Log()
	if a := log[len(log)-2].Actor; a != "192.0.2.1:1234" {
		t.Errorf("actor without header = %q, want the remote address", a)
	}
	if a := log[len(log)-1].Actor; a != "alice@ops" {
		t.Errorf("actor with header = %q, want alice@ops", a)
	}
	h.ok("GET", "/v1/services", "", &list)
	if len(list.Services) != 0 || !strings.Contains(h.do("GET", "/v1/services", "").Body.String(), `"services":[]`) {
		t.Errorf("list after delete: %s", mustJSON(t, list))
	}
}

func TestIPv6RealID(t *testing.T) {
	h := newHarness(t)
	h.ok("PUT", "/v1/services/web6", `{"vip":"2001:db8::10","port":443,"forwarding":"nat"}`, nil)
	h.ok("PUT", "/v1/services/web6/reals/%5B2001:db8::21%5D:8443", ``, nil)
	h.ok("PUT", "/v1/services/web6/reals/[2001:db8::21]:8443/weight", `{"weight":4}`, nil)
	var got api.ServiceStatus
	h.ok("GET", "/v1/services/web6", "", &got)
	if r, ok := got.Real("[2001:db8::21]:8443"); !ok || r.EffectiveWeight() != 4 {
		t.Errorf("reals: %s", mustJSON(t, got.Reals))
	}
}

func TestConsistency(t *testing.T) {
	h := newHarness(t)
	h.seed()
	for _, tc := range []struct{ query, want string }{
		{"", "local"}, {"?consistent", "leader-verified"}, {"?consistent=true", "leader-verified"}, {"?consistent=false", "local"},
	} {
		for _, path := range []string{"/v1/services", "/v1/services/web", "/v1/table", "/v1/status", "/v1/operator/raft/peers"} {
			w := h.ok("GET", path+tc.query, "", nil)
			if c, i := w.Header().Get(api.HeaderConsistency), w.Header().Get(api.HeaderIndex); c != tc.want || i != "1" {
				t.Errorf("GET %s%s: consistency %q index %q, want %q 1", path, tc.query, c, i, tc.want)
			}
		}
	}
}

func TestTableRoutes(t *testing.T) {
	h := newHarness(t)
	h.seed()
	table := `{"services":[
		{"name":"web","vip":"192.0.2.10","port":80,"scheduler":"wlc","persistence":{"timeout":"5m"},
		 "reals":[{"address":"192.0.2.22","weight":3},{"address":"192.0.2.23"}]},
		{"name":"dns","vip":"192.0.2.53","port":53,"protocol":"udp"}],
	 "vip_groups":[{"name":"front","vips":["192.0.2.10/32","192.0.2.53/32"]}]}`
	wantDiff := `+ service "dns" (udp 192.0.2.53:53)
~ service "web": scheduler "wrr" → "wlc"
- real "192.0.2.21:80" in "web" weight 1
+ real "192.0.2.23:80" in "web" weight 1
+ vip_group "front" (192.0.2.10/32, 192.0.2.53/32)
`
	var plan api.TableDiff
	h.ok("POST", "/v1/table?plan", table, &plan)
	if got := fsm.FormatDiff(plan.Diff); got != wantDiff || plan.BaseIndex != 1 || plan.Index != 0 {
		t.Errorf("plan at %d/%d:\n%s\nwant at 1/0:\n%s", plan.BaseIndex, plan.Index, got, wantDiff)
	}
	if n := len(h.b.Log()); n != 1 {
		t.Fatalf("plan applied something: log has %d entries", n)
	}

	var applied api.TableDiff
	w := h.ok("PUT", "/v1/table", table, &applied)
	if got := fsm.FormatDiff(applied.Diff); got != wantDiff || applied.BaseIndex != 1 || applied.Index != 2 {
		t.Errorf("apply at %d/%d:\n%s\nwant at 1/2:\n%s", applied.BaseIndex, applied.Index, got, wantDiff)
	}
	if w.Header().Get(api.HeaderIndex) != "2" {
		t.Errorf("apply: index header %q", w.Header().Get(api.HeaderIndex))
	}
	log := h.b.Log()
	if len(log) != 2 || log[1].Op != fsm.OpApplyTable {
		t.Fatalf("apply: want one apply_table entry, log %s", mustJSON(t, log))
	}

	var got fsm.Table
	h.ok("GET", "/v1/table", "", &got)
	want := h.b.View().Table()
	if mustJSON(t, got) != mustJSON(t, want) || len(got.Services) != 2 || len(got.VIPGroups) != 1 {
		t.Errorf("GET /v1/table = %s\nwant %s", mustJSON(t, got), mustJSON(t, want))
	}

	// Applying the same table again changes nothing, and says so.
	h.ok("PUT", "/v1/table", table, &applied)
	if len(applied.Diff) != 0 || applied.Index != 3 || !strings.Contains(h.do("POST", "/v1/table?plan", table).Body.String(), `"diff":[]`) {
		t.Errorf("second apply: %s", mustJSON(t, applied))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.seed()
	if _, err := h.b.Apply(context.Background(), fsm.RecordHealth(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		[]fsm.HealthTransition{{Service: "web", Real: "192.0.2.22:80", State: fsm.HealthUp}})); err != nil {
		t.Fatal(err)
	}
	w := h.ok("GET", "/v1/snapshot", "", nil)
	snapshot := w.Body.String()
	if w.Header().Get(api.HeaderConsistency) != "leader-verified" || w.Header().Get(api.HeaderIndex) != "2" ||
		w.Header().Get("Content-Disposition") != `attachment; filename="troop-2.snap"` {
		t.Errorf("snapshot headers: %v", w.Header())
	}
	var buf bytes.Buffer
	if _, err := h.b.View().WriteTo(&buf); err != nil || buf.String() != snapshot {
		t.Fatalf("snapshot body differs from State.WriteTo (%v):\n%s\n%s", err, snapshot, buf.String())
	}

	h.ok("DELETE", "/v1/services/web", "", nil)
	var restored api.TableDiff
	h.ok("PUT", "/v1/snapshot", snapshot, &restored)
	wantDiff := `+ service "web" (tcp 192.0.2.10:80)
+ real "192.0.2.21:80" in "web" weight 1
+ real "192.0.2.22:80" in "web" weight 3
`
	if got := fsm.FormatDiff(restored.Diff); got != wantDiff || restored.Index != 4 {
		t.Errorf("restore at %d:\n%s\nwant at 4:\n%s", restored.Index, got, wantDiff)
	}
	if log := h.b.Log(); log[len(log)-1].Op != fsm.OpRestore {
		t.Errorf("restore: last entry is %s, want restore", log[len(log)-1].Op)
	}
	if hl := h.b.View().Health("web", "192.0.2.22:80"); hl.State != fsm.HealthUp {
		t.Errorf("health after restore = %v, want the snapshot's up", hl)
	}

	// Without a leader only a stale snapshot can be saved.
	h.b.SetLeaderless(true)
	if w := h.do("GET", "/v1/snapshot", ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("snapshot without leader: %d", w.Code)
	}
	if w := h.ok("GET", "/v1/snapshot?stale", "", nil); w.Header().Get(api.HeaderConsistency) != "local" {
		t.Errorf("stale snapshot: consistency %q", w.Header().Get(api.HeaderConsistency))
	}
}

func TestOperatorRoutes(t *testing.T) {
	h := newHarness(t)
	h.seed()
	var st api.Status
	h.ok("GET", "/v1/status", "", &st)
	if st.ID != "a" || st.Role != "leader" || st.LeaderID != "a" || st.Term != 1 || st.CommitIndex != 1 ||
		st.Index != 1 || st.Services != 1 || st.Reals != 2 || len(st.Peers) != 3 {
		t.Errorf("status: %s", mustJSON(t, st))
	}

	if w := h.do("POST", "/v1/operator/raft/transfer-leadership", `{"id":"c"}`); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("transfer to c: %d %s", w.Code, w.Body)
	}
	h.ok("GET", "/v1/status", "", &st)
	if st.Role != "follower" || st.LeaderID != "c" || st.Term != 2 {
		t.Errorf("after transfer to c: %s", mustJSON(t, st))
	}
	// Without a body the leader picks the follower.
	if w := h.do("POST", "/v1/operator/raft/transfer-leadership", ``); w.Code != http.StatusNoContent {
		t.Fatalf("transfer: %d %s", w.Code, w.Body)
	}
	if w := h.do("DELETE", "/v1/operator/raft/peers/b", ``); w.Code != http.StatusNoContent {
		t.Fatalf("remove b: %d %s", w.Code, w.Body)
	}
	var peers api.PeerList
	h.ok("GET", "/v1/operator/raft/peers", "", &peers)
	if s := mustJSON(t, peers); s != `{"peers":[{"id":"a","address":"192.0.2.1:9701","voter":true,"leader":true},{"id":"c","address":"192.0.2.3:9701","voter":true,"leader":false}]}` {
		t.Errorf("peers: %s", s)
	}
}

// TestErrors checks every class of error: its status, its message naming the field and value,
// and that the state, its index and the log are as they were.
func TestErrors(t *testing.T) {
	const web = `service "web"`
	tests := []struct {
		name, method, path, body string
		leaderless               bool
		status                   int
		msg, field, value        string
	}{
		{
			name: "malformed JSON", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":80,}`,
			status: 400, msg: `request body: invalid JSON at line 1, column 32 (offset 31): invalid character '}' looking for beginning of object key string`,
		},
		{
			name: "truncated JSON", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10"`,
			status: 400, msg: `request body: JSON ends early, at offset 19`,
		},
		{
			name: "trailing data", method: "PUT", path: "/v1/services/web", body: "{\"vip\":\"192.0.2.10\",\n\"port\":80} {}",
			status: 400, msg: `request body: unexpected data after the JSON value at line 2, column 11 (offset 31)`,
		},
		{
			name: "empty body", method: "PUT", path: "/v1/services/web", body: ` `,
			status: 400, msg: `request body is empty: expected a JSON object`,
		},
		{
			name: "unknown field", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":80,"reals":[{"address":"192.0.2.21","wieght":2}]}`,
			status: 400, msg: `request body: reals[0].wieght: unknown field`, field: "reals[0].wieght",
		},
		{
			name: "unparsable address", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.300","port":80}`,
			status: 400, msg: `request body: vip: "192.0.2.300": ParseAddr("192.0.2.300"): IPv4 field has value >255`, field: "vip", value: "192.0.2.300",
		},
		{
			name: "wrong type", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":"http"}`,
			status: 400, msg: `request body: port: "http": must be a whole number from 0 to 65535`, field: "port", value: "http",
		},
		{
			name: "out of range for the type", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":70000}`,
			status: 400, msg: `request body: port: "70000": must be a whole number from 0 to 65535`, field: "port", value: "70000",
		},
		{
			name: "bad duration", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":80,"persistence":{"timeout":"5 min"}}`,
			status: 400, msg: `request body: persistence.timeout: "5 min": invalid duration "5 min": time: unknown unit " min" in duration "5 min"`, field: "persistence.timeout", value: "5 min",
		},
		{
			name: "name in body differs from path", method: "PUT", path: "/v1/services/web", body: `{"name":"www","vip":"192.0.2.10","port":80}`,
			status: 400, msg: `name: "www": the body names a different service than the path's "web"`, field: "name", value: "www",
		},
		{
			name: "invalid service name", method: "PUT", path: "/v1/services/-web", body: `{"vip":"192.0.2.10","port":80}`,
			status: 400, msg: `service name: "-web": must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit`, field: "service name", value: "-web",
		},
		{
			name: "invalid field value", method: "PUT", path: "/v1/services/web", body: `{"vip":"192.0.2.10","port":80,"scheduler":"fastest"}`,
			status: 400, msg: web + ` scheduler: "fastest": must be one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh`, field: web + " scheduler", value: "fastest",
		},
		{
			name: "kernel key taken", method: "PUT", path: "/v1/services/www", body: `{"vip":"192.0.2.10","port":80}`,
			status: 409, msg: `service "www": "tcp 192.0.2.10:80": is already served by service "web"`, field: `service "www"`, value: "tcp 192.0.2.10:80",
		},
		{
			name: "unknown service", method: "GET", path: "/v1/services/nope",
			status: 404, msg: `service: "nope": does not exist`, field: "service", value: "nope",
		},
		{
			name: "delete unknown service", method: "DELETE", path: "/v1/services/nope",
			status: 404, msg: `service: "nope": does not exist`, field: "service", value: "nope",
		},
		{
			name: "real of unknown service", method: "PUT", path: "/v1/services/nope/reals/192.0.2.21:80",
			status: 404, msg: `service: "nope": does not exist`, field: "service", value: "nope",
		},
		{
			name: "unknown real", method: "PUT", path: "/v1/services/web/reals/192.0.2.99/weight", body: `{"weight":2}`,
			status: 404, msg: web + ` real: "192.0.2.99:80": does not exist`, field: web + " real", value: "192.0.2.99:80",
		},
		{
			name: "bad real id", method: "DELETE", path: "/v1/services/web/reals/192.0.2.21:http",
			status: 400, msg: `real id: "192.0.2.21:http": must be ADDRESS, ADDRESS:PORT or [IPv6]:PORT`, field: "real id", value: "192.0.2.21:http",
		},
		{
			name: "body address differs from path", method: "PUT", path: "/v1/services/web/reals/192.0.2.21", body: `{"address":"192.0.2.22"}`,
			status: 400, msg: `address: "192.0.2.22": the body names a different real server than the path's "192.0.2.21"`, field: "address", value: "192.0.2.22",
		},
		{
			name: "body port differs from path", method: "PUT", path: "/v1/services/web/reals/192.0.2.21:80", body: `{"port":8080}`,
			status: 400, msg: `port: "8080": the body names a different port than the path's "192.0.2.21:80"`, field: "port", value: "8080",
		},
		{
			name: "real without address", method: "POST", path: "/v1/services/web/reals", body: `{"weight":2}`,
			status: 400, msg: `address: is required`, field: "address",
		},
		{
			name: "DR cannot change the port", method: "POST", path: "/v1/services/web/reals", body: `{"address":"192.0.2.23","port":8080}`,
			status: 400, msg: web + ` real "192.0.2.23:8080" port: "8080": forwarding dr cannot change the port; use nat or port 80`, field: web + ` real "192.0.2.23:8080" port`, value: "8080",
		},
		{
			name: "weight out of range", method: "PUT", path: "/v1/services/web/reals/192.0.2.21/weight", body: `{"weight":70000}`,
			status: 400, msg: web + ` real "192.0.2.21:80" weight: "70000": must be 0–65535`, field: web + ` real "192.0.2.21:80" weight`, value: "70000",
		},
		{
			name: "weight missing", method: "PUT", path: "/v1/services/web/reals/192.0.2.21/weight", body: `{}`,
			status: 400, msg: `weight: is required`, field: "weight",
		},
		{
			name: "bad admin state", method: "PUT", path: "/v1/services/web/reals/192.0.2.21/admin", body: `{"admin":"paused"}`,
			status: 400, msg: web + ` real "192.0.2.21:80" admin: "paused": must be one of enabled, draining, disabled`, field: web + ` real "192.0.2.21:80" admin`, value: "paused",
		},
		{
			name: "duplicate service in table", method: "PUT", path: "/v1/table",
			body:   `{"services":[{"name":"a","vip":"192.0.2.1","port":80},{"name":"a","vip":"192.0.2.2","port":80}]}`,
			status: 409, msg: `service name: "a": is defined twice`, field: "service name", value: "a",
		},
		{
			name: "plan validates", method: "POST", path: "/v1/table?plan", body: `{"services":[{"name":"a","vip":"192.0.2.1"}]}`,
			status: 400, msg: `service "a" port: "0": must be 1–65535`, field: `service "a" port`, value: "0",
		},
		{
			name: "POST table without plan", method: "POST", path: "/v1/table", body: `{"services":[]}`,
			status: 400, msg: `POST /v1/table needs ?plan (it only plans); PUT /v1/table applies`, field: "plan",
		},
		{
			name: "snapshot of a newer format", method: "PUT", path: "/v1/snapshot", body: `{"format":2,"index":9,"services":[]}`,
			status: 400, msg: `request body: read snapshot: format 2, this build reads up to 1: newer format version`,
		},
		{
			name: "snapshot with unknown field", method: "PUT", path: "/v1/snapshot", body: `{"format":1,"index":9,"services":[],"extra":1}`,
			status: 400, msg: `request body: extra: unknown field`, field: "extra",
		},
		{
			name: "bad query flag", method: "GET", path: "/v1/services?consistent=maybe",
			status: 400, msg: `query parameter consistent: "maybe": must be true or false`, field: "consistent", value: "maybe",
		},
		{
			name: "unknown peer", method: "DELETE", path: "/v1/operator/raft/peers/z",
			status: 404, msg: `remove peer "z": unknown peer`, field: "id", value: "z",
		},
		{
			name: "transfer to unknown peer", method: "POST", path: "/v1/operator/raft/transfer-leadership", body: `{"id":"z"}`,
			status: 404, msg: `transfer leadership to "z": unknown peer`, field: "id", value: "z",
		},
		{
			name: "no leader for a write", method: "PUT", path: "/v1/services/web/reals/192.0.2.21/weight", body: `{"weight":2}`, leaderless: true,
			status: 503, msg: `apply set_weight: no leader`,
		},
		{
			name: "no leader for a consistent read", method: "GET", path: "/v1/services?consistent", leaderless: true,
			status: 503, msg: `consistent read: read index: no leader`,
		},
		{
			name: "body too large", method: "PUT", path: "/v1/services/web", body: `{"vip":"` + strings.Repeat(" ", 1<<20) + `"}`,
			status: 413, msg: `request body is larger than the limit of 1 MiB`,
		},
		{
			name: "unknown route", method: "GET", path: "/v1/servics",
			status: 404, msg: `no route GET /v1/servics`,
		},
		{
			name: "method not allowed", method: "PATCH", path: "/v1/services/web",
			status: 405, msg: `method PATCH is not allowed on /v1/services/web (allowed: DELETE, GET, HEAD, PUT)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.seed()
			before, logLen := mustJSON(t, h.b.View().Snapshot()), len(h.b.Log())
			h.b.SetLeaderless(tt.leaderless)
			w := h.do(tt.method, tt.path, tt.body)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var e map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body %q: %v", w.Body, err)
			}
			if e["error"] != tt.msg || e["field"] != tt.field || e["value"] != tt.value {
				t.Errorf("error body:\n  %s\nwant\n  %s", w.Body, mustJSON(t, map[string]string{"error": tt.msg, "field": tt.field, "value": tt.value}))
			}
			if tt.status == 405 && w.Header().Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if after := mustJSON(t, h.b.View().Snapshot()); after != before || len(h.b.Log()) != logLen {
				t.Errorf("rejected request changed the state or the log:\n%s\n%s", before, after)
			}
		})
	}
}

// TestRefusedByTheLeader checks that an entry the FSM refuses after it was proposed (Result.Err)
// is reported like a refusal before proposing, though it used a log index.
func TestRefusedByTheLeader(t *testing.T) {
	h := newHarness(t)
	h.seed()
	h.b.ProposeUnchecked(true)
	w := h.do("PUT", "/v1/services/web/reals/192.0.2.21/weight", `{"weight":70000}`)
	want := `{"error":"service \"web\" real \"192.0.2.21:80\" weight: \"70000\": must be 0–65535","field":"service \"web\" real \"192.0.2.21:80\" weight","value":"70000"}`
	if w.Code != http.StatusBadRequest || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("%d %s\nwant 400 %s", w.Code, w.Body, want)
	}
	if st := h.b.View(); st.Index() != 2 || len(h.b.Log()) != 2 {
		t.Errorf("index %d, log %d entries: want the refused entry at index 2", st.Index(), len(h.b.Log()))
	}
	if s, _ := h.b.View().Service("web"); s.Reals[0].EffectiveWeight() != 1 {
		t.Errorf("refused entry changed the weight")
	}
}

func TestTableBodyLimit(t *testing.T) {
	h := newHarness(t)
	// A table of more than 1 MiB is fine: the table routes allow 64 MiB.
	var tb fsm.Table
	for i := range 1000 {
		name := "svc-" + strings.Repeat("x", 40) + "-" + strconv.Itoa(i)
		tb.Services = append(tb.Services, fsm.Service{Name: name, VIP: netip.AddrFrom4([4]byte{192, 0, 2, 1}), Port: uint16(1000 + i),
			Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}, {Address: netip.MustParseAddr("192.0.2.22")}, {Address: netip.MustParseAddr("192.0.2.23")}}})
	}
	body := mustJSON(t, tb)
	body = strings.Replace(body, "{", "{"+strings.Repeat(" ", 1<<20), 1)
	var applied api.TableDiff
	h.ok("PUT", "/v1/table", body, &applied)
	if len(applied.Diff) != 4000 {
		t.Errorf("diff has %d entries, want 4000", len(applied.Diff))
	}
	w := h.do("PUT", "/v1/table", `{"services":[`+strings.Repeat(" ", 64<<20)+`]}`)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "64 MiB") {
		t.Errorf("65 MiB table: %d %s", w.Code, w.Body)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(buf.String())
}
