package api

import (
	"fmt"
	"net/http"

	"github.com/troop-lb/troop/cluster"
)

// getStatus answers with this node's Raft view and the size of the table it serves.
func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	out := Status{Status: s.b.Status(), Index: st.Index(), Services: st.Len()}
	for _, name := range st.ServiceNames() {
		svc, _ := st.Service(name)
		out.Reals += len(svc.Reals)
	}
	if out.Peers == nil {
		out.Peers = []cluster.Peer{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listMembers answers with every director this node knows of: gossip state, Raft suffrage, role,
// version and serial link verdict. It is this node's view; ask another node for its own.
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) error {
	members := s.b.Members()
	if members == nil {
		members = []cluster.Member{}
	}
	writeJSON(w, http.StatusOK, MemberList{Members: members})
	return nil
}

// listPeers answers with the Raft configuration as this node knows it. With ?consistent the node
// has first caught up with the leader, so the list includes every committed membership change.
func (s *Server) listPeers(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.view(w, r); err != nil {
		return err
	}
	peers := s.b.Status().Peers
	if peers == nil {
		peers = []cluster.Peer{}
	}
	writeJSON(w, http.StatusOK, PeerList{Peers: peers})
	return nil
}

func (s *Server) removePeer(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.b.RemovePeer(r.Context(), id); err != nil {
		return peerError(fmt.Errorf("remove peer %q: %w", id, err), id)
	}
	s.log.Info("peer removed", "op", "remove_peer", "peer", id, "actor", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) error {
	var req TransferRequest
	if err := decodeBody(w, r, smallBodyLimit, &req, true); err != nil {
		return err
	}
	if err := s.b.TransferLeadership(r.Context(), req.ID); err != nil {
		if req.ID == "" {
			return fmt.Errorf("transfer leadership: %w", err)
		}
		return peerError(fmt.Errorf("transfer leadership to %q: %w", req.ID, err), req.ID)
	}
	s.log.Info("leadership transferred", "op", "transfer_leadership", "peer", req.ID, "actor", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// peerError names the peer ID as the rejected field of an operator request.
func peerError(err error, id string) *Error {
	e := errorFor(err)
	e.Field, e.Value = "id", id
	return e
}
