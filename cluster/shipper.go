package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/ticker"
)

// Bounds of a shipper's backlog of unpublished messages (NATS away): the
// oldest go first past maxBacklog, and a message older than agg.MaxAge is
// dropped, since past the stream's deduplication window a retry of a
// message that did land could count twice.
const maxBacklog = 1000

// Shipper flushes an Aggregator every tick and publishes one message per
// guard, in order, retrying what NATS did not take on the next tick.
type Shipper struct {
	agg       *detector.Aggregator
	publish   func(ctx context.Context, guard string, m agg.Message) error
	connected func() bool
	interval  func() time.Duration
	id        func() string
	log       hclog.Logger
	metrics   *shipperMetrics
	backlog   []shipment // only Run's goroutine touches it
	// afterFirstTick, when set, runs once the first tick has shipped.
	afterFirstTick func()
	now            func() time.Time
}

// ShipperOptions configure a Shipper. Publish and Interval are required.
type ShipperOptions struct {
	// Publish sends one guard's message of one tick; on an error the
	// message, and those after it, wait for the next tick.
	Publish func(ctx context.Context, guard string, m agg.Message) error
	// Connected reports whether NATS is reachable; nothing is attempted
	// while it is not. Nil: always.
	Connected func() bool
	// Interval is the tick, read again after each one so that a reloaded
	// interval takes effect from the next tick.
	Interval func() time.Duration
	// ID names the publisher (a sidecar or a replica) in message ids.
	ID func() string
	// AfterFirstTick, when set, runs once the first tick has shipped.
	AfterFirstTick func()
	Logger         hclog.Logger
	Registerer     prometheus.Registerer
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

// NewShipper ships what a is given; its metrics are registered with
// o.Registerer when that is set.
func NewShipper(a *detector.Aggregator, o ShipperOptions) *Shipper {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Connected == nil {
		o.Connected = func() bool { return true }
	}
	if o.ID == nil {
		o.ID = func() string { return "" }
	}
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
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.published, m.bytes, m.failures, m.dropped, m.backlog)
	}
	return &Shipper{agg: a, publish: o.Publish, connected: o.Connected, interval: o.Interval, id: o.ID,
		log: o.Logger, metrics: m, afterFirstTick: o.AfterFirstTick, now: time.Now}
}

// Run ticks every interval until ctx ends, then ships the last, partial
// tick with a short grace. A reloaded interval takes effect from the next
// tick.
func (s *Shipper) Run(ctx context.Context) error {
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

// tick flushes the aggregator and queues one message per guard.
func (s *Shipper) tick() {
	now := s.now()
	aggs := s.agg.Flush()
	id := s.id()
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
func (s *Shipper) ship(ctx context.Context) {
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
