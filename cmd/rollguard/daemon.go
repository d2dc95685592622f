package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/cluster"
	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/gates"
	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
	"github.com/rollguard/rollguard/sources/promql"
	"github.com/rollguard/rollguard/sources/remotewrite"
	"github.com/rollguard/rollguard/sources/scrape"
	"github.com/rollguard/rollguard/web"
)

type daemonOptions struct {
	ConfigFile       string
	StoragePath      string
	WebListenAddress string
	// ReplicaID, when set, is this replica's cluster.replica_id (the pod's name).
	ReplicaID string
	Logger    hclog.Logger
}

// load reads the configuration file and applies the command line's overrides.
func (o daemonOptions) load() (*configs.Config, error) {
	cfg, err := configs.Load(o.ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := cfg.SetReplicaID(o.ReplicaID); err != nil {
		return nil, err
	}
	return cfg, nil
}

// daemon is `rollguard run`: the components, wired, and their listeners bound.
type daemon struct {
	o        daemonOptions
	log      hclog.Logger
	reg      *prometheus.Registry
	reloadMu sync.Mutex
	cfg      atomic.Pointer[configs.Config]
	ready    atomic.Bool

	ns       *server.Server // nil with an external NATS
	nc       *nats.Conn
	engine   *detector.Engine
	playbook *actions.Playbook
	js       jetstream.JetStream
	outbox   *actions.Outbox
	poller   *promql.Poller
	scraper  *scrape.Manager
	webLn    net.Listener
	otlpLn   net.Listener // nil when OTLP/HTTP is disabled
	grpcLn   net.Listener // nil when OTLP/gRPC is disabled
	webSrv   *http.Server
	otlpSrv  *http.Server
	grpcSrv  *grpc.Server
	webAuth  *web.Authenticator
	otlpAuth *web.Authenticator
	sidecar  *sidecarState // sidecar mode (sidecar.go); nil otherwise
	cluster  *clusterState // a central replica (cluster.go); nil otherwise
	// checkpoints of a single central rollguard's deployments and tests
	// (cluster.go); nil otherwise (a replica's are in cluster)
	checkpoints *cluster.Checkpoints
}

// newDaemon is openDaemon with a start-up that only success or a lasting
// error ends.
func newDaemon(o daemonOptions) (*daemon, error) { return openDaemon(context.Background(), o) }

// openDaemon loads the configuration, connects to (or starts) NATS, makes
// sure the streams and buckets exist and binds the listeners. Nothing runs
// until Run. A NATS server not reachable yet and creations that time out
// are waited for until ctx ends (startup.go).
func openDaemon(ctx context.Context, o daemonOptions) (_ *daemon, err error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	cfg, err := o.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ConfigFile, err)
	}
	d := &daemon{o: o, log: o.Logger, reg: prometheus.NewRegistry()}
	d.cfg.Store(cfg)
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The web listener is bound first: its probes answer while start-up
	// waits for NATS (startup.go), and the web server serves it next.
	if d.webLn, err = web.Listen(o.WebListenAddress, cfg.Web.ServerConfig); err != nil {
		return nil, fmt.Errorf("web listener: %w", err)
	}
	defer serveStartupProbes(d.webLn, cfg, d.log.Named("web")).stop()

	url := cfg.NATS.URL
	if url == "" {
		if err := os.MkdirAll(o.StoragePath, 0o755); err != nil {
			return nil, fmt.Errorf("storage path: %w", err)
		}
		if d.ns, err = startEmbeddedNATS(cfg.NATS, o.StoragePath, d.log.Named("nats")); err != nil {
			return nil, err
		}
		url = d.ns.ClientURL()
		d.log.Info("embedded nats started", "url", url, "store", o.StoragePath)
	}
	if d.nc, err = connectNATSUntilReady(ctx, url, cfg.NATS, d.log.Named("nats")); err != nil {
		return nil, err
	}
	js, err := jetstream.New(d.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.Mode == configs.ModeSidecar { // sidecar.go: local ingest into aggregates; no detection, no actions
		if err := d.initSidecar(ctx, cfg, js); err != nil {
			return nil, err
		}
		return d, nil
	}
	subjects := actions.Subjects{Prefix: cfg.NATS.SubjectPrefix}
	if _, err := untilReady(ctx, d.log, "stream "+cfg.NATS.Stream, func(ctx context.Context) (jetstream.Stream, error) {
		return actions.EnsureStreamReplicated(ctx, js, cfg.NATS.Stream, subjects, cfg.NATS.Replicas)
	}); err != nil {
		return nil, err
	}
	if _, err := untilReady(ctx, d.log, "stream "+aggStream(cfg), func(ctx context.Context) (jetstream.Stream, error) {
		return agg.EnsureStream(ctx, js, aggStream(cfg), cfg.NATS.SubjectPrefix, cfg.NATS.Replicas)
	}); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(o.StoragePath, 0o755); err != nil {
		return nil, fmt.Errorf("storage path: %w", err)
	}
	signer, err := actions.LoadSigner(cfg.PlaybookDefaults.Signing.SeedFile, o.StoragePath)
	if err != nil {
		return nil, err
	}
	d.log.Info("commands are signed", "key", signer.PublicKey())
	store, err := untilReady(ctx, d.log, "bucket "+cfg.NATS.Stream+"_INCIDENTS", func(ctx context.Context) (*actions.KVStore, error) {
		return actions.NewKVStoreReplicated(ctx, js, cfg.NATS.Stream+"_INCIDENTS", cfg.NATS.Replicas)
	})
	if err != nil {
		return nil, err
	}
	if d.outbox, err = actions.OpenOutbox(filepath.Join(o.StoragePath, "outbox")); err != nil {
		return nil, err
	}
	d.engine = detector.NewEngine(cfg, detector.EngineOptions{
		Handler:      detector.VerdictFunc(func(v detector.GuardVerdict) { d.playbook.HandleVerdict(v) }),
		Incidents:    detector.IncidentsFunc(func(id string) detector.Phase { return d.playbook.Phase(id) }),
		OnDeployment: func(dep detector.Deployment) { d.playbook.HandleDeployment(dep); d.deploymentChanged() },
		Logger:       d.log.Named("detector"),
		Registerer:   d.reg,
	})
	d.playbook = actions.NewPlaybook(actions.PlaybookOptions{
		Publisher:  actions.JetStreamPublisher{JS: js, Signer: signer},
		Subjects:   subjects,
		Store:      store,
		Outbox:     d.outbox,
		Stored:     actions.StreamResults{JS: js, Stream: cfg.NATS.Stream, Subjects: subjects},
		Connected:  d.nc.IsConnected,
		Owns:       d.owns,
		Lease:      d.leaseToken,
		Signer:     signer,
		Detector:   d.engine,
		Config:     cfg,
		Logger:     d.log.Named("playbook"),
		Registerer: d.reg,
	})
	if err := d.initResultTrust(cfg); err != nil { // results_trust.go
		return nil, err
	}
	var in ingest = d.engine
	if cfg.Clustered() { // cluster.go: incidents are adopted with each guard's lease
		if in, err = d.initCluster(ctx, cfg, js); err != nil {
			return nil, err
		}
	} else {
		if err := d.playbook.Restore(ctx); err != nil {
			d.log.Error("incidents not fully restored", "error", err)
		}
		if err := d.initCheckpoints(ctx, cfg, js); err != nil { // cluster.go
			return nil, err
		}
	}
	d.js = js
	d.poller = promql.New(promql.Config{Appender: d.engine, Cohorts: d.engine, Logger: d.log.Named("promql"), Registerer: d.reg})
	if err := d.poller.ApplyConfig(cfg); err != nil {
		return nil, err
	}
	if _, err := d.subscribeDeploys(cfg.NATS.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("subscribe to deployment announcements: %w", err)
	}
	rwHandler, webTLS, err := d.openInputs(cfg, in)
	if err != nil {
		return nil, err
	}
	// gates.Mount: /api/v1/gates/ for Argo Rollouts and Flagger (gates/).
	d.webSrv = web.NewServer(cfg.Web.ServerConfig, d.webAuth.Wrap(gates.Mount(web.Handler(web.Options{
		Deployments: d.engine,
		Announcer:   d.announcer(), // deploys.go: to the owner, in a cluster
		Incidents:   d.playbook,
		Reload:      d.reload,
		Ready:       d.readiness,
		Gatherer:    d.reg,
		Logger:      d.log.Named("web"),
		RemoteWrite: rwHandler,
		Version:     version,
	}), gates.Options{Source: d.engine, Announcer: d.announcer(), Logger: d.log.Named("gates")}), "/-/healthy", "/-/ready"), webTLS, d.log.Named("web"))
	return d, nil
}

