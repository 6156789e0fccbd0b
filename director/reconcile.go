package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// DefaultDrainPeriod is how long a real server that is being removed stays in IPVS at weight 0
// so that its established connections can finish, unless they finish sooner.
//
// Neither anchor drains on removal: ldirectord and keepalived delete a real server that leaves
// the configuration at once (ldirectord's quiescent=yes and keepalived's inhibit_on_failure only
// keep a *failed* server at weight 0, forever). Operators then drain by hand (weight 0, wait,
// delete). 30 s is Kubernetes' default termination grace period: long enough for requests in
// flight and short keep-alive connections, short enough that a removed server leaves the table
// within one deploy step. A server whose connections reach zero earlier leaves earlier.
const DefaultDrainPeriod = 30 * time.Second

// ReconcilerOptions tune a Reconciler. Zero fields take the defaults.
type ReconcilerOptions struct {
	// DrainPeriod is how long a real server removed from the table (or disabled) is kept at
	// weight 0 before it is deleted from IPVS; it goes earlier when its active and inactive
	// connections reach zero. Default DefaultDrainPeriod; negative is invalid.
	DrainPeriod time.Duration
	// Clock returns the current time for drain bookkeeping. Default time.Now; tests pass a fake.
	Clock func() time.Time
}

func (o ReconcilerOptions) withDefaults() ReconcilerOptions {
	if o.DrainPeriod <= 0 {
		o.DrainPeriod = DefaultDrainPeriod
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Report says what one reconcile pass did. Created, Updated and Removed count successful kernel
// writes; the other counts classify some of them.
type Report struct {
	Services     Counts `json:"services"`
	Destinations Counts `json:"destinations"`
	// Adopted counts desired services found in the kernel but not owned, now owned (first
	// start with a ready table, or an operator's hand-made service with Troop's key).
	Adopted int `json:"adopted"`
	// Drift counts repairs of out-of-band edits: differences between the kernel and what this
	// reconciler itself left there on its previous pass.
	Drift Drift `json:"drift"`
	// Repairs says in words what each repair counted in Drift was (at most maxRepairs of
	// them): "service web (TCP 192.0.2.6:80) was deleted; created again".
	Repairs []string `json:"repairs,omitempty"`
	// DrainsStarted counts destinations put to weight 0 for removal (or found at weight 0 after
	// a restart); DrainsFinished those removed at the end of their drain, or lost meanwhile.
	DrainsStarted  int `json:"drains_started"`
	DrainsFinished int `json:"drains_finished"`
	// Draining is the number of destinations being drained after the pass.
	Draining int `json:"draining"`
	// Errors counts failed kernel calls and ownership writes; the pass went on past them.
	Errors int `json:"errors"`
	// Calls counts IPVS calls issued, reads (Services, Destinations) and writes alike; Writes
	// counts the writes alone.
	Calls  int `json:"calls"`
	Writes int `json:"writes"`
	// Duration is the wall time of the pass.
	Duration time.Duration `json:"duration"`
}

// Counts are kernel writes to one kind of object.
type Counts struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	Removed int `json:"removed"`
}

// Drift counts repaired out-of-band edits, by kind.
type Drift struct {
	// ServicesMissing: a service of Troop's was deleted (ipvsadm -D) and was created again.
	ServicesMissing int `json:"services_missing"`
	// ServicesChanged: a service's scheduler, flags or persistence were changed and set back.
	ServicesChanged int `json:"services_changed"`
	// DestinationsMissing: a destination was deleted (ipvsadm -d) and was created again.
	DestinationsMissing int `json:"destinations_missing"`
	// DestinationsChanged: a destination's weight, forwarding or thresholds were changed.
	DestinationsChanged int `json:"destinations_changed"`
	// DestinationsStray: a destination was added to a service of Troop's; it is drained out.
	DestinationsStray int `json:"destinations_stray"`
}

// Total is the number of repairs.
func (d Drift) Total() int {
	return d.ServicesMissing + d.ServicesChanged + d.DestinationsMissing + d.DestinationsChanged + d.DestinationsStray
}

// changes is the number of kernel writes the report counts by object.
func (r Report) changes() int {
	return r.Services.Created + r.Services.Updated + r.Services.Removed +
		r.Destinations.Created + r.Destinations.Updated + r.Destinations.Removed
}

// maxErrors bounds the errors a SyncError keeps; the rest are counted.
const maxErrors = 16

// SyncError is the error of a pass that went on past failures: the first failures, and how
// many there were in all. The kernel state is then partly reconciled; the next pass retries.
type SyncError struct {
	Errs  []error
	Total int
}

func (e *SyncError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d IPVS reconcile errors: ", e.Total)
	for i, err := range e.Errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	if n := e.Total - len(e.Errs); n > 0 {
		fmt.Fprintf(&b, "; and %d more", n)
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As look at each kept error.
func (e *SyncError) Unwrap() []error { return e.Errs }

// Reconciler makes the kernel's IPVS table match the FSM: it reads what the kernel holds and
// writes only the difference. It never flushes, and it touches only services in its Ownership
// (or desired ones, which it adopts): kube-proxy's or an operator's services are left alone.
//
// Sync and SyncServices may be called from any goroutine; passes are serialized. A failed
// kernel call is recorded in the Report and the returned *SyncError, and the pass goes on;
// the next pass retries whatever is still different.
type Reconciler struct {
	k     IPVS
	owned *Ownership
	opts  ReconcilerOptions
	log   *slog.Logger

	mu sync.Mutex // serializes passes and guards the fields below
	// drains is the drain bookkeeping: destinations put to weight 0 for removal, and when.
	drains Drains
	// applied is what this reconciler left in the kernel, per service key, after the last pass
	// that wrote it without error. It classifies differences as drift, and lets SyncServices
	// skip unchanged service settings. It never decides what to write: the kernel does.
	applied map[ServiceKey]*applied
	// byName and byKey map FSM service names to the kernel keys last synced for them, so
	// SyncServices can remove a service whose key moved or that was deleted.
	byName map[string]ServiceKey
	byKey  map[ServiceKey]string
	// synced is true after the first full Sync that listed the kernel table.
	synced bool
	// full is the pass SyncYielding carries on (nil: none), listing the one ListForSync is
	// listing for: SyncServices notes in both what it writes.
	full, listing *fullPass
	// scratch is syncDests' buffer, reused from service to service.
	scratch []Destination
}

// applied is one kernel service as the reconciler left it.
type applied struct {
	svc   Service
	dests []appliedDest // sorted by key
}

// appliedDest is a destination as the reconciler left it: its key and what sameDest compares,
// without the kernel's counters (a tenth of a large table's memory). Two are equal when their
// key and settings are.
type appliedDest struct {
	DestinationKey
	Forwarding     fsm.Forwarding
	Weight         int
	UpperThreshold uint32
	LowerThreshold uint32
}

// appliedOf is what the applied record keeps of d.
func appliedOf(d *Destination) appliedDest {
	return appliedDest{DestinationKey: d.DestinationKey, Forwarding: d.Forwarding, Weight: d.Weight,
		UpperThreshold: d.UpperThreshold, LowerThreshold: d.LowerThreshold}
}

func (a *applied) dest(k DestinationKey) (appliedDest, bool) {
	i, ok := slices.BinarySearchFunc(a.dests, k, func(d appliedDest, k DestinationKey) int {
		return compareDest(d.DestinationKey, k)
	})
	if !ok {
		return appliedDest{}, false
	}
	return a.dests[i], true
}

// NewReconciler returns a reconciler of the IPVS table k. owned is the set of services Troop
// owns (LoadOwnership in the data dir, or NewOwnership for -dev and tests). It starts nothing
// and touches nothing until the first Sync.
func NewReconciler(k IPVS, owned *Ownership, opts ReconcilerOptions, log *slog.Logger) (*Reconciler, error) {
	switch {
	case k == nil:
		return nil, errors.New("new IPVS reconciler: no IPVS client")
	case owned == nil:
		return nil, errors.New("new IPVS reconciler: no ownership set")
	case opts.DrainPeriod < 0:
		return nil, fmt.Errorf("new IPVS reconciler: drain period %s must not be negative", opts.DrainPeriod)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		k: k, owned: owned, opts: opts.withDefaults(), log: log,
		drains:  Drains{},
		applied: map[ServiceKey]*applied{},
		byName:  map[string]ServiceKey{},
		byKey:   map[ServiceKey]string{},
	}, nil
}

// Drains returns a copy of the drain bookkeeping: the destinations being drained out of each
// service, and since when.
func (r *Reconciler) Drains() Drains {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(Drains, len(r.drains))
	for k, m := range r.drains {
		out[k] = maps.Clone(m)
	}
	return out
}

// pass is the work of one Sync or SyncServices call.
type pass struct {
	r     *Reconciler
	rep   Report
	errs  []error
	now   time.Time
	start time.Time
	// forget lists owned keys whose kernel service is gone, to drop from the ownership set.
	forget []ServiceKey
}

func (r *Reconciler) begin() *pass {
	return &pass{r: r, now: r.opts.Clock(), start: time.Now()}
}

// maxRepairs bounds Report.Repairs: a flushed table would otherwise list every destination.
const maxRepairs = 64

// repaired notes a repair of an out-of-band edit in words.
func (p *pass) repaired(format string, args ...any) {
	if len(p.rep.Repairs) < maxRepairs {
		p.rep.Repairs = append(p.rep.Repairs, fmt.Sprintf(format, args...))
	}
}

// fail records a failure and logs it with the reconcile vocabulary.
func (p *pass) fail(op, service, realID string, err error) {
	p.rep.Errors++
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, err)
	}
	attrs := []any{"op", op}
	if service != "" {
		attrs = append(attrs, "service", service)
	}
	if realID != "" {
		attrs = append(attrs, "real", realID)
	}
	p.r.log.Warn("IPVS reconcile step failed", append(attrs, "err", err)...)
}

func (p *pass) finish(kind string) (Report, error) {
	p.rep.Duration = time.Since(p.start)
	for _, m := range p.r.drains {
		p.rep.Draining += len(m)
	}
	if p.rep.changes() > 0 || p.rep.Errors > 0 || p.rep.Adopted > 0 {
		p.r.log.Info("IPVS reconciled", "op", kind,
			"services_created", p.rep.Services.Created, "services_updated", p.rep.Services.Updated, "services_removed", p.rep.Services.Removed,
			"reals_created", p.rep.Destinations.Created, "reals_updated", p.rep.Destinations.Updated, "reals_removed", p.rep.Destinations.Removed,
			"adopted", p.rep.Adopted, "drift", p.rep.Drift.Total(), "draining", p.rep.Draining,
			"errors", p.rep.Errors, "calls", p.rep.Calls, "took", p.rep.Duration)
	}
	if p.rep.Errors == 0 {
		return p.rep, nil
	}
	return p.rep, &SyncError{Errs: p.errs, Total: p.rep.Errors}
}

// isMissingService reports whether err says the service does not exist (ESRCH). ENOENT is not
// that: for a service call it means an unknown scheduler.
func isMissingService(err error) bool {
	return errors.Is(err, syscall.ESRCH)
}

// Sync compares the whole IPVS table with st and repairs every difference in the services
// Troop owns or desires: it lists the kernel's services (one call) and reads each desired
// one's destinations (one call each), then creates, updates and removes what differs. A desired
// service the kernel holds but Troop does not own is adopted. An owned service that is no
// longer desired is removed; a service neither owned nor desired is never touched. Sync also
// finishes drains (the drain period passed, or no connections are left), so it should run
// periodically as well as after a restart.
func (r *Reconciler) Sync(ctx context.Context, st *fsm.State) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, _, err := r.syncAll(ctx, st, r.listNow(st), nil)
	return rep, err
}

