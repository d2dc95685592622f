// Package promql feeds signals defined by PromQL: every tick it evaluates
// each query-defined signal's queries once per cohort of the service's active
// deployment through the Prometheus HTTP API, and appends the counts as
// samples, so they reach the same detector as pushed data. A failing or
// empty query appends nothing: the cohort goes silent, which the detector
// reports as no_data, never as a pass.
package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/ticker"
	"github.com/rollguard/rollguard/sources"
)

// Cohorts tells the poller which versions to query.
type Cohorts interface {
	// Cohorts returns the candidate and baseline versions of the service's
	// active deployment; ok is false when none is under way.
	Cohorts(service string) (candidate, baseline string, ok bool)
}

// Config is what a Poller is built from.
type Config struct {
	Appender   sources.Appender
	Cohorts    Cohorts
	Logger     hclog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Poller evaluates query-defined signals every tick.
type Poller struct {
	c       Config
	mu      sync.Mutex
	cfg     *configs.Config
	api     v1.API
	queries *prometheus.CounterVec
	latency prometheus.Histogram
}

// New builds a poller; ApplyConfig gives it its queries.
func New(c Config) *Poller {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	p := &Poller{c: c,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_promql_queries_total",
			Help: "PromQL queries evaluated for query-defined signals, by result (ok, error, empty).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rollguard_promql_query_duration_seconds",
			Help:    "Latency of PromQL queries.",
			Buckets: prometheus.DefBuckets,
		}),
	}
	if c.Registerer != nil {
		c.Registerer.MustRegister(p.queries, p.latency)
	}
	return p
}

// ApplyConfig swaps in the configuration and the API client built from it.
func (p *Poller) ApplyConfig(cfg *configs.Config) error {
	commit, err := p.Prepare(cfg)
	if err != nil {
		return err
	}
	commit()
	return nil
}

// Prepare builds the API client of cfg without changing the poller, so that
// a reload can check every component before it changes any; commit swaps
// the configuration and the client in.
func (p *Poller) Prepare(cfg *configs.Config) (commit func(), err error) {
	var a v1.API
	if cfg.PromQL.URL != "" {
		rt, err := commoncfg.NewRoundTripperFromConfig(cfg.PromQL.HTTPClientConfig, "rollguard")
		if err != nil {
			return nil, fmt.Errorf("promql client: %w", err)
		}
		client, err := api.NewClient(api.Config{Address: cfg.PromQL.URL, RoundTripper: rt})
		if err != nil {
			return nil, fmt.Errorf("promql client: %w", err)
		}
		a = v1.NewAPI(client)
	}
	return func() {
		p.mu.Lock()
		p.cfg, p.api = cfg, a
		p.mu.Unlock()
	}, nil
}

// Config returns the configuration the poller runs with.
func (p *Poller) Config() *configs.Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// Run polls every evaluation interval until ctx ends; a configuration
// that changes the interval takes effect from the next tick.
func (p *Poller) Run(ctx context.Context) error {
	ticker.Run(ctx, func() time.Duration {
		return time.Duration(p.Config().Global.EvaluationInterval)
	}, p.Poll)
	return nil
}

// Poll runs one round of queries and appends what they returned.
func (p *Poller) Poll(ctx context.Context) {
	p.mu.Lock()
	cfg, a := p.cfg, p.api
	p.mu.Unlock()
	if a == nil {
		return
	}
	now := p.c.Now()
	window := model.Duration(cfg.Global.EvaluationInterval).String()
	var out []sources.Sample
	for _, g := range cfg.Guards {
		cand, base, ok := p.c.Cohorts.Cohorts(g.Service)
		if !ok {
			continue
		}
		for _, s := range g.Signals {
			if s.Query == nil {
				continue
			}
			for _, version := range []string{base, cand} {
				params := configs.QueryParams{Service: g.Service, Version: version, Window: window}
				total, err1 := p.eval(ctx, a, s.Query.Total, params, now, cfg.PromQL.Timeout)
				bad, err2 := p.eval(ctx, a, s.Query.Bad, params, now, cfg.PromQL.Timeout)
				if err := errors.Join(err1, err2); err != nil {
					p.c.Logger.Warn("query-defined signal has no data this tick", "guard", g.Name, "signal", s.Name, "version", version, "error", err)
					continue
				}
				bad = math.Min(bad, total)
				labels := func(status int) sources.Labels {
					return sources.Labels{
						{Name: g.ServiceLabel, Value: g.Service},
						{Name: g.VersionLabel, Value: version},
						{Name: s.StatusLabel, Value: strconv.Itoa(status)},
					}.Sort()
				}
				metric := configs.InputMetric(g, s)
				out = append(out,
					sources.Sample{Metric: metric, Labels: labels(s.BadStatusMin), Kind: sources.KindCounter, TimeUnixNano: now.UnixNano(), Value: bad},
					sources.Sample{Metric: metric, Labels: labels(0), Kind: sources.KindCounter, TimeUnixNano: now.UnixNano(), Value: total - bad})
			}
		}
	}
	if len(out) > 0 {
		if err := p.c.Appender.Append(out); err != nil {
			p.c.Logger.Error("append promql samples", "error", err)
		}
	}
}

// errEmpty is a query that returned nothing: no data, never zero.
var errEmpty = errors.New("promql: empty result")

func (p *Poller) eval(ctx context.Context, a v1.API, tmpl string, params configs.QueryParams, at time.Time, timeout configs.Duration) (float64, error) {
	q, err := configs.Render(tmpl, params)
	if err != nil {
		p.queries.WithLabelValues("error").Inc()
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
	defer cancel()
	start := time.Now()
	v, _, err := a.Query(qctx, q, at)
	p.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		p.queries.WithLabelValues("error").Inc()
		return 0, fmt.Errorf("query %q: %w", q, err)
	}
	f, err := single(v)
	switch {
	case errors.Is(err, errEmpty):
		p.queries.WithLabelValues("empty").Inc()
		return 0, fmt.Errorf("query %q: %w", q, err)
	case err != nil:
		p.queries.WithLabelValues("error").Inc()
		return 0, fmt.Errorf("query %q: %w", q, err)
	}
	p.queries.WithLabelValues("ok").Inc()
	return f, nil
}

// single reads a scalar or a one-element vector.
func single(v model.Value) (float64, error) {
	var f float64
	switch r := v.(type) {
	case *model.Scalar:
		f = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, errEmpty
		case 1:
			f = float64(r[0].Value)
		default:
			return 0, fmt.Errorf("returned %d series, want one: aggregate with sum()", len(r))
		}
	default:
		return 0, fmt.Errorf("returned a %s, want a scalar or a one-element vector", v.Type())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, errEmpty
	}
	return f, nil
}