// Run runs every component as one actor of a group until ctx ends or one
// of them fails; then it stops the rest, drains NATS and returns.
func (d *daemon) Run(ctx context.Context) error {
	defer d.close()
	var g run.Group
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	{ // Termination: the caller's context (SIGINT/SIGTERM in main).
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	{ // SIGHUP reloads.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		done := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					_ = d.reload()
				case <-done:
					return nil
				}
			}
		}, func(error) { signal.Stop(hup); close(done) })
	}
	for _, s := range []struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}{{"web", d.webSrv, d.webLn}, {"otlp_http", d.otlpSrv, d.otlpLn}} {
		if s.ln == nil {
			continue
		}
		g.Add(func() error {
			d.log.Info("listening", "component", s.name, "address", s.ln.Addr().String())
			serve := s.srv.Serve
			if s.srv.TLSConfig != nil {
				serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
			}
			if err := serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s server: %w", s.name, err)
			}
			return nil
		}, func(error) {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			_ = s.srv.Shutdown(sctx) // in-flight requests finish
		})
	}
	if d.grpcLn != nil {
		g.Add(func() error {
			d.log.Info("listening", "component", "otlp_grpc", "address", d.grpcLn.Addr().String())
			return d.grpcSrv.Serve(d.grpcLn)
		}, func(error) { d.grpcSrv.GracefulStop() })
	}
	if d.sidecar == nil {
		ectx, ecancel := context.WithCancel(context.Background())
		g.Add(func() error { return d.engine.Run(ectx) }, func(error) { ecancel() })
	}
	if d.sidecar == nil {
		pctx, pcancel := context.WithCancel(context.Background())
		g.Add(func() error { return d.playbook.Run(pctx) }, func(error) { pcancel() })
	}
	if d.sidecar == nil {
		rctx, rcancel := context.WithCancel(context.Background())
		cfg := d.cfg.Load()
		g.Add(func() error {
			return actions.ConsumeResults(rctx, d.js, cfg.NATS.Stream, d.consumerName("rollguard-playbook"), actions.Subjects{Prefix: cfg.NATS.SubjectPrefix},
				d.playbook.CheckResult, d.playbook.HandleResult, func(err error) { d.log.Named("playbook").Warn("results", "error", err) })
		}, func(error) { rcancel() })
	}
	if d.sidecar == nil {
		qctx, qcancel := context.WithCancel(context.Background())
		g.Add(func() error { return d.poller.Run(qctx) }, func(error) { qcancel() })
	}
	d.addAggregateActors(&g) // sidecar.go: the shipper, or the consumer of sidecars' aggregates
	d.addClusterActors(&g)   // cluster.go: leases, forwarding, checkpoints
	{
		sctx, scancel := context.WithCancel(context.Background())
		g.Add(func() error { return d.scraper.Run(sctx) }, func(error) { scancel() })
	}
	d.ready.Store(true)
	d.log.Info("rollguard started", "version", version, "config", d.o.ConfigFile, "guards", len(d.cfg.Load().Guards))
	err := g.Run()
	d.ready.Store(false)
	d.log.Info("rollguard stopped")
	return err
}

