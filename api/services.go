package api

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/troop-lb/troop/fsm"
)

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) error {
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	list := ServiceList{Services: make([]ServiceStatus, 0, st.Len())}
	for _, name := range st.ServiceNames() {
		svc, _ := st.Service(name)
		list.Services = append(list.Services, serviceStatus(st, svc))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) error {
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	svc, err := lookupService(st, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, serviceStatus(st, svc))
	return nil
}

func serviceStatus(st *fsm.State, svc fsm.Service) ServiceStatus {
	ss := ServiceStatus{Service: svc, Health: make(map[string]fsm.RealHealth, len(svc.Reals))}
	for _, rl := range svc.Reals {
		ss.Health[rl.ID()] = st.Health(svc.Name, rl.ID())
	}
	return ss
}

// lookupService returns the named service or the not-found error fsm gives for it.
func lookupService(st *fsm.State, name string) (fsm.Service, error) {
	svc, ok := st.Service(name)
	if !ok {
		return fsm.Service{}, &fsm.FieldError{Field: "service", Value: name, Reason: "does not exist", Kind: fsm.ErrNotFound}
	}
	return svc, nil
}

// putService creates or replaces a service. The name in the body, if any, must be the path's.
// As fsm.UpsertService does, a body without real servers keeps the existing ones.
func (s *Server) putService(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var svc fsm.Service
	if err := decodeBody(w, r, smallBodyLimit, &svc, false); err != nil {
		return err
	}
	switch svc.Name {
	case "":
		svc.Name = name
	case name:
	default:
		return badRequest("name", svc.Name, "name: %q: the body names a different service than the path's %q", svc.Name, name)
	}
	return s.write(w, r, fsm.UpsertService(svc))
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) error {
	return s.write(w, r, fsm.DeleteService(r.PathValue("name")))
}

// postReal adds or replaces the real server described by the body.
func (s *Server) postReal(w http.ResponseWriter, r *http.Request) error {
	var rl fsm.Real
	if err := decodeBody(w, r, smallBodyLimit, &rl, false); err != nil {
		return err
	}
	if !rl.Address.IsValid() {
		return badRequest("address", "", "address: is required")
	}
	return s.write(w, r, fsm.UpsertReal(r.PathValue("name"), rl))
}

// putReal adds or replaces the real server {id}. The body is optional; its address and port, if
// given, must be the path's.
func (s *Server) putReal(w http.ResponseWriter, r *http.Request) error {
	addr, port, err := parseRealID(r.PathValue("id"))
	if err != nil {
		return err
	}
	var rl fsm.Real
	if err := decodeBody(w, r, smallBodyLimit, &rl, true); err != nil {
		return err
	}
	if rl.Address.IsValid() && rl.Address.Unmap() != addr {
		return badRequest("address", rl.Address.String(), "address: %q: the body names a different real server than the path's %q", rl.Address, r.PathValue("id"))
	}
	rl.Address = addr
	if port != 0 {
		if rl.Port != 0 && rl.Port != port {
			return badRequest("port", strconv.Itoa(int(rl.Port)), "port: %q: the body names a different port than the path's %q", strconv.Itoa(int(rl.Port)), r.PathValue("id"))
		}
		rl.Port = port
	}
	return s.write(w, r, fsm.UpsertReal(r.PathValue("name"), rl))
}

func (s *Server) deleteReal(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	id, err := s.realID(name, r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.write(w, r, fsm.DeleteReal(name, id))
}

func (s *Server) putWeight(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	id, err := s.realID(name, r.PathValue("id"))
	if err != nil {
		return err
	}
	var req WeightRequest
	if err := decodeBody(w, r, smallBodyLimit, &req, false); err != nil {
		return err
	}
	if req.Weight == nil {
		return badRequest("weight", "", "weight: is required")
	}
	return s.write(w, r, fsm.SetWeight(name, id, *req.Weight))
}

func (s *Server) putAdmin(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	id, err := s.realID(name, r.PathValue("id"))
	if err != nil {
		return err
	}
	var req AdminRequest
	if err := decodeBody(w, r, smallBodyLimit, &req, false); err != nil {
		return err
	}
	if req.Admin == "" {
		return badRequest("admin", "", "admin: is required (enabled, draining or disabled)")
	}
	return s.write(w, r, fsm.SetAdmin(name, id, req.Admin))
}

// putHostAdmin enables, drains or disables every real server at the address {addr}, whatever
// its port, in every service, as one entry (fsm.SetHostAdmin). It needs every server of the
// pool to speak protocol 2 (412 otherwise, cluster.ErrFeatureUnavailable).
func (s *Server) putHostAdmin(w http.ResponseWriter, r *http.Request) error {
	addr, err := netip.ParseAddr(r.PathValue("addr"))
	if err != nil {
		return badRequest("host", r.PathValue("addr"), "host: %q: must be an IP address", r.PathValue("addr"))
	}
	addr = addr.Unmap()
	var req AdminRequest
	if err := decodeBody(w, r, smallBodyLimit, &req, false); err != nil {
		return err
	}
	if req.Admin == "" {
		return badRequest("admin", "", "admin: is required (enabled, draining or disabled)")
	}
	// The state before, to tell the servers this write changed from those already in the state.
	before := s.b.View()
	c := fsm.SetHostAdmin(addr, req.Admin)
	c.Actor = actor(r)
	res, err := s.b.Apply(r.Context(), c)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return err
	}
	s.log.Info("applied", "op", string(c.Op), "host", addr.String(), "admin", string(req.Admin), "index", res.Index, "actor", c.Actor)
	out := HostAdminResult{Index: res.Index, Changed: []HostReal{}}
	after := s.b.View()
	for _, name := range res.Changed {
		svc, _ := after.Service(name)
		old, _ := before.Service(name)
		for _, rl := range svc.Reals {
			if rl.Address != addr {
				continue
			}
			if i := slices.IndexFunc(old.Reals, func(o fsm.Real) bool { return o.ID() == rl.ID() }); i >= 0 && old.Reals[i].Admin == req.Admin {
				continue
			}
			out.Changed = append(out.Changed, HostReal{Service: name, Real: rl.ID()})
		}
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, out)
	return nil
}

// realID resolves a real server's ID from the path to the form fsm keys it by. A bare address
// means the service's port, as it does when a real server is added without one.
func (s *Server) realID(service, id string) (string, error) {
	addr, port, err := parseRealID(id)
	if err != nil {
		return "", err
	}
	if port == 0 {
		svc, err := lookupService(s.b.View(), service)
		if err != nil {
			return "", err
		}
		port = svc.Port
	}
	return fsm.RealID(addr, port), nil
}

// parseRealID parses "192.0.2.21:80", "[2001:db8::21]:80" or a bare address (port 0).
func parseRealID(id string) (netip.Addr, uint16, error) {
	if ap, err := netip.ParseAddrPort(id); err == nil {
		return ap.Addr().Unmap(), ap.Port(), nil
	}
	if a, err := netip.ParseAddr(id); err == nil {
		return a.Unmap(), 0, nil
	}
	return netip.Addr{}, 0, badRequest("real id", id, "real id: %q: must be ADDRESS, ADDRESS:PORT or [IPv6]:PORT", id)
}