// yieldQuantum is how long a yielding pass works at least before it stops for waiting changes,
// so that it makes headway however fast changes come.
const yieldQuantum = 10 * time.Millisecond

// claimBatch is how many services a full pass prepares at a time: it computes their desired
// state and records the ones it does not own yet in one ownership write.
const claimBatch = 256

// fullPass is a full comparison in progress: the kernel's services as listed when it began,
// the FSM's services then, and how far it has got.
type fullPass struct {
	names   []string // the FSM's services when the listing began, sorted
	list    []Service
	kernel  map[ServiceKey]*Service
	listErr error
	// touched are the services SyncServices wrote after the listing began: what the listing
	// says of them is stale, so they are compared as SyncServices does.
	touched map[ServiceKey]bool
	next    int  // names[next:] are still to compare
	counted bool // the listing's call is in a report
	// byName and byKey are the kernel keys of the services compared (or synced by
	// SyncServices) since the pass began: the reconciler's own once the pass is complete.
	byName map[string]ServiceKey
	byKey  map[ServiceKey]string
}

func newFullPass() *fullPass {
	return &fullPass{touched: map[ServiceKey]bool{}, byName: map[string]ServiceKey{}, byKey: map[ServiceKey]string{}}
}

func (fp *fullPass) load(names []string, list []Service, err error) {
	fp.names, fp.list, fp.listErr = names, list, err
	fp.kernel = make(map[ServiceKey]*Service, len(list))
	for i := range list {
		list[i].ServiceKey = normalizeKey(list[i].ServiceKey)
		fp.kernel[list[i].ServiceKey] = &list[i]
	}
}

