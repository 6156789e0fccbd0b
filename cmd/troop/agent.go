package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/fsm"
	"github.com/troop-lb/troop/metrics"
)

// agentOptions is the agent's command line.
type agentOptions struct {
	configFile string
	dev        bool
	dataDir    string
	logLevel   string
	// apiAddress overrides the API listen address (api.address, or -dev's default).
	apiAddress string
	// leaveOnStop removes this director from the Raft configuration when it stops; without it a
	// stopped director stays a member and rejoins as a follower when it starts again.
	leaveOnStop bool
	// witness makes the agent a witness (config.Agent.Witness).
	witness bool
	// bootstrapTokenFile turns ACLs on with the bootstrap token in this file (acl.enabled and
	// acl.bootstrap_token_file; with -dev too).
	bootstrapTokenFile string
}

// eventsKept is how many recent events an agent keeps for `troop events`.
const eventsKept = 4096

// handoffTimeout bounds how long a stopping leader waits for a follower to take over.
const handoffTimeout = 5 * time.Second

// runAgent runs `troop agent` until ctx ends (SIGINT or SIGTERM).
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o agentOptions
	fs := flag.NewFlagSet("troop agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configFile, "config", "", "agent configuration `file` (HCL)")
	fs.BoolVar(&o.dev, "dev", false, "run a single in-memory director on "+config.DefaultAPIAddress+"; nothing is kept")
	fs.StringVar(&o.dataDir, "data-dir", "", "override data_dir of the config file")
	fs.StringVar(&o.logLevel, "log-level", "", "override log_level: debug, info, warn or error")
	fs.StringVar(&o.apiAddress, "api-address", "", "override the API's listen `host:port` (api.address; with -dev too)")
	fs.BoolVar(&o.leaveOnStop, "leave-on-stop", false, "leave the Raft configuration when stopped (default: stay a member and rejoin on restart)")
	fs.StringVar(&o.bootstrapTokenFile, "bootstrap-token-file", "", "turn ACLs on with the bootstrap (admin) token in this `file` (acl.bootstrap_token_file; with -dev too)")
	fs.BoolVar(&o.witness, "witness", false, "run as a witness: a Raft voter that holds no VIP, programs no IPVS, runs no health checks and hands leadership to a director")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: troop agent -config FILE | -dev [flags]\n\nRuns a director agent: its Raft node and HTTP API.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 || (o.configFile == "") == !o.dev {
		fmt.Fprintln(stderr, "troop agent: give exactly one of -config FILE or -dev")
		fs.Usage()
		return exitUsage
	}
	ac, err := loadAgentConfig(o)
	if err != nil {
		fmt.Fprintf(stderr, "troop agent: %v\n", err)
		return exitError
	}
	if o.bootstrapTokenFile != "" {
		ac.ACL.Enabled, ac.ACL.BootstrapTokenFile = true, o.bootstrapTokenFile
	}
	if err := serveAgent(ctx, ac, o, stderr); err != nil {
		fmt.Fprintf(stderr, "troop agent: %v\n", err)
		return exitError
	}
	return exitOK
}

// loadAgentConfig reads the config file (or takes the -dev defaults) and applies the flags.
func loadAgentConfig(o agentOptions) (config.Agent, error) {
	if o.dev {
		if o.dataDir != "" {
			return config.Agent{}, errors.New("-data-dir: a -dev agent keeps nothing on disk")
		}
		if o.witness {
			return config.Agent{}, errors.New("-witness: a -dev agent is alone, and a witness needs directors to lead")
		}
		var l slog.Level
		if err := l.UnmarshalText([]byte(orDefault(o.logLevel, "info"))); err != nil {
			return config.Agent{}, fmt.Errorf("-log-level %q: must be one of debug, info, warn, error", o.logLevel)
		}
		return config.Agent{NodeID: "dev", LogLevel: o.logLevel, API: config.API{Address: o.apiAddress}}, nil
	}
	src, err := os.ReadFile(o.configFile)
	if err != nil {
		return config.Agent{}, err
	}
	ac, err := config.ParseAgent(o.configFile, src)
	if err != nil {
		return config.Agent{}, err
	}
	if o.dataDir != "" {
		ac.DataDir = o.dataDir
	}
	if o.logLevel != "" {
		ac.LogLevel = o.logLevel
	}
	if o.apiAddress != "" {
		ac.API.Address = o.apiAddress
	}
	ac.Witness = ac.Witness || o.witness
	// The overrides are held to the file's rules.
	if err := ac.Validate(); err != nil {
		return config.Agent{}, fmt.Errorf("%s with the command-line overrides: %w", o.configFile, err)
	}
	return ac, nil
}

