package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// State is the replicated table at one log index. A *State obtained from FSM.View or
// FSM.Snapshot is frozen: the FSM never modifies it again, so readers need no lock. Its
// services are shared with later states, so callers must not modify what the accessors return.
type State struct {
	index    uint64
	services map[string]*Service
	groups   map[string]*VIPGroup
	// health maps service name → real ID → committed health. Inner maps are replaced, not
	// modified, once a frozen copy may share them.
	health map[string]map[string]RealHealth
	// tokens maps accessor → ACL token (hashes only). The map is replaced, not modified.
	tokens map[string]*Token
}

func newState() *State {
	return &State{
		services: map[string]*Service{},
		groups:   map[string]*VIPGroup{},
		health:   map[string]map[string]RealHealth{},
		tokens:   map[string]*Token{},
	}
}

// freeze returns a copy that shares every service, group and inner health map: apply replaces
// those values instead of changing them, so the copy stays as it is.
func (st *State) freeze() *State {
	return &State{
		index:    st.index,
		services: maps.Clone(st.services),
		groups:   maps.Clone(st.groups),
		health:   maps.Clone(st.health),
		tokens:   st.tokens,
	}
}

// Index is the Raft log index of the last entry applied to this state.
func (st *State) Index() uint64 { return st.index }

// ServiceNames lists every service name in order.
func (st *State) ServiceNames() []string {
	return slices.Sorted(maps.Keys(st.services))
}

// Service returns a copy of the named service.
func (st *State) Service(name string) (Service, bool) {
	s, ok := st.services[name]
	if !ok {
		return Service{}, false
	}
	return cloneService(s), true
}

// Len is the number of services.
func (st *State) Len() int { return len(st.services) }

// Health returns the committed health of a real server; State is HealthUnknown if the leader
// never recorded one.
func (st *State) Health(service, realID string) RealHealth {
	if h, ok := st.health[service][realID]; ok {
		return h
	}
	return RealHealth{State: HealthUnknown}
}

// Table returns a copy of the declarative table, sorted by name.
func (st *State) Table() Table {
	t := Table{Services: make([]Service, 0, len(st.services))}
	for _, name := range st.ServiceNames() {
		t.Services = append(t.Services, cloneService(st.services[name]))
	}
	if len(st.groups) > 0 {
		t.VIPGroups = st.VIPGroups()
	}
	return t
}