// track records that name's service has kernel key k, untrack that name has none now.
func (fp *fullPass) track(name string, k ServiceKey) { fp.byName[name], fp.byKey[k] = k, name }

func (fp *fullPass) untrack(name string) {
	if old, ok := fp.byName[name]; ok {
		delete(fp.byName, name)
		if fp.byKey[old] == name {
			delete(fp.byKey, old)
		}
	}
}

// listNow starts a full pass with a listing taken at once (r.mu held).
func (r *Reconciler) listNow(st *fsm.State) *fullPass {
	fp := newFullPass()
	list, err := r.k.Services()
	fp.load(st.ServiceNames(), list, err)
	return fp
}

// ListForSync begins the next full pass of SyncYielding: it lists the kernel's services (one
// call, which takes seconds for a table of thousands under a slow CPU). It holds nothing
// meanwhile: SyncServices may run beside it, and the services it writes after the listing began
// are compared afresh rather than from the listing. A pass in progress is dropped.
func (r *Reconciler) ListForSync(st *fsm.State) {
	fp := newFullPass()
	r.mu.Lock()
	r.listing = fp
	r.mu.Unlock()
	names := st.ServiceNames()
	list, err := r.k.Services()
	r.mu.Lock()
	defer r.mu.Unlock()
	fp.load(names, list, err)
	if r.listing == fp {
		r.listing = nil
	}
	r.full = fp
}