// reload applies the configuration file again, whole or not at all: every
// component first builds what it needs from the new configuration and
// says whether it can, changing nothing; only when all can are they all
// switched. An invalid file, or one a component cannot apply (a missing
// credentials or CA file), leaves the running configuration untouched.
func (d *daemon) reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := d.o.load()
	if err == nil {
		err = d.applyConfig(cfg)
	}
	if err != nil {
		d.log.Error("reload failed, previous configuration kept", "file", d.o.ConfigFile, "error", err)
		return err
	}
	d.log.Info("configuration reloaded", "file", d.o.ConfigFile, "guards", len(cfg.Guards))
	return nil
}

// applyConfig prepares every component for cfg, then commits them all, or
// returns the first component's error having changed nothing.
func (d *daemon) applyConfig(cfg *configs.Config) error {
	var commits []func()
	prepare := func(commit func(), err error) error {
		if err == nil {
			commits = append(commits, commit)
		}
		return err
	}
	if err := prepare(d.scraper.Prepare(cfg.ScrapeConfigs)); err != nil {
		return fmt.Errorf("scrape: %w", err)
	}
	if err := prepare(d.otlpAuth.Prepare(cfg.OTLP.ServerConfig)); err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	if err := prepare(d.webAuth.Prepare(cfg.Web.ServerConfig)); err != nil {
		return fmt.Errorf("web: %w", err)
	}
	if err := prepare(d.prepareResultTrust(cfg)); err != nil { // results_trust.go
		return err
	}
	if d.poller != nil {
		if err := prepare(d.poller.Prepare(cfg)); err != nil {
			return err
		}
	}

	old := d.cfg.Load()
	if !reflect.DeepEqual(old.NATS, cfg.NATS) || old.OTLP.HTTPListenAddress != cfg.OTLP.HTTPListenAddress ||
		old.OTLP.GRPCListenAddress != cfg.OTLP.GRPCListenAddress || !reflect.DeepEqual(old.OTLP.TLS, cfg.OTLP.TLS) ||
		!reflect.DeepEqual(old.Web.TLS, cfg.Web.TLS) || !reflect.DeepEqual(old.Limits, cfg.Limits) {
		d.log.Warn("nats, listener, tls and limits settings change only on restart; guards and credentials are applied now")
	}
	d.checkListeners(old, cfg) // http_listeners.go
	if old.Mode != cfg.Mode {
		d.log.Warn("mode changes only on restart", "running", old.Mode)
	}
	for _, commit := range commits {
		commit()
	}
	if d.sidecar != nil {
		d.sidecar.aggregator.ApplyConfig(cfg)
	} else {
		d.engine.ApplyConfig(cfg)
		d.playbook.ApplyConfig(cfg)
		if d.cluster != nil {
			d.cluster.aggregator.ApplyConfig(cfg)
			d.cluster.leases.SetGuards(guardNames(cfg))
		}
	}
	d.cfg.Store(cfg)
	return nil
}

