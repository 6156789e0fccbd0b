package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Config is what a director needs besides its collaborators.
type Config struct {
	// Interface holds the VIPs of services that are in no VIP group.
	Interface string
	// ReconcileInterval is how often the whole IPVS table is compared with the kernel (repairing
	// out-of-band edits and finishing drains) besides the incremental work on every change.
	ReconcileInterval time.Duration
	// TakeoverTimeout bounds how long a new leader waits for its state to be current and IPVS
	// to match before it takes the VIPs anyway: an out-of-date table beats no service at all.
	TakeoverTimeout time.Duration
	// HandoverHold bounds how long a leader that hands leadership over (HandOver) keeps a VIP
	// that the new leader has not announced yet.
	HandoverHold time.Duration
	// Reconciler tunes the IPVS reconciler (drain period).
	Reconciler ReconcilerOptions
	// Sync, when set, runs the kernel's connection-sync daemon: master on the leader, backup on
	// followers, so that established connections survive a failover. Its State is ignored.
	Sync *SyncDaemon
	// TakeoverWindow is how long a new leader keeps its backup sync daemon beside the master
	// (so that connections a handing-over leader sends still land) and guards its services
	// (Deps.Guard): DefaultTakeoverWindow if zero.
	TakeoverWindow time.Duration
	// NoIPVS says why there is no IPVS when Deps.IPVS is nil: "disabled" (VIP-only mode) or
	// "unavailable: <the error>".
	NoIPVS string
}

// Defaults for Config.
const (
	DefaultReconcileInterval = 5 * time.Second
	DefaultTakeoverTimeout   = 2 * time.Second
	// DefaultHandoverHold covers a new leader's takeover (a Raft barrier and an IPVS sync,
	// bounded by its own TakeoverTimeout of the same length) and its first announcement.
	DefaultHandoverHold = 2 * time.Second
)

// ErrHandoverUnfinished is HandOver's error when its context ends after leadership was given
// up but before the new leader announced every VIP.
var ErrHandoverUnfinished = errors.New("the new leader has not announced every VIP yet")

// ErrNotLeading is ConfirmLeadership's error when this director does not act as the leader,
// or stopped acting as it during the check.
var ErrNotLeading = errors.New("this director does not act as the leader")

// Pool is what the director needs from its Raft node.
type Pool interface {
	// WatchLeadership delivers this node's leadership, latest value first (cluster.Node's
	// contract: coalescing, closed means not leader).
	WatchLeadership(ctx context.Context) <-chan cluster.Leadership
	// ConsistentView returns a state that includes everything committed so far.
	ConsistentView(ctx context.Context) (*fsm.State, error)
}

// VIPAnnouncer announces VIPs a new owner holds.
type VIPAnnouncer interface {
	// Announce starts announcing vip on iface (a burst, then repeats); it ends a yield of vip.
	Announce(iface string, vip netip.Addr)
	// Yield ends vip's announcements but keeps watching iface for another host claiming vip,
	// without defending it, and closes the returned channel when one does: the new leader has
	// announced it. The channel may never be closed (no watch): the caller bounds its wait.
	Yield(iface string, vip netip.Addr) <-chan struct{}
	// Stop ends vip's announcements or yield; called before the VIP is removed.
	Stop(vip netip.Addr)
}

// Deps are a director's collaborators. IPVS, Owned and Syncd are nil without IPVS (VIP-only
// mode, or a kernel without it).
type Deps struct {
	FSM       *fsm.FSM
	Pool      Pool
	IPVS      IPVS
	Owned     *Ownership
	Syncd     SyncDaemons
	Addresses Addresses
	Announcer VIPAnnouncer
	// ConnSync, if set (with IPVS and Config.Sync), lets a leader that hands over send its
	// connections to the backups itself (see ConnSync).
	ConnSync ConnSync
	// Guard, if set, guards a new leader's services during the takeover window.
	Guard TakeoverGuard
	// Events, if set, is told what happened, in words, as the agent's events stream shows it:
	// kind "vip" (a VIP taken over or released, with the term and why) and "drift" (an
	// out-of-band IPVS edit repaired). It is called from the director's loops and must not
	// block; it must not call back into the Director.
	Events func(kind, message string)
	// OnReconcile, if set, is called after every IPVS reconcile pass (full or incremental) with
	// its report and error, from the IPVS loop; it must not block (metrics).
	OnReconcile func(rep Report, err error)
	Log         *slog.Logger
}

