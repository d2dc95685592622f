// Package scrape pulls metrics from Prometheus-style /metrics endpoints (the
// sidecar's input): one loop per target, discovered from static or file
// target groups, negotiating protobuf (with native histograms), OpenMetrics
// 1.0 or text 0.0.4. Each scrape's points get the target's labels, are
// normalised by a sources.PromConverter and go to a sources.Appender. It
// knows nothing of guards or detectors: what to keep is the Filter's call.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
)

// ErrStopped is returned by ApplyConfig once the manager has stopped.
var ErrStopped = errors.New("scrape: manager stopped")

// Config is what a Manager is built from.
type Config struct {
	// Appender receives every scrape's samples; it must not be nil.
	Appender sources.Appender
	// Filter drops unwanted metrics before any per-series state is kept;
	// nil keeps every metric.
	Filter sources.Filter
	// MaxSeries bounds the cumulative-to-increment state of all targets together.
	MaxSeries int
	// MaxSeriesPerVersion bounds the state one service version may hold:
	// series with the same values of VersionLabels (the guards' service
	// and version labels) share a budget. No VersionLabels: no such bound.
	MaxSeriesPerVersion int
	VersionLabels       []string
	// MaxTimestampAhead: a point stamped further after the scrape is
	// dropped (too_far_ahead) and changes no state. Zero: the default.
	MaxTimestampAhead time.Duration
	// MaxBucketsPerHistogram: a histogram with more buckets is dropped
	// (too_many_buckets). Zero: the default.
	MaxBucketsPerHistogram int
	Logger                 hclog.Logger
	Registerer             prometheus.Registerer
}

// Manager owns one pool of loops per scrape job. ApplyConfig adds, replaces
// and removes jobs; the loops scrape only once Run has started, so a manager
// can be configured before the daemon's actors run.
type Manager struct {
	cfg     Config
	log     hclog.Logger
	metrics *metrics
	// conv is shared by every loop: a loop restarted by a reload or a target
	// that comes back keeps its counter bases (no tick of increments is lost
	// or counted twice), and MaxSeries bounds the sidecar's memory as a whole.
	// Series keys include the target labels, so targets never mix. The price
	// is that one target with many wanted series can use up the budget of the
	// others; the Filter keeps unwanted series out of it.
	conv *sources.PromConverter

	ctx       context.Context // the manager's lifetime
	cancel    context.CancelFunc
	start     chan struct{} // closed by Run
	startOnce sync.Once
	wg        sync.WaitGroup // every goroutine the manager started

	applyMu sync.Mutex // serialises ApplyConfig and commits
	mu      sync.Mutex
	pools   map[string]*pool
	gen     uint64 // counts the commits of pools
	stopped bool
}

// NewManager builds a manager with no jobs.
func NewManager(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Filter == nil {
		cfg.Filter = sources.FilterFunc(func(string) bool { return true })
	}
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = 100_000
	}
	if cfg.MaxSeriesPerVersion <= 0 {
		cfg.MaxSeriesPerVersion = configs.DefaultLimits.MaxSeriesPerVersion
	}
	if cfg.MaxTimestampAhead <= 0 {
		cfg.MaxTimestampAhead = time.Duration(configs.DefaultLimits.MaxTimestampAhead)
	}
	if cfg.MaxBucketsPerHistogram <= 0 {
		cfg.MaxBucketsPerHistogram = configs.DefaultLimits.MaxBucketsPerHistogram
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: newMetrics(cfg.Registerer),
		conv: sources.NewPromConverter(cfg.Filter, sources.Limits{MaxSeries: cfg.MaxSeries,
			MaxSeriesPerVersion: cfg.MaxSeriesPerVersion, CohortLabels: cfg.VersionLabels,
			MaxTimestampAhead: cfg.MaxTimestampAhead, MaxBucketsPerHistogram: cfg.MaxBucketsPerHistogram}),
		ctx:    ctx,
		cancel: cancel,
		start:  make(chan struct{}),
		pools:  map[string]*pool{},
	}
}

