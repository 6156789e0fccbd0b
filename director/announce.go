package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// MinAnnounceInterval is the shortest spacing of repeated announcements: Linux's neighbour
// locktime (1 s, net.ipv4.neigh.*.locktime) plus margin. Within the locktime a receiver ignores
// an ARP update that is not gratuitous by its own definition, so repeats closer together than
// this may be lost. MetalLB spaces its gratuitous ARPs 1100 ms apart for this reason
// (internal/layer2/announcer.go, spam: every 1.1 s for 5 s, with a "TODO: should abort if we
// lose control of the IP mid-spam", which Stop does here).
const MinAnnounceInterval = 1100 * time.Millisecond

// Announcer defaults (see AnnouncerConfig). They follow MetalLB's cadence (immediately, then
// every 1.1 s for 5 s, request and reply each time), which keepalived's practice (5 at once, 5
// more 5 s later) brackets: the first round corrects every cache that hears it; the repeats
// cover a lost frame, a switch port still learning, and a client whose entry was refreshed
// from the old owner within the last second.
const (
	DefaultAnnounceBurst    = 1
	DefaultAnnounceRepeats  = 5
	DefaultAnnounceInterval = MinAnnounceInterval
	// DefaultConflictHoldoff spaces the re-announcements that another host's claims on a VIP
	// trigger: enough to correct a poisoned cache quickly, not enough for two directors that
	// both believe they own a VIP to flood the segment while Raft sorts them out.
	DefaultConflictHoldoff = 5 * time.Second
	// watchRetry is how long a failed duplicate watch waits before it opens its sockets again.
	watchRetry = 5 * time.Second
)

// AnnouncerConfig is the announcement schedule of a VIP: Burst rounds at once when it is
// announced (takeover), then one round every Interval for Repeats rounds, then (if Refresh is
// set) one round every Refresh for as long as it is announced. A round is a gratuitous ARP
// request and a gratuitous ARP reply for an IPv4 VIP, an unsolicited neighbour advertisement
// (override flag set, to all-nodes) for an IPv6 one. Zero fields take the defaults; Refresh's
// default is off.
type AnnouncerConfig struct {
	Burst    int
	Repeats  int // < 0: no repeats
	Interval time.Duration
	Refresh  time.Duration
	// ConflictHoldoff is the least time between a burst and one that another host's claim on
	// the VIP triggers; a claim within it re-announces when it has passed.
	ConflictHoldoff time.Duration
}

// withDefaults fills the zero fields.
func (c AnnouncerConfig) withDefaults() AnnouncerConfig {
	if c.Burst == 0 {
		c.Burst = DefaultAnnounceBurst
	}
	switch {
	case c.Repeats == 0:
		c.Repeats = DefaultAnnounceRepeats
	case c.Repeats < 0:
		c.Repeats = 0
	}
	if c.Interval == 0 {
		c.Interval = DefaultAnnounceInterval
	}
	if c.ConflictHoldoff == 0 {
		c.ConflictHoldoff = DefaultConflictHoldoff
	}
	return c
}

// Validate checks the configuration (zero fields being defaults) and names the field at fault.
func (c AnnouncerConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	if d.Burst < 1 || d.Burst > 10 {
		errs = append(errs, fmt.Errorf("announce burst %d: must be 1–10", c.Burst))
	}
	if d.Repeats > 100 {
		errs = append(errs, fmt.Errorf("announce repeats %d: must be at most 100", c.Repeats))
	}
	if d.Interval < MinAnnounceInterval {
		errs = append(errs, fmt.Errorf("announce interval %s: must be at least %s: Linux ignores a second ARP update within its 1 s locktime", c.Interval, MinAnnounceInterval))
	}
	if d.Refresh != 0 && d.Refresh < d.Interval {
		errs = append(errs, fmt.Errorf("announce refresh %s: must be off (0) or at least the interval %s", c.Refresh, d.Interval))
	}
	if d.ConflictHoldoff < 0 {
		errs = append(errs, fmt.Errorf("announce conflict holdoff %s: must not be negative", c.ConflictHoldoff))
	}
	return errors.Join(errs...)
}

