package detector

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sample"
)

// signalRun is one signal of one guard on one deployment: its per-tick
// aggregates per cohort and its tests. An error ratio has one test; a
// latency signal has one per quantile (α split across them), each counting
// the requests slower than the baseline's quantile boundary.
type signalRun struct {
	cfg    configs.SignalConfig
	metric string // the input metric its samples arrive under
	arms   []*arm
	cur    [2]tick // the batch being filled, per cohort
	// pods is the same batch per pod (instance), per cohort: the blocks
	// the count test takes as its units of independence.
	pods       [2]map[string]*tick
	lastReport [2]time.Time // last sample with traffic, per cohort
	lastBatch  time.Time
	flushed    bool          // the tests' held ticks were flushed since lastBatch
	batchGap   time.Duration // the running mean time between batches
	burst      time.Duration // the guard's burst (an excursion shorter is not a version effect); −1: DefaultBurstTicks evaluations
	// base is the baseline's latency distribution over the batches consumed
	// so far: boundaries are chosen from it before each batch is tested, so
	// the test stays a supermartingale.
	base     tick
	evidence []Evidence

	// Before/after: pre is the service's traffic in the window before the
	// deployment; mode is decided once (cohort or before_after).
	baseline configs.BaselineConfig
	alpha    float64
	pre      tick
	mode     string

	// SLO: the candidate's ticks over the longest burn window.
	slo      []stampedTick
	sloFired bool

	// points is the evidence after each tested batch, for charts.
	points []Point
}

// Point is a signal's evidence after one tested batch: running counts and
// e-values per test, from which charts draw baseline against candidate
// over time.
type Point struct {
	At   time.Time  `json:"at"`
	Arms []ArmPoint `json:"arms"`
}

// ArmPoint is one test's running counts at a Point.
type ArmPoint struct {
	Signal    string       `json:"signal"`
	State     State        `json:"state"`
	Candidate CohortCounts `json:"candidate"`
	Baseline  CohortCounts `json:"baseline"`
	EValue    Float        `json:"e_value"`
	Threshold float64      `json:"threshold"`
	// Theta0 is 1 + tolerance: the candidate regresses above Theta0 times
	// the baseline's rate.
	Theta0 float64 `json:"theta0"`
}

// maxPoints bounds a signal's chart history (two hours of 10 s ticks).
const maxPoints = 720

// record keeps the evidence of a tested batch.
func (sr *signalRun) record(now time.Time, evs []Evidence) {
	p := Point{At: now}
	for _, ev := range evs {
		p.Arms = append(p.Arms, ArmPoint{Signal: ev.Signal, State: ev.State, Candidate: ev.Candidate,
			Baseline: ev.Baseline, EValue: ev.EValue, Threshold: ev.Threshold, Theta0: ev.Theta0})
	}
	if len(sr.points) == maxPoints {
		copy(sr.points, sr.points[1:])
		sr.points = sr.points[:maxPoints-1]
	}
	sr.points = append(sr.points, p)
}

// arm is one test of a signal.
type arm struct {
	name     string
	quantile float64 // latency: the baseline quantile; 0 for an error ratio
	boundary float64 // latency: the bucket bound in use; 0 until chosen
	test     *CountTest
	// Before/after: the candidate against the before-window's rate.
	rate    *RateTest
	preRate float64 // the before-window's observed rate
	// preModel is what the reference assumed: the window's dispersion φ
	// between its ticks (preWindow).
	preModel *Model
	ref      preWindow
	// rule, when the signal is a rule-based check instead of the test.
	rule *ruleState
}

// ruleState is an Argo/Flagger-style check: every interval, fail when the
// candidate's value is above max or above max_ratio times the baseline's.
type ruleState struct {
	cfg                   configs.RuleConfig
	from                  time.Time
	acc                   [2]tick
	checks, failures, run int
	lastCand, lastBase    float64
	failed                bool
	totals                [2]tick
}

// tick aggregates one cohort's samples of one batch.
type tick struct {
	total, bad float64
	// cum: observations <= bound, for latency signals.
	cum map[float64]float64
	// parts are a before-window's own ticks, oldest first (history.snapshot):
	// how much they vary is what widens the before/after reference.
	parts []tick
}

// latencyScale is the exponential-histogram scale latency is compared at:
// finer histograms are downscaled so that every sample shares the bounds
// (2^(1/4), about 19 % apart).
const latencyScale = 2

func newSignalRun(g *configs.GuardConfig, s configs.SignalConfig, start time.Time) *signalRun {
	sr := &signalRun{cfg: s, metric: configs.InputMetric(*g, s), lastReport: [2]time.Time{start, start}, burst: -1}
	if g.Burst != nil {
		sr.burst = time.Duration(*g.Burst)
	}
	theta0 := 1 + s.Tolerance
	switch s.Type {
	case configs.SignalLatency:
		alpha := g.SignalAlpha() / float64(len(s.Quantiles))
		for _, q := range s.Quantiles {
			sr.arms = append(sr.arms, &arm{name: s.Name + ":p" + strconv.FormatFloat(q*100, 'f', -1, 64), quantile: q, test: NewCountTest(theta0, alpha)})
		}
	case configs.SignalSaturation:
		sr.arms = []*arm{{name: s.Name, test: NewGaugeTest(theta0, g.SignalAlpha())}}
	case configs.SignalThroughput:
		if s.TotalMetric == "" {
			theta0 = math.Max(theta0, 1+ThroughputWeightTolerance)
		}
		sr.arms = []*arm{{name: s.Name, test: NewCountTest(theta0, g.SignalAlpha())}}
	default:
		sr.arms = []*arm{{name: s.Name, test: NewCountTest(theta0, g.SignalAlpha())}}
	}
	if s.Rule != nil {
		for _, a := range sr.arms {
			a.rule = &ruleState{cfg: *s.Rule, from: start}
		}
	}
	return sr
}

