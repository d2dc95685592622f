package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/cluster"
	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/web"
)

// aggStream is the JetStream stream of sidecars' aggregates.
func aggStream(cfg *configs.Config) string { return cfg.NATS.Stream + "_AGG" }

// aggDurable is the central's durable consumer of aggregates.
const aggDurable = "rollguard-aggregates"

// sidecarState is what a sidecar runs instead of an engine: the aggregator
// the receivers feed and the shipper that publishes its ticks.
type sidecarState struct {
	aggregator *detector.Aggregator
	shipper    *cluster.Shipper
}

// initSidecar builds the daemon in sidecar mode on its NATS connection:
// the receivers (OTLP, scrape, remote write) feed an Aggregator instead of
// the engine, and a shipper publishes its flushed ticks. No engine, no
// playbook, no PromQL polling, no deployment announcements.
func (d *daemon) initSidecar(ctx context.Context, cfg *configs.Config, js jetstream.JetStream) (err error) {
	if _, err := untilReady(ctx, d.log, "stream "+aggStream(cfg), func(ctx context.Context) (jetstream.Stream, error) {
		return agg.EnsureStream(ctx, js, aggStream(cfg), cfg.NATS.SubjectPrefix, cfg.NATS.Replicas)
	}); err != nil {
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
	log := d.log.Named("sidecar")
	shipper := cluster.NewShipper(aggregator, cluster.ShipperOptions{
		Publish: func(ctx context.Context, guard string, m agg.Message) error {
			return agg.Publish(ctx, js, d.Config().NATS.SubjectPrefix, guard, m)
		},
		Connected: d.nc.IsConnected,
		Interval:  d.evaluationInterval,
		ID:        func() string { return d.Config().Sidecar.ID },
		// Start-up is over once the first tick has shipped: the executable's
		// pages only start-up needed are handed back, which keeps a sidecar's
		// resident set small (docs/deploy.md).
		AfterFirstTick: func() {
			n, err := releaseStartupPages()
			log.Debug("start-up pages of the executable released", "bytes", n, "error", err)
		},
		Logger:     log,
		Registerer: d.reg,
	})
	d.sidecar = &sidecarState{aggregator: aggregator, shipper: shipper}

	rwHandler, webTLS, err := d.openInputs(cfg, aggregator)
	if err != nil {
		return err
	}
	d.webSrv = web.NewServer(cfg.Web.ServerConfig, d.webAuth.Wrap(web.CrossOrigin(d.sidecarHandler(rwHandler)), "/-/healthy", "/-/ready"), webTLS, d.log.Named("web"))
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
		g.Add(func() error { return d.sidecar.shipper.Run(ctx) }, func(error) { cancel() })
		return
	}
	cfg, log := d.cfg.Load(), d.log.Named("aggregates")
	g.Add(func() error {
		return agg.Consume(ctx, d.js, aggStream(cfg), d.consumerName(aggDurable), cfg.NATS.SubjectPrefix, d.appendOwned,
			func(err error) { log.Warn("aggregates", "error", err) })
	}, func(error) { cancel() })
}
