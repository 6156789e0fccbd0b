package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/troop-lb/troop/fsm"
)

// HeaderToken carries an ACL token's secret, as an alternative to "Authorization: Bearer".
const HeaderToken = "X-Troop-Token"

// BootstrapTokenName is the actor name of the bootstrap token ("token:bootstrap"); no table
// token may take it.
const BootstrapTokenName = "bootstrap"

// ACL is the agent's access control. With it, every /v1/ request but GET /v1/agent/ready needs a
// token of the route's scope (routeScope): a table token (fsm.Token, found by the hash of the
// secret in this agent's local state) or the bootstrap token. Paths outside /v1/ (the console's
// static files under /ui/) are not checked.
type ACL struct {
	// Anonymous is what a request without a token may do: "" nothing, or fsm.ScopeRead.
	Anonymous fsm.Scope
	// BootstrapSecret is the bootstrap token: admin scope, never stored in the table, the same
	// in every director's file. Empty: none.
	BootstrapSecret string

	// bootstrapHash is HashSecret(BootstrapSecret); SetACL keeps only this.
	bootstrapHash string
}

// SetACL turns access control on (acl non-nil) before the server serves. Without it every
// request is served as before ACLs existed.
func (s *Server) SetACL(acl *ACL) {
	if acl == nil {
		s.acl = nil
		return
	}
	a := *acl
	if a.BootstrapSecret != "" {
		a.bootstrapHash = fsm.HashSecret(a.BootstrapSecret)
		a.BootstrapSecret = ""
	}
	s.acl = &a
}

// routeScopes is the scope each route needs, by its ServeMux pattern. A pattern not listed
// needs read for GET and HEAD and admin otherwise, so a route added without thought is closed
// rather than open; "" means no token at all.
var routeScopes = map[string]fsm.Scope{
	"GET /v1/agent/ready": "",
	// A plan changes nothing.
	"POST /v1/table": fsm.ScopeRead,

	"PUT /v1/services/{name}":                    fsm.ScopeOperator,
	"DELETE /v1/services/{name}":                 fsm.ScopeOperator,
	"POST /v1/services/{name}/reals":             fsm.ScopeOperator,
	"PUT /v1/services/{name}/reals/{id}":         fsm.ScopeOperator,
	"DELETE /v1/services/{name}/reals/{id}":      fsm.ScopeOperator,
	"PUT /v1/services/{name}/reals/{id}/weight":  fsm.ScopeOperator,
	"PUT /v1/services/{name}/reals/{id}/admin":   fsm.ScopeOperator,
	"PUT /v1/hosts/{addr}/admin":                 fsm.ScopeOperator,
	"PUT /v1/table":                              fsm.ScopeOperator,
	"POST /v1/operator/raft/transfer-leadership": fsm.ScopeOperator,

	// A snapshot holds the token hashes.
	"GET /v1/snapshot":                    fsm.ScopeAdmin,
	"PUT /v1/snapshot":                    fsm.ScopeAdmin,
	"DELETE /v1/operator/raft/peers/{id}": fsm.ScopeAdmin,
	"GET /v1/acl/tokens":                  fsm.ScopeAdmin,
	"POST /v1/acl/tokens":                 fsm.ScopeAdmin,
	"DELETE /v1/acl/tokens/{accessor}":    fsm.ScopeAdmin,
}

func routeScope(method, pattern string) fsm.Scope {
	if need, ok := routeScopes[pattern]; ok {
		return need
	}
	if method == http.MethodGet || method == http.MethodHead {
		return fsm.ScopeRead
	}
	return fsm.ScopeAdmin
}

type tokenActorKey struct{}

