// Package ui is Troop's web console: static HTML, CSS and JavaScript modules embedded in the
// binary and served by every agent at /ui/. The console is a client of the public /v1 API and
// nothing else; it has no build step and loads nothing from elsewhere.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Headers every console answer carries. The policy allows only the console's own files and
// requests to its own agent: no inline script or style, no framing (clickjacking), no referrer
// leaking the console's address, and no MIME sniffing of the API's JSON into script.
var Headers = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
}

// Handler serves the console's files; mount it at prefix (with its trailing slash, "/ui/"). The
// files are public: they hold no data, and every API request the console makes carries the
// user's token in an Authorization header.
//
// CSRF: the token lives in the page's sessionStorage and travels only in that header, never in a
// cookie, so a request another site makes the browser send to an agent carries no credential;
// and a cross-origin page cannot set Authorization without a CORS preflight, which the API does
// not answer.
func Handler(prefix string) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range Headers {
			w.Header().Set(k, v)
		}
		// Always revalidate: an upgraded agent serves a console matching its API at once.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
