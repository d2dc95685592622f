package detector

import (
	"math"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sample"
)

// Aggregate is one tick's partial counts of one signal of one guard for one
// version, as a sidecar folded them from its local samples: exactly what
// the engine's per-cohort batch would have gained from those samples.
// Sidecars know no deployments, so the key is the version; the central
// engine maps it to a cohort.
type Aggregate struct {
	Guard, Signal, Version string
	// Total is the trials (requests, gauge readings); Bad the bad events.
	Total, Bad float64
	// Cum, for latency signals: observations <= bound, per bucket bound.
	// A bound present with 0 still matters: it says the histograms had it.
	Cum map[float64]float64
}

// valid reports whether the counts can be merged: finite and not negative.
func (a *Aggregate) valid() bool {
	ok := func(f float64) bool { return f >= 0 && !math.IsInf(f, 1) } // false for NaN too
	if !ok(a.Total) || !ok(a.Bad) {
		return false
	}
	for b, c := range a.Cum {
		if math.IsNaN(b) || !ok(c) {
			return false
		}
	}
	return true
}

// AggregatorOptions are the Aggregator's dependencies.
type AggregatorOptions struct {
	Logger     hclog.Logger
	Registerer prometheus.Registerer
}

// Aggregator folds a sidecar's local samples into per-(guard, signal,
// version) partial counts, one tick at a time. It routes and counts each
// sample exactly as Engine.Append does (the same door filter, the same
// fold), but stops short of deployments: the central engine merges the
// flushed aggregates with AppendAggregates as if it had seen the samples.
type Aggregator struct {
	doors
	mu       sync.Mutex
	byMetric map[string][]*configs.GuardConfig
	inputs   map[*configs.GuardConfig][]string // each signal's input metric
	// open is the tick being filled; order keeps first-seen order per guard.
	open    map[aggKey]*tick
	order   []aggKey
	log     hclog.Logger
	metrics *engineMetrics
}

type aggKey struct{ guard, signal, version string }

// NewAggregator builds an aggregator for cfg's guards.
func NewAggregator(cfg *configs.Config, o AggregatorOptions) *Aggregator {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	a := &Aggregator{open: map[aggKey]*tick{}, log: o.Logger, metrics: newEngineMetrics(o.Registerer)}
	a.ApplyConfig(cfg)
	return a
}

// ApplyConfig swaps in new guards. The open tick is kept: what it holds was
// counted under the old configuration, and the central drops what it no
// longer knows.
func (a *Aggregator) ApplyConfig(cfg *configs.Config) {
	guards, byMetric := route(cfg)
	inputs := make(map[*configs.GuardConfig][]string, len(guards))
	for _, g := range guards {
		for _, s := range g.Signals {
			inputs[g] = append(inputs[g], configs.InputMetric(*g, s))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byMetric, a.inputs = byMetric, inputs
	a.doors.set(byMetric)
}

// Append folds samples into the open tick. It implements sample.Appender.
func (a *Aggregator) Append(samples []sample.Sample) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range samples {
		s := &samples[i]
		for _, g := range a.byMetric[s.Metric] {
			if s.Labels.Get(g.ServiceLabel) != g.Service {
				continue
			}
			version := s.Labels.Get(g.VersionLabel)
			if version == "" {
				a.metrics.dropped.WithLabelValues("no_version").Inc()
				continue
			}
			for j := range g.Signals {
				sc, input := &g.Signals[j], a.inputs[g][j]
				if !reads(sc, input, s.Metric) {
					continue
				}
				k := aggKey{g.Name, sc.Name, version}
				t := a.open[k]
				if t == nil {
					t = &tick{}
					a.open[k] = t
					a.order = append(a.order, k)
				}
				fold(t, sc, input, s)
			}
			a.metrics.routed.Inc()
		}
	}
	return nil
}

// Flush returns the open tick's aggregates and starts a new tick. They come
// ordered by guard name; within a guard, versions in the order they were
// first seen in the tick (so that, on the central, the stable version's
// counts of the tick in which a new version appears land where the
// engine would have put them), and within a version, signals in the order
// they were first fed. A version that brought no traffic is left out (it
// cannot open a deployment on the central until it serves), and counts that
// are not finite are dropped and counted.
func (a *Aggregator) Flush() []Aggregate {
	a.mu.Lock()
	open, order := a.open, a.order
	a.open, a.order = make(map[aggKey]*tick, len(open)), make([]aggKey, 0, len(order))
	a.mu.Unlock()

	rank := make(map[aggKey]int, len(order)) // first-seen rank of (guard, version)
	for i, k := range order {
		v := aggKey{guard: k.guard, version: k.version}
		if _, ok := rank[v]; !ok {
			rank[v] = i
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].guard != order[j].guard {
			return order[i].guard < order[j].guard
		}
		return rank[aggKey{guard: order[i].guard, version: order[i].version}] < rank[aggKey{guard: order[j].guard, version: order[j].version}]
	})
	out := make([]Aggregate, 0, len(order))
	for _, k := range order {
		t := open[k]
		if t.total == 0 && t.bad == 0 {
			continue
		}
		ag := Aggregate{Guard: k.guard, Signal: k.signal, Version: k.version, Total: t.total, Bad: t.bad}
		if len(t.cum) > 0 {
			ag.Cum = t.cum
		}
		if !ag.valid() {
			a.metrics.dropped.WithLabelValues("not_finite").Inc()
			a.log.Warn("aggregate with counts that are not finite dropped", "guard", k.guard, "signal", k.signal, "version", k.version)
			continue
		}
		out = append(out, ag)
	}
	return out
}