// SyncYielding carries out the full pass ListForSync began (or, without one, a pass that lists
// the kernel at once), for a table whose comparison takes long enough (thousands of services,
// each one kernel read) to hold up the changes behind it. Once it has worked for yieldQuantum
// it stops between two services as soon as changesWaiting reports true, and returns complete =
// false; the next call, with the state of that moment, carries on where it stopped. Changes in
// between are SyncServices' to apply. Only a complete pass removes services nobody wants, and
// before the first complete pass it runs to the end as Sync does.
func (r *Reconciler) SyncYielding(ctx context.Context, st *fsm.State, changesWaiting func() bool) (rep Report, complete bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.synced {
		changesWaiting = nil
	}
	if r.full == nil {
		r.full = r.listNow(st)
	}
	return r.syncAll(ctx, st, r.full, changesWaiting)
}

// candidate is one service a full pass compares: its desired state and whether Troop owned its
// key before the pass.
type candidate struct {
	d        DesiredService
	wasOwned bool
}

// prepare computes the desired state of the next claimBatch services of fp from st and claims
// those Troop does not own yet, in one write. A nil entry is skipped: a service deleted since
// the listing (SyncServices removed it), one whose key another service has, or one that could
// not be claimed.
func (r *Reconciler) prepare(p *pass, st *fsm.State, fp *fullPass) []*candidate {
	names := fp.names[fp.next:min(len(fp.names), fp.next+claimBatch)]
	out := make([]*candidate, len(names))
	var claim []ServiceKey
	for i, name := range names {
		s, ok := st.Service(name)
		if !ok {
			continue
		}
		k := KeyOf(&s)
		if other, dup := fp.byKey[k]; dup && other != name {
			// The FSM refuses two services with one key; should it happen, the first name wins.
			p.fail("sync", name, "", fmt.Errorf("service %q: kernel key %s is service %q's too; skipped", name, k, other))
			continue
		}
		c := &candidate{d: DesiredFor(&s, healthOf(st, name), r.opts, r.drains[k], p.now), wasOwned: r.owned.Owns(k)}
		if !c.wasOwned {
			claim = append(claim, k)
		}
		out[i] = c
	}
	// Ownership is on disk before any service is created.
	if len(claim) > 0 {
		if err := r.owned.Add(claim...); err != nil {
			p.fail("own", "", "", fmt.Errorf("record ownership of %d IPVS services: %w", len(claim), err))
			for i, c := range out {
				if c != nil && !c.wasOwned {
					out[i] = nil
				}
			}
		}
	}
	for i, c := range out {
		if c != nil {
			fp.track(names[i], c.d.Service.ServiceKey)
		}
	}
	return out
}

func (r *Reconciler) syncAll(ctx context.Context, st *fsm.State, fp *fullPass, changesWaiting func() bool) (rep Report, complete bool, err error) {
	p := r.begin()
	if !fp.counted {
		p.rep.Calls++
		fp.counted = true
	}
	if fp.listErr != nil {
		p.fail("list", "", "", fmt.Errorf("list IPVS services: %w", fp.listErr))
		if r.full == fp {
			r.full = nil
		}
		rep, err := p.finish("sync")
		return rep, false, err
	}
	start := r.opts.Clock()
	compared := 0
	for fp.next < len(fp.names) {
		for _, c := range r.prepare(p, st, fp) {
			if err := ctx.Err(); err != nil {
				p.fail("sync", "", "", fmt.Errorf("IPVS sync interrupted: %w", err))
				rep, err := p.finish("sync")
				return rep, false, err
			}
			if changesWaiting != nil && compared > 0 && changesWaiting() && r.opts.Clock().Sub(start) >= yieldQuantum {
				rep, err := p.finish("sync")
				return rep, false, err
			}
			fp.next++
			if c == nil {
				continue
			}
			if k := c.d.Service.ServiceKey; fp.touched[k] {
				r.syncService(p, &c.d, nil, false, c.wasOwned)
			} else {
				r.syncService(p, &c.d, fp.kernel[k], true, c.wasOwned)
			}
			compared++
		}
	}
	if r.full == fp {
		r.full = nil
	}

	// Owned services nobody wants any more go; other software's stay as they are.
	for i := range fp.list {
		k := fp.list[i].ServiceKey
		if _, ok := fp.byKey[k]; ok || !r.owned.Owns(k) {
			continue
		}
		r.removeService(p, r.nameOf(k), k)
	}
	for _, k := range r.owned.Keys() {
		if _, inKernel := fp.kernel[k]; !inKernel {
			if _, ok := fp.byKey[k]; !ok {
				p.forget = append(p.forget, k)
			}
		}
	}
	for k := range r.applied {
		if _, ok := fp.byKey[k]; !ok {
			delete(r.applied, k)
		}
	}
	for k := range r.drains {
		if _, ok := fp.byKey[k]; !ok {
			delete(r.drains, k)
		}
	}
	r.forget(p)
	r.byName, r.byKey = fp.byName, fp.byKey
	r.synced = true
	rep, err = p.finish("sync")
	return rep, true, err
}

