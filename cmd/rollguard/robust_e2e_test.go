package main

// End to end, the count test's robustness to traffic that is not made of
// independent requests (issue 12; docs/detection.md, "What the test
// assumes"): a fleet of pods, each exporting through the OpenTelemetry SDK
// with its service.instance.id, whose errors come in retry clusters.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
)

// The retry storm: every pod serves 100–200 requests a round; a request
// fails with probability stormErr and is retried twice, every attempt
// failing, so that errors come three at a time (φ ≈ 3).
//
// stormSeed is chosen, not typical. On its data the count test fed the
// fleet's summed counts — the daemon's own test, had the samples carried no
// pod label — alarms (round 3, log e-value 10.9 against a threshold of
// 7.0; without the burst budget, which now holds one-block cohorts back),
// while the test fed pod × tick blocks stays far below (1.1). Such
// data are rare with a tolerance of 10 %: over 3000 seeds of this fleet
// (θ₀ 1.1, α 0.001, 40 rounds) the summed test alarmed on 4, and a test
// taking every request as independent (φ = 1, no tempering) on 14, all
// within the first 13 rounds, before the candidate's share settles below
// the edge. The seed makes the healthy run a check that the pods reach the
// test: a daemon that lost the pod label would alarm on it. The regressed
// candidate is found on every one of those 3000 seeds, by round 3 on 69 %
// and by round 19 on all.
const (
	stormSeed     = 2815
	stormErr      = 0.03
	stormRatio    = 3.5 // the regressed candidate's failure rate over the baseline's
	stormRounds   = 40
	stormBasePods = 5
	stormTheta0   = 1.1   // 1 + the errors signal's default tolerance
	stormAlpha    = 0.001 // testConfig's
)

// stormPod is one pod of checkout: its own MeterProvider whose resource
// names the pod (service.instance.id), exporting through otlpmetrichttp
// when the test says.
type stormPod struct {
	name    string
	mp      *sdkmetric.MeterProvider
	hist    metric.Float64Histogram
	ok, bad metric.MeasurementOption
	errRate float64
	rng     *rand.Rand
}

func newStormPod(t *testing.T, endpoint, version string, index int, errRate float64) *stormPod {
	t.Helper()
	exp, err := otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(endpoint))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pod-%d", index)
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.version", version),
		attribute.String("service.instance.id", name))
	// A long interval: the test flushes each round itself.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	hist, err := mp.Meter("checkout").Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		t.Fatal(err)
	}
	return &stormPod{name: name, mp: mp, hist: hist, errRate: errRate, rng: rand.New(rand.NewPCG(stormSeed, uint64(index))),
		ok:  metric.WithAttributeSet(attribute.NewSet(attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200))),
		bad: metric.WithAttributeSet(attribute.NewSet(attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 503)))}
}

// serve draws one round — 100–200 requests, each failing with errRate and
// then retried twice, all three attempts failing and counted — records
// it, exports it, and returns the pod's block as the test should see it.
func (p *stormPod) serve(t *testing.T) detector.Block {
	t.Helper()
	n := 100 + p.rng.IntN(101)
	failed := 0
	for i := 0; i < n; i++ {
		if p.rng.Float64() < p.errRate {
			failed++
		}
	}
	ctx := context.Background()
	for i := 0; i < n-failed; i++ {
		p.hist.Record(ctx, 0.05+0.01*float64(i%10), p.ok)
	}
	for i := 0; i < 3*failed; i++ {
		p.hist.Record(ctx, 0.2, p.bad)
	}
	if err := p.mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export %s: %v", p.name, err)
	}
	return detector.Block{Pod: p.name, Bad: float64(3 * failed), Total: float64(n + 2*failed)}
}

// stormTick is one round's blocks, as the daemon should test them.
type stormTick struct{ cand, base []detector.Block }