// Counters are a director's monotonic counts since it was created, for metrics.
type Counters struct {
	// Takeovers counts VIPs put on an interface (leadership won, or a VIP added to the table
	// while leading); Releases counts VIPs taken off.
	Takeovers uint64
	Releases  uint64
	// ReconcilePasses counts IPVS reconcile passes; ReconcileErrors the failed kernel calls in
	// them; DriftRepairs the out-of-band edits they repaired (Report.Drift).
	ReconcilePasses uint64
	ReconcileErrors uint64
	DriftRepairs    uint64
}

// Director runs a director's dataplane: the IPVS table on every node, the VIPs on the leader.
// New starts nothing; Run does the work until its context ends.
type Director struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// rec is nil without IPVS.
	rec *Reconciler

	// syncedIndex is the FSM index the IPVS table last matched after a full Sync.
	syncedIndex atomic.Uint64
	// syncReq asks the IPVS loop for a full Sync; syncDone is closed and replaced after each.
	syncReq  chan struct{}
	syncMu   sync.Mutex // guards syncDone
	syncDone chan struct{}

	statusMu sync.Mutex // guards status
	status   Status

	handoverMu sync.Mutex // guards handover
	// handover is set by HandOver until the VIP loop takes it at the next loss of leadership;
	// the loop closes it when the handover is over.
	handover chan struct{}
	// vipLoopDone is closed when the VIP loop has returned.
	vipLoopDone chan struct{}
	// leadTerm is the Raft term this director leads in once it has taken the VIPs over, 0
	// when it does not lead (Raft terms start at 1). The VIP loop writes it.
	leadTerm atomic.Uint64

	// The counters of Counters.
	takeovers, releases                             atomic.Uint64
	reconcilePasses, reconcileErrors, driftRepaired atomic.Uint64
}

// Status is a director's dataplane as it stands, for the API and `troop status`.
type Status struct {
	// IPVS is "enabled", "disabled" (VIP-only mode) or "unavailable: <why>".
	IPVS string `json:"ipvs"`
	// Leader is true while this director acts as the leader (holds, or is taking, the VIPs).
	Leader bool `json:"leader"`
	// VIPs are the addresses this director holds, as "192.0.2.6/32 on eth0".
	VIPs []string `json:"vips"`
	// SyncedIndex is the FSM index the kernel table last matched: a full pass that completed
	// without error, carried forward by each change applied without error since.
	SyncedIndex uint64    `json:"synced_index"`
	LastSync    time.Time `json:"last_sync,omitzero"`
	LastReport  Report    `json:"last_report"`
	LastError   string    `json:"last_error,omitempty"`
	// Repairs counts out-of-band edits repaired since the agent started.
	Repairs int `json:"repairs"`
}

// New returns a director. It builds the IPVS reconciler when deps.IPVS is set.
func New(cfg Config, deps Deps) (*Director, error) {
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = DefaultReconcileInterval
	}
	if cfg.TakeoverTimeout <= 0 {
		cfg.TakeoverTimeout = DefaultTakeoverTimeout
	}
	if cfg.HandoverHold <= 0 {
		cfg.HandoverHold = DefaultHandoverHold
	}
	if cfg.TakeoverWindow <= 0 {
		cfg.TakeoverWindow = DefaultTakeoverWindow
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	d := &Director{
		cfg: cfg, deps: deps, log: deps.Log,
		syncReq:     make(chan struct{}, 1),
		syncDone:    make(chan struct{}),
		status:      Status{IPVS: cfg.NoIPVS},
		vipLoopDone: make(chan struct{}),
	}
	if deps.IPVS != nil {
		rec, err := NewReconciler(deps.IPVS, deps.Owned, cfg.Reconciler, deps.Log)
		if err != nil {
			return nil, err
		}
		d.rec, d.status.IPVS = rec, "enabled"
	}
	return d, nil
}