// PacketKind is a kind of ARP or NDP packet: sent as an announcement, or seen on the wire.
type PacketKind uint8

// Packet kinds. An IPv4 announcement round sends ARPRequest and ARPReply, an IPv6 one
// NeighborAdvertisement.
const (
	ARPRequest PacketKind = iota + 1
	ARPReply
	NeighborAdvertisement
	NeighborSolicitation
)

func (k PacketKind) String() string {
	switch k {
	case ARPRequest:
		return "arp-request"
	case ARPReply:
		return "arp-reply"
	case NeighborAdvertisement:
		return "neighbor-advertisement"
	case NeighborSolicitation:
		return "neighbor-solicitation"
	}
	return fmt.Sprintf("packet-kind-%d", uint8(k))
}

// roundKinds are the packets of one announcement round of vip.
func roundKinds(vip netip.Addr) []PacketKind {
	if vip.Is4() {
		return []PacketKind{ARPRequest, ARPReply}
	}
	return []PacketKind{NeighborAdvertisement}
}

// Sender sends announcement packets. PacketIO is the real one. The announcer calls Send from
// one goroutine per VIP, so it must be safe for concurrent use and should not block for long.
type Sender interface {
	// Send sends one gratuitous packet of the given kind (ARPRequest, ARPReply or
	// NeighborAdvertisement) binding vip to iface's hardware address.
	Send(iface string, vip netip.Addr, kind PacketKind) error
}

// Observed is an ARP or NDP packet seen on an interface, reduced to the fields that tell which
// host it says holds which address.
type Observed struct {
	Kind PacketKind
	// SenderIP is an ARP packet's sender protocol address, or an NDP message's IPv6 source.
	SenderIP netip.Addr
	// TargetIP is an ARP packet's target protocol address, or an NDP message's target.
	TargetIP netip.Addr
	// LinkAddr is an ARP packet's sender hardware address, or an NDP message's source (NS) or
	// target (NA) link-layer address option; nil when the message has none.
	LinkAddr net.HardwareAddr
}

// Listener receives the ARP and NDP traffic of an interface, for the duplicate-VIP watch.
// PacketIO is the real one.
type Listener interface {
	// HardwareAddr returns iface's own link-layer address.
	HardwareAddr(iface string) (net.HardwareAddr, error)
	// Listen calls handle for each ARP and NDP packet seen on iface, one call at a time, until
	// ctx ends (then it returns nil) or reception fails.
	Listen(ctx context.Context, iface string, handle func(Observed)) error
}

// Clock is the announcer's time: the system's, or a fake one in tests.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and a function that stops
	// the timer (reporting whether it was still pending).
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// AnnouncerOptions are a NetAnnouncer's settings and collaborators.
type AnnouncerOptions struct {
	Config AnnouncerConfig
	// Sender sends the packets; required.
	Sender Sender
	// Listener, when set, runs the duplicate-VIP watch on every interface that has a VIP
	// announced.
	Listener Listener
	Clock    Clock        // nil: the system clock
	Log      *slog.Logger // nil: discard
	// Confirm, when set, is asked before every round that no Announce call asked for: the
	// repeats, the refreshes and the bursts another host's claim triggers. The round goes out
	// only if Confirm returns nil, meaning this host has just confirmed with a quorum that it
	// still leads (Director.ConfirmLeadership); a leader that lost its quorum, but has not
	// noticed yet (paused, or within its lease), sends nothing that would pull clients back to
	// it. The bursts of Announce are not asked: the caller announces as it takes over, having
	// just confirmed. Confirm runs on the VIP's goroutine; it must return when ctx ends (Stop),
	// and it is given at most confirmTimeout.
	Confirm func(ctx context.Context) error
	// Events, if set, is told of each burst sent, as kind "announce" with the VIP, the
	// interface and how many packets went out. It runs on the VIP's goroutine and must not
	// block.
	Events func(kind, message string)
}

