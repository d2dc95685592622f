// Package detector owns deciding whether a deployment is worse than its
// baseline: it routes samples to (guard, signal, cohort), tracks deployments,
// runs the anytime-valid tests every tick and hands verdicts with their
// evidence to a VerdictHandler. It knows nothing of NATS or HTTP.
package detector

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/ticker"
	"github.com/rollguard/rollguard/sample"
)

// VerdictHandler receives every guard verdict of every evaluation. It must
// not block: the playbook queues and acts on its own time.
type VerdictHandler interface {
	HandleVerdict(GuardVerdict)
}

// VerdictFunc adapts a function to VerdictHandler.
type VerdictFunc func(GuardVerdict)

// HandleVerdict implements VerdictHandler.
func (f VerdictFunc) HandleVerdict(v GuardVerdict) { f(v) }

const (
	candidate = 0
	baseline  = 1
)

// Engine routes samples, tracks deployments and evaluates guards.
type Engine struct {
	// mu guards the engine's structure: the configuration, the trackers,
	// which deployments, guard runs and histories exist, and their tests.
	// Append holds it shared while it routes, so that requests on many
	// cores do not queue behind one another, and folds each sample under
	// the lock of the guard run or history it lands in. Everything else
	// holds it exclusively: it sees no Append half way through a request
	// and needs no guard's lock.
	mu          sync.RWMutex
	global      configs.GlobalConfig
	guards      map[string]*configs.GuardConfig
	byMetric    map[string][]*configs.GuardConfig
	tracks      map[string]Track // by service: stable, retired and current versions
	deployments map[string]*deploymentRun
	histories   map[string]*history // by guard name
	ended       []Deployment
	endedSeries map[string]DeploymentSeries
	doors       // byMetric, for lock-free filtering at the door
	handler     VerdictHandler
	incidents   Incidents
	onChange    func(Deployment)
	changed     []Deployment // deployment changes to report once the lock is released
	now         func() time.Time
	log         hclog.Logger
	metrics     *engineMetrics
}

type deploymentRun struct {
	Deployment
	guards map[string]*guardRun
	// pre is each guard signal's traffic in the window before the
	// deployment, for before/after comparisons.
	pre map[string][]tick
	// testFrom, when after StartedAt, restarts the tests: only data from
	// then on counts (verification after a mitigation, or a restart).
	testFrom time.Time
	// past keeps each guard's chart history from before the tests were
	// restarted, and restarts when they were, so charts tell the whole story.
	past     map[string][]SignalSeries
	restarts []time.Time
	// cutFrom, when set, leaves out increments that began before it: the
	// tests restarted (verification after a mitigation, a restart of
	// rollguard) or the deployment is a later generation, so that what the
	// candidate did before — under other conditions — does not count.
	cutFrom time.Time
}

// restart discards the tests of every guard, keeping their chart history.
func (d *deploymentRun) restart(from time.Time) {
	d.past = d.series()
	d.restarts = append(d.restarts, from)
	d.testFrom, d.cutFrom = from, from
	d.guards = map[string]*guardRun{}
}

// series is every guard's chart history, across restarts.
func (d *deploymentRun) series() map[string][]SignalSeries {
	out := map[string][]SignalSeries{}
	for g, ss := range d.past {
		for _, s := range ss {
			out[g] = append(out[g], SignalSeries{Signal: s.Signal, Points: append([]Point(nil), s.Points...)})
		}
	}
	for name, r := range d.guards {
		for _, sr := range r.signals {
			i := 0
			for i < len(out[name]) && out[name][i].Signal != sr.cfg.Name {
				i++
			}
			if i == len(out[name]) {
				out[name] = append(out[name], SignalSeries{Signal: sr.cfg.Name})
			}
			pts := append(out[name][i].Points, sr.points...)
			if len(pts) > maxPoints {
				pts = pts[len(pts)-maxPoints:]
			}
			out[name][i].Points = pts
		}
	}
	return out
}

// from is the start of the data the tests use.
func (d *deploymentRun) from() time.Time {
	if d.testFrom.After(d.StartedAt) {
		return d.testFrom
	}
	return d.StartedAt
}

// history keeps a guard's stable traffic per tick while no deployment is
// under way: the before of a before/after comparison.
type history struct {
	mu      sync.Mutex   // as guardRun's
	signals []*signalRun // aggregators only: cur[baseline] is the open tick
	ring    [][]stampedTick
}

type stampedTick struct {
	at time.Time
	t  tick
}

type guardRun struct {
	// mu serialises the folds of Appends that share the engine's lock;
	// a holder of the exclusive lock needs not take it.
	mu      sync.Mutex
	cfg     *configs.GuardConfig
	signals []*signalRun
	verdict *GuardVerdict
}