// nameOf returns the FSM name last synced for k, or k itself for logs.
func (r *Reconciler) nameOf(k ServiceKey) string {
	if n, ok := r.byKey[k]; ok {
		return n
	}
	return k.String()
}

// forget drops the pass's gone keys from the ownership set, in one write.
func (r *Reconciler) forget(p *pass) {
	if len(p.forget) == 0 {
		return
	}
	if err := r.owned.Remove(p.forget...); err != nil {
		p.fail("own", "", "", fmt.Errorf("forget ownership of %d IPVS services: %w", len(p.forget), err))
	}
}

// SyncServices reconciles only the named FSM services, as the FSM reports them changed: for
// each it reads that service's destinations (one call) and writes the difference, so a
// one-real change costs two calls. Pass every name the FSM reported since the last call.
//
// A service whose key (VIP, port, protocol, mark) changed, or that was deleted, has its old
// kernel service removed, unless a service of the same change now has that key (a rename, two
// services swapping VIPs): that one takes the kernel service over in place. Service settings are
// written when they differ from what this reconciler last wrote; out-of-band edits of settings,
// and drains whose time is up, wait for the next Sync. Before the first Sync it runs a Sync
// instead (it could not tell an old key from a foreign one otherwise).
func (r *Reconciler) SyncServices(ctx context.Context, st *fsm.State, names []string) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.synced {
		rep, _, err := r.syncAll(ctx, st, r.listNow(st), nil)
		return rep, err
	}
	p := r.begin()
	type job struct {
		d        DesiredService
		wasOwned bool
	}
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	// First what each named service wants, then what goes: an old key that a service of this
	// same change now uses (a rename, two services swapping VIPs) is taken over in place by that
	// service rather than removed and created again.
	jobs := make([]job, 0, len(names))
	wanted := make(map[ServiceKey]bool, len(names))
	for _, name := range names {
		s, ok := st.Service(name)
		if !ok {
			continue
		}
		k := KeyOf(&s)
		wanted[k] = true
		jobs = append(jobs, job{d: DesiredFor(&s, healthOf(st, name), r.opts, r.drains[k], p.now)})
	}
	for _, name := range names {
		old, had := r.byName[name]
		r.passesLose(name, old)
		if !had {
			continue
		}
		delete(r.byName, name)
		if r.byKey[old] != name {
			continue // another service took the key over meanwhile
		}
		delete(r.byKey, old)
		if !wanted[old] && r.owned.Owns(old) {
			r.removeService(p, name, old)
		}
	}
	var claim []ServiceKey
	for i := range jobs {
		j := &jobs[i]
		k := j.d.Service.ServiceKey
		if j.wasOwned = r.owned.Owns(k); !j.wasOwned {
			claim = append(claim, k)
		}
		r.byName[j.d.Name], r.byKey[k] = k, j.d.Name
		r.passesGain(j.d.Name, k)
	}
	claimed := true
	if len(claim) > 0 {
		if err := r.owned.Add(claim...); err != nil {
			claimed = false
			p.fail("own", "", "", fmt.Errorf("record ownership of %d IPVS services: %w", len(claim), err))
		}
	}
	for i := range jobs {
		j := &jobs[i]
		if !claimed && !j.wasOwned {
			continue
		}
		if err := ctx.Err(); err != nil {
			p.fail("sync", "", "", fmt.Errorf("IPVS sync interrupted: %w", err))
			break
		}
		r.syncService(p, &j.d, nil, false, j.wasOwned)
	}
	// Keys removed above but taken by another service in this change stay owned.
	p.forget = slices.DeleteFunc(p.forget, func(k ServiceKey) bool { _, used := r.byKey[k]; return used })
	r.forget(p)
	return p.finish("sync_services")
}

// passesLose tells the full passes under way that SyncServices is syncing the named service,
// whose kernel key was old (zero if none), afresh: what they listed or tracked of it is stale.
func (r *Reconciler) passesLose(name string, old ServiceKey) {
	for _, fp := range []*fullPass{r.full, r.listing} {
		if fp == nil {
			continue
		}
		if k, ok := fp.byName[name]; ok {
			fp.touched[k] = true
		}
		if old != (ServiceKey{}) {
			fp.touched[old] = true
		}
		fp.untrack(name)
	}
}