// KernelView compares the table with what the kernel's IPVS holds, service by service. It
// reads the kernel and writes nothing. Without IPVS it returns nil.
func (d *Director) KernelView() ([]KernelService, error) {
	if d.rec == nil {
		return nil, nil
	}
	return kernelView(d.deps.IPVS, d.deps.Owned, d.deps.FSM.View(), d.cfg.Reconciler, d.rec.Drains(), time.Now())
}

// Counters returns the director's counts so far. Safe for concurrent use.
func (d *Director) Counters() Counters {
	return Counters{
		Takeovers: d.takeovers.Load(), Releases: d.releases.Load(),
		ReconcilePasses: d.reconcilePasses.Load(), ReconcileErrors: d.reconcileErrors.Load(),
		DriftRepairs: d.driftRepaired.Load(),
	}
}

// event tells Deps.Events, if set.
func (d *Director) event(kind, format string, args ...any) {
	if d.deps.Events != nil {
		d.deps.Events(kind, fmt.Sprintf(format, args...))
	}
}

// Status reports the dataplane.
func (d *Director) Status() Status {
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	s := d.status
	s.VIPs = slices.Clone(s.VIPs)
	return s
}

// Run keeps the dataplane in line with the FSM and the leadership until ctx ends. On return
// this director holds no VIP; the IPVS table stays as it is (never flushed), so a restarted
// agent adopts it and an upgrade drops no traffic.
func (d *Director) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if d.rec != nil {
		wg.Go(func() { d.ipvsLoop(ctx) })
	}
	d.vipLoop(ctx)
	wg.Wait()
	return nil
}