type engineMetrics struct {
	routed      prometheus.Counter
	dropped     *prometheus.CounterVec
	evaluations prometheus.Counter
	verdicts    *prometheus.GaugeVec
	deployments *prometheus.CounterVec
	promotions  prometheus.Counter
	aggregates  *prometheus.CounterVec // AppendAggregates, by outcome
	unconfirmed *prometheus.CounterVec // versions waiting for new_version_hold, by service
}

func newEngineMetrics(r prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		routed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_detector_samples_routed_total",
			Help: "Samples routed to a guard signal and cohort.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_detector_samples_dropped_total",
			Help: "Samples of a guarded metric that were not routed, by reason.",
		}, []string{"reason"}),
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_detector_evaluations_total",
			Help: "Evaluation ticks run.",
		}),
		verdicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollguard_detector_verdict",
			Help: "Current verdict per guard signal: 1 for the current state.",
		}, []string{"guard", "signal", "state"}),
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_deployments_opened_total",
			Help: "Deployments opened, by source.",
		}, []string{"source"}),
		promotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_deployments_promoted_total",
			Help: "Deployments ended by promotion: the previous version gone, the new one not regressed.",
		}),
	}
	m.aggregates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rollguard_detector_aggregates_total",
		Help: "Partial aggregates received from sidecars, by outcome: merged, or the reason they were dropped.",
	}, []string{"outcome"})
	m.unconfirmed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rollguard_detector_unconfirmed_versions_total",
		Help: "Unannounced versions seen during a deployment and held back until they serve for global.new_version_hold; a steady rise is version churn.",
	}, []string{"service"})
	if r != nil {
		r.MustRegister(m.routed, m.dropped, m.evaluations, m.verdicts, m.deployments, m.promotions, m.aggregates, m.unconfirmed)
	}
	return m
}