// passesGain tells the full passes under way that SyncServices wrote the named service at k.
func (r *Reconciler) passesGain(name string, k ServiceKey) {
	for _, fp := range []*fullPass{r.full, r.listing} {
		if fp != nil {
			fp.track(name, k)
			fp.touched[k] = true
		}
	}
}

// removeService deletes an owned kernel service that is no longer desired. Its connections are
// not drained: IPVS keeps forwarding established connections of a deleted service's
// destinations until they expire, and a service leaving the table is an operator's decision.
func (r *Reconciler) removeService(p *pass, name string, k ServiceKey) {
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.RemoveService(k); err != nil && !isMissingService(err) {
		p.fail("remove", name, "", err)
		return
	} else if err == nil {
		p.rep.Services.Removed++
		r.log.Info("removed IPVS service", "op", "remove", "service", name, "ipvs", k.String())
	}
	p.forget = append(p.forget, k)
	delete(r.applied, k)
	delete(r.drains, k)
}

// syncService makes the kernel service d.Service.ServiceKey match d. When listed, the caller
// listed the kernel's services and ks is this one (nil: the kernel has none). Otherwise
// (SyncServices) the destinations read tells whether it exists, and the settings are written
// when they differ from what this reconciler last wrote. wasOwned says whether Troop owned the
// key before this pass: if not, and the kernel has the service, it is being adopted.
func (r *Reconciler) syncService(p *pass, d *DesiredService, ks *Service, listed, wasOwned bool) {
	k := d.Service.ServiceKey
	prev := r.applied[k]
	if listed && ks == nil {
		if prev != nil {
			p.rep.Drift.ServicesMissing++
			p.repaired("service %s (%s) was deleted; created again", d.Name, k)
			r.log.Info("repairing out-of-band edit: service was deleted", "op", "drift", "service", d.Name, "ipvs", k.String())
		}
		r.createService(p, d)
		return
	}
	failed := false
	if listed && !wasOwned {
		r.adopted(p, d)
	}
	if listed && !sameSettings(ks, &d.Service) {
		if prev != nil && !sameSettings(ks, &prev.svc) {
			p.rep.Drift.ServicesChanged++
			p.repaired("service %s (%s) settings were changed; set back", d.Name, k)
			r.log.Info("repairing out-of-band edit: service settings changed", "op", "drift", "service", d.Name, "ipvs", k.String())
		}
		failed = !r.updateService(p, d)
	}
	p.rep.Calls++
	kd, err := r.k.Destinations(k)
	if err != nil {
		if isMissingService(err) {
			if prev != nil {
				p.rep.Drift.ServicesMissing++
				p.repaired("service %s (%s) was deleted; created again", d.Name, k)
				r.log.Info("repairing out-of-band edit: service was deleted", "op", "drift", "service", d.Name, "ipvs", k.String())
			}
			r.createService(p, d)
			return
		}
		p.fail("read", d.Name, "", fmt.Errorf("list destinations of IPVS service %s: %w", k, err))
		delete(r.applied, k)
		return
	}
	if !listed {
		if !wasOwned {
			r.adopted(p, d)
		}
		if prev == nil || !sameSettings(&prev.svc, &d.Service) {
			failed = !r.updateService(p, d)
		}
	}
	r.syncDests(p, d, kd, prev, failed)
}

func (r *Reconciler) adopted(p *pass, d *DesiredService) {
	p.rep.Adopted++
	r.log.Info("adopted IPVS service", "op", "adopt", "service", d.Name, "ipvs", d.Service.ServiceKey.String())
}

func (r *Reconciler) updateService(p *pass, d *DesiredService) bool {
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.UpdateService(d.Service); err != nil {
		p.fail("update", d.Name, "", err)
		return false
	}
	p.rep.Services.Updated++
	r.log.Info("updated IPVS service", "op", "update", "service", d.Name, "ipvs", d.Service.ServiceKey.String())
	return true
}

// createService creates the service and its destinations; drained ones are not recreated (the
// kernel lost them with the service, so their drain is over).
func (r *Reconciler) createService(p *pass, d *DesiredService) {
	k := d.Service.ServiceKey
	delete(r.applied, k)
	if n := len(r.drains[k]); n > 0 {
		p.rep.DrainsFinished += n
		delete(r.drains, k)
	}
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.CreateService(d.Service); err != nil {
		p.fail("create", d.Name, "", err)
		return
	}
	p.rep.Services.Created++
	r.log.Info("created IPVS service", "op", "create", "service", d.Name, "ipvs", k.String())
	ok := true
	dests := d.Destinations
	if len(d.Draining) > 0 {
		dests = slices.DeleteFunc(slices.Clone(dests), func(x Destination) bool { return isListed(d.Draining, x.DestinationKey) })
	}
	for i := range dests {
		ok = r.createDest(p, d, &dests[i]) && ok
	}
	if ok {
		r.setApplied(k, d.Service, dests)
	}
}

