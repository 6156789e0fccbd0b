package api

import "net/http"

// SetMetrics makes GET /metrics serve h: the agent's Prometheus registry (package metrics).
// It is outside /v1/, where scrapers look, and needs no ACL token.
func (s *Server) SetMetrics(h http.Handler) { s.metrics = h }

func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.metrics == nil {
		return &Error{StatusCode: http.StatusNotFound, Message: "this agent exports no metrics"}
	}
	s.metrics.ServeHTTP(w, r)
	return nil
}