// ApplyConfig makes the running jobs those of cfgs: new jobs start, removed
// ones stop (their loops have returned when ApplyConfig does), changed ones
// are replaced and unchanged ones keep running untouched. On error nothing
// changes.
func (m *Manager) ApplyConfig(cfgs []configs.ScrapeConfig) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	pl, err := m.plan(cfgs)
	if err != nil {
		return err
	}
	return pl.commit()
}

// Prepare builds the jobs of cfgs that are new or changed, without
// starting them or touching the running ones, so that a reload can check
// every component before it changes any; on error nothing changed. commit
// then does what ApplyConfig does (after Stop, nothing). Should another
// configuration have been applied in between, commit applies cfgs again
// from scratch and logs what fails.
func (m *Manager) Prepare(cfgs []configs.ScrapeConfig) (commit func(), err error) {
	pl, err := m.plan(cfgs)
	if err != nil {
		return nil, err
	}
	return func() {
		m.applyMu.Lock()
		defer m.applyMu.Unlock()
		err := pl.commit()
		if errors.Is(err, errStale) {
			if pl, err = m.plan(cfgs); err == nil {
				err = pl.commit()
			}
		}
		if err != nil && !errors.Is(err, ErrStopped) {
			m.log.Error("scrape configuration not applied", "error", err)
		}
	}, nil
}

// errStale is a plan made against jobs that have changed since.
var errStale = errors.New("scrape: configuration changed since it was prepared")

// plan is the jobs of a configuration, built and not yet running.
type plan struct {
	m     *Manager
	gen   uint64           // the manager's generation it was made against
	old   map[string]*pool // the jobs running then
	next  map[string]*pool // the jobs to run: old ones kept, fresh ones
	fresh []*pool
}

// plan builds the pools of new and changed jobs; it changes nothing.
func (m *Manager) plan(cfgs []configs.ScrapeConfig) (*plan, error) {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil, ErrStopped
	}
	pl := &plan{m: m, gen: m.gen, old: m.pools, next: make(map[string]*pool, len(cfgs))}
	m.mu.Unlock()
	for _, c := range cfgs {
		if _, dup := pl.next[c.JobName]; dup {
			pl.discard()
			return nil, fmt.Errorf("scrape: job %q is configured twice", c.JobName)
		}
		if p := pl.old[c.JobName]; p != nil && reflect.DeepEqual(p.cfg, c) {
			pl.next[c.JobName] = p
			continue
		}
		p, err := m.newPool(c)
		if err != nil {
			pl.discard()
			return nil, fmt.Errorf("scrape job %q: %w", c.JobName, err)
		}
		pl.next[c.JobName] = p
		pl.fresh = append(pl.fresh, p)
	}
	return pl, nil
}

// discard releases the pools of a plan that will not run.
func (pl *plan) discard() {
	for _, p := range pl.fresh {
		p.client.CloseIdleConnections()
	}
}