// EngineOptions are the engine's dependencies.
type EngineOptions struct {
	Handler    VerdictHandler
	Logger     hclog.Logger
	Registerer prometheus.Registerer
	// Incidents tells the phase of each deployment's incident (the
	// playbook); nil: no deployment ever has one.
	Incidents Incidents
	// OnDeployment is told every deployment that opens, changes or ends,
	// after the engine's lock is released; nil: nobody listens.
	OnDeployment func(Deployment)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewEngine builds an engine for cfg.
func NewEngine(cfg *configs.Config, o EngineOptions) *Engine {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Handler == nil {
		o.Handler = VerdictFunc(func(GuardVerdict) {})
	}
	if o.Incidents == nil {
		o.Incidents = IncidentsFunc(func(string) Phase { return PhaseNone })
	}
	if o.OnDeployment == nil {
		o.OnDeployment = func(Deployment) {}
	}
	e := &Engine{
		tracks:      map[string]Track{},
		incidents:   o.Incidents,
		onChange:    o.OnDeployment,
		deployments: map[string]*deploymentRun{},
		histories:   map[string]*history{},
		endedSeries: map[string]DeploymentSeries{},
		handler:     o.Handler,
		now:         o.Now,
		log:         o.Logger,
		metrics:     newEngineMetrics(o.Registerer),
	}
	e.ApplyConfig(cfg)
	return e
}

// ApplyConfig swaps in new guards. Deployments survive; the test state of a
// guard whose configuration changed starts over, since its α or signals did.
func (e *Engine) ApplyConfig(cfg *configs.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	guards, byMetric := route(cfg)
	for _, d := range e.deployments {
		for name, run := range d.guards {
			if ng, ok := guards[name]; !ok || !reflect.DeepEqual(*ng, *run.cfg) {
				delete(d.guards, name)
			}
		}
	}
	for name := range e.histories {
		if ng, ok := guards[name]; !ok || !reflect.DeepEqual(ng.Signals, e.guards[name].Signals) {
			delete(e.histories, name)
		}
	}
	e.global, e.guards, e.byMetric = cfg.Global, guards, byMetric
	e.doors.set(byMetric)
}

// Append routes samples to guard signals and cohorts. It implements sample.Appender.
//
// Appends run side by side: they hold the engine's lock shared and fold
// under each guard run's own lock. A sample that needs the engine changed —
// a version the tracker has not settled, a guard's first sample in a
// deployment or before one — sends the rest of the request through under
// the exclusive lock, as if it were a second request.
func (e *Engine) Append(samples []sample.Sample) error {
	var c appendCounts
	e.mu.RLock()
	i, stop := e.route(samples, 0, nil, e.now(), true, &c)
	var done []*configs.GuardConfig
	if i < len(samples) {
		done = guardsBefore(e.byMetric[samples[i].Metric], stop)
	}
	e.mu.RUnlock()
	if i < len(samples) {
		e.mu.Lock()
		e.route(samples, i, done, e.now(), false, &c)
		e.mu.Unlock()
		e.report()
	}
	c.count(e.metrics)
	return nil
}

// appendCounts are an Append's routed and dropped samples, counted in the
// metrics once per request, not once per sample: the metrics are shared
// by every core.
type appendCounts struct {
	routed, invalid, noVersion, otherVersion, beforeTests, retired int
}

func (c *appendCounts) count(m *engineMetrics) {
	if c.routed > 0 {
		m.routed.Add(float64(c.routed))
	}
	for _, d := range [...]struct {
		reason string
		n      int
	}{{"invalid_value", c.invalid}, {"no_version", c.noVersion}, {"other_version", c.otherVersion}, {"before_tests", c.beforeTests}, {DropRetired, c.retired}} {
		if d.n > 0 {
			m.dropped.WithLabelValues(d.reason).Add(float64(d.n))
		}
	}
}

// route routes samples[i:], leaving out for the first of them the guards
// in done, which it already went to. Under the shared lock (shared) it
// changes nothing but the batches, each under its own lock, and stops at
// the first sample that needs the engine changed: it returns that
// sample's index and the guard that needs it (len(samples) and nil when
// it routed them all).
func (e *Engine) route(samples []sample.Sample, i int, done []*configs.GuardConfig, now time.Time, shared bool, c *appendCounts) (int, *configs.GuardConfig) {
	for ; i < len(samples); i, done = i+1, nil {
		s := &samples[i]
		if !usable(s) {
			c.invalid++
			continue
		}
		gs := e.byMetric[s.Metric]
		for _, g := range gs {
			if s.Labels.Get(g.ServiceLabel) != g.Service {
				continue
			}
			if done != nil && routedTo(done, g) {
				continue
			}
			version := s.Labels.Get(g.VersionLabel)
			if version == "" {
				c.noVersion++
				continue
			}
			if !e.settled(g.Service, version) {
				if shared {
					if e.tracks[g.Service].retired(version) {
						// A retired version changes nothing either: pods
						// of an old version draining after a promotion
						// keep the request on the shared lock.
						c.retired++
						continue
					}
					return i, g
				}
				if why := e.observeVersion(g, version, now); why != "" {
					e.metrics.dropped.WithLabelValues(why).Inc()
					continue
				}
			}
			d := e.deployments[g.Service]
			if d == nil {
				if version == e.tracks[g.Service].Stable {
					h := e.histories[g.Name]
					if h == nil {
						if shared {
							return i, g
						}
						h = e.historyOf(g)
					}
					h.add(s)
				}
				continue // no deployment under way: nothing to compare
			}
			cohort := candidate
			switch version {
			case d.Version:
			case d.PreviousVersion:
				cohort = baseline
			default:
				c.otherVersion++
				continue
			}
			if s.StartUnixNano != 0 && !d.cutFrom.IsZero() && s.StartUnixNano < d.cutFrom.UnixNano() {
				// The increment began before the tests restarted (a
				// mitigation, a restart) or before this generation: part of
				// it belongs to what came before, so none of it counts.
				c.beforeTests++
				continue
			}
			run := d.guards[g.Name]
			if run == nil {
				if shared {
					return i, g
				}
				run = d.run(g, now)
			}
			run.add(s, cohort, now, instanceOf(g, s.Labels))
			c.routed++
		}
	}
	return i, nil
}

// guardsBefore is the guards of gs before g.
func guardsBefore(gs []*configs.GuardConfig, g *configs.GuardConfig) []*configs.GuardConfig {
	for j := range gs {
		if gs[j] == g {
			return gs[:j]
		}
	}
	return nil
}

// routedTo reports whether g is one of done, by name: the configuration
// may have been reloaded since done was taken.
func routedTo(done []*configs.GuardConfig, g *configs.GuardConfig) bool {
	for _, d := range done {
		if d.Name == g.Name {
			return true
		}
	}
	return false
}

// add folds one sample of cohort from pod into the signals that read it.
func (r *guardRun) add(s *sample.Sample, cohort int, now time.Time, pod string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sr := range r.signals {
		if sr.reads(s.Metric) {
			sr.add(s, cohort, now, pod)
		}
	}
}

// instanceOf is the pod a sample comes from: the value of the first of the
// guard's instance labels it carries, or "".
func instanceOf(g *configs.GuardConfig, ls sample.Labels) string {
	for _, name := range g.InstanceLabels {
		if v := ls.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// usable reports whether a sample's numbers can enter a test: finite, and
// for increments not negative. Inputs reject such points at the door; this
// is the detector's own guard, whatever the input.
func usable(s *sample.Sample) bool {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	switch {
	case bad(s.Value) || bad(s.Count) || bad(s.Sum):
		return false
	case s.Kind != sample.KindGauge && (s.Value < 0 || s.Count < 0):
		return false
	}
	for _, b := range s.Buckets {
		if bad(b.Count) || b.Count < 0 {
			return false
		}
	}
	return true
}

// observeVersion applies the tracker's rule for traffic of version; it
// returns why the sample belongs to no deployment, or "".
func (e *Engine) observeVersion(g *configs.GuardConfig, version string, now time.Time) string {
	if e.settled(g.Service, version) {
		return "" // the common case, without building a flag list
	}
	t := e.tracks[g.Service]
	news := t.Current != nil && !t.Waiting(version) && !t.retired(version)
	// A version waiting for the hold may fall silent as long as a cohort
	// may (an SDK exports once a minute by default) before it starts over.
	hold, quiet := time.Duration(e.global.NewVersionHold), time.Duration(e.global.NoDataTimeout)
	t, tr, why := t.Observe(g.Service, version, e.serviceFlags(g.Service), now, hold, max(hold, quiet), e.used)
	e.apply(g.Service, t, tr)
	if why == DropUnconfirmed && news {
		e.metrics.unconfirmed.WithLabelValues(g.Service).Inc()
		e.log.Debug("unannounced version seen during a deployment: it supersedes the deployment only after serving for new_version_hold",
			"service", g.Service, "version", version, "deployment", t.Current.ID, "hold", hold)
	}
	return why
}

// settled reports whether traffic of version changes nothing in the
// service's tracker: the stable version, or either of the deployment's.
// It reads the tracker only, so Append asks it under the shared lock.
func (e *Engine) settled(service, version string) bool {
	t := e.tracks[service]
	return version == t.Stable || (t.Current != nil && (t.Current.Version == version || t.Current.PreviousVersion == version))
}

// used reports whether a deployment id is taken: an incident was opened
// for it, or it ended here recently.
func (e *Engine) used(id string) bool {
	if e.incidents.Phase(id) != PhaseNone {
		return true
	}
	_, ended := e.endedSeries[id]
	return ended
}

// apply carries out a tracker transition on the engine's runs.
func (e *Engine) apply(service string, t Track, tr Transition) {
	e.tracks[service] = t
	var pre map[string][]tick
	if tr.End != nil {
		if run := e.deployments[service]; run != nil && run.ID == tr.End.ID {
			pre = run.pre
			run.Deployment = *tr.End
			e.end(run)
			e.log.Info("deployment ended", "deployment", run.ID, "service", service, "reason", run.EndReason, "by", run.SupersededBy)
		}
	}
	if tr.Update != nil {
		if run := e.deployments[service]; run != nil && run.ID == tr.Update.ID {
			run.Deployment = *tr.Update
			e.changed = append(e.changed, run.Deployment)
		}
	}
	if tr.Open != nil {
		e.open(*tr.Open, pre)
	}
}

// report hands the deployment changes made under the lock to the
// listener; call it deferred before taking the lock.
func (e *Engine) report() {
	e.mu.Lock()
	changed := e.changed
	e.changed = nil
	e.mu.Unlock()
	for _, d := range changed {
		e.onChange(d)
	}
}

func (e *Engine) historyOf(g *configs.GuardConfig) *history {
	h := e.histories[g.Name]
	if h == nil {
		h = &history{}
		for _, s := range g.Signals {
			h.signals = append(h.signals, newSignalRun(g, s, time.Time{}))
		}
		h.ring = make([][]stampedTick, len(g.Signals))
		e.histories[g.Name] = h
	}
	return h
}

func (h *history) add(s *sample.Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sr := range h.signals {
		if sr.reads(s.Metric) {
			fold(&sr.cur[baseline], &sr.cfg, sr.metric, s)
		}
	}
}

// close ends the open tick of every signal and forgets ticks older than window.
func (h *history) close(now time.Time, window time.Duration) {
	for i, sr := range h.signals {
		if sr.cur[baseline].total > 0 {
			h.ring[i] = append(h.ring[i], stampedTick{at: now, t: sr.cur[baseline]})
		}
		sr.reset()
		k := 0
		for k < len(h.ring[i]) && now.Sub(h.ring[i][k].at) > window {
			k++
		}
		h.ring[i] = h.ring[i][k:]
	}
}

// snapshot merges the window before at, per signal, keeping its ticks.
func (h *history) snapshot(at time.Time, window time.Duration) []tick {
	out := make([]tick, len(h.signals))
	h.close(at, window)
	for i := range h.signals {
		out[i].parts = make([]tick, 0, len(h.ring[i]))
		for _, st := range h.ring[i] {
			out[i].merge(st.t)
			out[i].parts = append(out[i].parts, st.t)
		}
	}
	return out
}

// serviceFlags are the flags declared by every guard of the service.
func (e *Engine) serviceFlags(service string) []string {
	var flags []string
	seen := map[string]bool{}
	names := make([]string, 0, len(e.guards))
	for n := range e.guards {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if g := e.guards[n]; g.Service == service {
			for _, f := range g.Flags {
				if !seen[f] {
					flags = append(flags, f)
					seen[f] = true
				}
			}
		}
	}
	return flags
}

// open starts a run for d. pre, when set, is the before window of the
// generation it follows; otherwise the guards' history gives it.
func (e *Engine) open(d Deployment, pre map[string][]tick) {
	run := &deploymentRun{Deployment: d, guards: map[string]*guardRun{}, pre: pre}
	if d.Generation() >= 2 {
		run.cutFrom = d.StartedAt // not the first deployment of these versions
	}
	if run.pre == nil {
		run.pre = map[string][]tick{}
		for _, g := range e.guardsOf(d.Service) {
			if h := e.histories[g.Name]; h != nil {
				run.pre[g.Name] = h.snapshot(d.StartedAt, time.Duration(g.Baseline.Window))
				delete(e.histories, g.Name) // the next deployment's before starts after this one
			}
		}
	}
	e.deployments[d.Service] = run
	e.changed = append(e.changed, d)
	e.metrics.deployments.WithLabelValues(d.Source).Inc()
	e.log.Info("deployment opened", "deployment", d.ID, "service", d.Service,
		"version", d.Version, "previous_version", d.PreviousVersion, "source", d.Source, "flags", d.Flags)
}

// end moves a deployment, whose end is already set, to the ended list.
func (e *Engine) end(d *deploymentRun) {
	if e.deployments[d.Service] == d {
		delete(e.deployments, d.Service)
	}
	e.changed = append(e.changed, d.Deployment)
	e.ended = append(e.ended, d.Deployment)
	e.endedSeries[d.ID] = DeploymentSeries{Deployment: d.Deployment, Guards: d.series(), Restarts: d.restarts}
	if len(e.ended) > 100 {
		delete(e.endedSeries, e.ended[0].ID)
		e.ended = e.ended[1:]
	}
}

// promoteIfDone ends a deployment whose previous version has had no traffic
// for the promotion hold while the candidate served, no signal regressed
// and no incident is in hand: the rollout is complete, and the candidate
// is the new stable.
func (e *Engine) promoteIfDone(d *deploymentRun, now time.Time) bool {
	if p := e.incidents.Phase(d.ID); p == PhaseActing || p == PhaseEscalated {
		return false
	}
	hold := time.Duration(e.global.PromotionHold)
	var lastBase, lastCand time.Time
	for _, r := range d.guards {
		for _, sr := range r.signals {
			if sr.regressed() {
				return false
			}
			if sr.mode == configs.BaselineBeforeAfter && now.Sub(d.StartedAt) < time.Duration(r.cfg.Baseline.Watch) {
				return false // a before/after comparison watches for baseline.watch
			}
			if sr.lastReport[baseline].After(lastBase) {
				lastBase = sr.lastReport[baseline]
			}
			if sr.lastReport[candidate].After(lastCand) {
				lastCand = sr.lastReport[candidate]
			}
		}
	}
	if len(d.guards) == 0 || !lastCand.After(d.StartedAt) || now.Sub(lastBase) < hold {
		return false
	}
	t, tr := e.tracks[d.Service].Promote(now)
	e.apply(d.Service, t, tr)
	e.metrics.promotions.Inc()
	e.log.Info("deployment promoted: the previous version is gone and the new one did not regress",
		"deployment", d.ID, "service", d.Service, "version", d.Version, "previous_version", d.PreviousVersion)
	return true
}

// Announce opens (or updates) a deployment explicitly, by the tracker's
// rule (Track.Announce). The source is the announcement's (api or nats;
// empty means api).
func (e *Engine) Announce(d Deployment) (Deployment, error) {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.Service == "" {
		return Deployment{}, invalid("service is required")
	}
	if !e.guarded(d.Service) {
		return Deployment{}, invalid("no guard watches service %q: add a guard for it to the configuration", d.Service)
	}
	t := e.tracks[d.Service]
	if d.PreviousVersion == "" {
		d.PreviousVersion = t.Stable
	}
	switch d.Source {
	case "":
		d.Source = SourceAPI
	case SourceAPI, SourceNATS:
	default:
		return Deployment{}, invalid("source %q must be api or nats", d.Source)
	}
	d.flagsGiven, d.migrationGiven = d.Flags != nil, d.Migration != ""
	if d.Flags == nil {
		d.Flags = e.serviceFlags(d.Service)
	}
	d.StartedAt = e.now()
	d.SupersededBy, d.EndedAt, d.EndReason = "", nil, ""
	if err := d.validate(); err != nil {
		return Deployment{}, err
	}
	t, tr, err := t.Announce(d, e.incidents.Phase, e.used)
	if err != nil {
		return Deployment{}, err
	}
	e.apply(d.Service, t, tr)
	if tr.Update != nil {
		return *tr.Update, nil
	}
	return *tr.Open, nil
}

// EndDeployment ends the deployment under way with id for reason (the
// playbook rolled it back); it reports whether it was under way.
func (e *Engine) EndDeployment(id, reason string) bool {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	for svc, d := range e.deployments {
		if d.ID == id {
			t, tr := e.tracks[svc].End(id, reason, e.now())
			e.apply(svc, t, tr)
			return true
		}
	}
	return false
}

// NextGeneration follows the deployment under way with id by a new
// generation of the same versions (its incident ended); it reports the
// new deployment, if id was under way.
func (e *Engine) NextGeneration(id string) (Deployment, bool) {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	for svc, d := range e.deployments {
		if d.ID == id {
			t, tr := e.tracks[svc].NextGeneration(id, e.now(), e.used)
			e.apply(svc, t, tr)
			return *tr.Open, true
		}
	}
	return Deployment{}, false
}

// Verify restarts the tests of an active deployment on data from from on,
// keeping its before window: after a mitigation the verdicts then say
// whether the candidate is back at its baseline. It reports whether the
// deployment is active.
func (e *Engine) Verify(deploymentID string, from time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.deployments {
		if d.ID == deploymentID {
			d.restart(from)
			e.log.Info("deployment tests restarted for verification", "deployment", d.ID, "from", from)
			return true
		}
	}
	return false
}

// Resume reopens a deployment known from before a restart (an open
// incident's), with its id and start, testing data from from on. A newer
// deployment of the service already under way is left alone.
func (e *Engine) Resume(d Deployment, from time.Time) {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur := e.deployments[d.Service]; cur != nil {
		if cur.ID == d.ID && cur.testFrom.Before(from) {
			cur.restart(from)
		}
		return
	}
	if !e.guarded(d.Service) || d.EndedAt != nil {
		return
	}
	t := e.tracks[d.Service]
	if t.Stable != d.PreviousVersion {
		t.retire(t.Stable)
		t.Stable = d.PreviousVersion
	}
	t.Current = &d
	e.tracks[d.Service] = t
	e.open(d, nil)
	e.deployments[d.Service].restart(from)
}

func (e *Engine) guarded(service string) bool {
	for _, g := range e.guards {
		if g.Service == service {
			return true
		}
	}
	return false
}

// run returns the guard's state for this deployment, creating it on first use.
func (d *deploymentRun) run(g *configs.GuardConfig, now time.Time) *guardRun {
	if r := d.guards[g.Name]; r != nil {
		return r
	}
	r := &guardRun{cfg: g}
	pre := d.pre[g.Name]
	for i, s := range g.Signals {
		sr := newSignalRun(g, s, d.from())
		if i < len(pre) {
			sr.pre = pre[i]
		}
		sr.baseline = g.Baseline
		sr.alpha = g.SignalAlpha()
		r.signals = append(r.signals, sr)
	}
	d.guards[g.Name] = r
	return r
}

// Cohorts returns the candidate and baseline versions of the service's
// active deployment, for inputs that query per cohort.
func (e *Engine) Cohorts(service string) (candidate, baseline string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.deployments[service]
	if d == nil {
		return "", "", false
	}
	return d.Version, d.PreviousVersion, true
}

// Run evaluates every guard each evaluation interval until ctx ends; a
// configuration that changes the interval takes effect from the next tick.
func (e *Engine) Run(ctx context.Context) error {
	ticker.Run(ctx, func() time.Duration {
		e.mu.Lock()
		defer e.mu.Unlock()
		return time.Duration(e.global.EvaluationInterval)
	}, func(context.Context) { e.Evaluate() })
	return nil
}

// Evaluate runs one tick: closes the batches where both cohorts reported,
// updates the tests and hands every guard's verdict to the handler.
func (e *Engine) Evaluate() {
	defer e.report()
	e.mu.Lock()
	now := e.now()
	e.metrics.evaluations.Inc()
	var out []GuardVerdict
	for name, h := range e.histories {
		if g := e.guards[name]; g != nil && e.deployments[g.Service] == nil {
			h.close(now, time.Duration(g.Baseline.Window))
		}
	}
	services := make([]string, 0, len(e.deployments))
	for s := range e.deployments {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, svc := range services {
		d := e.deployments[svc]
		if e.promoteIfDone(d, now) {
			continue
		}
		for _, g := range e.guardsOf(svc) {
			run := d.run(g, now)
			v := GuardVerdict{Guard: g.Name, Deployment: d.Deployment, At: now, Since: d.from()}
			for _, sr := range run.signals {
				evs := sr.evaluate(d, now, time.Duration(e.global.NoDataTimeout), time.Duration(e.global.EvaluationInterval))
				if sr.lastBatch.Equal(now) {
					sr.record(now, evs)
				}
				for _, ev := range evs {
					ev.CandidateSeen, ev.BaselineSeen = sr.lastReport[candidate], sr.lastReport[baseline]
					v.Signals = append(v.Signals, ev)
					for _, st := range []State{StateRegressed, StateHealthy, StateInconclusive, StateNoData} {
						val := 0.0
						if st == ev.State {
							val = 1
						}
						e.metrics.verdicts.WithLabelValues(g.Name, ev.Signal, string(st)).Set(val)
					}
				}
			}
			v.State = combine(v.Signals)
			v.Deployment.Flags = append([]string(nil), d.Flags...)
			run.verdict = &v
			out = append(out, v)
		}
	}
	e.mu.Unlock()
	for _, v := range out {
		e.handler.HandleVerdict(v)
	}
}

func (e *Engine) guardsOf(service string) []*configs.GuardConfig {
	var gs []*configs.GuardConfig
	for _, g := range e.guards {
		if g.Service == service {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
	return gs
}

func cohortCounts(version string, total, bad float64) CohortCounts {
	r := math.NaN()
	if total > 0 {
		r = bad / total
	}
	return CohortCounts{Version: version, Total: total, Bad: bad, Ratio: jsonSafe(r)}
}

func jsonSafe(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// GuardStatus is the read model of one guard for the API.
type GuardStatus struct {
	Name       string                 `json:"name"`
	Service    string                 `json:"service"`
	Alpha      float64                `json:"alpha"`
	Flags      []string               `json:"flags"`
	Signals    []configs.SignalConfig `json:"signals"`
	Deployment *Deployment            `json:"deployment,omitempty"`
	Verdict    *GuardVerdict          `json:"verdict,omitempty"`
}

// Guards returns every guard with its active deployment and latest verdict.
func (e *Engine) Guards() []GuardStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]GuardStatus, 0, len(e.guards))
	for _, g := range e.guards {
		gs := GuardStatus{Name: g.Name, Service: g.Service, Alpha: g.Alpha, Flags: g.Flags, Signals: g.Signals}
		if d := e.deployments[g.Service]; d != nil {
			dep := d.Deployment
			gs.Deployment = &dep
			if r := d.guards[g.Name]; r != nil && r.verdict != nil {
				v := *r.verdict
				gs.Verdict = &v
			}
		}
		out = append(out, gs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SignalSeries is one signal's chart history on the active deployment.
type SignalSeries struct {
	Signal string  `json:"signal"`
	Points []Point `json:"points"`
}

// Series returns the chart history of every signal of a guard on its
// active deployment; ok is false for an unknown guard.
func (e *Engine) Series(guard string) (out []SignalSeries, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.guards[guard]
	if g == nil {
		return nil, false
	}
	out = []SignalSeries{}
	if d := e.deployments[g.Service]; d != nil {
		if r := d.guards[guard]; r != nil {
			for _, sr := range r.signals {
				out = append(out, SignalSeries{Signal: sr.cfg.Name, Points: append([]Point(nil), sr.points...)})
			}
		}
	}
	return out, true
}

// DeploymentSeries is a deployment's chart history: per guard, per signal,
// across restarts of its tests (Restarts says when).
type DeploymentSeries struct {
	Deployment Deployment                `json:"deployment"`
	Guards     map[string][]SignalSeries `json:"guards"`
	Restarts   []time.Time               `json:"restarts"`
}

// History returns the chart history of an active or recently ended
// deployment; ok is false when it is unknown.
func (e *Engine) History(deploymentID string) (DeploymentSeries, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.deployments {
		if d.ID == deploymentID {
			return DeploymentSeries{Deployment: d.Deployment, Guards: d.series(), Restarts: append([]time.Time(nil), d.restarts...)}, true
		}
	}
	ds, ok := e.endedSeries[deploymentID]
	return ds, ok
}

// Deployments returns the active deployments, then the recently ended ones.
func (e *Engine) Deployments() []Deployment {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Deployment, 0, len(e.deployments)+len(e.ended))
	for _, d := range e.deployments {
		out = append(out, d.Deployment)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	for i := len(e.ended) - 1; i >= 0; i-- {
		out = append(out, e.ended[i])
	}
	return out
}

// StableVersions returns each service's stable version, where the tracker
// knows one, for checkpoints; SeedStable gives it back to a replica taking
// the service over.
func (e *Engine) StableVersions() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.tracks))
	for svc, t := range e.tracks {
		if t.Stable != "" {
			out[svc] = t.Stable
		}
	}
	return out
}

// SeedStable sets a guarded service's stable version when the tracker
// knows none yet (a replica taking the service over, which saw none of its
// traffic), so that the first version it sees is not taken for the stable
// one. It reports whether it did.
func (e *Engine) SeedStable(service, version string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tracks[service]
	if version == "" || t.Stable != "" || !e.guarded(service) {
		return false
	}
	t.Stable = version
	e.tracks[service] = t
	return true
}

// TestState is the state of a deployment's sequential tests, kept in a
// checkpoint so that a replica taking the deployment over (failover) or a
// restarted daemon goes on with the same evidence instead of spending α
// again from scratch.
type TestState struct {
	Service    string `json:"service"`
	Deployment string `json:"deployment"`
	// From is the start of the data the tests use.
	From time.Time `json:"from"`
	// Tests are each count test's checkpoint (CountTest.MarshalBinary),
	// by guard, signal and arm: "guard/arm".
	Tests map[string]json.RawMessage `json:"tests"`
	// Boundaries are the latency arms' bucket bounds the tests count
	// against, by the same key.
	Boundaries map[string]float64 `json:"boundaries,omitempty"`
}

// TestStates are the tests of every deployment under way.
func (e *Engine) TestStates() []TestState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]TestState, 0, len(e.deployments))
	for _, service := range slices.Sorted(maps.Keys(e.deployments)) {
		d := e.deployments[service]
		st := TestState{Service: service, Deployment: d.ID, From: d.from(), Tests: map[string]json.RawMessage{}, Boundaries: map[string]float64{}}
		for name, r := range d.guards {
			for _, sr := range r.signals {
				for _, a := range sr.arms {
					if a.rule != nil || a.test == nil || a.test.Ticks == 0 {
						continue
					}
					if b, err := a.test.MarshalBinary(); err == nil {
						st.Tests[name+"/"+a.name] = b
						if a.boundary > 0 {
							st.Boundaries[name+"/"+a.name] = a.boundary
						}
					}
				}
			}
		}
		out = append(out, st)
	}
	return out
}

// ResumeTests reopens a deployment as Resume does, then restores the tests
// a checkpoint kept for it (RestoreTests). It returns how many tests were
// restored.
func (e *Engine) ResumeTests(d Deployment, st TestState, now time.Time) int {
	e.mu.Lock()
	required := d.StartedAt
	if cur := e.deployments[d.Service]; cur != nil && cur.ID == d.ID {
		required = cur.from()
	}
	e.mu.Unlock()
	e.Resume(d, now)
	return e.restoreTests(st, required, now)
}

// RestoreTests gives the deployment under way the tests a checkpoint kept
// for it, when it is the same deployment; it opens nothing. Each test whose
// guard, signal, tolerance and α are unchanged goes on from its state (the
// data between the checkpoint and now are lost, not counted twice:
// increments that began before now are left out); the others start afresh
// from now. Tests whose data began before the deployment's current tests
// did (a checkpoint from before a mitigation restarted them) are not
// restored. It returns how many tests were restored.
func (e *Engine) RestoreTests(st TestState, now time.Time) int {
	e.mu.Lock()
	cur := e.deployments[st.Service]
	if cur == nil || cur.ID != st.Deployment {
		e.mu.Unlock()
		return 0
	}
	required := cur.from()
	d := cur.Deployment
	e.mu.Unlock()
	e.Resume(d, now)
	return e.restoreTests(st, required, now)
}

func (e *Engine) restoreTests(st TestState, required, now time.Time) int {
	defer e.report()
	e.mu.Lock()
	defer e.mu.Unlock()
	dr := e.deployments[st.Service]
	if dr == nil || dr.ID != st.Deployment || st.From.Before(required) {
		return 0
	}
	restored := 0
	for _, g := range e.guardsOf(st.Service) {
		r := dr.run(g, now)
		for _, sr := range r.signals {
			for _, a := range sr.arms {
				raw, ok := st.Tests[g.Name+"/"+a.name]
				if !ok || a.rule != nil || a.test == nil {
					continue
				}
				t := new(CountTest)
				if err := t.UnmarshalBinary(raw); err != nil || t.Theta0() != a.test.Theta0() || t.alpha != a.test.alpha {
					continue
				}
				if a.quantile > 0 {
					b := st.Boundaries[g.Name+"/"+a.name]
					if !(b > 0) {
						continue // counted against a bound we no longer know
					}
					a.boundary = b
				}
				a.test = t
				restored++
			}
		}
	}
	if restored > 0 && st.From.Before(dr.testFrom) {
		// The evidence goes back to the checkpoint's start; only
		// increments that began before now stay out.
		dr.testFrom = st.From
		if n := len(dr.restarts); n > 0 && dr.restarts[n-1].Equal(now) {
			dr.restarts = dr.restarts[:n-1]
		}
	}
	return restored
}
