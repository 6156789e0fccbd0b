package director

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/troop-lb/troop/fsm"
)

// OwnershipFile is the name of the ownership file in the agent's data directory.
const OwnershipFile = "ipvs-owned.json"

// ownershipFormat is the version of the ownership file this build writes.
const ownershipFormat = 1

// Ownership is the set of IPVS services Troop created or adopted, so that it can tell its own
// services from other software's (kube-proxy's, an operator's): the reconciler removes a
// kernel service that is owned but no longer desired, and never touches one that is neither.
//
// A file-backed Ownership writes the whole set to its file (temporary file, fsync, rename) on
// every change, before the change counts: the reconciler adds a key before it creates the
// service, and forgets it only after the service is gone, so a crash at any point leaves at most
// an owned key without a service (forgotten by the next Sync), never an unowned service of
// Troop's. Methods are safe for concurrent use.
type Ownership struct {
	path string // empty: in memory only

	mu   sync.Mutex // guards keys
	keys map[ServiceKey]struct{}
}

// NewOwnership returns an in-memory ownership set, for -dev and tests: an agent restart
// forgets it, and then adopts the services it wants again but leaves its orphans alone.
func NewOwnership() *Ownership {
	return &Ownership{keys: map[ServiceKey]struct{}{}}
}

// LoadOwnership opens the ownership set kept in path (usually OwnershipFile in the data dir).
// A missing file is an empty set; the file is created on the first change. A file that cannot
// be read or parsed is an error naming the path: guessing would either leak or remove services.
func LoadOwnership(path string) (*Ownership, error) {
	o := &Ownership{path: path, keys: map[ServiceKey]struct{}{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read IPVS ownership: %w", err)
	}
	var f ownershipDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("read IPVS ownership %s: %w", path, err)
	}
	if f.Format > ownershipFormat || f.Format < 1 {
		return nil, fmt.Errorf("read IPVS ownership %s: format %d, this build reads 1 to %d", path, f.Format, ownershipFormat)
	}
	for i, s := range f.Services {
		k, err := ParseServiceKey(s)
		if err != nil {
			return nil, fmt.Errorf("read IPVS ownership %s: services[%d]: %w", path, i, err)
		}
		o.keys[k] = struct{}{}
	}
	return o, nil
}

// ownershipDoc is the file's JSON form; services are ServiceKey strings, sorted.
type ownershipDoc struct {
	Format   int      `json:"format"`
	Services []string `json:"services"`
}

// Path is the file the set is kept in; empty for an in-memory set.
func (o *Ownership) Path() string { return o.path }

// Owns reports whether Troop owns the service with key k.
func (o *Ownership) Owns(k ServiceKey) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.keys[normalizeKey(k)]
	return ok
}

// Keys lists the owned keys in order.
func (o *Ownership) Keys() []ServiceKey {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.SortedFunc(maps.Keys(o.keys), compareKey)
}

// Len is the number of owned keys.
func (o *Ownership) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.keys)
}

// Add makes keys owned. It returns once the set is on disk; on error nothing changed.
func (o *Ownership) Add(keys ...ServiceKey) error {
	return o.change(keys, true)
}

// Remove forgets keys. It returns once the set is on disk; on error nothing changed.
func (o *Ownership) Remove(keys ...ServiceKey) error {
	return o.change(keys, false)
}

func (o *Ownership) change(keys []ServiceKey, add bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var next map[ServiceKey]struct{}
	for _, k := range keys {
		k = normalizeKey(k)
		if _, has := o.keys[k]; has == add {
			continue
		}
		if next == nil {
			next = maps.Clone(o.keys)
		}
		if add {
			next[k] = struct{}{}
		} else {
			delete(next, k)
		}
	}
	if next == nil {
		return nil
	}
	if o.path != "" {
		if err := writeOwnership(o.path, next); err != nil {
			return err
		}
	}
	o.keys = next
	return nil
}

// writeOwnership replaces the file at path atomically: a crash leaves the old set or the new
// one, never a mix.
func writeOwnership(path string, keys map[ServiceKey]struct{}) error {
	doc := ownershipDoc{Format: ownershipFormat, Services: make([]string, 0, len(keys))}
	for _, k := range slices.SortedFunc(maps.Keys(keys), compareKey) {
		doc.Services = append(doc.Services, k.String())
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("write IPVS ownership: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write IPVS ownership: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("write IPVS ownership %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write IPVS ownership %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write IPVS ownership %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write IPVS ownership: %w", err)
	}
	done = true
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ParseServiceKey parses what ServiceKey.String writes: "TCP 192.0.2.10:80",
// "UDP [2001:db8::10]:53", "FWM 7 IPv4".
func ParseServiceKey(s string) (ServiceKey, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 3 && f[0] == "FWM":
		mark, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || mark == 0 {
			return ServiceKey{}, fmt.Errorf("service key %q: bad firewall mark %q", s, f[1])
		}
		var fam fsm.Family
		switch f[2] {
		case "IPv4":
			fam = fsm.IPv4
		case "IPv6":
			fam = fsm.IPv6
		default:
			return ServiceKey{}, fmt.Errorf("service key %q: family %q is not IPv4 or IPv6", s, f[2])
		}
		return ServiceKey{Family: fam, FWMark: uint32(mark)}, nil
	case len(f) == 2:
		proto := fsm.Protocol(strings.ToLower(f[0]))
		if !slices.Contains(fsm.Protocols, proto) {
			return ServiceKey{}, fmt.Errorf("service key %q: protocol %q is not TCP, UDP or SCTP", s, f[0])
		}
		ap, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return ServiceKey{}, fmt.Errorf("service key %q: %w", s, err)
		}
		return normalizeKey(ServiceKey{Protocol: proto, Address: ap.Addr(), Port: ap.Port()}), nil
	}
	return ServiceKey{}, fmt.Errorf("service key %q: want \"TCP 192.0.2.10:80\" or \"FWM 7 IPv4\"", s)
}