// ipvsLoop reconciles the IPVS table: incrementally on each FSM change, fully every
// ReconcileInterval (spaced out for a table whose comparison takes long: nextFullPass) and
// whenever a new leader asks.
func (d *Director) ipvsLoop(ctx context.Context) {
	w := d.deps.FSM.Watch()
	defer d.deps.FSM.Unwatch(w)
	due := time.NewTimer(d.cfg.ReconcileInterval) // the next periodic full pass
	defer due.Stop()
	var passStart time.Time
	// full: a full pass is owed; the first compares everything, as the agent may have restarted.
	// A pass lists the kernel's services in the background (seconds, for a table of thousands
	// under a slow CPU), then compares them a service at a time, yielding to waiting changes: a
	// change never waits for a pass. listing is closed once the listing is in (nil: none runs);
	// stale drops a listing that a restored snapshot made out of date.
	full, listed, stale := true, false, false
	// matched: the kernel matches the table as of the last pass: a full pass completed without
	// error, and every change since went in without error (no restore since). Readiness and
	// takeovers wait for that, and need not wait for the next full pass.
	matched := false
	var listing chan struct{}
	defer func() {
		if listing != nil {
			<-listing
		}
	}()
	for {
		if full && !listed && listing == nil {
			passStart = time.Now()
			listing = make(chan struct{})
			go func(st *fsm.State, done chan struct{}) {
				defer close(done)
				d.rec.ListForSync(st)
			}(d.deps.FSM.View(), listing)
		}
		if listed && len(w.C) == 0 {
			if over, ok := d.fullSync(ctx, func() bool { return len(w.C) > 0 }); over {
				full, listed, matched = false, false, ok
				due.Reset(nextFullPass(d.cfg.ReconcileInterval, time.Since(passStart)))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-listing:
			listing, listed, stale = nil, !stale, false
		case <-due.C:
			full = true
		case <-d.syncReq:
			full = true
		case <-w.C:
			names, all := w.Take()
			if all {
				// A restored snapshot: compare everything again, from a fresh listing.
				full, listed, stale, matched = true, false, listing != nil, false
				continue
			}
			st := d.deps.FSM.View()
			rep, err := d.rec.SyncServices(ctx, st, names)
			matched = matched && err == nil
			d.recordSync(st.Index(), rep, err, matched)
		}
	}
}

// fullPassSpacing bounds the share of its time the IPVS loop spends on periodic full passes:
// after a pass that took d, the next is due no sooner than fullPassSpacing×d later. A table of
// thousands of services takes seconds to compare on a slow machine, and back-to-back passes would
// hold a CPU all the time, at the expense of changes.
const fullPassSpacing = 3

// nextFullPass is how long after a full pass that took took the next one is due: the reconcile
// interval, or longer for a pass that took more than a third of it.
func nextFullPass(interval, took time.Duration) time.Duration {
	return max(interval, fullPassSpacing*took)
}

// fullSync carries on the full pass whose listing is in; it stops early when changesWaiting
// says changes wait. It reports whether the pass is over (it reached the end, or failed: the
// next due pass retries it), and whether the kernel now matches the table.
func (d *Director) fullSync(ctx context.Context, changesWaiting func() bool) (over, matched bool) {
	st := d.deps.FSM.View()
	rep, complete, err := d.rec.SyncYielding(ctx, st, changesWaiting)
	matched = complete && err == nil
	d.recordSync(st.Index(), rep, err, matched)
	return complete || err != nil, matched
}

// recordSync records a pass over the table at index; matches says the kernel now matches it.
func (d *Director) recordSync(index uint64, rep Report, err error, matches bool) {
	if err != nil {
		d.log.Warn("IPVS reconcile incomplete; retrying on the next pass", "op", "reconcile", "index", index, "err", err)
	}
	d.statusMu.Lock()
	d.status.LastReport, d.status.LastSync = rep, time.Now()
	d.status.Repairs += rep.Drift.Total()
	d.status.LastError = ""
	if err != nil {
		d.status.LastError = err.Error()
	}
	if matches && err == nil {
		d.status.SyncedIndex = index
	}
	d.statusMu.Unlock()
	if matches && err == nil {
		d.syncedIndex.Store(index)
	}
	d.reconcilePasses.Add(1)
	d.reconcileErrors.Add(uint64(rep.Errors))
	d.driftRepaired.Add(uint64(rep.Drift.Total()))
	for _, r := range rep.Repairs {
		d.event("drift", "repaired an out-of-band IPVS edit: %s", r)
	}
	if n := rep.Drift.Total() - len(rep.Repairs); n > 0 {
		d.event("drift", "repaired %d more out-of-band IPVS edits", n)
	}
	if d.deps.OnReconcile != nil {
		d.deps.OnReconcile(rep, err)
	}
	if matches || err != nil {
		// Waiters look again (and ask for another full pass if this one did not do).
		d.syncMu.Lock()
		close(d.syncDone)
		d.syncDone = make(chan struct{})
		d.syncMu.Unlock()
	}
}

// waitSynced asks the IPVS loop for a full Sync and waits until the kernel matches a state at
// or after index (or ctx ends).
func (d *Director) waitSynced(ctx context.Context, index uint64) error {
	if d.rec == nil {
		return nil
	}
	for d.syncedIndex.Load() < index || index == 0 {
		d.syncMu.Lock()
		done := d.syncDone
		d.syncMu.Unlock()
		select {
		case d.syncReq <- struct{}{}:
		default:
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if index == 0 {
			return nil
		}
	}
	return nil
}

// vip is one VIP as this director holds it.
type vip struct {
	prefix netip.Prefix
	iface  string
}

func (v vip) String() string { return v.prefix.String() + " on " + v.iface }

// desiredVIPs lists the VIPs of st: those of the VIP groups on their interfaces, and every
// service VIP in no group on the default interface, as a host prefix.
func desiredVIPs(st *fsm.State, defaultIface string) map[netip.Addr]vip {
	out := map[netip.Addr]vip{}
	groups := st.VIPGroups()
	for _, g := range groups {
		iface := g.Interface
		if iface == "" {
			iface = defaultIface
		}
		if iface == "" {
			continue // no interface to hold them on; New's caller warned at start
		}
		for _, p := range g.VIPs {
			out[p.Addr()] = vip{prefix: p, iface: iface}
		}
	}
	// A service's VIP is held on the default interface unless a group holds it.
	for _, a := range st.ServiceVIPs() {
		if defaultIface == "" && !grouped(groups, a) {
			continue
		}
		if _, ok := out[a]; !ok {
			out[a] = vip{prefix: netip.PrefixFrom(a, a.BitLen()), iface: defaultIface}
		}
	}
	return out
}

func grouped(groups []fsm.VIPGroup, a netip.Addr) bool {
	for _, g := range groups {
		for _, p := range g.VIPs {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// HandOver gives up leadership on purpose without a gap in service (make before break): it
// calls transfer (cluster.Node's TransferLeadership, or Leave), and the loss of leadership that
// follows, instead of dropping the VIPs at once, stops announcing them and keeps them, so that
// this director's IPVS goes on forwarding the connections that clients still send here, until
// the new leader announces each one (seen by the duplicate watch) or HandoverHold has passed.
// HandOver returns nil when that is over (or Run has ended); ErrHandoverUnfinished when ctx
// ends first (the VIPs are then still being handed over: they go at the latest when the hold
// expires or Run's context ends); or at once transfer's error, and then a later loss of
// leadership drops the VIPs at once as usual.
//
// Only a stopping agent should call it: while the VIPs are held after the loss, two directors
// hold them, which a deposed leader otherwise never does. Run must be running.
func (d *Director) HandOver(ctx context.Context, transfer func(context.Context) error) error {
	defer d.sendConnsDuringHandover(ctx)()
	done := make(chan struct{})
	d.handoverMu.Lock()
	d.handover = done
	d.handoverMu.Unlock()
	if err := transfer(ctx); err != nil {
		d.handoverMu.Lock()
		if d.handover == done { // not taken: call it off
			d.handover = nil
		}
		d.handoverMu.Unlock()
		return err
	}
	select {
	case <-done:
		return nil
	case <-d.vipLoopDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hand over the VIPs: %w: %w", ErrHandoverUnfinished, ctx.Err())
	}
}

// takeHandover returns the handover HandOver asked for, if any, and forgets it.
func (d *Director) takeHandover() chan struct{} {
	d.handoverMu.Lock()
	defer d.handoverMu.Unlock()
	done := d.handover
	d.handover = nil
	return done
}

// vipHold is a handover in progress: the VIPs it lists are kept, no longer announced, until
// the new leader claims each or the hold expires.
type vipHold struct {
	pending map[netip.Addr]bool
	// claims receives each VIP whose yield channel closed (buffered for all of them).
	claims  chan netip.Addr
	expired *time.Timer
	stop    context.CancelFunc // ends the goroutines waiting for claims
	wg      sync.WaitGroup
	done    chan struct{} // HandOver's; closed when the hold ends
}

// claimsC and expiredC are the hold's channels, nil (never ready) without a hold.
func (h *vipHold) claimsC() <-chan netip.Addr {
	if h == nil {
		return nil
	}
	return h.claims
}

func (h *vipHold) expiredC() <-chan time.Time {
	if h == nil {
		return nil
	}
	return h.expired.C
}

// end stops the hold's goroutines and timer and tells HandOver. h may be nil.
func (h *vipHold) end() {
	if h == nil {
		return
	}
	h.stop()
	h.wg.Wait()
	h.expired.Stop()
	close(h.done)
}

// yieldAll starts handing the VIPs in held (at least one) over: their announcements stop, they
// stay on their interfaces.
func (d *Director) yieldAll(ctx context.Context, held map[netip.Addr]vip, done chan struct{}) *vipHold {
	hctx, cancel := context.WithCancel(ctx)
	h := &vipHold{
		pending: map[netip.Addr]bool{}, claims: make(chan netip.Addr, len(held)),
		expired: time.NewTimer(d.cfg.HandoverHold), stop: cancel, done: done,
	}
	for _, addr := range slices.SortedFunc(maps.Keys(held), netip.Addr.Compare) {
		claimed := d.deps.Announcer.Yield(held[addr].iface, addr)
		h.pending[addr] = true
		h.wg.Go(func() {
			select {
			case <-claimed:
				h.claims <- addr
			case <-hctx.Done():
			}
		})
	}
	d.log.Info("handing over the VIPs: keeping them until the new leader announces them", "op", "handover", "vips", len(held), "hold", d.cfg.HandoverHold)
	return h
}

// vipLoop follows the leadership: the leader holds and announces the VIPs, nobody else does.
func (d *Director) vipLoop(ctx context.Context) {
	defer close(d.vipLoopDone)
	held := map[netip.Addr]vip{}
	// A director that crashed while leading may still hold VIPs: it is not leader now.
	d.releaseAll(held, desiredVIPs(d.deps.FSM.View(), d.cfg.Interface), "")
	d.setSyncRole(false)

	w := d.deps.FSM.Watch()
	defer d.deps.FSM.Unwatch(w)
	leadership := d.deps.Pool.WatchLeadership(ctx)
	tick := time.NewTicker(d.cfg.ReconcileInterval)
	defer tick.Stop()
	var leading bool
	var term uint64
	// hold is the handover in progress after a HandOver, nil otherwise.
	var hold *vipHold
	// window ends the takeover window (nil outside one): see Config.TakeoverWindow.
	var window <-chan time.Time
	endWindow := func() {
		if window != nil {
			window = nil
			d.lowerGuard()
			d.stopSyncBackup()
		}
	}
	defer func() {
		endWindow()
		hold.end()
		if done := d.takeHandover(); done != nil {
			close(done)
		}
	}()
	// onLeadership handles one leadership value; a takeover interrupted by a newer value hands
	// that value back to be handled in turn.
	onLeadership := func(l cluster.Leadership, open bool) {
		defer func() {
			d.statusMu.Lock()
			d.status.Leader = leading
			d.statusMu.Unlock()
		}()
		for {
			if !open || !l.IsLeader {
				d.leadTerm.Store(0) // before anything else: no more confirmed re-announcements
				endWindow()
				handover := d.takeHandover()
				switch {
				case leading && handover != nil && len(held) > 0:
					// Leadership given up on purpose: keep forwarding until the new leader
					// has announced the VIPs, so that no client's packet finds no owner.
					hold = d.yieldAll(ctx, held, handover)
				case leading && handover != nil:
					d.setSyncRole(false)
					close(handover) // nothing to hand over
				case leading:
					// Drop the VIPs before anything else: a deposed leader answering for them
					// is the split brain Raft's lease exists to prevent.
					d.releaseAll(held, nil, fmt.Sprintf("leadership lost (term %d)", l.Term))
					d.setSyncRole(false)
					d.log.Info("released the VIPs", "op", "release", "term", l.Term)
				case handover != nil:
					close(handover) // nothing to hand over
				}
				leading = false
				if !open {
					leadership = nil // Run has ended; hold nothing until ctx ends
				}
				return
			}
			if leading && l.Term == term {
				return
			}
			if hold != nil {
				// Leading again before the handover was over: the takeover re-announces what
				// is still held, which ends its yields.
				hold.end()
				hold = nil
				d.log.Info("handover ended: leading again", "op", "handover", "term", l.Term)
			}
			leading, term = true, l.Term
			next, interrupted := d.takeOver(ctx, held, term, leadership)
			if !interrupted {
				d.leadTerm.Store(term)
				window = time.After(d.cfg.TakeoverWindow)
				return
			}
			l, open = next.value, next.open
		}
	}
	for {
		select {
		case <-ctx.Done():
			d.releaseAll(held, nil, fmt.Sprintf("the director stopped (term %d)", term))
			return
		case <-window:
			endWindow()
		case l, open := <-leadership:
			onLeadership(l, open)
		case addr := <-hold.claimsC():
			delete(hold.pending, addr)
			if v, ok := held[addr]; ok {
				d.release(held, addr, fmt.Sprintf("handover: the new leader announced it (term %d)", term))
				d.publishVIPs(held)
				d.log.Info("released VIP after the new leader announced it", "op", "handover", "vip", v.prefix, "iface", v.iface)
			}
			if len(hold.pending) == 0 {
				d.log.Info("handed over the VIPs", "op", "handover")
				d.setSyncRole(false)
				hold.end()
				hold = nil
			}
		case <-hold.expiredC():
			d.log.Warn("handover hold expired; releasing the VIPs the new leader has not announced", "op", "handover", "vips", len(hold.pending), "hold", d.cfg.HandoverHold)
			d.releaseAll(held, nil, fmt.Sprintf("handover hold of %s expired (term %d)", d.cfg.HandoverHold, term))
			d.setSyncRole(false)
			hold.end()
			hold = nil
		case <-w.C:
			w.Take()
			if leading {
				d.ensureVIPs(held, desiredVIPs(d.deps.FSM.View(), d.cfg.Interface), false, fmt.Sprintf("table changed (term %d)", term))
			}
		case <-tick.C:
			if leading {
				// Repairs a VIP someone removed by hand.
				d.ensureVIPs(held, desiredVIPs(d.deps.FSM.View(), d.cfg.Interface), false, fmt.Sprintf("table changed (term %d)", term))
			}
		}
	}
}

// ConfirmLeadership returns nil when this director acts as the leader (it has taken the VIPs
// over in a term, and has not heard of a loss since) and its Raft node has just confirmed that
// leadership with a quorum: ConsistentView, on the leader, checks with a quorum (the read-index
// check) before it returns. A follower's ConsistentView succeeds too, by asking the leader, so
// the term is read again afterwards: a director that lost the leadership meanwhile gets
// ErrNotLeading. Any other error is ConsistentView's: the leadership is not confirmed (a leader
// cut off from its quorum waits for ctx to end, or for Raft to step it down).
//
// It is the NetAnnouncer's Confirm: the periodic re-announcements of a leader go out only once
// its leadership has been confirmed, never from a leader that lost its quorum but has not
// noticed yet (paused, say, while another was elected). Safe for concurrent use.
func (d *Director) ConfirmLeadership(ctx context.Context) error {
	term := d.leadTerm.Load()
	if term == 0 {
		return ErrNotLeading
	}
	if _, err := d.deps.Pool.ConsistentView(ctx); err != nil {
		return fmt.Errorf("confirm the leadership of term %d: %w", term, err)
	}
	if now := d.leadTerm.Load(); now != term {
		return fmt.Errorf("confirm the leadership of term %d: %w (term now %d)", term, ErrNotLeading, now)
	}
	return nil
}

// leadershipValue is one receive from a leadership channel.
type leadershipValue struct {
	value cluster.Leadership
	open  bool
}

// takeOver runs when this director becomes leader: once the FSM is current (a barrier through
// ConsistentView) and IPVS matches it, add the VIPs and announce them. If the wait runs past
// TakeoverTimeout it takes them anyway. A leadership value arriving meanwhile aborts the
// takeover before any VIP is touched and is returned to the caller.
func (d *Director) takeOver(ctx context.Context, held map[netip.Addr]vip, term uint64, leadership <-chan cluster.Leadership) (next leadershipValue, interrupted bool) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, d.cfg.TakeoverTimeout)
	defer cancel()
	// The master sync daemon and the guard move no traffic: start them while the state catches
	// up, so the VIPs move as soon as it has. The guard is up before the VIPs move: the first
	// segments to reach this director may belong to connections the previous leader has not
	// synced yet.
	d.setSyncRole(true)
	d.raiseGuard()
	var index uint64
	var viewTook time.Duration // how long the consistent view took: the rest waited for IPVS
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		st, err := d.deps.Pool.ConsistentView(wctx)
		viewTook = time.Since(start)
		if err != nil {
			d.log.Warn("taking the VIPs without a current state", "op", "takeover", "err", err)
			return
		}
		index = st.Index()
		if err := d.waitSynced(wctx, index); err != nil {
			d.log.Warn("taking the VIPs before IPVS matched the table", "op", "takeover", "index", index, "err", err)
		}
	}()
	select {
	case <-ready:
	case l, open := <-leadership:
		cancel()
		<-ready
		// No VIP moved: the guard goes; the sync role is the next value's to set.
		d.lowerGuard()
		return leadershipValue{value: l, open: open}, true
	}
	readyTook := time.Since(start)
	// Re-announce everything we may already hold: another director may have led in between.
	d.ensureVIPs(held, desiredVIPs(d.deps.FSM.View(), d.cfg.Interface), true, fmt.Sprintf("leadership won (term %d)", term))
	d.log.Info("took over the VIPs", "op", "takeover", "vips", len(held), "index", index, "took", time.Since(start).Round(time.Millisecond),
		"consistent_view", viewTook.Round(time.Millisecond), "ipvs_synced", readyTook.Round(time.Millisecond))
	return leadershipValue{}, false
}

// ensureVIPs makes held equal want: adds and announces new VIPs (all of them if reannounce),
// and removes those no longer wanted. why (with the term) goes into the "vip" events.
func (d *Director) ensureVIPs(held, want map[netip.Addr]vip, reannounce bool, why string) {
	for addr, v := range held {
		if w, ok := want[addr]; !ok || w != v {
			d.release(held, addr, why)
		}
	}
	present := map[string][]netip.Prefix{}
	for _, addr := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		v := want[addr]
		if _, listed := present[v.iface]; !listed {
			list, err := d.deps.Addresses.List(v.iface)
			if err != nil {
				d.log.Error("list addresses failed", "op", "vip", "iface", v.iface, "err", err)
			}
			present[v.iface] = list
		}
		_, had := held[addr]
		onLink := slices.Contains(present[v.iface], v.prefix)
		if !onLink {
			if err := d.deps.Addresses.Add(v.iface, v.prefix, ""); err != nil {
				d.log.Error("add VIP failed", "op", "vip", "vip", v.prefix, "iface", v.iface, "err", err)
				continue
			}
			if had {
				d.log.Warn("VIP was missing from its interface; added it again", "op", "vip", "vip", v.prefix, "iface", v.iface)
			}
		}
		held[addr] = v
		if !had || !onLink {
			d.takeovers.Add(1)
			d.event("vip", "took over %s: %s", v, why)
		}
		if !had || !onLink || reannounce {
			d.deps.Announcer.Announce(v.iface, addr)
		}
	}
	d.publishVIPs(held)
}

// releaseAll removes every VIP in held, and those of extra that happen to be on their interface.
// why goes into the "vip" events of those in held (extra ones were not known to be held).
func (d *Director) releaseAll(held, extra map[netip.Addr]vip, why string) {
	known := map[netip.Addr]bool{}
	for addr := range held {
		known[addr] = true
	}
	for addr, v := range extra {
		if _, ok := held[addr]; !ok {
			held[addr] = v
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(held), netip.Addr.Compare) {
		w := why
		if !known[addr] {
			w = ""
		}
		d.release(held, addr, w)
	}
	d.publishVIPs(held)
}

// release takes addr off its interface; why, unless empty, is published as a "vip" event.
func (d *Director) release(held map[netip.Addr]vip, addr netip.Addr, why string) {
	v := held[addr]
	d.deps.Announcer.Stop(addr)
	if err := d.deps.Addresses.Remove(v.iface, v.prefix); err != nil {
		d.log.Error("remove VIP failed", "op", "vip", "vip", v.prefix, "iface", v.iface, "err", err)
		return
	}
	delete(held, addr)
	if why != "" {
		d.releases.Add(1)
		d.event("vip", "released %s: %s", v, why)
	}
}

func (d *Director) publishVIPs(held map[netip.Addr]vip) {
	var list []string
	for _, addr := range slices.SortedFunc(maps.Keys(held), netip.Addr.Compare) {
		list = append(list, held[addr].String())
	}
	d.statusMu.Lock()
	d.status.VIPs = list
	d.statusMu.Unlock()
}

// setSyncRole makes the connection-sync daemon master on the leader and backup elsewhere.
func (d *Director) setSyncRole(leader bool) {
	if d.deps.Syncd == nil || d.cfg.Sync == nil || d.rec == nil {
		return
	}
	want := SyncBackup
	if leader {
		// The backup daemon stays until the takeover window ends (stopSyncBackup): connections
		// a handing-over leader sends are still received.
		want = SyncMaster
	} else {
		d.stopSyncDaemon(SyncMaster)
	}
	cfg := *d.cfg.Sync
	cfg.State = want
	if err := d.deps.Syncd.StartDaemon(cfg); err != nil && !errors.Is(err, os.ErrExist) {
		d.log.Warn("start sync daemon failed", "op", "syncd", "state", want, "err", fmt.Errorf("%s: %w", cfg.Interface, err))
	}
}

// stopSyncBackup ends a leader's takeover window for the sync daemons: only the master runs.
func (d *Director) stopSyncBackup() {
	if d.deps.Syncd == nil || d.cfg.Sync == nil || d.rec == nil {
		return
	}
	d.stopSyncDaemon(SyncBackup)
}

func (d *Director) stopSyncDaemon(s SyncState) {
	if err := d.deps.Syncd.StopDaemon(s); err != nil && !errors.Is(err, syscall.ESRCH) {
		d.log.Warn("stop sync daemon failed", "op", "syncd", "state", s, "err", err)
	}
}
