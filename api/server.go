package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/troop-lb/troop/api/ui"
	"github.com/troop-lb/troop/fsm"
)

// Server serves the JSON API under /v1/ over a Backend. Every answer is JSON, errors included
// (see Error); reads carry HeaderConsistency and HeaderIndex. Create it with NewServer.
type Server struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
	// dp is nil when the agent runs no dataplane.
	dp Dataplane
	// events is nil when the agent keeps none.
	events *Events
	// checks is nil when the agent runs no health checks.
	checks Checks
	ready  readiness
	// acl is nil without access control (SetACL).
	acl *ACL
	// metrics serves GET /metrics; nil when the agent exports none (SetMetrics).
	metrics http.Handler
}

// NewServer returns the API handler for b. It starts nothing; log (nil: discard) receives one
// line per applied write and per failed request. Timeouts are the http.Server's business.
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// routes is the whole API; the README's route table is copied from here.
func (s *Server) routes() {
	// The web console (package ui): static files, public like the CLI binary. Everything it shows
	// or changes goes through the /v1 routes below with the user's token.
	s.mux.Handle("GET /ui/", ui.Handler("/ui/"))
	s.mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))

	// Prometheus metrics, outside /v1/ as Prometheus expects (SetMetrics).
	s.handle("GET /metrics", s.getMetrics)

	s.handle("GET /v1/services", s.listServices)
	s.handle("GET /v1/services/{name}", s.getService)
	s.handle("PUT /v1/services/{name}", s.putService)
	s.handle("DELETE /v1/services/{name}", s.deleteService)
	s.handle("POST /v1/services/{name}/reals", s.postReal)
	s.handle("PUT /v1/services/{name}/reals/{id}", s.putReal)
	s.handle("DELETE /v1/services/{name}/reals/{id}", s.deleteReal)
	s.handle("PUT /v1/services/{name}/reals/{id}/weight", s.putWeight)
	s.handle("PUT /v1/services/{name}/reals/{id}/admin", s.putAdmin)
	s.handle("PUT /v1/hosts/{addr}/admin", s.putHostAdmin)

	s.handle("GET /v1/table", s.getTable)
	s.handle("POST /v1/table", s.planTable)
	s.handle("PUT /v1/table", s.applyTable)
	s.handle("GET /v1/snapshot", s.saveSnapshot)
	s.handle("PUT /v1/snapshot", s.restoreSnapshot)

	s.handle("GET /v1/status", s.getStatus)
	s.handle("GET /v1/dataplane", s.getDataplane)
	s.handle("GET /v1/events", s.getEvents)
	s.handle("GET /v1/checks", s.getChecks)
	s.handle("GET /v1/members", s.listMembers)
	s.handle("GET /v1/agent/ready", s.getReady)
	s.handle("GET /v1/operator/raft/peers", s.listPeers)
	s.handle("DELETE /v1/operator/raft/peers/{id}", s.removePeer)
	s.handle("POST /v1/operator/raft/transfer-leadership", s.transferLeadership)
	s.aclRoutes()
}

// handle registers a handler that returns its error instead of writing it.
func (s *Server) handle(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, errorFor(err))
		}
	})
}

// ServeHTTP routes the request. Unknown paths (404) and methods (405, with Allow) get JSON errors
// like every other failure, not ServeMux's plain text.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if h, pattern := s.mux.Handler(r); pattern == "" {
		// ServeMux answers unmatched requests itself; let it decide between 404 and 405.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)
		if rec.status == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))
		}
		s.writeError(w, r, &Error{StatusCode: rec.status, Message: msg})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// statusRecorder keeps the status and headers of ServeMux's own 404 and 405 answers.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	level := slog.LevelDebug
	if e.StatusCode >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed", "op", r.Method+" "+r.URL.Path, "status", e.StatusCode, "err", e.Message)
	writeJSON(w, e.StatusCode, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// The status is sent; a failure here is a client that went away.
	_ = enc.Encode(v)
}

// view returns the state a read is served from: this node's, or with ?consistent one that
// includes everything the leader had committed. It sets the read headers.
func (s *Server) view(w http.ResponseWriter, r *http.Request) (*fsm.State, error) {
	consistent, err := queryFlag(r, "consistent")
	if err != nil {
		return nil, err
	}
	return s.viewAs(w, r, consistent)
}

func (s *Server) viewAs(w http.ResponseWriter, r *http.Request, consistent bool) (*fsm.State, error) {
	st, how := s.b.View(), ConsistencyLocal
	if consistent {
		var err error
		if st, err = s.b.ConsistentView(r.Context()); err != nil {
			return nil, fmt.Errorf("consistent read: %w", err)
		}
		how = ConsistencyLeaderVerified
	}
	w.Header().Set(HeaderConsistency, how)
	w.Header().Set(HeaderIndex, strconv.FormatUint(st.Index(), 10))
	return st, nil
}

// queryFlag reports whether a boolean query parameter is set: present without a value or with a
// true value ("?consistent", "?consistent=1").
func queryFlag(r *http.Request, name string) (bool, error) {
	vs, ok := r.URL.Query()[name]
	if !ok {
		return false, nil
	}
	if len(vs) == 0 || vs[0] == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, badRequest(name, vs[0], "query parameter %s: %q: must be true or false", name, vs[0])
	}
	return b, nil
}

// apply commits c on behalf of the request's actor and returns the applied entry's index. A
// refusal by the leader's FSM (Result.Err) is an error like a refusal before proposing.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, c fsm.Command) (uint64, error) {
	c.Actor = actor(r)
	res, err := s.b.Apply(r.Context(), c)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return 0, err
	}
	s.log.Info("applied", "op", string(c.Op), "service", c.Name, "real", c.RealID, "index", res.Index, "actor", c.Actor)
	w.Header().Set(HeaderIndex, strconv.FormatUint(res.Index, 10))
	return res.Index, nil
}

// write applies c and answers with its index.
func (s *Server) write(w http.ResponseWriter, r *http.Request, c fsm.Command) error {
	index, err := s.apply(w, r, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, WriteResult{Index: index})
	return nil
}

// actor names who makes a change: with ACLs the request's token ("token:NAME"), else the
// X-Troop-Actor header, or the client's address.
func actor(r *http.Request) string {
	if a := tokenActor(r); a != "" {
		return a
	}
	if a := strings.TrimSpace(r.Header.Get(HeaderActor)); a != "" {
		if len(a) > 128 {
			a = strings.ToValidUTF8(a[:128], "")
		}
		return a
	}
	return r.RemoteAddr
}
