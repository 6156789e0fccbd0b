package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerServesTheConsoleWithSecurityHeaders(t *testing.T) {
	h := Handler("/ui/")
	for path, ctype := range map[string]string{
		"/ui/":            "text/html",
		"/ui/main.js":     "text/javascript",
		"/ui/console.css": "text/css",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, rec.Code, rec.Header().Get("Content-Type"), ctype)
		}
		for k, v := range Headers {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// The console never turns data into markup: no HTML parsing sinks, no eval, no inline script
// or style (the CSP would block them anyway).
func TestConsoleSourcesBuildNoHTMLFromStrings(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on|\.style\.`)
	inline := regexp.MustCompile(`(?i)<script>|<script(\s+type="module")?\s*>|\sstyle=|\son[a-z]+=`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".js") {
			if m := sinks.Find(src); m != nil {
				t.Errorf("%s uses %q", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") {
			if m := inline.Find(src); m != nil {
				t.Errorf("%s has inline %q", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