// ServiceVIPs returns the distinct VIPs of the services, sorted (firewall-mark services have
// none): what Table would give, without copying every service and its real servers.
func (st *State) ServiceVIPs() []netip.Addr {
	var vips []netip.Addr
	for _, s := range st.services {
		if s.VIP.IsValid() {
			vips = append(vips, s.VIP)
		}
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	return slices.Compact(vips)
}

// VIPGroups returns a copy of the VIP groups, sorted by name.
func (st *State) VIPGroups() []VIPGroup {
	out := make([]VIPGroup, 0, len(st.groups))
	for _, name := range slices.Sorted(maps.Keys(st.groups)) {
		out = append(out, cloneGroup(st.groups[name]))
	}
	return out
}

func cloneService(s *Service) Service {
	c := *s
	c.SchedFlags = slices.Clone(s.SchedFlags)
	c.Reals = slices.Clone(s.Reals)
	for i := range c.Reals {
		if w := c.Reals[i].Weight; w != nil {
			v := *w
			c.Reals[i].Weight = &v
		}
	}
	if s.Persistence != nil {
		p := *s.Persistence
		c.Persistence = &p
	}
	if s.Check != nil {
		ch := *s.Check
		ch.ExpectStatus = slices.Clone(s.Check.ExpectStatus)
		ch.Command = slices.Clone(s.Check.Command)
		c.Check = &ch
	}
	if s.Fallback != nil {
		f := *s.Fallback
		c.Fallback = &f
	}
	return c
}

// Clone returns a deep copy of the table, so that normalizing or editing it leaves t as it was.
func (t Table) Clone() Table {
	c := Table{Services: make([]Service, len(t.Services))}
	for i := range t.Services {
		c.Services[i] = cloneService(&t.Services[i])
	}
	if t.Services == nil {
		c.Services = nil
	}
	for i := range t.VIPGroups {
		c.VIPGroups = append(c.VIPGroups, cloneGroup(&t.VIPGroups[i]))
	}
	return c
}

func cloneGroup(g *VIPGroup) VIPGroup {
	c := *g
	c.VIPs = slices.Clone(g.VIPs)
	return c
}

// change is what a validated command will do to the state. Computing it reads the state;
// committing it cannot fail, so a command is applied entirely or not at all.
type change struct {
	// replace swaps in whole new maps (apply_table, restore).
	replace  bool
	services map[string]*Service
	groups   map[string]*VIPGroup
	health   map[string]map[string]RealHealth
	// upsert and remove act on single services; upserts on several (set_host_admin).
	upsert  *Service
	upserts []*Service
	remove  string
	// tokens, if not nil, replaces every ACL token (upsert_token, delete_token).
	tokens  map[string]*Token
	changed []string
}

// prepare validates c against the state and computes its effect without changing anything.
// It normalizes c's payload in place, so the caller can propose the normalized form.
func (st *State) prepare(c *Command) (*change, error) {
	switch c.Op {
	case OpUpsertService:
		if c.Service == nil {
			return nil, invalid("service", "", "is required")
		}
		NormalizeService(c.Service)
		s := cloneService(c.Service)
		// "No reals keeps the current ones" is resolved here, against the state the entry is
		// applied to, never baked into the proposed command: a command prepared on a stale
		// state would otherwise revert real-server changes committed meanwhile.
		if old, ok := st.services[s.Name]; ok && len(s.Reals) == 0 {
			s.Reals = cloneService(old).Reals
		}
		if err := st.checkService(&s); err != nil {
			return nil, err
		}
		return &change{upsert: &s, changed: []string{s.Name}}, nil
	case OpDeleteService:
		if _, ok := st.services[c.Name]; !ok {
			return nil, notFound(c.Name, "")
		}
		return &change{remove: c.Name, changed: []string{c.Name}}, nil
	case OpUpsertReal:
		if c.Real == nil {
			return nil, invalid("real", "", "is required")
		}
		return st.editService(c.Name, func(s *Service) error {
			r := *c.Real
			normalizeReal(s, &r)
			if i, ok := s.realIndex(r.ID()); ok {
				s.Reals[i] = r
			} else {
				s.Reals = append(s.Reals, r)
				slices.SortFunc(s.Reals, compareReal)
			}
			*c.Real = r
			return nil
		})
	case OpDeleteReal, OpSetWeight, OpSetAdmin:
		return st.editService(c.Name, func(s *Service) error {
			i, ok := s.realIndex(c.RealID)
			if !ok {
				return notFound(c.Name, c.RealID)
			}
			switch c.Op {
			case OpDeleteReal:
				s.Reals = slices.Delete(s.Reals, i, i+1)
			case OpSetWeight:
				if c.Weight == nil {
					return invalid(fmt.Sprintf("service %q real %q weight", c.Name, c.RealID), "", "is required")
				}
				w := *c.Weight
				s.Reals[i].Weight = &w
			case OpSetAdmin:
				s.Reals[i].Admin = c.Admin
			}
			return nil
		})
	case OpSetHostAdmin:
		return st.prepareHostAdmin(c)
	case OpUpsertToken, OpDeleteToken:
		return st.prepareToken(c)
	case OpRecordHealth:
		return st.prepareHealth(c)
	case OpApplyTable:
		if c.Table == nil {
			return nil, invalid("table", "", "is required")
		}
		return st.prepareReplace(c.Table, nil)
	case OpRestore:
		if c.State == nil {
			return nil, invalid("state", "", "is required")
		}
		if c.State.Format > SnapshotFormat {
			return nil, fmt.Errorf("restore snapshot format %d, this build reads up to %d: %w", c.State.Format, SnapshotFormat, ErrNewerVersion)
		}
		// ACL tokens are access control, not table: a restore leaves them as they are, so an
		// old file neither revokes today's tokens nor brings back deleted ones. Dropping them
		// from the proposed entry also keeps it readable by servers of older protocols.
		c.State.Tokens = nil
		// A snapshot without health restores "no verdicts", not today's verdicts.
		return st.prepareReplace(&c.State.Table, orEmpty(c.State.Health))
	}
	return nil, fmt.Errorf("command type %q: %w", c.Op, ErrUnknownCommand)
}

func notFound(service, realID string) *FieldError {
	if realID == "" {
		return &FieldError{Field: "service", Value: service, Reason: "does not exist", Kind: ErrNotFound}
	}
	return &FieldError{Field: fmt.Sprintf("service %q real", service), Value: realID, Reason: "does not exist", Kind: ErrNotFound}
}

// prepareHostAdmin sets the admin state of every real server at c.Host in every service. A
// service whose servers at that address are all in that state already is left as it is (and
// not listed as changed), so that repeating the command changes nothing.
func (st *State) prepareHostAdmin(c *Command) (*change, error) {
	if !c.Host.IsValid() {
		return nil, invalid("host", "", "is required")
	}
	c.Host = c.Host.Unmap()
	if !slices.Contains(AdminStates, c.Admin) {
		return nil, invalid("admin", string(c.Admin), "must be one of %s", joinOf(AdminStates))
	}
	ch := &change{upserts: []*Service{}}
	found := false
	for _, name := range st.ServiceNames() {
		old := st.services[name]
		edit := false
		for _, r := range old.Reals {
			if r.Address == c.Host {
				found = true
				edit = edit || r.Admin != c.Admin
			}
		}
		if !edit {
			continue
		}
		s := cloneService(old)
		for i := range s.Reals {
			if s.Reals[i].Address == c.Host {
				s.Reals[i].Admin = c.Admin
			}
		}
		if err := ValidateService(&s); err != nil {
			return nil, err
		}
		ch.upserts = append(ch.upserts, &s)
		ch.changed = append(ch.changed, name)
	}
	if !found {
		return nil, &FieldError{Field: "host", Value: c.Host.String(), Reason: "is not the address of a real server of any service", Kind: ErrNotFound}
	}
	return ch, nil
}

// editService applies edit to a copy of the named service and validates the result.
func (st *State) editService(name string, edit func(*Service) error) (*change, error) {
	old, ok := st.services[name]
	if !ok {
		return nil, notFound(name, "")
	}
	s := cloneService(old)
	if err := edit(&s); err != nil {
		return nil, err
	}
	if err := ValidateService(&s); err != nil {
		return nil, err
	}
	return &change{upsert: &s, changed: []string{name}}, nil
}

// checkService validates s and that no other service has its kernel key.
func (st *State) checkService(s *Service) error {
	if err := ValidateService(s); err != nil {
		return err
	}
	key := s.Key()
	for name, other := range st.services {
		if name != s.Name && other.Key() == key {
			return &FieldError{Field: fmt.Sprintf("service %q", s.Name), Value: key, Reason: fmt.Sprintf("is already served by service %q", name), Kind: ErrConflict}
		}
	}
	return nil
}

func (st *State) prepareHealth(c *Command) (*change, error) {
	ch := &change{}
	for i, t := range c.Health {
		if t.State != HealthUp && t.State != HealthDown {
			return nil, invalid(fmt.Sprintf("health[%d] state", i), string(t.State), "must be up or down")
		}
	}
	// Transitions for servers deleted meanwhile are dropped: the deletion won the race.
	for _, t := range c.Health {
		s, ok := st.services[t.Service]
		if !ok {
			continue
		}
		if _, ok := s.realIndex(t.Real); !ok {
			continue
		}
		if ch.health == nil {
			ch.health = map[string]map[string]RealHealth{}
		}
		inner, ok := ch.health[t.Service]
		if !ok {
			inner = maps.Clone(st.health[t.Service])
			if inner == nil {
				inner = map[string]RealHealth{}
			}
			ch.health[t.Service] = inner
			ch.changed = append(ch.changed, t.Service)
		}
		inner[t.Real] = RealHealth{State: t.State, Reason: t.Reason, Since: c.Time}
	}
	slices.Sort(ch.changed)
	return ch, nil
}

func orEmpty(h map[string]map[string]RealHealth) map[string]map[string]RealHealth {
	if h == nil {
		return map[string]map[string]RealHealth{}
	}
	return h
}

// prepareReplace validates a whole table; health, if nil, is carried over for reals that remain.
func (st *State) prepareReplace(t *Table, health map[string]map[string]RealHealth) (*change, error) {
	NormalizeTable(t)
	if err := ValidateTable(t); err != nil {
		return nil, err
	}
	ch := &change{replace: true, services: map[string]*Service{}, groups: map[string]*VIPGroup{}, health: map[string]map[string]RealHealth{}}
	if health == nil {
		health = st.health
	}
	for i := range t.Services {
		s := cloneService(&t.Services[i])
		ch.services[s.Name] = &s
		if old, ok := st.services[s.Name]; !ok || !sameService(old, &s) {
			ch.changed = append(ch.changed, s.Name)
		}
		for _, r := range s.Reals {
			if h, ok := health[s.Name][r.ID()]; ok {
				if ch.health[s.Name] == nil {
					ch.health[s.Name] = map[string]RealHealth{}
				}
				ch.health[s.Name][r.ID()] = h
			}
		}
	}
	for name := range st.services {
		if _, ok := ch.services[name]; !ok {
			ch.changed = append(ch.changed, name)
		}
	}
	for i := range t.VIPGroups {
		g := cloneGroup(&t.VIPGroups[i])
		ch.groups[g.Name] = &g
	}
	slices.Sort(ch.changed)
	return ch, nil
}

// commit applies a prepared change. It replaces values rather than modifying them, so frozen
// copies handed out earlier stay as they were.
func (st *State) commit(ch *change) {
	switch {
	case ch.replace:
		st.services, st.groups, st.health = ch.services, ch.groups, ch.health
	case ch.upsert != nil:
		st.services[ch.upsert.Name] = ch.upsert
		st.pruneHealth(ch.upsert)
	case ch.remove != "":
		delete(st.services, ch.remove)
		delete(st.health, ch.remove)
	case ch.tokens != nil:
		st.tokens = ch.tokens
	case ch.upserts != nil:
		// Only admin states change: the reals, and so their health, stay.
		for _, s := range ch.upserts {
			st.services[s.Name] = s
		}
	default:
		for name, inner := range ch.health {
			st.health[name] = inner
		}
	}
}

// pruneHealth forgets the health of real servers s no longer has.
func (st *State) pruneHealth(s *Service) {
	inner := st.health[s.Name]
	stale := false
	for id := range inner {
		if _, ok := s.realIndex(id); !ok {
			stale = true
			break
		}
	}
	if !stale {
		return
	}
	kept := map[string]RealHealth{}
	for id, h := range inner {
		if _, ok := s.realIndex(id); ok {
			kept[id] = h
		}
	}
	st.health[s.Name] = kept
}

// sameService compares two normalized services by their encoding, which is canonical.
func sameService(a, b *Service) bool {
	ea, errA := json.Marshal(a)
	eb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ea, eb)
}
