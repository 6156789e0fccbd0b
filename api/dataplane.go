package api

import (
	"context"
	"net/http"

	"github.com/troop-lb/troop/director"
)

// Dataplane is what the API shows of the agent's director: its status and the kernel's IPVS
// table next to the desired one. *director.Director implements it.
type Dataplane interface {
	Status() director.Status
	KernelView() ([]director.KernelService, error)
}

// DataplaneInfo is the answer of GET /v1/dataplane.
type DataplaneInfo struct {
	Status director.Status `json:"status"`
	// Services is the kernel view of Troop's IPVS services; empty without IPVS.
	Services []director.KernelService `json:"services"`
}

// SetDataplane makes GET /v1/dataplane answer from dp. Call it before serving; an agent that
// runs no dataplane (the loopback example) leaves it unset and the route answers 404.
func (s *Server) SetDataplane(dp Dataplane) { s.dp = dp }

// getDataplane answers with this agent's own dataplane: it is local by nature (each director's
// kernel is its own), so ?consistent does not apply.
func (s *Server) getDataplane(w http.ResponseWriter, r *http.Request) error {
	if s.dp == nil {
		return &Error{StatusCode: http.StatusNotFound, Message: "this agent runs no dataplane (director enabled = false)"}
	}
	view, err := s.dp.KernelView()
	if err != nil {
		return err
	}
	if view == nil {
		view = []director.KernelService{}
	}
	writeJSON(w, http.StatusOK, DataplaneInfo{Status: s.dp.Status(), Services: view})
	return nil
}

// Dataplane reads the agent's own dataplane: director status and the kernel's IPVS table.
func (c *Client) Dataplane(ctx context.Context) (DataplaneInfo, error) {
	var out DataplaneInfo
	_, err := c.read(ctx, "/v1/dataplane", ReadOptions{}, &out)
	return out, err
}
