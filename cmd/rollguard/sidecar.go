package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/ticker"
	"github.com/rollguard/rollguard/sources/agg"
)

// aggStream is the JetStream stream of sidecars' aggregates.
func aggStream(cfg *configs.Config) string { return cfg.NATS.Stream + "_AGG" }

// aggDurable is the central's durable consumer of aggregates.
const aggDurable = "rollguard-aggregates"

// Bounds of a sidecar's backlog of unpublished messages (NATS away): the
// oldest go first past maxBacklog, and a message older than agg.MaxAge is
// dropped, since past the stream's deduplication window a retry of a
// message that did land could count twice.
const maxBacklog = 1000

// initSidecar builds the daemon in sidecar mode on its NATS connection:
// the receivers (OTLP, scrape, remote write) feed an Aggregator instead of
// the engine, and a shipper publishes its flushed ticks. No engine, no
// playbook, no PromQL polling, no deployment announcements.
func (d *daemon) initSidecar(cfg *configs.Config, js jetstream.JetStream) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := agg.EnsureStream(ctx, js, aggStream(cfg), cfg.NATS.SubjectPrefix, cfg.NATS.Replicas); err != nil {
		return err
	}
	d.js = js
	if os.Getenv("GOGC") == "" {
		// A sidecar's heap is mostly each scrape's garbage: collecting at
		// half the live heap instead of all of it trades a fraction of a
		// percent of CPU for a few MiB on every host (docs/deploy.md).
		debug.SetGCPercent(50)
	}
	aggregator := detector.NewAggregator(cfg, detector.AggregatorOptions{Logger: d.log.Named("aggregator"), Registerer: d.reg})
	d.sidecar = newShipper(aggregator, func(ctx context.Context, guard string, m agg.Message) error {
		return agg.Publish(ctx, js, d.Config().NATS.SubjectPrefix, guard, m)
	}, d.nc.IsConnected, d.Config, d.log.Named("sidecar"), d.reg)
	// Start-up is over once the first tick has shipped: the executable's
	// pages only start-up needed are handed back, which keeps a sidecar's
	// resident set small (docs/deploy.md).
	d.sidecar.afterFirstTick = func() {
		n, err := releaseStartupPages()
		d.log.Named("sidecar").Debug("start-up pages of the executable released", "bytes", n, "error", err)
	}

	rwHandler, webTLS, err := d.openInputs(cfg, aggregator)
	if err != nil {
		return err
	}
	if d.webLn, err = net.Listen("tcp", d.o.WebListenAddress); err != nil {
		return fmt.Errorf("web listener: %w", err)
	}
	d.webSrv = &http.Server{Handler: d.webAuth.Wrap(d.sidecarHandler(rwHandler), "/-/healthy", "/-/ready"),
		ReadHeaderTimeout: 10 * time.Second, TLSConfig: webTLS}
	d.log.Info("sidecar mode: aggregates go to NATS every tick", "id", cfg.Sidecar.ID,
		"subject", agg.Subjects(cfg.NATS.SubjectPrefix), "stream", aggStream(cfg))
	return nil
}

