package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/api/apitest"
	"github.com/troop-lb/troop/fsm"
)

const bootstrapSecret = "bootstrap-secret-for-tests-0123456789"

// syncBuffer collects log output from handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// aclHarness serves the API with ACLs on; the agent's log goes to logs as well as t.Log.
func aclHarness(t *testing.T, anonymous fsm.Scope) (*harness, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(&teeWriter{t: t, b: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := apitest.NewBackend(log)
	srv := api.NewServer(b, log)
	srv.SetACL(&api.ACL{Anonymous: anonymous, BootstrapSecret: bootstrapSecret})
	return &harness{t: t, b: b, srv: srv}, logs
}

type teeWriter struct {
	t *testing.T
	b *syncBuffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.b.Write(p)
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func bearer(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

// createToken makes a token with the bootstrap token and returns the answer.
func (h *harness) createToken(name string, scope fsm.Scope) api.NewToken {
	h.t.Helper()
	w := h.do("POST", "/v1/acl/tokens", `{"name":"`+name+`","scope":"`+string(scope)+`"}`, bearer(bootstrapSecret)...)
	if w.Code != http.StatusOK {
		h.t.Fatalf("create token %s: %d %s", name, w.Code, w.Body)
	}
	var nt api.NewToken
	if err := json.Unmarshal(w.Body.Bytes(), &nt); err != nil {
		h.t.Fatal(err)
	}
	return nt
}

// writeRoutes is every route that changes something, with a body it would accept, and the
// scope it needs.
var writeRoutes = []struct {
	method, path, body string
	need               fsm.Scope
}{
	{"PUT", "/v1/services/api", `{"vip":"192.0.2.11","port":443}`, fsm.ScopeOperator},
	{"DELETE", "/v1/services/web", ``, fsm.ScopeOperator},
	{"POST", "/v1/services/web/reals", `{"address":"192.0.2.25"}`, fsm.ScopeOperator},
	{"PUT", "/v1/services/web/reals/192.0.2.23:80", `{"weight":2}`, fsm.ScopeOperator},
	{"DELETE", "/v1/services/web/reals/192.0.2.21:80", ``, fsm.ScopeOperator},
	{"PUT", "/v1/services/web/reals/192.0.2.21/weight", `{"weight":5}`, fsm.ScopeOperator},
	{"PUT", "/v1/services/web/reals/192.0.2.21/admin", `{"admin":"draining"}`, fsm.ScopeOperator},
	{"PUT", "/v1/hosts/192.0.2.21/admin", `{"admin":"draining"}`, fsm.ScopeOperator},
	{"PUT", "/v1/table", `{"services":[]}`, fsm.ScopeOperator},
	{"POST", "/v1/operator/raft/transfer-leadership", `{"id":"c"}`, fsm.ScopeOperator},
	{"PUT", "/v1/snapshot", `{"format":1,"index":1}`, fsm.ScopeAdmin},
	{"DELETE", "/v1/operator/raft/peers/b", ``, fsm.ScopeAdmin},
	{"POST", "/v1/acl/tokens", `{"name":"x","scope":"admin"}`, fsm.ScopeAdmin},
	{"DELETE", "/v1/acl/tokens/00000000-0000-4000-8000-000000000000", ``, fsm.ScopeAdmin},
}

// TestACLRefusesWrites sends every write without a token, with an unknown one, and with tokens
// of too low a scope: each is refused (401 or 403) and nothing changes: not the index, not the
// log, not the leader or the peers.
func TestACLRefusesWrites(t *testing.T) {
	h, _ := aclHarness(t, fsm.ScopeRead)
	h.ok0("PUT", "/v1/services/web", webJSON, bearer(bootstrapSecret))
	read := h.createToken("reader", fsm.ScopeRead)
	op := h.createToken("ops", fsm.ScopeOperator)
	before, entries := h.b.View().Index(), len(h.b.Log())

	for _, rt := range writeRoutes {
		tries := []struct {
			who     string
			headers []string
			want    int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"unknown token", bearer("not-a-token"), http.StatusUnauthorized},
			{"read token", bearer(read.Secret), http.StatusForbidden},
			{"read token in X-Troop-Token", []string{api.HeaderToken, read.Secret}, http.StatusForbidden},
		}
		if rt.need == fsm.ScopeAdmin {
			tries = append(tries, struct {
				who     string
				headers []string
				want    int
			}{"operator token", bearer(op.Secret), http.StatusForbidden})
		}
		for _, try := range tries {
			w := h.do(rt.method, rt.path, rt.body, try.headers...)
			var e api.Error
			if w.Code != try.want || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Message == "" {
				t.Errorf("%s %s with %s: %d %s, want %d with a JSON error", rt.method, rt.path, try.who, w.Code, w.Body, try.want)
			}
		}
	}
	if got := h.b.View().Index(); got != before {
		t.Errorf("index %d after refused writes, want %d", got, before)
	}
	if got := len(h.b.Log()); got != entries {
		t.Errorf("%d log entries after refused writes, want %d", got, entries)
	}
	st := h.b.Status()
	if st.LeaderID != "a" || len(st.Peers) != 3 {
		t.Errorf("leader %q with %d peers after refused operations, want a with 3", st.LeaderID, len(st.Peers))
	}

	// Anonymous reads are allowed here; a plan is a read.
	h.ok0("GET", "/v1/services", "", nil)
	h.ok0("POST", "/v1/table?plan", `{"services":[]}`, nil)
	// Snapshots and tokens are for admins only.
	for _, path := range []string{"/v1/snapshot", "/v1/acl/tokens"} {
		if w := h.do("GET", path, "", bearer(op.Secret)...); w.Code != http.StatusForbidden {
			t.Errorf("GET %s with an operator token: %d, want 403", path, w.Code)
		}
	}
}

// ok0 sends a request with headers that must succeed.
func (h *harness) ok0(method, path, body string, headers []string) *bytes.Buffer {
	h.t.Helper()
	w := h.do(method, path, body, headers...)
	if w.Code != http.StatusOK && w.Code != http.StatusNoContent {
		h.t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
	}
	return w.Body
}

// TestACLScopes: reads need a token when anonymous is none; an operator token drains and is the
// write's actor; only admin manages tokens and snapshots; readiness and /ui/ need none.
func TestACLScopes(t *testing.T) {
	h, logs := aclHarness(t, "")
	h.ok0("PUT", "/v1/services/web", webJSON, bearer(bootstrapSecret))
	if w := h.do("GET", "/v1/services", ""); w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("anonymous read with anonymous none: %d, want 401 with WWW-Authenticate", w.Code)
	}
	if w := h.do("GET", "/v1/agent/ready", ""); w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
		t.Errorf("readiness without a token: %d", w.Code)
	}
	if w := h.do("GET", "/ui/index.html", ""); w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
		t.Errorf("console file without a token: %d", w.Code)
	}
	if w := h.do("GET", "/v1/services", "", "Authorization", "Basic Zm9vOmJhcg=="); w.Code != http.StatusUnauthorized {
		t.Errorf("basic authorization: %d, want 401", w.Code)
	}

	read := h.createToken("reader", fsm.ScopeRead)
	op := h.createToken("ops", fsm.ScopeOperator)
	admin := h.createToken("root", fsm.ScopeAdmin)
	if len(read.Secret) != 43 || read.Accessor == "" || read.Scope != fsm.ScopeRead || read.Name != "reader" {
		t.Errorf("new token %+v: want a 43-character secret (32 bytes base64url)", read)
	}
	h.ok0("GET", "/v1/services/web", "", bearer(read.Secret))
	h.ok0("GET", "/v1/services/web", "", []string{api.HeaderToken, read.Secret})

	// An operator drains; its name, not X-Troop-Actor, is the actor.
	h.ok0("PUT", "/v1/services/web/reals/192.0.2.21/admin", `{"admin":"draining"}`, append(bearer(op.Secret), api.HeaderActor, "mallory"))
	log := h.b.Log()
	if last := log[len(log)-1]; last.Op != fsm.OpSetAdmin || last.Actor != "token:ops" {
		t.Errorf("last entry %s by %q, want set_admin by token:ops", last.Op, last.Actor)
	}
	// An admin token creates tokens; the bootstrap token's writes are by token:bootstrap.
	w := h.do("POST", "/v1/acl/tokens", `{"name":"ci","scope":"read"}`, bearer(admin.Secret)...)
	if w.Code != http.StatusOK {
		t.Fatalf("admin creates a token: %d %s", w.Code, w.Body)
	}
	var ci api.NewToken
	json.Unmarshal(w.Body.Bytes(), &ci)
	if log := h.b.Log(); log[len(log)-1].Actor != "token:root" || log[len(log)-3].Actor != "token:bootstrap" {
		t.Errorf("token entries by %q and %q, want token:bootstrap then token:root", log[len(log)-3].Actor, log[len(log)-1].Actor)
	}
	if w := h.do("POST", "/v1/acl/tokens", `{"name":"bootstrap","scope":"read"}`, bearer(admin.Secret)...); w.Code != http.StatusBadRequest {
		t.Errorf("a token named bootstrap: %d, want 400", w.Code)
	}
	if w := h.do("POST", "/v1/acl/tokens", `{"name":"x","scope":"root"}`, bearer(admin.Secret)...); w.Code != http.StatusBadRequest {
		t.Errorf("scope root: %d, want 400", w.Code)
	}

	// Deleting a token revokes it at once.
	h.ok0("DELETE", "/v1/acl/tokens/"+ci.Accessor, "", bearer(admin.Secret))
	if w := h.do("GET", "/v1/services", "", bearer(ci.Secret)...); w.Code != http.StatusUnauthorized {
		t.Errorf("deleted token: %d, want 401", w.Code)
	}

	// No secret is in the token list, the snapshot or the log; the list has no hashes either.
	secrets := []string{bootstrapSecret, read.Secret, op.Secret, admin.Secret, ci.Secret}
	list := h.ok0("GET", "/v1/acl/tokens", "", bearer(admin.Secret)).String()
	var infos []api.TokenInfo
	if err := json.Unmarshal([]byte(list), &infos); err != nil || len(infos) != 3 {
		t.Errorf("token list %s: want 3 tokens", list)
	}
	if strings.Contains(list, fsm.HashSecret(read.Secret)) || strings.Contains(list, "hash") {
		t.Errorf("token list shows hashes: %s", list)
	}
	snap := h.ok0("GET", "/v1/snapshot", "", bearer(admin.Secret)).String()
	if !strings.Contains(snap, fsm.HashSecret(read.Secret)) {
		t.Errorf("snapshot lacks the tokens' hashes: %s", snap)
	}
	for _, s := range secrets {
		for what, text := range map[string]string{"token list": list, "snapshot": snap, "log": logs.String()} {
			if strings.Contains(text, s) {
				t.Errorf("%s contains secret %q", what, s)
			}
		}
	}
}

// Without SetACL, no token is asked for, and a token sent is ignored (the actor stays the header).
func TestNoACL(t *testing.T) {
	h := newHarness(t)
	h.ok0("PUT", "/v1/services/web", webJSON, append(bearer("whatever"), api.HeaderActor, "alice"))
	if log := h.b.Log(); log[0].Actor != "alice" {
		t.Errorf("actor %q, want alice", log[0].Actor)
	}
}