// stormFleet is checkout's pods: one candidate (v2), stormBasePods baseline
// (v1), and the rounds they have served.
type stormFleet struct {
	cand  *stormPod
	base  []*stormPod
	ticks []stormTick
}

func newStormFleet(t *testing.T, td *testDaemon, candErr float64) *stormFleet {
	t.Helper()
	f := &stormFleet{cand: newStormPod(t, td.otlp, "v2", 0, candErr)}
	for i := 1; i <= stormBasePods; i++ {
		f.base = append(f.base, newStormPod(t, td.otlp, "v1", i, stormErr))
	}
	return f
}

// round has every pod serve and export one round — the baseline's first,
// then the candidate's, which completes the batch — and waits for the
// evaluation that tests it: one round is one tick.
func (f *stormFleet) round(t *testing.T, td *testDaemon) {
	t.Helper()
	var tk stormTick
	for _, p := range f.base {
		tk.base = append(tk.base, p.serve(t))
	}
	tk.cand = append(tk.cand, f.cand.serve(t))
	f.ticks = append(f.ticks, tk)
	td.nextEvaluation(t, "checkout")
}

// replay feeds the first n rounds to two tests built as the daemon builds
// its own: pods, fed the blocks (what the daemon should be), and summed,
// fed each cohort's summed counts (what the daemon would be without the
// pod label). It returns them and the round at which each first alarmed
// (0: never).
func (f *stormFleet) replay(n int) (pods, summed *detector.CountTest, podsAt, summedAt int) {
	pods, summed = detector.NewCountTest(stormTheta0, stormAlpha), detector.NewCountTest(stormTheta0, stormAlpha)
	// The summed twin is the test before the burst budget, which since
	// holds summed counts (one block, so one source) back for a minute too.
	summed.BurstTicks = -1
	sum := func(bs []detector.Block) (bad, total float64) {
		for _, b := range bs {
			bad, total = bad+b.Bad, total+b.Total
		}
		return bad, total
	}
	for i, tk := range f.ticks[:n] {
		pods.ObserveBlocks(tk.cand, tk.base)
		x, nc := sum(tk.cand)
		y, nb := sum(tk.base)
		summed.Observe(x, nc, y, nb)
		if podsAt == 0 && pods.Regressed() {
			podsAt = i + 1
		}
		if summedAt == 0 && summed.Regressed() {
			summedAt = i + 1
		}
	}
	return pods, summed, podsAt, summedAt
}

// totals are the counts of the first n rounds.
func (f *stormFleet) totals(n int) (cand, base detector.CohortCounts) {
	for _, tk := range f.ticks[:n] {
		for _, b := range tk.cand {
			cand.Bad, cand.Total = cand.Bad+b.Bad, cand.Total+b.Total
		}
		for _, b := range tk.base {
			base.Bad, base.Total = base.Bad+b.Bad, base.Total+b.Total
		}
	}
	return cand, base
}

// quiet waits until the guard's evidence covers all the rounds served
// (rounds ticks, every candidate request), then checks that no command was
// published on the wire or stored, and returns the evidence.
func (f *stormFleet) quiet(t *testing.T, td *testDaemon, seen *commandWire, rounds int) detector.Evidence {
	t.Helper()
	cand, _ := f.totals(rounds)
	e := noCommand(t, td, func(e detector.Evidence) error {
		if e.Ticks != rounds || e.Candidate.Total != cand.Total {
			return fmt.Errorf("evidence over %d ticks and %v candidate requests, want %d and %v", e.Ticks, e.Candidate.Total, rounds, cand.Total)
		}
		return nil
	})
	if ids := seen.all(); len(ids) != 0 {
		t.Errorf("commands published: %v", ids)
	}
	return e
}