// confirmTimeout bounds Confirm: a round that waited longer for it is not sent.
const confirmTimeout = time.Second

// AnnounceStats are the counters of one VIP's announcements, kept for the life of the
// announcer (across Stop and Announce) so that they can be exported as monotonic metrics.
type AnnounceStats struct {
	VIP   netip.Addr
	Iface string // the interface it was last announced on
	// Announcing is true between Announce and Stop (or Yield).
	Announcing bool
	Sent       uint64 // packets sent
	Errors     uint64 // packets that failed to go out
	LastError  string
	// Conflicts counts packets in which another hardware address claimed the VIP while it was
	// announced; Reannounced counts the bursts they triggered.
	Conflicts        uint64
	Reannounced      uint64
	LastConflictFrom net.HardwareAddr
	LastConflictAt   time.Time
	// Unconfirmed counts rounds not sent because Confirm did not confirm the leadership.
	Unconfirmed uint64
}

// NetAnnouncer announces the VIPs a leader holds, on a schedule (AnnouncerConfig), and watches
// for other hosts claiming them. Nothing runs until Run; Announce, Yield and Stop may be called
// before Run (the schedules start when it does), during it, and after it (then they only
// record). All methods are safe for concurrent use.
//
// Per VIP there is one goroutine that sends its rounds; per interface with an announced or
// yielded VIP there is one duplicate watch (with a Listener). Run owns them all: when its context ends
// they stop, and Run returns once they have. The Sender and Listener are the caller's to close
// after Run has returned.
type NetAnnouncer struct {
	cfg      AnnouncerConfig
	sender   Sender
	listener Listener
	clock    Clock
	log      *slog.Logger
	confirm  func(context.Context) error
	events   func(kind, message string)

	mu sync.Mutex // guards all following fields
	// life is created, running or stopped; ctx is Run's context while running.
	life    announcerLife
	ctx     context.Context
	wg      sync.WaitGroup
	vips    map[netip.Addr]*vipSchedule
	yields  map[netip.Addr]*vipYield
	watches map[string]*ifaceWatch
	stats   map[netip.Addr]*AnnounceStats
}

type announcerLife uint8

const (
	announcerCreated announcerLife = iota
	announcerRunning
	announcerStopped
)

// vipSchedule is one announced VIP. Its goroutine owns the timing; the rest talk to it through
// the channels.
type vipSchedule struct {
	vip   netip.Addr
	iface string
	// cancel and done exist once the goroutine has started.
	cancel context.CancelFunc
	done   chan struct{}
	// kick asks for a burst now (Announce again); conflict asks for one within the holdoff.
	kick     chan struct{}
	conflict chan struct{}
}

// vipYield is a VIP being handed over (Yield): no longer announced, still watched for.
type vipYield struct {
	iface string
	// claimed is closed when another hardware address claims the VIP on iface.
	claimed chan struct{}
	// watching is true once the yield counts as a user of its interface's watch.
	watching bool
}

// ifaceWatch is the duplicate watch of one interface.
type ifaceWatch struct {
	users  int // started schedules and watching yields on the interface
	cancel context.CancelFunc
}

// NetAnnouncer is the director's VIPAnnouncer (spelled out here, as that interface belongs to
// its consumer).
var _ interface {
	Announce(iface string, vip netip.Addr)
	Yield(iface string, vip netip.Addr) <-chan struct{}
	Stop(vip netip.Addr)
} = (*NetAnnouncer)(nil)

