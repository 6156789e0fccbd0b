package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The web console is served at /ui/, with its security headers, and / leads there.
func TestConsoleRoutes(t *testing.T) {
	h := newHarness(t)
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /: %d Location %q, want 302 to /ui/", rec.Code, rec.Header().Get("Location"))
	}
	rec = httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<script type="module" src="main.js">`) {
		t.Errorf("GET /ui/: %d %.200s", rec.Code, rec.Body.String())
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET /ui/: Content-Security-Policy %q", csp)
	}
	// Anything else off /v1 is still the API's JSON 404.
	rec = httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("GET /nope: %d %s", rec.Code, rec.Body.String())
	}
}