// checkStormEvidence checks that e is the test of the pods twin after
// e.Ticks rounds, exactly: the daemon got every pod's block of every
// round, and tested them as blocks.
func (f *stormFleet) checkStormEvidence(t *testing.T, e detector.Evidence) {
	t.Helper()
	if e.Ticks < 1 || e.Ticks > len(f.ticks) {
		t.Fatalf("evidence over %d ticks, %d rounds served", e.Ticks, len(f.ticks))
	}
	if e.Theta0 != stormTheta0 || e.Alpha != stormAlpha || e.Kind != "sequential" || e.Signal != "errors" {
		t.Errorf("evidence θ₀ %v α %v kind %q signal %q", e.Theta0, e.Alpha, e.Kind, e.Signal)
	}
	cand, base := f.totals(e.Ticks)
	if e.Candidate.Total != cand.Total || e.Candidate.Bad != cand.Bad || e.Baseline.Total != base.Total || e.Baseline.Bad != base.Bad {
		t.Errorf("evidence counts candidate %v/%v baseline %v/%v, the pods sent %v/%v and %v/%v over %d rounds",
			e.Candidate.Bad, e.Candidate.Total, e.Baseline.Bad, e.Baseline.Total, cand.Bad, cand.Total, base.Bad, base.Total, e.Ticks)
	}
	m := e.Model
	if m == nil {
		t.Fatalf("evidence has no model: %+v", e)
	}
	if m.CandidatePods != 1 || m.BaselinePods != stormBasePods || !strings.HasPrefix(m.Assumption, "pod × tick blocks") {
		t.Errorf("model %+v: the pods did not reach the test", m)
	}
	pods, _, _, _ := f.replay(e.Ticks)
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	if !near(m.Dispersion, pods.Dispersion()) || !near(e.LogEValue, pods.LogEValue()) || !near(m.Edge, pods.Edge()) {
		t.Errorf("daemon after %d ticks: φ %v, log e-value %v, edge %v; the same blocks in process: φ %v, log e-value %v, edge %v",
			e.Ticks, m.Dispersion, e.LogEValue, m.Edge, pods.Dispersion(), pods.LogEValue(), pods.Edge())
	}
}