// clusterConfig overlays the agent file's values on cluster's defaults.
func clusterConfig(ac config.Agent, dev bool, log *slog.Logger) cluster.Config {
	c := cluster.DefaultConfig()
	if dev {
		c = cluster.DevConfig()
	}
	c.NodeID, c.DataDir, c.Logger = ac.NodeID, ac.DataDir, log
	c.Witness = ac.Witness
	c.BindAddr = orDefault(ac.Raft.Address, config.DefaultRaftAddress)
	c.AdvertiseAddr = ac.Raft.Advertise
	c.BootstrapExpect, c.Join = ac.Raft.BootstrapExpect, ac.Raft.Join
	for _, p := range ac.Raft.Peers {
		c.Peers = append(c.Peers, cluster.PeerConfig{ID: p.ID, Address: p.Address})
	}
	setIf(&c.HeartbeatTimeout, ac.Raft.HeartbeatTimeout)
	setIf(&c.ElectionTimeout, ac.Raft.ElectionTimeout)
	setIf(&c.LeaderLeaseTimeout, ac.Raft.LeaderLeaseTimeout)
	setIf(&c.CommitTimeout, ac.Raft.CommitTimeout)
	setIf(&c.SnapshotThreshold, ac.Raft.SnapshotThreshold)
	setIf(&c.SnapshotInterval, ac.Raft.SnapshotInterval)
	setIf(&c.TrailingLogs, ac.Raft.TrailingLogs)
	return c
}

// setIf overrides a default with a value the file set (zero means not set).
func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// newLogger logs text at a level that loadAgentConfig has validated.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(orDefault(level, "info")))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// agent is one director's parts: its Raft node, dataplane, health checks, events and API.
type agent struct {
	log    *slog.Logger
	nodeID string
	fsm    *fsm.FSM
	node   *cluster.Node
	dp     *dataplane // nil when the config disables the dataplane, and on a witness
	checks *checks    // nil on a witness
	// witness is true when the agent only votes (config.Agent.Witness).
	witness bool
	// gossip is true when the agent gossips (a gossip block).
	gossip bool
	events *api.Events
	// feedHealth turns committed health changes into events; it watches the FSM from creation.
	feedHealth func(context.Context)
	ln         net.Listener
	srv        *http.Server
	// apiScheme is https with an api tls block, else http.
	apiScheme string
	// ready reports the agent's readiness (GET /v1/agent/ready).
	ready func() api.Readiness
	// metrics is the agent's Prometheus registry (GET /metrics); stopGoMetrics takes its
	// raft_* and memberlist_* sink off the process-wide go-metrics relay.
	metrics       *metrics.Metrics
	stopGoMetrics func()
}

// serveAgent runs the agent until ctx ends (or a part fails), then stops it in order.
func serveAgent(ctx context.Context, ac config.Agent, o agentOptions, logOut io.Writer) error {
	a, err := newAgent(ac, o, newLogger(logOut, ac.LogLevel).With("node", ac.NodeID))
	if err != nil {
		return err
	}
	return a.run(ctx, o)
}

