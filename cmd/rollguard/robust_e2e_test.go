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
// 7.0), while the test fed pod × tick blocks stays far below (1.1). Such
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
		cand, _ := f.totals(stormRounds)
		e := noCommand(t, td, func(e detector.Evidence) error {
			if e.Ticks != stormRounds || e.Candidate.Total != cand.Total {
				return fmt.Errorf("evidence over %d ticks and %v candidate requests, want %d and %v", e.Ticks, e.Candidate.Total, stormRounds, cand.Total)
			}
			return nil
		})
		if ids := seen.all(); len(ids) != 0 {
			t.Errorf("commands published: %v", ids)
		}
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