// reads reports whether the signal reads metric.
func (sr *signalRun) reads(metric string) bool { return reads(&sr.cfg, sr.metric, metric) }

// reads reports whether a signal of input metric input reads metric.
func reads(cfg *configs.SignalConfig, input, metric string) bool {
	return metric == input || ((cfg.Type == configs.SignalDataIntegrity || cfg.Type == configs.SignalThroughput) && cfg.TotalMetric != "" && metric == cfg.TotalMetric)
}

// ThroughputWeightTolerance is the least tolerance a throughput signal
// without total_metric is tested with: its reference is then the declared
// weight, and the share a load balancer realises is seldom exactly that
// (kube-proxy splits connections, not requests; a mesh rounds weights).
// A canary declared at 5 % that receives 4.3 % of the requests served its
// share (issue 12's nuisance case); at 25 % it is not taken for one
// serving less.
const ThroughputWeightTolerance = 0.25

// add folds one sample from pod into the cohort's batch. A gauge reading
// without a pod is its own block, by series (a pool, a queue): readings,
// not requests, are what a saturation test counts.
func (sr *signalRun) add(s *sample.Sample, cohort int, now time.Time, pod string) {
	if fold(&sr.cur[cohort], &sr.cfg, sr.metric, s) {
		sr.lastReport[cohort] = now
	}
	if pod == "" && sr.cfg.Type == configs.SignalSaturation {
		pod = s.Labels.String()
	}
	fold(sr.pod(cohort, pod), &sr.cfg, sr.metric, s)
}

// merge adds an aggregate from pod (a sidecar's, already folded) to the
// cohort's batch.
func (sr *signalRun) merge(t tick, cohort int, now time.Time, pod string) {
	sr.cur[cohort].merge(t)
	sr.pod(cohort, pod).merge(t)
	if t.total > 0 {
		sr.lastReport[cohort] = now
	}
}

// reset empties the batch.
func (sr *signalRun) reset() {
	sr.cur = [2]tick{}
	clear(sr.pods[candidate])
	clear(sr.pods[baseline])
}

// quietFlush is how many evaluation intervals — or usual gaps between
// batches, if longer — without a batch make the tests flush the ticks they
// hold.
const quietFlush = 3

// quiet is how long without a batch means the data stopped: quietFlush
// usual gaps between batches (or evaluation intervals, if longer); while
// the cadence is not known yet, ten evaluation intervals (at most the
// no-data timeout) — longer than the minute OpenTelemetry SDKs export at
// by default, at the default 10 s evaluation.
func (sr *signalRun) quiet(interval, noData time.Duration) time.Duration {
	q := quietFlush * max(interval, sr.batchGap)
	if sr.batchGap == 0 {
		q = max(q, min(noData, unknownCadence*interval))
	}
	return q
}

// burstTicks is the guard's burst in ticks (batches): at the evaluation
// interval, or at the batches' own cadence where exporters report clearly
// less often (an SDK exporting every minute at a 10 s evaluation); −1 when
// the burst budget is off. Any cap leaves the tests valid (the capped
// e-value is never above the uncapped one), so it may follow the cadence.
func (sr *signalRun) burstTicks(interval time.Duration) int {
	d := sr.burstOf(interval)
	if d <= 0 || interval <= 0 {
		return -1
	}
	cadence := interval
	if sr.batchGap >= 3*interval {
		cadence = sr.batchGap
	}
	return int(math.Ceil(float64(d) / float64(cadence)))
}

// burstOf is the guard's burst as a duration: unset, DefaultBurstTicks
// evaluation intervals.
func (sr *signalRun) burstOf(interval time.Duration) time.Duration {
	if sr.burst < 0 {
		return DefaultBurstTicks * interval
	}
	return sr.burst
}

// unknownCadence is quiet's wait, in evaluation intervals, before the
// second batch.
const unknownCadence = 10

// maxBatchPods bounds the pods of a cohort in one batch; the rest share
// one block.
const maxBatchPods = 512

// otherPods is the block of pods beyond maxBatchPods, and noPod that of
// samples without a pod label.
const (
	otherPods = "(other pods)"
	noPod     = "(no pod label)"
)

func (sr *signalRun) pod(cohort int, pod string) *tick {
	if pod == "" {
		pod = noPod
	}
	m := sr.pods[cohort]
	if m == nil {
		m = map[string]*tick{}
		sr.pods[cohort] = m
	}
	t := m[pod]
	if t == nil {
		if len(m) >= maxBatchPods {
			pod = otherPods
			if t = m[pod]; t != nil {
				return t
			}
		}
		t = &tick{}
		m[pod] = t
	}
	return t
}