func (r *Reconciler) createDest(p *pass, d *DesiredService, x *Destination) bool {
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.CreateDestination(d.Service.ServiceKey, *x); err != nil {
		p.fail("create", d.Name, x.DestinationKey.String(), err)
		return false
	}
	p.rep.Destinations.Created++
	r.log.Debug("created IPVS destination", "op", "create", "service", d.Name, "real", x.DestinationKey.String(), "weight", x.Weight)
	return true
}

func (r *Reconciler) updateDest(p *pass, d *DesiredService, x *Destination) bool {
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.UpdateDestination(d.Service.ServiceKey, *x); err != nil {
		p.fail("update", d.Name, x.DestinationKey.String(), err)
		return false
	}
	p.rep.Destinations.Updated++
	r.log.Debug("updated IPVS destination", "op", "update", "service", d.Name, "real", x.DestinationKey.String(), "weight", x.Weight)
	return true
}

func (r *Reconciler) removeDest(p *pass, d *DesiredService, dk DestinationKey, why string) bool {
	p.rep.Calls++
	p.rep.Writes++
	if err := r.k.RemoveDestination(d.Service.ServiceKey, dk); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.fail("remove", d.Name, dk.String(), err)
		return false
	}
	p.rep.Destinations.Removed++
	r.log.Debug("removed IPVS destination", "op", "remove", "service", d.Name, "real", dk.String(), "why", why)
	return true
}

// syncDests makes the kernel's destinations kd of service d match d, merging the two sorted
// lists: it creates what is missing, updates what differs, drains what is no longer wanted
// (weight 0 now, removal on a later pass) and removes what must go at once or has drained.
// failed says an earlier write to this service failed.
func (r *Reconciler) syncDests(p *pass, d *DesiredService, kd []Destination, prev *applied, failed bool) {
	k := d.Service.ServiceKey
	for i := range kd {
		kd[i].DestinationKey = normalizeDestKey(kd[i].DestinationKey)
	}
	slices.SortFunc(kd, func(a, b Destination) int { return compareDest(a.DestinationKey, b.DestinationKey) })
	want := d.Destinations
	oldDrains := r.drains[k]
	var drains map[DestinationKey]Drain
	keepDrain := func(dk DestinationKey, dr Drain) {
		if drains == nil {
			drains = map[DestinationKey]Drain{}
		}
		drains[dk] = dr
	}
	// final is what the kernel holds after the pass; it is built in a scratch buffer and kept
	// only when it differs from want.
	changed := false
	final := r.scratch[:0]
	defer func() { r.scratch = final[:0] }()
	i, j := 0, 0
	for i < len(want) || j < len(kd) {
		c := 0
		switch {
		case i == len(want):
			c = 1
		case j == len(kd):
			c = -1
		default:
			c = compareDest(want[i].DestinationKey, kd[j].DestinationKey)
		}
		switch {
		case c < 0: // wanted, not in the kernel
			w := &want[i]
			i++
			changed = true
			if isListed(d.Draining, w.DestinationKey) {
				// Someone removed a destination we were draining: its drain is over.
				p.rep.DrainsFinished++
				continue
			}
			if prev != nil {
				if _, had := prev.dest(w.DestinationKey); had {
					p.rep.Drift.DestinationsMissing++
					p.repaired("real %s of service %s was deleted; added again", w.DestinationKey, d.Name)
					r.log.Info("repairing out-of-band edit: destination was deleted", "op", "drift", "service", d.Name, "real", w.DestinationKey.String())
				}
			}
			if r.createDest(p, d, w) {
				final = append(final, *w)
			} else {
				failed = true
			}
		case c > 0: // in the kernel, not wanted
			x := &kd[j]
			j++
			changed = true
			kept, ok := r.dropDest(p, d, x, prev, oldDrains, keepDrain)
			failed = failed || !ok
			if kept != nil {
				final = append(final, *kept)
			}
		default:
			w, x := &want[i], &kd[j]
			i++
			j++
			if isListed(d.Draining, w.DestinationKey) {
				dr := oldDrains[w.DestinationKey]
				if x.ActiveConns+x.InactiveConns == 0 {
					changed = true
					if r.removeDest(p, d, x.DestinationKey, "drained: no connections left") {
						p.rep.DrainsFinished++
						r.log.Info("drained real server removed", "op", "drain", "service", d.Name, "real", x.DestinationKey.String(), "after", p.now.Sub(dr.Since))
					} else {
						failed = true
						keepDrain(w.DestinationKey, dr)
					}
					continue
				}
				keepDrain(w.DestinationKey, dr)
			}
			if sameDest(w, x) {
				final = append(final, *w)
				continue
			}
			changed = true
			if prev != nil {
				if pd, had := prev.dest(w.DestinationKey); had && pd != appliedOf(x) {
					p.rep.Drift.DestinationsChanged++
					p.repaired("real %s of service %s was changed (weight %d in the kernel); set back to weight %d", w.DestinationKey, d.Name, x.Weight, w.Weight)
					r.log.Info("repairing out-of-band edit: destination changed", "op", "drift", "service", d.Name, "real", w.DestinationKey.String(), "weight", x.Weight)
				}
			}
			if r.updateDest(p, d, w) {
				final = append(final, *w)
			} else {
				failed = true
			}
		}
	}
	if drains != nil {
		r.drains[k] = drains
	} else {
		delete(r.drains, k)
	}
	switch {
	case failed:
		delete(r.applied, k)
	case !changed:
		r.setApplied(k, d.Service, want) // the kernel holds exactly want
	default:
		r.setApplied(k, d.Service, final)
	}
}