// close releases NATS and listeners; it is safe on a partly built daemon.
func (d *daemon) close() {
	for _, ln := range []net.Listener{d.webLn, d.otlpLn, d.grpcLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if d.nc != nil {
		_ = d.nc.Drain()
		for i := 0; i < 100 && !d.nc.IsClosed(); i++ {
			time.Sleep(50 * time.Millisecond) // Drain is asynchronous; wait for it, bounded
		}
		d.nc.Close()
	}
	if d.outbox != nil {
		_ = d.outbox.Close()
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
	}
}

// grpcRecover turns a panic in a call into an Internal error, as net/http
// does for handlers, so that one bad request cannot stop the daemon.
func grpcRecover(log hclog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic serving a gRPC call", "method", info.FullMethod, "panic", p)
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return next(ctx, req)
	}
}

// Config returns the running configuration.
func (d *daemon) Config() *configs.Config { return d.cfg.Load() }

// readiness is /-/ready's answer: not ready while starting or stopping, or
// while the outbox cannot store commands (a full disk: rollguard would
// detect but could not act).
func (d *daemon) readiness() error {
	if !d.ready.Load() {
		return errors.New("starting or stopping")
	}
	if err := d.playbook.Degraded(); err != nil {
		return fmt.Errorf("commands cannot be queued: %w", err)
	}
	return nil
}