// sidecarHandler is the sidecar's web surface: probes, reload, its own
// metrics and remote write. There is no UI and no API: a sidecar knows no
// deployments or incidents.
func (d *daemon) sidecarHandler(remoteWrite http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "rollguard sidecar is healthy.\n")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "rollguard sidecar is not ready.", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "rollguard sidecar is ready.\n")
	})
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.reload(); err != nil {
			http.Error(w, fmt.Sprintf("reload failed, previous configuration kept: %v", err), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "configuration reloaded\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	mux.Handle("POST /api/v1/write", remoteWrite)
	// Profiles, as the standalone web listener serves them, behind its auth.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// addAggregateActors adds, in sidecar mode, the shipper that flushes and
// publishes every tick; otherwise the consumer that merges sidecars'
// aggregates into the engine, so that a central is a standalone rollguard
// that also accepts aggregates.
func (d *daemon) addAggregateActors(g *run.Group) {
	ctx, cancel := context.WithCancel(context.Background())
	if d.sidecar != nil {
		g.Add(func() error { return d.sidecar.Run(ctx) }, func(error) { cancel() })
		return
	}
	cfg, log := d.cfg.Load(), d.log.Named("aggregates")
	g.Add(func() error {
		return agg.Consume(ctx, d.js, aggStream(cfg), d.consumerName(aggDurable), cfg.NATS.SubjectPrefix, d.appendOwned,
			func(err error) { log.Warn("aggregates", "error", err) })
	}, func(error) { cancel() })
}

// shipper flushes the aggregator every tick and publishes one message per
// guard, in order, retrying what NATS did not take on the next tick.
type shipper struct {
	agg       *detector.Aggregator
	publish   func(ctx context.Context, guard string, m agg.Message) error
	connected func() bool
	config    func() *configs.Config
	log       hclog.Logger
	metrics   *shipperMetrics
	backlog   []shipment // only Run's goroutine touches it
	// afterFirstTick, when set, runs once the first tick has shipped.
	afterFirstTick func()
	// id names the publisher in message ids; nil: the sidecar's configured id.
	id  func() string
	now func() time.Time
}

type shipment struct {
	guard string
	msg   agg.Message
}

type shipperMetrics struct {
	published, bytes, failures prometheus.Counter
	dropped                    *prometheus.CounterVec
	backlog                    prometheus.Gauge
}

func newShipper(a *detector.Aggregator, publish func(context.Context, string, agg.Message) error, connected func() bool,
	config func() *configs.Config, log hclog.Logger, reg prometheus.Registerer) *shipper {
	m := &shipperMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_sidecar_messages_published_total",
			Help: "Aggregate messages (one per guard per tick) the stream acknowledged.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_sidecar_published_bytes_total",
			Help: "Encoded bytes of the aggregate messages published.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_sidecar_publish_failures_total",
			Help: "Publish attempts that failed; the message stays in the backlog.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_sidecar_messages_dropped_total",
			Help: "Aggregate messages given up, by reason: backlog_full, expired (older than the stream's deduplication window) or encode.",
		}, []string{"reason"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rollguard_sidecar_backlog_messages",
			Help: "Aggregate messages waiting for NATS.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.bytes, m.failures, m.dropped, m.backlog)
	}
	return &shipper{agg: a, publish: publish, connected: connected, config: config, log: log, metrics: m, now: time.Now}
}

// Run ticks every evaluation interval until ctx ends, then ships the last,
// partial tick with a short grace. A reloaded interval takes effect from
// the next tick.
func (s *shipper) Run(ctx context.Context) error {
	ticker.Run(ctx, s.interval, func(ctx context.Context) {
		s.tick()
		// A publish may take half a tick at most, so that ticks keep time.
		sctx, cancel := context.WithTimeout(ctx, s.interval()/2)
		s.ship(sctx)
		cancel()
		if s.afterFirstTick != nil {
			s.afterFirstTick()
			s.afterFirstTick = nil
		}
	})
	s.tick()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.ship(sctx)
	cancel()
	return nil
}

// interval is the running configuration's evaluation interval.
func (s *shipper) interval() time.Duration {
	return time.Duration(s.config().Global.EvaluationInterval)
}

// tick flushes the aggregator and queues one message per guard.
func (s *shipper) tick() {
	now := s.now()
	aggs := s.agg.Flush()
	id := s.config().Sidecar.ID
	if s.id != nil {
		id = s.id()
	}
	for i := 0; i < len(aggs); {
		j := i
		for j < len(aggs) && aggs[j].Guard == aggs[i].Guard {
			j++
		}
		guard := aggs[i].Guard
		b, err := agg.Encode(guard, now, aggs[i:j])
		i = j
		if err != nil {
			s.metrics.dropped.WithLabelValues("encode").Inc()
			s.log.Error("aggregates not encoded, tick of the guard dropped", "guard", guard, "error", err)
			continue
		}
		s.backlog = append(s.backlog, shipment{guard: guard, msg: agg.Message{Sidecar: id, At: now, Data: b}})
	}
	if over := len(s.backlog) - maxBacklog; over > 0 {
		s.metrics.dropped.WithLabelValues("backlog_full").Add(float64(over))
		s.log.Warn("backlog full: oldest aggregates dropped", "dropped", over)
		s.backlog = append(s.backlog[:0], s.backlog[over:]...)
	}
	k := 0
	for k < len(s.backlog) && now.Sub(s.backlog[k].msg.At) > agg.MaxAge {
		k++
	}
	if k > 0 {
		s.metrics.dropped.WithLabelValues("expired").Add(float64(k))
		s.log.Warn("aggregates older than the deduplication window dropped", "dropped", k)
		s.backlog = append(s.backlog[:0], s.backlog[k:]...)
	}
	s.metrics.backlog.Set(float64(len(s.backlog)))
}

// ship publishes the backlog in order, stopping at the first failure: the
// rest waits for the next tick, with the same message ids.
func (s *shipper) ship(ctx context.Context) {
	sent := 0
	for sent < len(s.backlog) {
		if !s.connected() {
			break // nothing to gain from filling the reconnect buffer
		}
		sh := s.backlog[sent]
		if err := s.publish(ctx, sh.guard, sh.msg); err != nil {
			s.metrics.failures.Inc()
			s.log.Warn("aggregates not published, retrying next tick", "guard", sh.guard, "backlog", len(s.backlog)-sent, "error", err)
			break
		}
		s.metrics.published.Inc()
		s.metrics.bytes.Add(float64(len(sh.msg.Data)))
		sent++
	}
	s.backlog = append(s.backlog[:0], s.backlog[sent:]...)
	s.metrics.backlog.Set(float64(len(s.backlog)))
}