// NewNetAnnouncer returns an announcer; it starts nothing. The configuration is validated.
func NewNetAnnouncer(o AnnouncerOptions) (*NetAnnouncer, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Sender == nil {
		return nil, errors.New("announcer: a Sender is required")
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &NetAnnouncer{
		cfg: o.Config.withDefaults(), sender: o.Sender, listener: o.Listener, clock: o.Clock, log: o.Log,
		confirm: o.Confirm, events: o.Events, vips: map[netip.Addr]*vipSchedule{}, yields: map[netip.Addr]*vipYield{},
		watches: map[string]*ifaceWatch{}, stats: map[netip.Addr]*AnnounceStats{},
	}, nil
}

// Run starts the schedules of the VIPs announced so far and every later one, and the duplicate
// watches, until ctx ends; then it stops them all, waits for them and returns nil. Run may be
// called once.
func (a *NetAnnouncer) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.life != announcerCreated {
		a.mu.Unlock()
		return errors.New("announcer: Run called twice")
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.life, a.ctx = announcerRunning, runCtx
	for _, vip := range slices.SortedFunc(maps.Keys(a.vips), netip.Addr.Compare) {
		a.startLocked(a.vips[vip])
	}
	for _, y := range a.yields {
		y.watching = a.acquireWatchLocked(y.iface)
	}
	a.mu.Unlock()

	<-ctx.Done()
	a.mu.Lock()
	a.life = announcerStopped
	a.mu.Unlock()
	cancel()
	// No goroutine is added once life is stopped, so this waits for all of them.
	a.wg.Wait()
	return nil
}

// Announce starts announcing vip on iface: a burst now, then the repeats. Announcing a VIP
// that is being announced on the same interface starts its schedule over (a new burst); on
// another interface it moves it. Announcing a yielded VIP (Yield) ends the yield: the caller
// leads again. The caller must hold vip on iface: announcing an address this host does not
// have would steal it. Failures to send are logged and counted (Stats), and the schedule goes
// on.
func (a *NetAnnouncer) Announce(iface string, vip netip.Addr) {
	vip = vip.Unmap()
	if !vip.IsValid() || vip.Zone() != "" || iface == "" {
		a.log.Error("announce refused: invalid VIP or interface", "op", "announce", "vip", vip, "iface", iface)
		return
	}
	a.mu.Lock()
	for {
		s, ok := a.vips[vip]
		if !ok {
			break
		}
		if s.iface == iface {
			select {
			case s.kick <- struct{}{}:
			default: // a kick is pending already
			}
			a.mu.Unlock()
			return
		}
		// Moving to another interface: stop the old schedule (waiting for it, so the two
		// never both send), then look again, as another call may have come in between.
		a.mu.Unlock()
		a.Stop(vip)
		a.mu.Lock()
	}
	s := &vipSchedule{vip: vip, iface: iface, kick: make(chan struct{}, 1), conflict: make(chan struct{}, 1)}
	a.vips[vip] = s
	st := a.statsLocked(vip)
	st.Iface, st.Announcing = iface, true
	if a.life == announcerRunning {
		a.startLocked(s)
	}
	// After the schedule has joined the interface's watch, so that the watch never closes
	// in between.
	a.endYieldLocked(vip)
	a.mu.Unlock()
}

// Yield hands vip over to another director (make before break): it ends vip's announcements
// as Stop does, so that this host no longer draws the VIP's traffic, but keeps watching iface
// and closes the returned channel when another hardware address claims vip there (the new
// leader's gratuitous ARP or unsolicited NA). Meanwhile such a claim is no conflict: it
// triggers no burst. The caller keeps the VIP on iface, forwarding the connections that still
// arrive, until the channel is closed, and then removes it (calling Stop first, as always).
//
// The yield lasts until Stop or Announce of vip, or until the claim. Without a Listener, or
// outside Run, nothing is watched and the channel is never closed: the caller must bound its
// wait. Yielding a VIP already yielded on iface returns the same channel.
func (a *NetAnnouncer) Yield(iface string, vip netip.Addr) <-chan struct{} {
	vip = vip.Unmap()
	a.mu.Lock()
	y := a.yields[vip]
	if y == nil || y.iface != iface {
		a.endYieldLocked(vip)
		y = &vipYield{iface: iface, claimed: make(chan struct{})}
		a.yields[vip] = y
		if a.life == announcerRunning {
			// Before the schedule leaves the watch: a claim in between must not be missed.
			y.watching = a.acquireWatchLocked(iface)
		}
	}
	s := a.removeScheduleLocked(vip)
	a.mu.Unlock()
	s.wait()
	a.log.Debug("handing over a VIP: announcements stopped, waiting for the new owner's", "op", "yield", "vip", vip, "iface", iface)
	return y.claimed
}

// Stop ends vip's announcements, or its yield. When it returns no packet for vip is being sent
// or will be, so the caller may remove the VIP: a deposed leader must not announce what it gave
// up. A VIP neither announced nor yielded is no error.
func (a *NetAnnouncer) Stop(vip netip.Addr) {
	vip = vip.Unmap()
	a.mu.Lock()
	a.endYieldLocked(vip)
	s := a.removeScheduleLocked(vip)
	a.mu.Unlock()
	s.wait()
}

// removeScheduleLocked forgets vip's schedule (if any) and leaves its watch; the caller waits
// for its goroutine (wait) once a.mu is released.
func (a *NetAnnouncer) removeScheduleLocked(vip netip.Addr) *vipSchedule {
	s, ok := a.vips[vip]
	if !ok {
		return nil
	}
	delete(a.vips, vip)
	a.statsLocked(vip).Announcing = false
	if s.cancel != nil {
		a.releaseWatchLocked(s.iface)
	}
	return s
}

// wait ends s's goroutine, if it was started, and waits for it. s may be nil.
func (s *vipSchedule) wait() {
	if s != nil && s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// endYieldLocked forgets vip's yield (if any) without closing its channel.
func (a *NetAnnouncer) endYieldLocked(vip netip.Addr) {
	y, ok := a.yields[vip]
	if !ok {
		return
	}
	delete(a.yields, vip)
	if y.watching {
		a.releaseWatchLocked(y.iface)
	}
}

// Stats returns the counters of every VIP announced so far, in address order.
func (a *NetAnnouncer) Stats() []AnnounceStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AnnounceStats, 0, len(a.stats))
	for _, vip := range slices.SortedFunc(maps.Keys(a.stats), netip.Addr.Compare) {
		s := *a.stats[vip]
		s.LastConflictFrom = slices.Clone(s.LastConflictFrom)
		out = append(out, s)
	}
	return out
}