// newAgent builds the parts and binds the ports, starting nothing; on failure it releases what
// it had opened.
func newAgent(ac config.Agent, o agentOptions, log *slog.Logger) (_ *agent, err error) {
	a := &agent{log: log, nodeID: ac.NodeID, witness: ac.Witness, fsm: fsm.New(log.With("component", "fsm")),
		events: api.NewEvents(eventsKept, log.With("component", "events")), metrics: metrics.New(log.With("component", "metrics"))}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	cc := clusterConfig(ac, o.dev, log.With("component", "cluster"))
	cc.ObserveApply = a.metrics.ObserveApply
	if cc.TLS, err = raftTLS(ac.Raft.TLS); err != nil {
		return nil, err
	}
	if cc.Serial, err = serialConfigs(ac.Serial); err != nil {
		return nil, err
	}
	if cc.Gossip, err = gossipConfig(ac, cc.BindAddr, cc.AdvertiseAddr); err != nil {
		return nil, err
	}
	a.gossip = cc.Gossip != nil
	if a.node, err = cluster.New(cc, a.fsm); err != nil {
		return nil, err
	}
	if a.witness {
		// A witness only votes. It programs nothing, and it never proposes health: as leader
		// (briefly, until it hands over) its committer would record verdicts of checks run
		// from a machine that may not even reach the real servers.
		log.Info("witness: a Raft voter with no dataplane and no health checks; it hands leadership to a director", "op", "start")
	} else {
		hooks := dataplaneHooks{events: a.events.Publisher(), onReconcile: a.metrics.ObserveReconcile}
		if a.dp, err = newDataplane(ac, o.dev, a.fsm, a.node, hooks, log.With("component", "director")); err != nil {
			return nil, err
		}
		if a.checks, err = newChecks(a.fsm, a.node, a.metrics.ObserveCheck, log.With("component", "probe")); err != nil {
			return nil, err
		}
	}
	if err := a.watchMetrics(); err != nil {
		return nil, err
	}
	apiAddr := orDefault(ac.API.Address, config.DefaultAPIAddress)
	if a.ln, err = net.Listen("tcp", apiAddr); err != nil {
		return nil, fmt.Errorf("listen for the API on %s: %w", apiAddr, err)
	}
	a.apiScheme = "http"
	if tlsCfg, err := apiTLS(ac.API.TLS); err != nil {
		return nil, err
	} else if tlsCfg != nil {
		a.ln, a.apiScheme = tls.NewListener(a.ln, tlsCfg), "https"
	}
	a.feedHealth = a.events.FeedHealth(a.fsm)
	apiServer := api.NewServer(a.node, log.With("component", "api"))
	a.ready = apiServer.Readiness
	acl, err := apiACL(ac.ACL)
	if err != nil {
		return nil, err
	}
	apiServer.SetACL(acl)
	if acl != nil {
		log.Info("ACLs on: the API asks for tokens", "op", "start", "anonymous", orDefault(ac.ACL.Anonymous, config.AnonymousNone), "bootstrap_token", ac.ACL.BootstrapTokenFile != "")
	}
	apiServer.SetEvents(a.events)
	apiServer.SetMetrics(a.metrics.Handler())
	if a.checks != nil {
		apiServer.SetChecks(a.checks.engine)
	}
	if a.dp != nil {
		apiServer.SetDataplane(a.dp.dir)
	}
	a.srv = &http.Server{
		Handler:           streamingExempt(apiServer),
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// watchMetrics points the metrics at the agent's parts and adds Raft's and memberlist's own.
func (a *agent) watchMetrics() error {
	src := metrics.Sources{Node: a.node, FSM: a.fsm}
	if a.dp != nil {
		src.Director, src.Announcer = a.dp.dir, a.dp.announcer
	}
	if a.checks != nil {
		src.Checks = a.checks.engine
	}
	if err := a.metrics.Watch(src); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	stop, err := a.metrics.GoMetrics()
	if err != nil {
		return err
	}
	a.stopGoMetrics = stop
	return nil
}

// close releases the parts of an agent that never ran.
func (a *agent) close() {
	if a.stopGoMetrics != nil {
		a.stopGoMetrics()
	}
	if a.ln != nil {
		a.ln.Close()
	}
	a.dp.close()
	if a.node != nil {
		a.node.Close()
	}
}

// run serves until ctx ends or a part fails. Then a leader hands leadership over, the API
// stops, the dataplane lets go of its VIPs (never of the IPVS table) and Raft stops last.
func (a *agent) run(ctx context.Context, o agentOptions) error {
	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()

	var nodeWG, workWG sync.WaitGroup
	defer a.stopGoMetrics()
	leadership := a.node.WatchLeadership(workCtx)
	leaderChanges := a.node.WatchLeadership(workCtx)
	// Subscribed before Raft starts: no committed change is missed.
	configChanges, stopConfigChanges := a.fsm.WatchChanges(256)
	defer stopConfigChanges()
	if a.dp != nil {
		workWG.Go(func() { a.dp.run(workCtx) })
	}
	if a.checks != nil {
		checkEvents, stopCheckEvents := a.checks.engine.Subscribe(256)
		defer stopCheckEvents()
		workWG.Go(func() { a.checks.run(workCtx) })
		workWG.Go(func() { a.events.FeedChecks(a.nodeID, checkEvents) })
	}
	workWG.Go(func() { a.feedHealth(workCtx) })
	workWG.Go(func() {
		if err := notifyWhenReady(workCtx, a.ready, sdNotify); err != nil {
			a.log.Warn("could not tell systemd the agent is ready", "op", "start", "err", err)
		}
	})
	workWG.Go(func() { a.events.FeedLeadership(a.nodeID, leadership) })
	workWG.Go(func() { a.metrics.WatchLeadership(leaderChanges) })
	started := time.Now()
	workWG.Go(func() { a.events.FeedConfig(configChanges, started) })
	if len(a.node.SerialStatus()) > 0 {
		workWG.Go(func() { watchPeers(workCtx, a.node.SerialStatus, a.events) })
	}
	if a.gossip {
		workWG.Go(func() { watchMembers(workCtx, a.node.Members, a.events) })
	}

	failed := make(chan error, 2)
	nodeWG.Go(func() {
		if err := a.node.Run(nodeCtx); err != nil {
			failed <- err
		}
	})
	nodeWG.Go(func() {
		if err := a.srv.Serve(a.ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("serve API on %s: %w", a.ln.Addr(), err)
		}
	})
	a.log.Info("agent started", "op", "start", "api", a.apiScheme+"://"+a.ln.Addr().String(), "raft", a.node.Addr(), "dev", o.dev, "witness", a.witness)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
	}
	a.log.Info("agent stopping", "op", "stop")
	if err := sdNotify("STOPPING=1\nSTATUS=stopping: handing leadership over"); err != nil {
		a.log.Warn("could not tell systemd the agent is stopping", "op", "stop", "err", err)
	}
	handOver(a.node, a.dp, o.leaveOnStop, a.log)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.srv.Shutdown(shutdownCtx)
	stopWork()
	stopConfigChanges() // ends FeedConfig
	workWG.Wait()
	stopNode()
	nodeWG.Wait()
	close(failed)
	if runErr == nil {
		runErr = <-failed
	}
	return runErr
}

// handOver moves leadership to a follower before a leader stops, so the pool need not wait for an
// election timeout, and removes the node from the configuration if asked. A leader's dataplane
// (dp, nil when disabled) keeps its VIPs until the new leader has announced them, so that
// connections in flight meet an owner all along; the dataplane stops only after that.
func handOver(node *cluster.Node, dp *dataplane, leave bool, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	leader := node.Status().Role == cluster.Leader
	op, transfer := "transfer", func(ctx context.Context) error { return node.TransferLeadership(ctx, "") }
	if leave {
		op, transfer = "leave", node.Leave
	} else if !leader {
		return
	}
	var err error
	if leader {
		err = dp.handOver(ctx, transfer)
	} else {
		err = transfer(ctx)
	}
	switch {
	case err == nil:
	case errors.Is(err, director.ErrHandoverUnfinished):
		log.Warn("stopping before the new leader announced every VIP; releasing them now", "op", "handover", "err", err)
	case leave:
		log.Warn("leave failed", "op", op, "err", err)
	default:
		log.Warn("leadership transfer failed; the pool will elect a new leader", "op", op, "err", err)
	}
}