// evaluationInterval is the running configuration's tick: the shipper's and
// the checkpoints' interval, read again after each tick.
func (d *daemon) evaluationInterval() time.Duration {
	return time.Duration(d.Config().Global.EvaluationInterval)
}

// openInputs builds the receivers (OTLP, scrape, remote write) feeding in,
// their authentication and TLS, and binds the OTLP listeners; the caller
// binds the web listener with the remote-write handler and TLS it returns.
// Standalone, central and sidecar rollguards share it.
func (d *daemon) openInputs(cfg *configs.Config, in ingest) (_ http.Handler, webTLS *tls.Config, err error) {
	decodes := sources.NewDecodeLimiter(cfg.Limits.MaxConcurrentDecodes, d.reg) // limits_inputs.go
	receiver := otlp.NewReceiver(otlpWithLimits(otlp.Config{
		Appender:            in,
		Filter:              in,
		MaxRequestBytes:     cfg.OTLP.MaxRequestBytes,
		MaxSeries:           cfg.Limits.MaxSeries,
		MaxLabels:           cfg.Limits.MaxLabelsPerSeries,
		MaxLabelValueLength: cfg.Limits.MaxLabelValueLength,
		Logger:              d.log.Named("otlp"),
		Registerer:          d.reg,
	}, cfg, decodes))

	d.scraper = scrape.NewManager(scrapeWithLimits(scrape.Config{Appender: in, Filter: in, MaxSeries: cfg.Limits.MaxSeries,
		Logger: d.log.Named("scrape"), Registerer: d.reg}, cfg)) // limits_points.go
	if err := d.scraper.ApplyConfig(cfg.ScrapeConfigs); err != nil {
		return nil, nil, fmt.Errorf("scrape: %w", err)
	}
	rw := remotewrite.NewReceiver(remoteWriteWithLimits(remotewrite.Config{ // limits_points.go
		Appender:           in,
		Filter:             in,
		MaxLabelsPerSeries: cfg.Limits.MaxLabelsPerSeries,
		MaxLabelNameBytes:  cfg.Limits.MaxLabelValueLength,
		MaxLabelValueBytes: cfg.Limits.MaxLabelValueLength,
		MaxSeries:          cfg.Limits.MaxSeries,
		Logger:             d.log.Named("remotewrite"),
		Registerer:         d.reg,
	}, cfg))
	if d.otlpAuth, err = web.NewAuthenticator(cfg.OTLP.ServerConfig); err != nil {
		return nil, nil, fmt.Errorf("otlp: %w", err)
	}
	if d.webAuth, err = web.NewAuthenticator(cfg.Web.ServerConfig); err != nil {
		return nil, nil, fmt.Errorf("web: %w", err)
	}
	otlpTLS, err := web.ServerTLS(cfg.OTLP.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp: %w", err)
	}
	webTLS, err = web.ServerTLS(cfg.Web.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("web: %w", err)
	}
	d.watchListeners(cfg) // http_listeners.go
	if a := cfg.OTLP.HTTPListenAddress; a != "" {
		if d.otlpLn, err = web.Listen(a, cfg.OTLP.ServerConfig); err != nil {
			return nil, nil, fmt.Errorf("otlp http listener: %w", err)
		}
		d.otlpSrv = web.NewServer(cfg.OTLP.ServerConfig, d.otlpAuth.Wrap(receiver.Handler()), otlpTLS, d.log.Named("otlp"))
	}
	if a := cfg.OTLP.GRPCListenAddress; a != "" {
		if d.grpcLn, err = web.Listen(a, cfg.OTLP.ServerConfig); err != nil {
			return nil, nil, fmt.Errorf("otlp grpc listener: %w", err)
		}
		d.grpcSrv = otlpGRPCServer(receiver, d.otlpAuth, otlpTLS, d.log.Named("otlp"))
	}
	return limitRemoteWrite(decodes, rw.Handler()), webTLS, nil
}