// authorize checks the request against the ACL and answers 401 or 403 itself when it is
// refused. It returns the request to serve, carrying the token's actor name.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	acl := s.acl
	if acl == nil || !strings.HasPrefix(r.URL.Path, "/v1/") {
		return r, true
	}
	_, pattern := s.mux.Handler(r)
	need := routeScope(r.Method, pattern)
	if need == "" {
		return r, true
	}
	secret, err := requestToken(r)
	if err != nil {
		s.writeError(w, r, &Error{StatusCode: http.StatusUnauthorized, Message: err.Error()})
		return r, false
	}
	if secret == "" {
		if acl.Anonymous.Allows(need) {
			return r, true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="troop"`)
		s.writeError(w, r, &Error{StatusCode: http.StatusUnauthorized, Message: fmt.Sprintf("%s %s needs an ACL token of scope %s (Authorization: Bearer, or %s)", r.Method, r.URL.Path, need, HeaderToken)})
		return r, false
	}
	name, scope, ok := acl.lookup(s.b.View(), secret)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="troop", error="invalid_token"`)
		s.writeError(w, r, &Error{StatusCode: http.StatusUnauthorized, Message: "ACL token not found"})
		return r, false
	}
	if !scope.Allows(need) {
		s.writeError(w, r, &Error{StatusCode: http.StatusForbidden, Message: fmt.Sprintf("%s %s needs an ACL token of scope %s; token %q has scope %s", r.Method, r.URL.Path, need, name, scope)})
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), tokenActorKey{}, "token:"+name)), true
}

// lookup finds the token of a secret: the bootstrap token or one in st. Only hashes are
// compared, in constant time.
func (a *ACL) lookup(st *fsm.State, secret string) (name string, scope fsm.Scope, ok bool) {
	hash := fsm.HashSecret(secret)
	tk, found := st.TokenByHash(hash)
	if a.bootstrapHash != "" && subtle.ConstantTimeCompare([]byte(hash), []byte(a.bootstrapHash)) == 1 {
		return BootstrapTokenName, fsm.ScopeAdmin, true
	}
	if !found {
		return "", "", false
	}
	return tk.Name, tk.Scope, true
}

// requestToken reads the secret from "Authorization: Bearer" or X-Troop-Token ("" if neither).
func requestToken(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
			return "", fmt.Errorf("authorization header: want \"Bearer <token>\"")
		}
		return strings.TrimSpace(secret), nil
	}
	return strings.TrimSpace(r.Header.Get(HeaderToken)), nil
}

// tokenActor is the actor name of the request's token, "" without ACLs or without a token.
func tokenActor(r *http.Request) string {
	a, _ := r.Context().Value(tokenActorKey{}).(string)
	return a
}

// NewTokenSecret returns a new secret: 32 random bytes, base64url without padding.
func NewTokenSecret() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

// newAccessor returns a random UUID (version 4) naming a token.
func newAccessor() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never fails (Go 1.24+: it crashes the program instead).
	_, _ = rand.Read(b)
	return b
}

// TokenRequest is the body of POST /v1/acl/tokens.
type TokenRequest struct {
	Name  string    `json:"name"`
	Scope fsm.Scope `json:"scope"`
}

// TokenInfo describes a token in GET /v1/acl/tokens: never its secret nor its hash.
type TokenInfo struct {
	Accessor string    `json:"accessor"`
	Name     string    `json:"name"`
	Scope    fsm.Scope `json:"scope"`
}

// NewToken is the answer to POST /v1/acl/tokens: the only time the secret is shown.
type NewToken struct {
	TokenInfo
	Secret string `json:"secret"`
	Index  uint64 `json:"index"`
}

func (s *Server) aclRoutes() {
	s.handle("GET /v1/acl/tokens", s.listTokens)
	s.handle("POST /v1/acl/tokens", s.createToken)
	s.handle("DELETE /v1/acl/tokens/{accessor}", s.deleteToken)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	out := []TokenInfo{}
	for _, tk := range st.Tokens() {
		out = append(out, TokenInfo{Accessor: tk.Accessor, Name: tk.Name, Scope: tk.Scope})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := decodeBody(w, r, smallBodyLimit, &req, false); err != nil {
		return err
	}
	if req.Name == BootstrapTokenName {
		return badRequest("name", req.Name, "token name %q is reserved for the bootstrap token", req.Name)
	}
	secret := NewTokenSecret()
	tk := fsm.Token{Accessor: newAccessor(), Name: req.Name, Scope: req.Scope, Hash: fsm.HashSecret(secret)}
	index, err := s.apply(w, r, fsm.UpsertToken(tk))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, NewToken{TokenInfo: TokenInfo{Accessor: tk.Accessor, Name: tk.Name, Scope: tk.Scope}, Secret: secret, Index: index})
	return nil
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	return s.write(w, r, fsm.DeleteToken(r.PathValue("accessor")))
}