// commit stops the replaced and removed jobs and starts the fresh ones.
// The caller holds applyMu.
func (pl *plan) commit() error {
	m := pl.m
	m.mu.Lock()
	stale := m.gen != pl.gen
	m.mu.Unlock()
	if stale {
		pl.discard()
		return errStale
	}
	// Stop replaced and removed jobs before their successors start, so that
	// one target is never scraped by two loops.
	for name, p := range pl.old {
		if pl.next[name] != p {
			p.stop()
			m.log.Info("scrape job stopped", "job", name)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	if m.stopped {
		pl.discard()
		m.pools = map[string]*pool{}
		return ErrStopped
	}
	m.pools = pl.next
	for _, p := range pl.fresh {
		p.begin()
		m.log.Info("scrape job started", "job", p.cfg.JobName, "targets", len(p.loops))
	}
	return nil
}

// Run lets the loops scrape and blocks until ctx ends (or Stop is called);
// it returns once every loop has returned.
func (m *Manager) Run(ctx context.Context) error {
	m.startOnce.Do(func() { close(m.start) })
	select {
	case <-ctx.Done():
	case <-m.ctx.Done():
	}
	m.Stop()
	return nil
}

// Stop ends every loop and waits for them. It is safe on nil and safe twice.
func (m *Manager) Stop() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.stopped = true
	pools := m.pools
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	for _, p := range pools {
		p.client.CloseIdleConnections()
	}
}

// ScrapeNow scrapes every target once, in order of job and target, on the
// caller's goroutine and outside the schedule, and returns the scrape errors
// joined. Tests and the demo use it to drive scrapes deterministically.
func (m *Manager) ScrapeNow(ctx context.Context) error {
	var errs []error
	for _, l := range m.loops() {
		if err := l.scrape(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", l.t.job, l.t.instance, err))
		}
	}
	return errors.Join(errs...)
}

// loops returns the current loops, ordered by job and target.
func (m *Manager) loops() []*loop {
	m.mu.Lock()
	names := make([]string, 0, len(m.pools))
	for n := range m.pools {
		names = append(names, n)
	}
	pools := make([]*pool, 0, len(names))
	sort.Strings(names)
	for _, n := range names {
		pools = append(pools, m.pools[n])
	}
	m.mu.Unlock()
	var out []*loop
	for _, p := range pools {
		out = append(out, p.sortedLoops()...)
	}
	return out
}

// Health of a target.
type Health string

// Target health values.
const (
	HealthUnknown Health = "unknown" // not scraped yet
	HealthUp      Health = "up"
	HealthDown    Health = "down"
)

// TargetStatus is the read model of one target for the API.
type TargetStatus struct {
	Job      string            `json:"job"`
	Instance string            `json:"instance"`
	URL      string            `json:"url"`
	Labels   map[string]string `json:"labels"`
	Health   Health            `json:"health"`
	// LastError is the last scrape's error, empty when it succeeded.
	LastError  string    `json:"last_error,omitempty"`
	LastScrape time.Time `json:"last_scrape"`
	// Duration is how long the last scrape took.
	Duration time.Duration `json:"duration"`
	// Samples is the number of series the last successful scrape exposed.
	Samples int `json:"samples"`
	// LastRefusal names the first point the last scrape dropped for the
	// target's error (an invalid value, a histogram that does not add up,
	// too many buckets, a timestamp too far ahead) and why; empty when
	// there was none. The rest of that scrape was kept.
	LastRefusal string `json:"last_refusal,omitempty"`
}

// Targets returns every target's status, in order of job and target.
func (m *Manager) Targets() []TargetStatus {
	ls := m.loops()
	out := make([]TargetStatus, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.status())
	}
	return out
}

type metrics struct {
	up       *prometheus.GaugeVec
	duration *prometheus.GaugeVec
	samples  *prometheus.GaugeVec
	errors   *prometheus.CounterVec
	appended prometheus.Counter
	dropped  *prometheus.CounterVec
	sdErrors *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	target := []string{"job", "instance"}
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollguard_scrape_target_up",
			Help: "1 if the target's last scrape succeeded, 0 if it failed.",
		}, target),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollguard_scrape_duration_seconds",
			Help: "How long the target's last scrape took.",
		}, target),
		samples: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollguard_scrape_samples",
			Help: "Series the target exposed in its last successful scrape (0 after a failure).",
		}, target),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_scrape_errors_total",
			Help: "Failed scrapes, by job and reason.",
		}, []string{"job", "reason"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_scrape_samples_appended_total",
			Help: "Normalised samples handed on from scrapes.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_scrape_points_dropped_total",
			Help: "Scraped points not handed on, by reason.",
		}, []string{"reason"}),
		sdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_scrape_file_sd_errors_total",
			Help: "Target files that could not be read or were invalid (their previous targets are kept).",
		}, []string{"job"}),
	}
	if r != nil {
		r.MustRegister(m.up, m.duration, m.samples, m.errors, m.appended, m.dropped, m.sdErrors)
	}
	return m
}

// forget removes a gone target's series.
func (m *metrics) forget(job, instance string) {
	m.up.DeleteLabelValues(job, instance)
	m.duration.DeleteLabelValues(job, instance)
	m.samples.DeleteLabelValues(job, instance)
}