func (a *NetAnnouncer) statsLocked(vip netip.Addr) *AnnounceStats {
	st := a.stats[vip]
	if st == nil {
		st = &AnnounceStats{VIP: vip}
		a.stats[vip] = st
	}
	return st
}

// startLocked starts s's goroutine and, with a listener, its interface's watch. a.mu is held
// and a is running.
func (a *NetAnnouncer) startLocked(s *vipSchedule) {
	ctx, cancel := context.WithCancel(a.ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	a.wg.Go(func() {
		defer close(s.done)
		a.announceLoop(ctx, s)
	})
	a.acquireWatchLocked(s.iface)
}

// acquireWatchLocked counts one more user of iface's duplicate watch, starting the watch for
// the first. It reports whether there is a watch (there is none without a listener). a.mu is
// held and a is running.
func (a *NetAnnouncer) acquireWatchLocked(iface string) bool {
	if a.listener == nil {
		return false
	}
	w := a.watches[iface]
	if w == nil {
		wctx, wcancel := context.WithCancel(a.ctx)
		w = &ifaceWatch{cancel: wcancel}
		a.watches[iface] = w
		a.wg.Go(func() { a.watchLoop(wctx, iface) })
	}
	w.users++
	return true
}

// releaseWatchLocked counts one user of iface's watch less, ending the watch after the last.
func (a *NetAnnouncer) releaseWatchLocked(iface string) {
	if w := a.watches[iface]; w != nil {
		if w.users--; w.users == 0 {
			w.cancel()
			delete(a.watches, iface)
		}
	}
}

// announceLoop is s's goroutine: a burst at once, then the repeats and refreshes, and a new
// burst when kicked (Announce again) or, within the holdoff, when another host claims the VIP.
func (a *NetAnnouncer) announceLoop(ctx context.Context, s *vipSchedule) {
	var (
		burstAt  time.Time // start of the current burst
		repeats  int       // repeats sent since it
		next     time.Time // the next scheduled round; zero: none
		deferred time.Time // a conflict burst waiting for the holdoff; zero: none
		burst    = true
		// claimed is true when the burst is another host's claim's, not Announce's.
		claimed bool
	)
	for {
		if burst {
			burst, deferred = false, time.Time{}
			burstAt, repeats = a.clock.Now(), 0
			if !claimed || a.confirmed(ctx, s) {
				sent := a.sendRounds(ctx, s, a.cfg.Burst)
				if a.events != nil && ctx.Err() == nil {
					why := "taking it over"
					if claimed {
						why = "another host claimed it"
					}
					a.events("announce", fmt.Sprintf("announced %s on %s: %d packets (%s)", s.vip, s.iface, sent, why))
				}
			}
			next = a.nextRound(burstAt, repeats, burstAt)
		}
		due := next
		if !deferred.IsZero() && (due.IsZero() || deferred.Before(due)) {
			due = deferred
		}
		var timer <-chan time.Time
		stop := func() bool { return false }
		if !due.IsZero() {
			timer, stop = a.clock.NewTimer(due.Sub(a.clock.Now()))
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-s.kick:
			stop()
			burst, claimed = true, false
		case <-s.conflict:
			stop()
			if deferred.IsZero() {
				if allowed := burstAt.Add(a.cfg.ConflictHoldoff); a.clock.Now().Before(allowed) {
					deferred = allowed
				} else {
					burst, claimed = true, true
				}
			}
			if burst {
				a.countReannounce(s.vip)
			}
		case <-timer:
			now := a.clock.Now()
			if !deferred.IsZero() && !now.Before(deferred) {
				burst, claimed = true, true
				a.countReannounce(s.vip)
				continue
			}
			if !next.IsZero() && !now.Before(next) {
				if a.confirmed(ctx, s) {
					a.sendRounds(ctx, s, 1)
				}
				if repeats < a.cfg.Repeats {
					repeats++
				}
				next = a.nextRound(burstAt, repeats, now)
			}
		}
	}
}

// nextRound is when the round after `repeats` repeats of the burst at burstAt is due (the last
// round having gone out at last), or zero for none. Repeats are timed from the burst, so that
// a slightly late wake-up does not push the later ones back, but never closer than Interval
// to the last round: after a long stall (a paused process) the missed repeats are not sent
// back to back, where receivers would ignore all but the first. Refreshes follow the last
// round.
func (a *NetAnnouncer) nextRound(burstAt time.Time, repeats int, last time.Time) time.Time {
	switch {
	case repeats < a.cfg.Repeats:
		next := burstAt.Add(time.Duration(repeats+1) * a.cfg.Interval)
		if earliest := last.Add(a.cfg.Interval); next.Before(earliest) {
			next = earliest
		}
		return next
	case a.cfg.Refresh > 0:
		return last.Add(a.cfg.Refresh)
	}
	return time.Time{}
}

// confirmed asks Confirm (if set) whether this host still leads, before a round no Announce
// call asked for. A round it does not confirm is not sent: it is counted and logged, and the
// schedule goes on (a deposed leader's VIP loop stops it soon).
func (a *NetAnnouncer) confirmed(ctx context.Context, s *vipSchedule) bool {
	if a.confirm == nil {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	err := a.confirm(cctx)
	cancel()
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		return false // stopped meanwhile: nothing to report
	}
	a.mu.Lock()
	a.statsLocked(s.vip).Unconfirmed++
	a.mu.Unlock()
	a.log.Warn("announcement withheld: leadership not confirmed", "op", "announce", "vip", s.vip, "iface", s.iface, "err", err)
	return false
}

// sendRounds sends n rounds for s, checking ctx before each packet so that Stop is prompt.
func (a *NetAnnouncer) sendRounds(ctx context.Context, s *vipSchedule, n int) (sent int) {
	for range n {
		for _, kind := range roundKinds(s.vip) {
			if ctx.Err() != nil {
				return sent
			}
			err := a.sender.Send(s.iface, s.vip, kind)
			a.mu.Lock()
			st := a.statsLocked(s.vip)
			if err != nil {
				st.Errors++
				st.LastError = err.Error()
			} else {
				st.Sent++
				sent++
			}
			a.mu.Unlock()
			if err != nil {
				a.log.Warn("announcement not sent; the schedule goes on", "op", "announce", "vip", s.vip, "iface", s.iface, "kind", kind, "err", err)
			}
		}
	}
	return sent
}

func (a *NetAnnouncer) countReannounce(vip netip.Addr) {
	a.mu.Lock()
	a.statsLocked(vip).Reannounced++
	a.mu.Unlock()
	a.log.Info("re-announcing a VIP another host claimed", "op", "reannounce", "vip", vip)
}

// watchLoop runs the duplicate watch of iface until ctx ends, reopening it after a failure.
func (a *NetAnnouncer) watchLoop(ctx context.Context, iface string) {
	for {
		ours, err := a.listener.HardwareAddr(iface)
		if err == nil {
			err = a.listener.Listen(ctx, iface, func(o Observed) { a.handleObserved(iface, ours, o) })
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("duplicate-VIP watch failed; retrying", "op", "watch", "iface", iface, "retry_in", watchRetry, "err", err)
		c, stop := a.clock.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
	}
}

// handleObserved handles one packet seen on iface (whose hardware address is ours) and returns
// why it did nothing, claimConflict when it counted a conflict and asked for a burst, or
// claimHandedOver when another host claimed a VIP we yield (and it closed the yield's channel).
func (a *NetAnnouncer) handleObserved(iface string, ours net.HardwareAddr, o Observed) claimReason {
	a.mu.Lock()
	owned := func(ip netip.Addr) bool {
		if s, ok := a.vips[ip]; ok {
			return s.iface == iface
		}
		y, ok := a.yields[ip]
		return ok && y.iface == iface
	}
	vip, reason := claimVerdict(o, ours, owned)
	if reason != claimConflict {
		a.mu.Unlock()
		return reason
	}
	if y, ok := a.yields[vip]; ok {
		// The new owner has announced it: the handover is done, and defending the VIP now
		// would flip the clients back to us.
		a.endYieldLocked(vip)
		close(y.claimed)
		a.mu.Unlock()
		a.log.Info("the new owner announced a VIP we hand over", "op", "yield", "vip", vip, "iface", iface, "mac", o.LinkAddr.String(), "kind", o.Kind)
		return claimHandedOver
	}
	s := a.vips[vip]
	st := a.statsLocked(vip)
	st.Conflicts++
	st.LastConflictFrom, st.LastConflictAt = slices.Clone(o.LinkAddr), a.clock.Now()
	select {
	case s.conflict <- struct{}{}:
	default: // one is pending: the burst it asks for covers this claim too
	}
	a.mu.Unlock()
	a.log.Warn("another host claims a VIP we hold", "op", "conflict", "vip", vip, "iface", iface, "mac", o.LinkAddr.String(), "kind", o.Kind)
	return claimConflict
}
