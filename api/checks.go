package api

import (
	"context"
	"net/http"

	"github.com/troop-lb/troop/probe"
)

// Checks is this director's own health checking, as `troop status -v` shows it: every
// director checks every real server, so a server one director cannot reach stands out.
// *probe.Engine implements it.
type Checks interface {
	View() []probe.TargetStatus
	Stats() probe.Stats
}

// ChecksInfo is the answer of GET /v1/checks.
type ChecksInfo struct {
	// Node is the director whose checks these are.
	Node    string               `json:"node"`
	Stats   probe.Stats          `json:"stats"`
	Targets []probe.TargetStatus `json:"targets"`
}

// SetChecks makes GET /v1/checks answer from c.
func (s *Server) SetChecks(c Checks) { s.checks = c }

// getChecks answers with this director's own view of every real server; it is local by nature.
func (s *Server) getChecks(w http.ResponseWriter, r *http.Request) error {
	if s.checks == nil {
		return &Error{StatusCode: http.StatusNotFound, Message: "this agent runs no health checks"}
	}
	writeJSON(w, http.StatusOK, ChecksInfo{Node: s.b.Status().ID, Stats: s.checks.Stats(), Targets: s.checks.View()})
	return nil
}

// Checks reads the agent's own health-check view.
func (c *Client) Checks(ctx context.Context) (ChecksInfo, error) {
	var out ChecksInfo
	_, err := c.read(ctx, "/v1/checks", ReadOptions{}, &out)
	return out, err
}