// AppendAggregates merges sidecars' partial counts as Append would have
// merged the samples they came from: each version is observed (a new one
// opens an implicit deployment), the stable version's counts feed the
// before-window while no deployment is under way, and otherwise each
// aggregate joins its cohort's open batch, with the cohort's last report.
//
// Aggregates carry no order within a tick, so every version of the call is
// observed before any is merged: in the tick in which a new version first
// appears, the stable version's counts all join the new deployment's
// baseline cohort, whatever the guard or the order of the messages.
// (Append splits that one tick by arrival: the stable version's samples
// before the new version's first one go to the before-window.)
//
// An aggregate of an unknown guard, signal or version, or with invalid
// counts, is dropped and counted; the rest are merged.
func (e *Engine) AppendAggregates(aggs []Aggregate) error {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	type placed struct {
		g  *configs.GuardConfig
		si int // the signal's index in g.Signals
		ag *Aggregate
	}
	ok := make([]placed, 0, len(aggs))
	for i := range aggs {
		ag := &aggs[i]
		g := e.guards[ag.Guard]
		if g == nil {
			e.metrics.aggregates.WithLabelValues("unknown_guard").Inc()
			continue
		}
		si := -1
		for j := range g.Signals {
			if g.Signals[j].Name == ag.Signal {
				si = j
				break
			}
		}
		switch {
		case si < 0:
			e.metrics.aggregates.WithLabelValues("unknown_signal").Inc()
			continue
		case ag.Version == "":
			e.metrics.aggregates.WithLabelValues("no_version").Inc()
			continue
		case !ag.valid():
			e.metrics.aggregates.WithLabelValues("invalid").Inc()
			continue
		}
		if why := e.observeVersion(g, ag.Version, now); why != "" {
			e.metrics.aggregates.WithLabelValues(why).Inc()
			continue
		}
		ok = append(ok, placed{g, si, ag})
	}
	for _, p := range ok {
		g, ag := p.g, p.ag
		t := tick{total: ag.Total, bad: ag.Bad, cum: ag.Cum}
		d := e.deployments[g.Service]
		if d == nil {
			if ag.Version == e.tracks[g.Service].Stable {
				e.historyOf(g).signals[p.si].cur[baseline].merge(t)
			}
			e.metrics.aggregates.WithLabelValues("merged").Inc()
			continue
		}
		cohort := candidate
		switch ag.Version {
		case d.Version:
		case d.PreviousVersion:
			cohort = baseline
		default:
			e.metrics.aggregates.WithLabelValues("other_version").Inc()
			continue
		}
		// A sidecar's aggregate carries no pods: its cohort is one block.
		d.run(g, now).signals[p.si].merge(t, cohort, now, "")
		e.metrics.aggregates.WithLabelValues("merged").Inc()
	}
	return nil
}