// blocks are a cohort's batch for an arm, one per pod of names (podNames): bad
// events (slower than the arm's boundary for latency) and totals. ok is
// false when a pod's histograms lack the boundary; the cohort is then one
// block.
func (sr *signalRun) blocks(cohort int, names []string, boundary float64, buf []Block) (out []Block, ok bool) {
	out = buf[:0]
	for _, n := range names {
		t := sr.pods[cohort][n]
		bad := t.bad
		if boundary > 0 {
			x, ok := t.exceed(boundary)
			if !ok {
				return buf[:0], false
			}
			bad = x
		}
		out = append(out, Block{Pod: n, Bad: bad, Total: t.total})
	}
	return out, len(out) > 0
}

// podNames are the cohort's pods with traffic in the batch, in order.
func (sr *signalRun) podNames(cohort int) []string {
	names := make([]string, 0, len(sr.pods[cohort]))
	for n, t := range sr.pods[cohort] {
		if t.total > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// fold adds one sample to t as the signal (of input metric input) counts
// it, and reports whether the sample carried traffic: the cohort reported.
// The engine and the sidecars' Aggregator share it, so that a sample
// counts the same wherever it is folded.
func fold(t *tick, cfg *configs.SignalConfig, input string, s *sample.Sample) (traffic bool) {
	n := s.Value
	if s.Kind == sample.KindHistogram {
		n = s.Count
	}
	switch cfg.Type {
	case configs.SignalSaturation:
		if s.Kind != sample.KindGauge || math.IsNaN(s.Value) {
			return false
		}
		// Each reading is a trial; a saturated one is a bad event.
		t.total++
		if s.Value > cfg.Level {
			t.bad++
		}
		return true
	case configs.SignalThroughput:
		if s.Kind == sample.KindGauge {
			return false
		}
		// Successful requests are the events; their split between the
		// cohorts is compared with the realised share of all requests
		// where total_metric counts them (as the load balancer or mesh
		// sent them), else with the declared weight.
		if cfg.TotalMetric != "" && s.Metric == cfg.TotalMetric && s.Metric != input {
			t.total += n
			return n > 0
		}
		if code, err := strconv.Atoi(s.Labels.Get(cfg.StatusLabel)); err != nil || code < cfg.BadStatusMin {
			t.bad += n
		}
		if cfg.TotalMetric == "" {
			t.total += n
		}
		return n > 0
	case configs.SignalDataIntegrity:
		if s.Metric == input && s.Metric != cfg.TotalMetric {
			if s.Kind == sample.KindCounter && s.Value > 0 {
				t.bad += s.Value
			}
			return false
		}
	}
	if s.Kind == sample.KindGauge {
		return false
	}
	switch cfg.Type {
	case configs.SignalDataIntegrity:
	case configs.SignalLatency:
		if s.Kind != sample.KindHistogram {
			return false
		}
		addLatency(t, s)
	default:
		if code, err := strconv.Atoi(s.Labels.Get(cfg.StatusLabel)); err == nil && code >= cfg.BadStatusMin {
			t.bad += n
		}
	}
	if n > 0 {
		t.total += n
		return true
	}
	return false
}

func addLatency(t *tick, s *sample.Sample) {
	if t.cum == nil {
		t.cum = map[float64]float64{}
	}
	switch {
	case s.LE != nil:
		t.cum[s.LE.UpperBound] += s.LE.Count
	case len(s.Buckets) > 0:
		run := 0.0
		for _, b := range s.Buckets {
			run += b.Count
			t.cum[b.UpperBound] += run
		}
	case s.Native != nil:
		h := s.Native.Downscale(latencyScale)
		run := h.ZeroCount
		for _, c := range h.Negative.Counts {
			run += c // durations are not negative; count them as fast
		}
		for i, c := range h.Positive.Counts {
			run += c
			t.cum[sample.UpperBound(h.Scale, h.Positive.Offset+int32(i))] += run
		}
	}
}

// exceed is how many of the batch's observations were slower than bound,
// or false when the batch's histograms do not have that bound.
func (t tick) exceed(bound float64) (float64, bool) {
	c, ok := t.cum[bound]
	if !ok {
		return 0, false
	}
	return math.Max(0, t.total-c), true
}

// boundary picks the smallest bound at or above the baseline's quantile q,
// once the baseline has enough observations for it to mean something.
func (t tick) boundary(q float64) float64 {
	if t.total < 10/(1-q) {
		return 0
	}
	bounds := make([]float64, 0, len(t.cum))
	for b := range t.cum {
		if !math.IsInf(b, 1) {
			bounds = append(bounds, b)
		}
	}
	sort.Float64s(bounds)
	for _, b := range bounds {
		if t.cum[b] >= q*t.total {
			return b
		}
	}
	return 0
}

func (t *tick) merge(o tick) {
	t.total += o.total
	t.bad += o.bad
	if len(o.cum) > 0 && t.cum == nil {
		t.cum = map[float64]float64{}
	}
	for b, c := range o.cum {
		t.cum[b] += c
	}
}

// evaluate closes the batch when both cohorts have had traffic since the
// last one, tests it, and returns every arm's evidence. Pairing on "both
// reported" rather than on wall-clock ticks keeps each batch's traffic
// share honest when the cohorts export out of phase.
func (sr *signalRun) evaluate(d *deploymentRun, now time.Time, noData, interval time.Duration) []Evidence {
	if sr.cfg.Type == configs.SignalSLO {
		return sr.evaluateSLO(d, now, noData)
	}
	if sr.cfg.Type == configs.SignalThroughput {
		return sr.evaluateThroughput(d, now, noData)
	}
	if sr.decideMode(d, now, interval); sr.mode == configs.BaselineBeforeAfter {
		return sr.evaluateBeforeAfter(d, now, noData)
	}
	c, b := sr.cur[candidate], sr.cur[baseline]
	if c.total > 0 && b.total > 0 {
		burst := sr.burstTicks(interval)
		for _, a := range sr.arms {
			if a.test != nil {
				a.test.BurstTicks = burst
			}
		}
		var cb, bb []Block
		cn, bn := sr.podNames(candidate), sr.podNames(baseline)
		observe := func(a *arm, x, y float64) {
			var okc, okb bool
			cb, okc = sr.blocks(candidate, cn, a.boundary, cb)
			bb, okb = sr.blocks(baseline, bn, a.boundary, bb)
			if !okc || !okb {
				a.test.Observe(x, c.total, y, b.total)
				return
			}
			a.test.ObserveBlocks(cb, bb)
		}
		for _, a := range sr.arms {
			if a.rule != nil {
				a.rule.acc[candidate].merge(c)
				a.rule.acc[baseline].merge(b)
				continue
			}
			if a.quantile == 0 {
				observe(a, c.bad, b.bad)
				continue
			}
			if a.boundary == 0 {
				a.boundary = sr.base.boundary(a.quantile)
			}
			if a.boundary == 0 {
				continue // the baseline is too small yet to place the boundary
			}
			x, okc := c.exceed(a.boundary)
			y, okb := b.exceed(a.boundary)
			if okc && okb {
				observe(a, x, y)
			}
		}
		sr.base.merge(b)
		sr.reset()
		if !sr.lastBatch.IsZero() {
			// The cadence batches close at: exporters report every 10 s
			// or every minute, whatever the evaluation interval.
			gap := now.Sub(sr.lastBatch)
			if sr.batchGap == 0 {
				sr.batchGap = gap
			} else {
				sr.batchGap += (gap - sr.batchGap) / 8
			}
		}
		sr.lastBatch = now
		sr.flushed = false
	} else if !sr.flushed && !sr.lastBatch.IsZero() && now.Sub(sr.lastBatch) >= sr.quiet(interval, noData) {
		// The data stopped: what the tests hold for the tick after (a
		// shock's end) is tested as it is.
		for _, a := range sr.arms {
			if a.rule == nil && a.test != nil {
				a.test.Flush()
			}
		}
		sr.flushed = true
	}
	sr.evidence = sr.evidence[:0]
	for _, a := range sr.arms {
		if a.rule != nil {
			a.rule.check(a.quantile, now)
			sr.evidence = append(sr.evidence, a.ruleEvidence(sr, d, now, noData))
			continue
		}
		sr.evidence = append(sr.evidence, a.evidence(sr, d, now, noData))
	}
	return sr.evidence
}

// value is what a rule compares: the bad ratio, or for a latency arm the
// quantile's bucket bound (seconds); ok is false without enough data.
func ruleValue(t tick, quantile float64) (float64, bool) {
	if t.total <= 0 {
		return 0, false
	}
	if quantile == 0 {
		return t.bad / t.total, true
	}
	b := t.boundary(quantile)
	return b, b > 0
}

// check runs the checks whose interval has passed.
func (r *ruleState) check(quantile float64, now time.Time) {
	if now.Sub(r.from) < time.Duration(r.cfg.Interval) {
		return
	}
	r.from = now
	cand, okc := ruleValue(r.acc[candidate], quantile)
	base, okb := ruleValue(r.acc[baseline], quantile)
	r.totals[candidate].merge(r.acc[candidate])
	r.totals[baseline].merge(r.acc[baseline])
	r.acc = [2]tick{}
	if !okc || !okb {
		return // no traffic this interval: no check
	}
	r.checks++
	r.lastCand, r.lastBase = cand, base
	fail := (r.cfg.Max > 0 && cand > r.cfg.Max) || (r.cfg.MaxRatio > 0 && cand > r.cfg.MaxRatio*base)
	if fail {
		r.failures++
		r.run++
	} else {
		r.run = 0
	}
	n := r.failures
	if r.cfg.Consecutive {
		n = r.run
	}
	if n >= r.cfg.FailureLimit {
		r.failed = true
	}
}

func (a *arm) ruleEvidence(sr *signalRun, d *deploymentRun, now time.Time, noData time.Duration) Evidence {
	r := a.rule
	ev := Evidence{Signal: a.name, Kind: "rule", Quantile: a.quantile, Ticks: r.checks,
		Baseline:  cohortCounts(d.PreviousVersion, r.totals[baseline].total, r.totals[baseline].bad),
		Candidate: cohortCounts(d.Version, r.totals[candidate].total, r.totals[candidate].bad),
		Threshold: float64(r.cfg.FailureLimit),
		Estimate:  Float(r.lastCand), EValue: 1, PValue: 1, IntervalHigh: Float(math.Inf(1)),
		WindowStart: d.from(), WindowEnd: sr.lastBatch}
	kind := "total"
	if r.cfg.Consecutive {
		kind = "consecutive"
	}
	switch {
	case r.failed:
		ev.State = StateRegressed
		ev.Reason = fmt.Sprintf("rule-based: %d %s failed checks of %s (last: candidate %.4g against baseline %.4g; max %g, max_ratio %g)",
			r.cfg.FailureLimit, kind, time.Duration(r.cfg.Interval), r.lastCand, r.lastBase, r.cfg.Max, r.cfg.MaxRatio)
	case now.Sub(sr.lastReport[candidate]) > noData:
		ev.State = StateNoData
		ev.Reason = "candidate " + d.Version + " has had no traffic for " + now.Sub(sr.lastReport[candidate]).Round(time.Second).String()
	case now.Sub(sr.lastReport[baseline]) > noData:
		ev.State = StateNoData
		ev.Reason = "baseline " + d.PreviousVersion + " has had no traffic for " + now.Sub(sr.lastReport[baseline]).Round(time.Second).String()
	default:
		ev.State = StateInconclusive
		ev.Reason = fmt.Sprintf("rule-based: %d of %d checks failed", r.failures, r.checks)
	}
	return ev
}

// The multiwindow, multi-burn-rate rule of the Google SRE workbook: page
// when the error budget burns 14.4 times too fast over both 1 h and 5 m,
// or 6 times over both 6 h and 30 m.
var burnRules = []struct {
	long, short time.Duration
	rate        float64
}{{time.Hour, 5 * time.Minute, 14.4}, {6 * time.Hour, 30 * time.Minute, 6}}

// evaluateSLO checks the candidate alone against the absolute objective.
func (sr *signalRun) evaluateSLO(d *deploymentRun, now time.Time, noData time.Duration) []Evidence {
	if c := sr.cur[candidate]; c.total > 0 {
		sr.slo = append(sr.slo, stampedTick{at: now, t: c})
		sr.reset()
		sr.lastBatch = now
	}
	for len(sr.slo) > 0 && now.Sub(sr.slo[0].at) > burnRules[len(burnRules)-1].long {
		sr.slo = sr.slo[1:]
	}
	budget := 1 - sr.cfg.Objective
	burn := func(w time.Duration) (float64, tick) {
		var t tick
		for _, st := range sr.slo {
			if now.Sub(st.at) <= w {
				t.merge(st.t)
			}
		}
		if t.total == 0 {
			return 0, t
		}
		return t.bad / t.total / budget, t
	}
	var total tick
	for _, st := range sr.slo {
		total.merge(st.t)
	}
	ev := Evidence{Signal: sr.cfg.Name, Kind: "rule", Theta0: sr.cfg.Objective, EValue: 1, PValue: 1,
		Candidate:    cohortCounts(d.Version, total.total, total.bad),
		IntervalHigh: Float(math.Inf(1)), WindowStart: d.from(), WindowEnd: sr.lastBatch, Ticks: len(sr.slo)}
	ev.State = StateInconclusive
	for _, r := range burnRules {
		long, _ := burn(r.long)
		short, _ := burn(r.short)
		if long >= r.rate && short >= r.rate {
			ev.State, ev.Estimate, ev.Threshold = StateRegressed, Float(short), r.rate
			ev.Reason = fmt.Sprintf("rule-based SLO burn: the error budget of objective %g burns %.1fx over %s and %.1fx over %s, at or above %gx",
				sr.cfg.Objective, long, r.long, short, r.short, r.rate)
			sr.sloFired = true
			break
		}
	}
	if sr.sloFired && ev.State != StateRegressed {
		ev.State, ev.Reason = StateRegressed, "rule-based SLO burn fired earlier in this deployment"
	}
	if ev.State != StateRegressed && now.Sub(sr.lastReport[candidate]) > noData {
		ev.State = StateNoData
		ev.Reason = "candidate " + d.Version + " has had no traffic for " + now.Sub(sr.lastReport[candidate]).Round(time.Second).String()
	}
	sr.evidence = append(sr.evidence[:0], ev)
	return sr.evidence
}

// evaluateThroughput tests whether the baseline serves more of the
// successful requests than its share of the traffic gives it — the
// candidate less: the count test with the cohorts' roles swapped. The
// share is the realised one where total_metric counts the requests each
// version was sent (per batch: the candidate's share of them), else the
// declared weight, tested with at least ThroughputWeightTolerance.
func (sr *signalRun) evaluateThroughput(d *deploymentRun, now time.Time, noData time.Duration) []Evidence {
	a := sr.arms[0]
	w := d.Weight / 100
	c, b := sr.cur[candidate], sr.cur[baseline]
	realised := sr.cfg.TotalMetric != ""
	if realised {
		if c.total > 0 && b.total > 0 && now.Sub(sr.lastBatch) >= 0 {
			a.test.Observe(b.bad, b.total, c.bad, c.total)
			sr.reset()
			sr.lastBatch = now
		}
	} else if w > 0 && (c.total > 0 || b.total > 0) && now.Sub(sr.lastBatch) >= 0 {
		a.test.Observe(b.bad, 1-w, c.bad, w)
		sr.reset()
		sr.lastBatch = now
	}
	t := a.test
	ev := Evidence{Signal: a.name, Kind: "sequential", Theta0: t.Theta0(), Alpha: t.alpha, Threshold: t.Threshold(),
		// Totals are successful requests; Ratio is each version's share of them.
		Baseline:  CohortCounts{Version: d.PreviousVersion, Total: t.CandidateBad},
		Candidate: CohortCounts{Version: d.Version, Total: t.BaselineBad},
		EValue:    Float(t.EValue()), LogEValue: t.LogEValue(), PValue: t.PValue(), Ticks: t.Ticks, Estimate: Float(math.NaN()),
		IntervalHigh: Float(math.Inf(1)), WindowStart: d.from(), WindowEnd: sr.lastBatch}
	succ := t.CandidateBad + t.BaselineBad
	share := 0.0
	if succ > 0 {
		share = t.BaselineBad / succ
		ev.Candidate.Ratio, ev.Baseline.Ratio = share, 1-share
	}
	ref := fmt.Sprintf("its weight of %g%%", d.Weight)
	if realised {
		ref = fmt.Sprintf("its share of %.3g%% of the requests sent (%s)", 100*t.BaselineTotal/math.Max(t.BaselineTotal+t.CandidateTotal, 1), sr.cfg.TotalMetric)
	}
	switch {
	case w == 0 && !realised:
		ev.State = StateNoData
		ev.Reason = "the deployment declares no traffic weight: announce it with weight, or set total_metric, to check throughput"
	case t.Regressed():
		ev.State = StateRegressed
		ev.Reason = fmt.Sprintf("the candidate served %.3g%% of successful requests where %s predicts more", 100*share, ref)
	case now.Sub(sr.lastReport[baseline]) > noData && now.Sub(sr.lastReport[candidate]) > noData:
		ev.State = StateNoData
		ev.Reason = "no traffic for " + now.Sub(sr.lastReport[candidate]).Round(time.Second).String()
	default:
		ev.State = StateInconclusive
		ev.Reason = fmt.Sprintf("the candidate served %.3g%% of successful requests against %s (tolerance %.3g)", 100*share, ref, t.Theta0()-1)
	}
	sr.evidence = append(sr.evidence[:0], ev)
	return sr.evidence
}

// decideMode settles, once, whether the candidate is compared with the
// stable version (cohort) or with the service's own before-window. auto
// takes before/after for an all-at-once or blue/green release, or when the
// stable version has not reported for two ticks after the deployment began
// while the candidate has.
func (sr *signalRun) decideMode(d *deploymentRun, now time.Time, interval time.Duration) {
	if sr.mode != "" {
		return
	}
	switch sr.baseline.Mode {
	case configs.BaselineCohort:
		sr.mode = configs.BaselineCohort
	case configs.BaselineBeforeAfter:
		sr.mode = configs.BaselineBeforeAfter
	default:
		switch {
		case d.Strategy == "all_at_once" || d.Strategy == "blue_green":
			sr.mode = configs.BaselineBeforeAfter
		case sr.lastReport[baseline].After(d.from()):
			sr.mode = configs.BaselineCohort
		case sr.lastReport[candidate].After(d.from()) && now.Sub(d.from()) >= 2*interval:
			sr.mode = configs.BaselineBeforeAfter
		default:
			return // undecided yet: keep filling the batch
		}
	}
	if sr.mode != configs.BaselineBeforeAfter {
		return
	}
	// The before-window's rate is estimated: test against its upper
	// confidence bound at α/2, with the other α/2 for the sequential test,
	// so that a false alarm needs one of two events of probability α/2.
	// Both are widened by the dispersion φ seen between the window's ticks:
	// the bound is quasi-binomial (the window's counts worth total/φ
	// independent requests), and the candidate's ticks, taken to vary as
	// the window's did, are tested with their likelihood tempered by φ.
	// The candidate is the whole service, one source: a short excursion
	// (an outage downstream) must persist to count (the burst budget).
	for _, a := range sr.arms {
		alpha := a.test.alpha / 2
		bad, total := sr.pre.bad, sr.pre.total
		count := func(t tick) (float64, bool) { return t.bad, true }
		if a.quantile > 0 {
			a.boundary = sr.pre.boundary(a.quantile)
			x, ok := sr.pre.exceed(a.boundary)
			if a.boundary == 0 || !ok {
				continue
			}
			bad = x
			count = func(t tick) (float64, bool) { return t.exceed(a.boundary) }
		}
		if total < sr.baseline.MinRequests || total == 0 {
			continue
		}
		a.preRate = bad / total
		a.ref = windowDispersion(sr.pre.parts, count)
		a.ref.bound = quasiRateUpperBound(bad, total, a.ref.phi, alpha)
		a.preModel = &Model{Dispersion: a.ref.phi, CandidatePods: 1, BaselinePods: 1, Assumption: BeforeAfterAssumption}
		p0 := math.Min((1+sr.cfg.Tolerance)*a.ref.bound, 0.999)
		a.rate = NewRateTest(p0, alpha).Tempered(a.ref.phi).WithBurstBudget(sr.burstTicks(interval))
		if sr.burstTicks(interval) > 0 {
			a.ref.burst = sr.burstOf(interval)
		}
	}
}

// preWindow is what a before/after reference learnt of its window.
type preWindow struct {
	// phi is the dispersion between the window's ticks (≥ 1), ticks how
	// many taught it, extreme how many were left out as outliers.
	phi            float64
	ticks, extreme int
	// bound is the reference rate's upper confidence bound at φ.
	bound float64
	// burst is the burst budget's excursion (0: none).
	burst time.Duration
}

// windowDispersion reads φ, the dispersion of a before-window, from its
// ticks' counts (count: a tick's bad events, or its requests above a
// latency boundary): their Pearson χ² around the window's rate over its
// degrees of freedom, with dispPrior degrees of freedom at 1 as elsewhere
// (dispersion.go), never below 1 — so a steady window keeps the binomial
// bound. Retries, bursts and noise that come and go within the window show
// here; a drift slower than the window does not (a 30 min window cannot
// tell a daily cycle from noise), and neither does anything the window did
// not see. A tick far above the window's median rate — six standard
// deviations and three events, an outage — does not teach φ, as in the
// count test's shock gate: one outage would otherwise mute the test for
// the whole watch; it stays in the window's rate, which it only raises.
func windowDispersion(parts []tick, count func(tick) (float64, bool)) preWindow {
	w := preWindow{phi: 1}
	rates := make([]float64, 0, len(parts))
	for _, t := range parts {
		if x, ok := count(t); ok && t.total > 0 {
			rates = append(rates, x/t.total)
		}
	}
	if len(rates) < 2 {
		return w
	}
	sort.Float64s(rates)
	m := (rates[(len(rates)-1)/2] + rates[len(rates)/2]) / 2
	var sumSq, bad, total float64
	k := 0
	for _, t := range parts {
		x, ok := count(t)
		if !ok || t.total <= 0 {
			continue
		}
		if mu := t.total * m; x-mu > 6*math.Sqrt(mu*(1-m))+3 {
			w.extreme++
			continue
		}
		sumSq += x * x / t.total
		bad += x
		total += t.total
		k++
	}
	var p pearson
	p.add(sumSq, bad, total, k)
	w.ticks = k
	w.phi = math.Max(1, p.phi())
	return w
}

// quasiRateUpperBound is rateUpperBound for counts phi times as variable as
// independent requests: bad of n count as bad/phi of n/phi.
func quasiRateUpperBound(bad, n, phi, delta float64) float64 {
	phi = math.Max(1, phi)
	return rateUpperBound(bad/phi, n/phi, delta)
}

// evaluateBeforeAfter tests the candidate's batches against the before-window.
func (sr *signalRun) evaluateBeforeAfter(d *deploymentRun, now time.Time, noData time.Duration) []Evidence {
	c := sr.cur[candidate]
	if c.total > 0 {
		for _, a := range sr.arms {
			if a.rate == nil {
				continue
			}
			x := c.bad
			if a.quantile > 0 {
				var ok bool
				if x, ok = c.exceed(a.boundary); !ok {
					continue
				}
			}
			a.rate.Observe(x, c.total)
		}
		sr.reset()
		sr.lastBatch = now
	}
	sr.evidence = sr.evidence[:0]
	for _, a := range sr.arms {
		ev := Evidence{Signal: a.name, Kind: "before_after", Theta0: 1 + sr.cfg.Tolerance, Alpha: a.test.alpha,
			Quantile: a.quantile, Boundary: a.boundary, WindowStart: d.from(), WindowEnd: sr.lastBatch,
			Baseline:     cohortCounts(d.PreviousVersion+" (before)", sr.pre.total, a.preRate*sr.pre.total),
			IntervalHigh: Float(math.Inf(1)), EValue: 1, PValue: 1, Model: beforeAfterModel}
		if a.preModel != nil {
			ev.Model = a.preModel
		}
		switch {
		case a.rate == nil:
			ev.State = StateNoData
			ev.Reason = fmt.Sprintf("the window before the deployment has %.0f requests, fewer than baseline.min_requests (%.0f): before/after cannot compare", sr.pre.total, sr.baseline.MinRequests)
			sr.evidence = append(sr.evidence, ev)
			continue
		}
		r := a.rate
		ev.Candidate = cohortCounts(d.Version, r.Total, r.Bad)
		ev.EValue, ev.LogEValue, ev.PValue, ev.Threshold, ev.Ticks = Float(r.EValue()), r.LogEValue(), r.PValue(), 1/r.alpha, r.Ticks
		ev.Estimate = Float(math.NaN())
		if a.preRate > 0 && r.Total > 0 {
			ev.Estimate = Float(r.Bad / r.Total / a.preRate)
		}
		switch {
		case r.Regressed():
			ev.State = StateRegressed
			ev.Reason = fmt.Sprintf("e-value reached 1/alpha: the candidate's rate %.3g%% is above the tolerance over the %.3g%% of the window before the deployment (assumed representative)",
				100*ev.Candidate.Ratio, 100*a.preRate) + a.ref.note(sr.baseline)
		case now.Sub(sr.lastReport[candidate]) > noData:
			ev.State = StateNoData
			ev.Reason = "candidate " + d.Version + " has had no traffic for " + now.Sub(sr.lastReport[candidate]).Round(time.Second).String()
		default:
			ev.State = StateInconclusive
		}
		sr.evidence = append(sr.evidence, ev)
	}
	return sr.evidence
}

// note says, for a verdict's reason, what the reference assumed of its window.
func (w preWindow) note(b configs.BaselineConfig) string {
	s := fmt.Sprintf("; reference: the %s before the deployment (%d ticks", time.Duration(b.Window), w.ticks)
	if w.extreme > 0 {
		s += fmt.Sprintf(", %d more far above the rest left out of φ", w.extreme)
	}
	s += fmt.Sprintf(", dispersion φ %.3g between them), bounded at %.3g%%; no longer history is kept, so not the same time of day or week", w.phi, 100*w.bound)
	if w.burst > 0 {
		s += fmt.Sprintf("; an excursion of %s or less is not taken for a version effect (burst budget)", w.burst)
	}
	return s
}

// beforeAfterModel is what a before/after comparison assumes: that the
// window before the deployment stands for what follows. A daily cycle or
// a trend breaks that, and then its false alarms exceed α (issue 12: 20 %
// under a ±30 % daily cycle, all runs under a +10 %/h trend, at α = 0.01,
// over a 6 h watch), so no α is claimed for it. Arms with a reference
// carry their own, with the window's φ (preWindow).
var beforeAfterModel = &Model{Dispersion: 1, Assumption: BeforeAfterAssumption}

// BeforeAfterAssumption is the assumption of a before/after comparison, in words.
const BeforeAfterAssumption = "before/after: the window before the deployment (baseline.window; no longer history is kept, so not the same time of day or week) is taken to stand for what follows, its rate bounded with the dispersion φ seen between its ticks; no α is claimed, since a daily cycle or a trend the window cannot show breaks it"

func (a *arm) evidence(sr *signalRun, d *deploymentRun, now time.Time, noData time.Duration) Evidence {
	t := a.test
	lo, hi := t.Interval()
	ev := Evidence{
		Signal: a.name, Kind: "sequential",
		Baseline:     cohortCounts(d.PreviousVersion, t.BaselineTotal, t.BaselineBad),
		Candidate:    cohortCounts(d.Version, t.CandidateTotal, t.CandidateBad),
		Estimate:     Float(t.Estimate()),
		IntervalLow:  Float(lo),
		IntervalHigh: Float(hi),
		Theta0:       t.Theta0(),
		EValue:       Float(t.EValue()),
		LogEValue:    t.LogEValue(),
		PValue:       t.PValue(),
		Threshold:    t.Threshold(),
		Alpha:        t.alpha,
		Ticks:        t.Ticks,
		Quantile:     a.quantile,
		Boundary:     a.boundary,
		WindowStart:  d.from(),
		WindowEnd:    sr.lastBatch,
		Model:        modelOf(t),
	}
	what := "bad-event rate"
	if a.quantile > 0 {
		what = fmt.Sprintf("share of requests slower than %s (%s)", seconds(a.boundary), BoundQuantile(ev))
	}
	switch {
	case t.Regressed():
		ev.State = StateRegressed
		ev.Reason = fmt.Sprintf("e-value reached 1/alpha: the candidate's %s is above the tolerance (%.3g%% against %.3g%%)",
			what, 100*ev.Candidate.Ratio, 100*ev.Baseline.Ratio)
	case now.Sub(sr.lastReport[candidate]) > noData:
		ev.State = StateNoData
		ev.Reason = "candidate " + d.Version + " has had no traffic for " + now.Sub(sr.lastReport[candidate]).Round(time.Second).String()
	case now.Sub(sr.lastReport[baseline]) > noData:
		ev.State = StateNoData
		ev.Reason = "baseline " + d.PreviousVersion + " has had no traffic for " + now.Sub(sr.lastReport[baseline]).Round(time.Second).String()
	case a.quantile > 0 && a.boundary == 0:
		ev.State = StateInconclusive
		ev.Reason = "waiting for enough baseline observations to place the quantile boundary"
	case hi <= t.Theta0():
		ev.State = StateHealthy
		ev.Reason = "the confidence interval excludes ratios above the tolerance"
	default:
		ev.State = StateInconclusive
	}
	return ev
}

// modelOf is what test assumed of the data.
func modelOf(t *CountTest) *Model {
	c, b := t.Pods()
	return &Model{Dispersion: t.Dispersion(), PodSpread: t.PodSpread(), Edge: t.Edge(),
		CandidatePods: c, BaselinePods: b, Assumption: t.Assumption()}
}

func seconds(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'g', 4, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'g', 4, 64) + " s"
}

func (sr *signalRun) regressed() bool {
	if sr.sloFired {
		return true
	}
	for _, a := range sr.arms {
		if a.test.Regressed() || (a.rate != nil && a.rate.Regressed()) || (a.rule != nil && a.rule.failed) {
			return true
		}
	}
	return false
}
