package netfake

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Guard is a fake director.TakeoverGuard that records each set in the journal ("guard
// 192.0.2.6:80,192.0.2.7:443", "guard none") and keeps the current one.
type Guard struct {
	journal *Journal
	mu      sync.Mutex
	ports   []netip.AddrPort
}

// NewGuard returns a fake guard recording into j.
func NewGuard(j *Journal) *Guard { return &Guard{journal: j} }

// Ports returns the guarded services.
func (g *Guard) Ports() []netip.AddrPort {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ports)
}

func (g *Guard) Set(ports []netip.AddrPort) error {
	g.mu.Lock()
	g.ports = slices.Clone(ports)
	g.mu.Unlock()
	what := "none"
	if len(ports) > 0 {
		var s []string
		for _, p := range ports {
			s = append(s, p.String())
		}
		what = strings.Join(s, ",")
	}
	g.journal.record(Event{Op: "guard", Addr: what})
	return nil
}

func (g *Guard) Close() error { return g.Set(nil) }
