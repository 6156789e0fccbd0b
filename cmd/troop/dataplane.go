package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
)

// dataplane is the agent's director and what it runs on: IPVS (when the kernel has it and the
// config wants it), the interface addresses and the announcer.
type dataplane struct {
	dir       *director.Director
	announcer *director.NetAnnouncer
	packets   *director.PacketIO
	closers   []func() error
}

// newDataplane builds the director from the config. A kernel without IPVS is not an error: the
// agent says so and serves VIPs only. It returns nil when the config disables the dataplane.
// dataplaneHooks are what the agent's events and metrics hear from the dataplane.
type dataplaneHooks struct {
	// events publishes the director's and the announcer's events ("vip", "drift", "announce").
	events func(kind, message string)
	// onReconcile is told of every IPVS reconcile pass.
	onReconcile func(director.Report, error)
}

func newDataplane(ac config.Agent, dev bool, f *fsm.FSM, node *cluster.Node, hooks dataplaneHooks, log *slog.Logger) (*dataplane, error) {
	dc := ac.Director
	if dc.Enabled != nil && !*dc.Enabled {
		log.Info("dataplane disabled by the config: no IPVS, no VIPs", "op", "start")
		return nil, nil
	}
	dp := &dataplane{packets: director.NewPacketIO("", log)}
	dp.closers = append(dp.closers, dp.packets.Close)
	ann, err := director.NewNetAnnouncer(director.AnnouncerOptions{
		Config: director.AnnouncerConfig{
			Repeats: dc.Announce.Repeats, Interval: dc.Announce.Interval, Refresh: dc.Announce.Refresh,
		},
		Sender: dp.packets, Listener: dp.packets, Log: log,
		// Re-announcements only once the leadership is confirmed (issue 6, fencing by lease).
		// dp.dir is set below, before anything runs.
		Confirm: func(ctx context.Context) error { return dp.dir.ConfirmLeadership(ctx) },
		Events:  hooks.events,
	})
	if err != nil {
		dp.close()
		return nil, fmt.Errorf("director announce: %w", err)
	}
	dp.announcer = ann
	cfg := director.Config{
		Interface:         dc.Interface,
		ReconcileInterval: dc.ReconcileInterval,
		Reconciler:        director.ReconcilerOptions{DrainPeriod: dc.DrainPeriod},
		NoIPVS:            "disabled",
	}
	deps := director.Deps{
		FSM: f, Pool: node, Addresses: director.NewNetlinkAddresses(nil),
		Announcer: ann, Log: log, Events: hooks.events, OnReconcile: hooks.onReconcile,
	}
	if dc.IPVS == nil || *dc.IPVS {
		if err := dp.openIPVS(&cfg, &deps, ac, dev, log); err != nil {
			dp.close()
			return nil, err
		}
	}
	if cfg.Interface == "" {
		log.Warn("director interface is not set: VIPs of services in no VIP group are not held", "op", "start")
	}
	if dp.dir, err = director.New(cfg, deps); err != nil {
		dp.close()
		return nil, err
	}
	return dp, nil
}

// openIPVS opens the kernel's IPVS, its ownership record and (if configured) the sync daemons.
// A kernel without IPVS leaves deps without them and cfg.NoIPVS saying why.
func (dp *dataplane) openIPVS(cfg *director.Config, deps *director.Deps, ac config.Agent, dev bool, log *slog.Logger) error {
	k, err := director.NewIPVS()
	if err != nil {
		cfg.NoIPVS = "unavailable: " + err.Error()
		log.Warn("the kernel's IPVS is unavailable; serving VIPs only", "op", "start", "err", err)
		return nil
	}
	dp.closers = append(dp.closers, k.Close)
	if err := director.TuneIPVS(); err != nil {
		log.Warn("IPVS settings not applied; connections to a removed real server linger until they time out", "op", "start", "err", err)
	}
	owned := director.NewOwnership()
	if !dev {
		if owned, err = director.LoadOwnership(filepath.Join(ac.DataDir, director.OwnershipFile)); err != nil {
			return err
		}
	}
	deps.IPVS, deps.Owned = k, owned
	if sd := ac.Director.SyncDaemon; sd != nil {
		syncd, err := director.NewSyncDaemons()
		if err != nil {
			log.Warn("IPVS connection sync unavailable", "op", "start", "err", err)
			return nil
		}
		deps.Syncd = syncd
		if c, ok := syncd.(io.Closer); ok {
			dp.closers = append(dp.closers, c.Close)
		}
		cfg.Sync = &director.SyncDaemon{Interface: sd.Interface, SyncID: uint8(sd.SyncID)}
		if cs, err := director.NewConnSync(); err != nil {
			log.Warn("a stopping leader cannot send its connections to the backups", "op", "start", "err", err)
		} else {
			deps.ConnSync = cs
			dp.closers = append(dp.closers, cs.Close)
		}
	}
	if g, err := director.NewTakeoverGuard(); err != nil {
		log.Warn("takeover guard unavailable (nftables): after a failover, segments of connections not yet synced are reset", "op", "start", "err", err)
	} else {
		deps.Guard = g
		dp.closers = append(dp.closers, g.Close)
	}
	return nil
}

// handOver gives up leadership through transfer; the director keeps the VIPs until the new
// leader has announced them (director.HandOver). Without a dataplane (dp nil) it only calls
// transfer.
func (dp *dataplane) handOver(ctx context.Context, transfer func(context.Context) error) error {
	if dp == nil {
		return transfer(ctx)
	}
	return dp.dir.HandOver(ctx, transfer)
}

// run runs the announcer and the director until ctx ends.
func (dp *dataplane) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { dp.announcer.Run(ctx) })
	dp.dir.Run(ctx)
	wg.Wait()
	dp.close()
}

func (dp *dataplane) close() {
	if dp == nil {
		return
	}
	for _, c := range dp.closers {
		c()
	}
	dp.closers = nil
}
