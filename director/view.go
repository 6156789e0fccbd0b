package director

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// KernelService is one of Troop's virtual services as the table wants it and as the kernel
// holds it, for `troop status`.
type KernelService struct {
	// Name is the FSM service, or "" for a service Troop owns that the table no longer has.
	Name string `json:"name,omitempty"`
	Key  string `json:"key"`
	// Kernel is what the kernel holds; nil when the service is missing there.
	Kernel *Service `json:"kernel,omitempty"`
	// Drift says how the kernel differs from the table: "" (it does not), "missing",
	// "settings" or "not in table".
	Drift        string              `json:"drift,omitempty"`
	Destinations []KernelDestination `json:"destinations"`
}

// KernelDestination is one real server as the table wants it and as the kernel holds it.
type KernelDestination struct {
	Key     string       `json:"key"`
	Desired *Destination `json:"desired,omitempty"`
	Kernel  *Destination `json:"kernel,omitempty"`
	// Drift is "" (in line), "missing", "weight", "settings", "stray" (in the kernel only), or
	// "draining" (on its way out, as planned).
	Drift string `json:"drift,omitempty"`
}

// kernelView compares the desired table of st with what k holds, for the services of the
// table and those Troop owns. Foreign services are not shown.
func kernelView(k IPVS, owned *Ownership, st *fsm.State, opts ReconcilerOptions, drains Drains, now time.Time) ([]KernelService, error) {
	held, err := k.Services()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", err)
	}
	byKey := make(map[ServiceKey]*Service, len(held))
	for i := range held {
		byKey[held[i].ServiceKey] = &held[i]
	}
	var out []KernelService
	seen := map[ServiceKey]bool{}
	for _, d := range Desired(st, opts, drains, now) {
		key := d.Service.ServiceKey
		seen[key] = true
		ks := KernelService{Name: d.Name, Key: key.String(), Kernel: byKey[key]}
		var kd []Destination
		switch {
		case ks.Kernel == nil:
			ks.Drift = "missing"
		default:
			if !sameSettings(&d.Service, ks.Kernel) {
				ks.Drift = "settings"
			}
			if kd, err = k.Destinations(key); err != nil && !errors.Is(err, syscall.ESRCH) {
				return nil, fmt.Errorf("list destinations of %s: %w", key, err)
			}
		}
		ks.Destinations = compareDestinations(d, kd)
		out = append(out, ks)
	}
	for _, key := range owned.Keys() {
		if seen[key] || byKey[key] == nil {
			continue
		}
		kd, err := k.Destinations(key)
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("list destinations of %s: %w", key, err)
		}
		ks := KernelService{Key: key.String(), Kernel: byKey[key], Drift: "not in table"}
		ks.Destinations = compareDestinations(DesiredService{}, kd)
		out = append(out, ks)
	}
	return out, nil
}

func compareDestinations(d DesiredService, kernel []Destination) []KernelDestination {
	held := make(map[DestinationKey]*Destination, len(kernel))
	for i := range kernel {
		held[kernel[i].DestinationKey] = &kernel[i]
	}
	var out []KernelDestination
	for i := range d.Destinations {
		want := &d.Destinations[i]
		kd := KernelDestination{Key: want.DestinationKey.String(), Desired: want, Kernel: held[want.DestinationKey]}
		switch {
		case isListed(d.Draining, want.DestinationKey):
			kd.Drift = "draining"
		case kd.Kernel == nil:
			kd.Drift = "missing"
		case kd.Kernel.Weight != want.Weight:
			kd.Drift = "weight"
		case !sameDest(want, kd.Kernel):
			kd.Drift = "settings"
		}
		delete(held, want.DestinationKey)
		out = append(out, kd)
	}
	for _, k := range held {
		out = append(out, KernelDestination{Key: k.DestinationKey.String(), Kernel: k, Drift: "stray"})
	}
	slices.SortFunc(out, func(a, b KernelDestination) int { return cmp.Compare(a.Key, b.Key) })
	return out
}