// announceStorm opens the deployment v1 → v2 before any traffic, so that
// the first round is tested like every other: with an implicit deployment
// the candidate's first export would wait alone for a baseline batch, and
// the pairing of rounds into ticks would depend on when the evaluations
// fall between the pods' exports.
func announceStorm(t *testing.T, td *testDaemon) {
	t.Helper()
	if code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`); code != 201 {
		t.Fatalf("announce: %d %s", code, b)
	}
}

// TestRetryStormFleet: one candidate pod and five baseline pods whose
// failed requests are retried twice, every attempt failing. Healthy: both
// versions fail equally often; the daemon learns the dispersion from the
// baseline's pods and publishes nothing, on data where the same test fed
// the fleet's summed counts alarms. Regressed: the candidate fails 3.5
// times as often; one flag_kill, whose evidence was tested on the pods.
func TestRetryStormFleet(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, testConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newStormFleet(t, td, stormErr)
		for i := 0; i < stormRounds; i++ {
			f.round(t, td)
		}
		e := f.quiet(t, td, seen, stormRounds)
		f.checkStormEvidence(t, e)
		if e.Model.Dispersion <= 1.5 {
			t.Errorf("dispersion %v: clusters of 3 should show", e.Model.Dispersion)
		}
		// The same data without the pods: the test alarms.
		pods, summed, podsAt, summedAt := f.replay(stormRounds)
		if summedAt == 0 || podsAt != 0 {
			t.Errorf("in process: summed counts alarmed at round %d (want one), pod blocks at %d (want none)", summedAt, podsAt)
		}
		t.Logf("%d rounds, bad attempts %.2f %% candidate, %.2f %% baseline: daemon φ %.3f, τ %.3g, edge %.4g, max log e-value %.2f (threshold %.2f); summed twin alarmed at round %d, max log e-value %.2f, φ %.3f; %s",
			stormRounds, 100*e.Candidate.Ratio, 100*e.Baseline.Ratio, e.Model.Dispersion, e.Model.PodSpread, e.Model.Edge,
			-math.Log(pods.PValue()), math.Log(e.Threshold), summedAt, -math.Log(summed.PValue()), summed.Dispersion(), time.Since(start).Round(time.Millisecond))
	})

	t.Run("regressed", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, testConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newStormFleet(t, td, stormErr*stormRatio)
		cd := oneCommand(t, td, func() { f.round(t, td) })
		e := actions.DetectorEvidence(cd.Evidence)[0]
		if e.State != detector.StateRegressed || float64(e.EValue) < e.Threshold || e.Candidate.Ratio <= e.Baseline.Ratio {
			t.Errorf("evidence = %+v", e)
		}
		f.checkStormEvidence(t, e)
		if ids := seen.all(); len(ids) != 1 {
			t.Errorf("commands on the wire: %v, want one", ids)
		}
		_, _, podsAt, summedAt := f.replay(e.Ticks)
		if podsAt == 0 {
			t.Errorf("in process, the pod blocks of the %d ticks of the evidence did not alarm", e.Ticks)
		}
		t.Logf("candidate at %.3gx: flag_kill with evidence over %d ticks (in process: pods alarmed at round %d, summed at %d), φ %.3f, ratio %.3g; %d rounds served; %s",
			stormRatio, e.Ticks, podsAt, summedAt, e.Model.Dispersion, float64(e.Estimate), len(f.ticks), time.Since(start).Round(time.Millisecond))
	})
}

// Misaligned outages: a shared downstream outage every outageEvery rounds
// fails outageFail of every request for two rounds, but the candidate sees
// it one round before the baseline and the baseline goes on one round
// after it, so that round by round the outage's first round is the
// candidate's alone (~50× the baseline's error ratio) and its last the
// baseline's. The count test's shock gate (detector/counttest.go,
// shockGate) holds those rounds with the round before and the round after,
// where the outage falls on both versions alike, and leaves an outage out
// of the test (tested, its merged tick, whose ratio is near 1, was strong
// evidence for health that buried a regression's).
//
// The pods draw with stormSeed, not chosen for this test. In process
// (this fleet and schedule, seeds 0–999): healthy, the gated test never
// alarms, while the same test flushed after every tick (nothing held)
// alarms on all 1000, on 999 at round 9; regressed 4×, the gated test
// alarms on 846 within outageRounds, 836 of them by round 8, before the
// first outage (stormSeed: round 3). Without the outages it alarms on all
// 1000 (by round 33). (Figures measured while outages were still tested
// as one merged tick; they are now left out.)
const (
	outageErr    = 0.01 // both versions' error ratio outside the outages
	outageFail   = 0.5  // during an outage
	outageRatio  = 4.0  // the regressed candidate's error ratio over the baseline's outside them
	outageRounds = 40
	outageFirst  = 9 // the first outage's first round (1-based): the candidate's alone
	outageEvery  = 8
)

// outageConfig is testConfig at a 300 ms tick: the daemon flushes the
// ticks a test holds when no batch has come for three of the usual gaps
// between batches (or three intervals, if longer), so a round must come
// within that or the outage's first round is tested alone, as the ungated
// twin tests it (with two CPU hogs on the 2-core box, rounds came up to
// 0.6 s apart).
var outageConfig = strings.Replace(testConfig, "evaluation_interval: 100ms", "evaluation_interval: "+outageInterval.String(), 1)

const outageInterval = 300 * time.Millisecond

// quietFlushFactor is how many usual gaps between batches (or evaluation
// intervals, if longer) without a batch make the daemon flush what its
// tests hold (detector's quietFlush), less half an interval of jitter.
const quietFlushFactor = 3

// outageAt says which versions the outage hits in round r (1-based): the
// candidate in its first two rounds, the baseline from its second to its
// third.
func outageAt(r int) (cand, base bool) {
	if r < outageFirst {
		return false, false
	}
	k := (r - outageFirst) % outageEvery
	return k <= 1, k == 1 || k == 2
}

// serveAt draws one round of independent requests — 100–200, each failing
// with probability rate, no retries — records it, exports it, and returns
// the pod's block.
func (p *stormPod) serveAt(t *testing.T, rate float64) detector.Block {
	t.Helper()
	n := 100 + p.rng.IntN(101)
	failed := 0
	for i := 0; i < n; i++ {
		if p.rng.Float64() < rate {
			failed++
		}
	}
	ctx := context.Background()
	for i := 0; i < n-failed; i++ {
		p.hist.Record(ctx, 0.05+0.01*float64(i%10), p.ok)
	}
	for i := 0; i < failed; i++ {
		p.hist.Record(ctx, 0.2, p.bad)
	}
	if err := p.mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export %s: %v", p.name, err)
	}
	return detector.Block{Pod: p.name, Bad: float64(failed), Total: float64(n)}
}

// outageFleet is the retry storm's fleet serving independent requests
// under the misaligned outages. perRound and batchAt are, per round
// served with round's exact check, what the daemon's evidence says it
// added in that round (candidate bad, total, baseline bad, total) and
// when that batch was closed.
type outageFleet struct {
	*stormFleet
	perRound [][4]float64
	batchAt  []time.Time
}

func newOutageFleet(t *testing.T, td *testDaemon, candErr float64) *outageFleet {
	t.Helper()
	f := &outageFleet{stormFleet: newStormFleet(t, td, candErr)}
	for _, p := range f.base {
		p.errRate = outageErr
	}
	return f
}

// round has every pod serve one round — the baseline's first, the
// candidate's last, which completes the batch — and waits for the
// evaluation that tests it. With exact, it waits for the evidence of
// exactly this many ticks (one round is one tick) and records what the
// daemon added in it.
func (f *outageFleet) round(t *testing.T, td *testDaemon, exact bool) {
	t.Helper()
	r := len(f.ticks) + 1
	cOut, bOut := outageAt(r)
	var tk stormTick
	for _, p := range f.base {
		rate := p.errRate
		if bOut {
			rate = outageFail
		}
		tk.base = append(tk.base, p.serveAt(t, rate))
	}
	rate := f.cand.errRate
	if cOut {
		rate = outageFail
	}
	tk.cand = append(tk.cand, f.cand.serveAt(t, rate))
	f.ticks = append(f.ticks, tk)
	if !exact {
		td.nextEvaluation(t, "checkout")
		return
	}
	var e detector.Evidence
	checkFor(t, 10*time.Second, func() error {
		v := td.verdict("checkout")
		if v == nil || len(v.Signals) != 1 || v.Signals[0].Ticks < r {
			return fmt.Errorf("round %d not tested yet: %+v", r, v)
		}
		e = v.Signals[0]
		return nil
	})
	if e.Ticks != r {
		t.Fatalf("round %d: evidence over %d ticks, want one round per tick", r, e.Ticks)
	}
	var before [4]float64
	for _, d := range f.perRound {
		for i := range before {
			before[i] += d[i]
		}
	}
	f.perRound = append(f.perRound, [4]float64{e.Candidate.Bad - before[0], e.Candidate.Total - before[1],
		e.Baseline.Bad - before[2], e.Baseline.Total - before[3]})
	f.batchAt = append(f.batchAt, e.WindowEnd)
}

// ratios are, per round recorded, the candidate's error ratio over the
// baseline's as the daemon counted them (+Inf when the baseline had none).
func (f *outageFleet) ratios() []float64 {
	out := make([]float64, len(f.perRound))
	for i, d := range f.perRound {
		out[i] = (d[0] / d[1]) / (d[2] / d[3])
		if d[2] == 0 {
			out[i] = math.Inf(1)
		}
	}
	return out
}

// maxGap is the longest time between two consecutive batches the daemon
// closed in the recorded rounds.
func (f *outageFleet) maxGap() time.Duration {
	var g time.Duration
	for i := 1; i < len(f.batchAt); i++ {
		g = max(g, f.batchAt[i].Sub(f.batchAt[i-1]))
	}
	return g
}

// flushGap is the first gap between batches long enough for the daemon to
// have flushed in it, by the daemon's rule (quietFlushFactor times the
// running mean gap, or the interval if longer, less half an interval of
// the evaluations' jitter), or 0 if none was.
func (f *outageFleet) flushGap() time.Duration {
	var mean time.Duration
	for i := 1; i < len(f.batchAt); i++ {
		g := f.batchAt[i].Sub(f.batchAt[i-1])
		if mean > 0 && g >= quietFlushFactor*max(outageInterval, mean)-outageInterval/2 {
			return g
		}
		if mean == 0 {
			mean = g
		} else {
			mean += (g - mean) / 8
		}
	}
	return 0
}

// replayUngated feeds the first n rounds to the daemon's test flushed
// after every tick, so that it holds nothing: each round is tested on its
// own, as before the shock gate. It returns the test and the round at
// which it first alarmed (0: never).
func (f *outageFleet) replayUngated(n int) (*detector.CountTest, int) {
	ct := detector.NewCountTest(stormTheta0, stormAlpha)
	ct.BurstTicks = -1 // nor the burst budget, which holds a one-pod candidate back too
	at := 0
	for i, tk := range f.ticks[:n] {
		ct.ObserveBlocks(tk.cand, tk.base)
		ct.Flush()
		if at == 0 && ct.Regressed() {
			at = i + 1
		}
	}
	return ct, at
}

// TestMisalignedOutages: one candidate pod and five baseline pods, both
// versions failing 1 % of requests, and every eight rounds a shared
// outage that fails half of them, which the candidate sees one round
// before the baseline and the baseline one round after it. Healthy: the
// daemon publishes nothing, while in its data the outage's first round
// shows the candidate failing ≥ 10 times as often as the baseline and the
// same test without the gate (flushed after every tick) alarms on it.
// Regressed: the candidate fails 4 times as often outside the outages;
// one flag_kill, and the outages after it add none.
func TestMisalignedOutages(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, outageConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newOutageFleet(t, td, outageErr)
		for i := 0; i < outageRounds; i++ {
			f.round(t, td, true)
		}
		if g := f.flushGap(); g > 0 {
			t.Errorf("the daemon closed batches up to %s apart: it flushed what the test held between them, and may have tested an outage's first round alone (the box was too slow for this test)", g)
		}
		e := f.quiet(t, td, seen, outageRounds)
		// Each round as the daemon counted it is the round the pods served.
		for i, tk := range f.ticks {
			c, b := f.totalsOf(tk)
			if d := f.perRound[i]; d != [4]float64{c.Bad, c.Total, b.Bad, b.Total} {
				t.Errorf("round %d: the daemon counted %v, the pods served %v/%v and %v/%v", i+1, d, c.Bad, c.Total, b.Bad, b.Total)
			}
		}
		// The data bite: the outages' first rounds are the candidate's alone.
		var worst float64
		var worstAt, outages []int
		for i, r := range f.ratios() {
			if c, b := outageAt(i + 1); c && !b {
				outages = append(outages, i+1)
			}
			worst = max(worst, r)
			if r >= 10 {
				worstAt = append(worstAt, i+1)
			}
		}
		if worst < 10 || fmt.Sprint(worstAt) != fmt.Sprint(outages) {
			t.Errorf("rounds with the candidate ≥ 10× the baseline: %v (max %.3g×), want the outages' first rounds %v", worstAt, worst, outages)
		}
		f.checkStormEvidence(t, e)
		gated, _, gatedAt, _ := f.replay(outageRounds)
		ungated, ungatedAt := f.replayUngated(outageRounds)
		if gatedAt != 0 || ungatedAt != outageFirst {
			t.Errorf("in process: the gated test alarmed at round %d (want never), the ungated at %d (want %d, the first outage's first round)", gatedAt, ungatedAt, outageFirst)
		}
		// The data stop: after three usual gaps without a batch the daemon
		// tests the round it held, and still publishes nothing.
		gated.Flush()
		checkFor(t, 10*time.Second, func() error {
			v := td.verdict("checkout")
			if got := v.Signals[0].LogEValue; math.Abs(got-gated.LogEValue()) > 1e-9*math.Max(1, math.Abs(got)) {
				return fmt.Errorf("log e-value %v, the flushed twin %v", got, gated.LogEValue())
			}
			return nil
		})
		if v := td.verdict("checkout"); v.State == detector.StateRegressed || len(td.commands()) != 0 || len(seen.all()) != 0 {
			t.Errorf("after the flush: verdict %s, %d commands", v.State, len(td.commands()))
		}
		t.Logf("%d rounds, outages' first rounds %v; errors %.2f %% candidate, %.2f %% baseline; max candidate/baseline in a round %.3g× (round %v); batches at most %s apart; daemon φ %.3f, τ %.3g, edge %.4g, log e-value %.2f, max %.2f (threshold %.2f); ungated twin alarmed at round %d (max log e-value %.1f); %s",
			outageRounds, outages, 100*e.Candidate.Ratio, 100*e.Baseline.Ratio, worst, worstAt, f.maxGap(), e.Model.Dispersion, e.Model.PodSpread, e.Model.Edge,
			e.LogEValue, -math.Log(gated.PValue()), math.Log(e.Threshold), ungatedAt, -math.Log(ungated.PValue()), time.Since(start).Round(time.Millisecond))
	})

	t.Run("regressed", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, outageConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newOutageFleet(t, td, outageErr*outageRatio)
		cd := oneCommand(t, td, func() { f.round(t, td, false) })
		e := actions.DetectorEvidence(cd.Evidence)[0]
		if e.State != detector.StateRegressed || float64(e.EValue) < e.Threshold || e.Candidate.Ratio <= e.Baseline.Ratio {
			t.Errorf("evidence = %+v", e)
		}
		f.checkStormEvidence(t, e)
		if _, _, at, _ := f.replay(e.Ticks); at != e.Ticks {
			t.Errorf("the command's evidence is over %d ticks; in process the same rounds alarmed at round %d", e.Ticks, at)
		}
		// The outages go on past the first one's last round: nothing more.
		for len(f.ticks) < outageFirst+outageEvery+3 {
			f.round(t, td, false)
		}
		td.nextEvaluation(t, "checkout")
		if n, ids := len(td.commands()), seen.all(); n != 1 || len(ids) != 1 {
			t.Errorf("after %d rounds: %d commands stored, %v on the wire; want one", len(f.ticks), n, ids)
		}
		t.Logf("candidate at %gx outside the outages: flag_kill with evidence over %d ticks (round %d), log e-value %.2f (threshold %.2f), φ %.3f, ratio %.3g; %d rounds served; %s",
			outageRatio, e.Ticks, e.Ticks, e.LogEValue, math.Log(e.Threshold), e.Model.Dispersion, float64(e.Estimate), len(f.ticks), time.Since(start).Round(time.Millisecond))
	})
}

// totalsOf is one round's counts.
func (f *outageFleet) totalsOf(tk stormTick) (cand, base detector.CohortCounts) {
	for _, b := range tk.cand {
		cand.Bad, cand.Total = cand.Bad+b.Bad, cand.Total+b.Total
	}
	for _, b := range tk.base {
		base.Bad, base.Total = base.Bad+b.Bad, base.Total+b.Total
	}
	return cand, base
}