// setApplied records what the kernel holds of service k (dests sorted by key).
func (r *Reconciler) setApplied(k ServiceKey, svc Service, dests []Destination) {
	a := r.applied[k]
	if a == nil {
		a = &applied{}
		r.applied[k] = a
	}
	a.svc, a.dests = svc, a.dests[:0]
	for i := range dests {
		a.dests = append(a.dests, appliedOf(&dests[i]))
	}
}

// dropDest handles a kernel destination d does not want: removed at once when d says so or its
// drain is over, otherwise drained (weight 0 now; removed by a later pass). It returns the
// destination as the kernel keeps it (nil if removed) and whether its writes succeeded.
func (r *Reconciler) dropDest(p *pass, d *DesiredService, x *Destination, prev *applied, oldDrains map[DestinationKey]Drain, keepDrain func(DestinationKey, Drain)) (*Destination, bool) {
	dk := x.DestinationKey
	if isListed(d.RemoveNow, dk) {
		if r.removeDest(p, d, dk, "health down, service not quiescent") {
			return nil, true
		}
		return x, false
	}
	if dr, draining := oldDrains[dk]; draining {
		// Not kept by the desired state: the drain period has passed.
		if r.removeDest(p, d, dk, "drain period passed") {
			p.rep.DrainsFinished++
			r.log.Info("drained real server removed", "op", "drain", "service", d.Name, "real", dk.String(), "after", p.now.Sub(dr.Since))
			return nil, true
		}
		keepDrain(dk, dr)
		return x, false
	}
	if prev != nil {
		if _, had := prev.dest(dk); !had {
			p.rep.Drift.DestinationsStray++
			p.repaired("stray real %s was added to service %s; draining it out", dk, d.Name)
			r.log.Info("repairing out-of-band edit: stray destination in an owned service", "op", "drift", "service", d.Name, "real", dk.String())
		}
	}
	drained := *x
	drained.Weight, drained.ActiveConns, drained.InactiveConns, drained.Stats = 0, 0, 0, Stats{}
	switch {
	case x.Weight != 0:
		if !r.updateDest(p, d, &drained) {
			return x, false
		}
	case x.ActiveConns+x.InactiveConns == 0:
		// Already at weight 0 with nothing to drain (after a restart, or an admin-drained
		// server that was then removed).
		if r.removeDest(p, d, dk, "at weight 0 with no connections") {
			return nil, true
		}
		return x, false
	}
	p.rep.DrainsStarted++
	keepDrain(dk, Drain{Since: p.now, Destination: drained})
	r.log.Info("draining real server", "op", "drain", "service", d.Name, "real", dk.String(), "period", r.opts.DrainPeriod, "active", x.ActiveConns, "inactive", x.InactiveConns)
	return &drained, true
}

// isListed reports whether the sorted list holds k.
func isListed(list []DestinationKey, k DestinationKey) bool {
	_, ok := slices.BinarySearchFunc(list, k, compareDest)
	return ok
}

// sameSettings compares what Troop sets of a service. Timeout and netmask only matter, and are
// only compared, for a persistent service.
func sameSettings(a, b *Service) bool {
	if a.Scheduler != b.Scheduler || a.Persistent != b.Persistent {
		return false
	}
	if a.Persistent && (a.Timeout != b.Timeout || a.Netmask != b.Netmask) {
		return false
	}
	if len(a.SchedFlags) != len(b.SchedFlags) {
		return false
	}
	for _, f := range a.SchedFlags {
		if !slices.Contains(b.SchedFlags, f) {
			return false
		}
	}
	return true
}

// sameDest compares what Troop sets of a destination.
func sameDest(a, b *Destination) bool {
	return a.Forwarding == b.Forwarding && a.Weight == b.Weight &&
		a.UpperThreshold == b.UpperThreshold && a.LowerThreshold == b.LowerThreshold
}
