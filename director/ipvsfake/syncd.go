package ipvsfake

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/troop-lb/troop/director"
)

// SyncDaemons is a fake of the kernel's IPVS connection-sync daemons in one network namespace.
// It implements director.SyncDaemons; get one from NewSyncDaemons or IPVS.SyncDaemons.
type SyncDaemons struct {
	ns *namespace
	c  counters // guarded by ns.mu
}

var _ director.SyncDaemons = (*SyncDaemons)(nil)

var syncdOps = []Op{Daemons, StartDaemon, StopDaemon}

// NewSyncDaemons returns fake sync daemons, none running, in a namespace of their own (with an
// empty IPVS table). Use IPVS.SyncDaemons for daemons that share a fake table's namespace.
func NewSyncDaemons() *SyncDaemons { return New().SyncDaemons() }

// SetInterfaces declares the namespace's interfaces: starting a daemon on another name is
// ENODEV, as it is in the kernel. Until it is called any non-empty name exists.
func (f *SyncDaemons) SetInterfaces(names ...string) {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.ns.ifaces = map[string]bool{}
	for _, n := range names {
		f.ns.ifaces[n] = true
	}
}

// Calls returns how many times op was called, failed calls included.
func (f *SyncDaemons) Calls(op Op) int {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	return f.c.calls[op]
}

// ResetCalls sets every call count to zero; injected faults stay.
func (f *SyncDaemons) ResetCalls() {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	clear(f.c.calls)
}

// FailNext makes the next call of op fail with err and change nothing. Calling it n times fails
// the next n calls. It panics on an op that is not a method of director.SyncDaemons.
func (f *SyncDaemons) FailNext(op Op, err error) {
	if !slices.Contains(syncdOps, op) {
		panic(fmt.Sprintf("ipvsfake: %q is not a method of director.SyncDaemons", op))
	}
	if err == nil {
		panic("ipvsfake: FailNext with a nil error")
	}
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.c.faults[op] = append(f.c.faults[op], err)
}

// Closed reports whether Close was called.
func (f *SyncDaemons) Closed() bool {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	return f.c.closed
}

// Close makes every later call fail with os.ErrClosed; running daemons keep running, as in the
// kernel. Close may be called more than once.
func (f *SyncDaemons) Close() error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.c.closed = true
	return nil
}

// Daemons lists the running daemons, the master first, as the kernel's dump does.
func (f *SyncDaemons) Daemons() ([]director.SyncDaemon, error) {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	if err := f.c.enter(Daemons); err != nil {
		return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
	}
	out := []director.SyncDaemon{}
	for _, d := range []*director.SyncDaemon{f.ns.master, f.ns.backup} {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, nil
}

// StartDaemon starts a daemon, checking what ip_vs_genl_new_daemon and start_sync_thread check,
// in their order.
func (f *SyncDaemons) StartDaemon(d director.SyncDaemon) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("start IPVS sync daemon %s on %q (syncid %d): %w", stateName(d.State), d.Interface, d.SyncID, err)
	}
	if err := f.c.enter(StartDaemon); err != nil {
		return wrap(err)
	}
	// The netlink policy wants a NUL within IP_VS_IFNAME_MAXLEN (16) bytes.
	if len(d.Interface) > 15 {
		return wrap(syscall.EINVAL)
	}
	if f.ns.mixedFamilyDests() {
		return wrap(syscall.EINVAL)
	}
	if d.Interface == "" || (f.ns.ifaces != nil && !f.ns.ifaces[d.Interface]) {
		return wrap(syscall.ENODEV)
	}
	var slot **director.SyncDaemon
	switch d.State {
	case director.SyncMaster:
		slot = &f.ns.master
	case director.SyncBackup:
		slot = &f.ns.backup
	default:
		return wrap(syscall.EINVAL)
	}
	if *slot != nil {
		return wrap(syscall.EEXIST)
	}
	*slot = &d
	return nil
}

// StopDaemon stops the daemon of a role.
func (f *SyncDaemons) StopDaemon(s director.SyncState) error {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("stop IPVS sync daemon %s: %w", stateName(s), err) }
	if err := f.c.enter(StopDaemon); err != nil {
		return wrap(err)
	}
	var slot **director.SyncDaemon
	switch s {
	case director.SyncMaster:
		slot = &f.ns.master
	case director.SyncBackup:
		slot = &f.ns.backup
	default:
		return wrap(syscall.EINVAL)
	}
	if *slot == nil {
		return wrap(syscall.ESRCH)
	}
	*slot = nil
	return nil
}

// String renders the running daemons as ipvsadm -L --daemon does, one line each, the master
// first: "master sync daemon (mcast=eth0, syncid=7)". No daemon is "".
func (f *SyncDaemons) String() string {
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	var b strings.Builder
	for _, d := range []*director.SyncDaemon{f.ns.master, f.ns.backup} {
		if d != nil {
			fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d)\n", stateName(d.State), d.Interface, d.SyncID)
		}
	}
	return b.String()
}

func stateName(s director.SyncState) string {
	switch s {
	case director.SyncMaster:
		return "master"
	case director.SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("state-%d", uint32(s))
}
