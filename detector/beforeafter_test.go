package detector

import (
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/sample"
)

const beforeAfterConfig = `
global:
  evaluation_interval: 10s
  no_data_timeout: 1m
guards:
  - name: checkout
    service: checkout
    alpha: 0.01
    baseline:
      mode: before_after
    signals:
      - name: errors
`

// beforeAfterRun plays a 30 min before-window of v1 (bad(i) of 1000
// requests in tick i), announces v2 all at once, and plays 60 ticks of v2
// at candBad of 1000. It returns the last verdict and the arm under test.
func beforeAfterRun(t *testing.T, bad func(i int) float64, candBad float64) (GuardVerdict, *arm) {
	t.Helper()
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, beforeAfterConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1)})
	for i := 0; i < 180; i++ {
		b := bad(i)
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1000-b), requests("checkout", "v1", 500, b)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Strategy: "all_at_once"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60 && (len(rec.verdicts) == 0 || rec.last(t).State != StateRegressed); i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 1000-candBad), requests("checkout", "v2", 503, candBad)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	d := e.deployments["checkout"]
	if d == nil || d.guards["checkout"] == nil {
		t.Fatal("no run of the before/after deployment")
	}
	return rec.last(t), d.guards["checkout"].signals[0].arms[0]
}

// TestBeforeAfterWindowVariationWidensReference: a before-window whose ticks
// swing between 0.5 % and 3.5 % (mean 2 %, φ about 11 between ticks) says
// far less about the rate than 180 steady ticks at 2 % would. Against it a
// candidate steady at 2.7 % — well inside what the window's ticks did — is
// not a regression; the binomial bound (the code before) took the window
// for 180,000 independent requests and flagged it. The healthy twin: a
// steady window keeps the binomial bound exactly, and the same candidate
// is flagged.
func TestBeforeAfterWindowVariationWidensReference(t *testing.T) {
	swinging := func(i int) float64 {
		if i%2 == 0 {
			return 5
		}
		return 35
	}
	steady := func(int) float64 { return 20 }

	v, a := beforeAfterRun(t, swinging, 27)
	ev := v.Signals[0]
	if v.State == StateRegressed || ev.Kind != "before_after" {
		t.Errorf("swinging window: verdict %s (%s), want no regression: %+v", v.State, ev.Kind, ev)
	}
	if ev.Model == nil || !(ev.Model.Dispersion > 5) {
		t.Errorf("swinging window: evidence's dispersion %+v, want φ > 5", ev.Model)
	}
	binomial := rateUpperBound(a.preRate*ev.Baseline.Total, ev.Baseline.Total, a.test.alpha/2)
	if !(a.ref.bound > 1.1*binomial) {
		t.Errorf("swinging window: reference bound %.5f, not widened past the binomial %.5f", a.ref.bound, binomial)
	}
	if a.ref.ticks < 170 {
		t.Errorf("swinging window: φ from %d ticks, want the window's 180", a.ref.ticks)
	}

	v, a = beforeAfterRun(t, steady, 27)
	ev = v.Signals[0]
	if v.State != StateRegressed {
		t.Errorf("steady window: verdict %s, want the 2.7 %% candidate flagged against 2 %%: %+v", v.State, ev)
	}
	if ev.Model == nil || ev.Model.Dispersion != 1 {
		t.Errorf("steady window: evidence's dispersion %+v, want 1", ev.Model)
	}
	binomial = rateUpperBound(a.preRate*ev.Baseline.Total, ev.Baseline.Total, a.test.alpha/2)
	if a.ref.bound != binomial {
		t.Errorf("steady window: reference bound %.6f, want the binomial %.6f unchanged", a.ref.bound, binomial)
	}
	if !strings.Contains(ev.Reason, "30m0s before the deployment") || !strings.Contains(ev.Reason, "dispersion φ 1 ") {
		t.Errorf("steady window: the reason does not say what the reference assumed: %q", ev.Reason)
	}
}

// TestWindowDispersion: φ of a before-window's ticks — 1 for a steady
// window, the χ² per degree of freedom for a swinging one, and an outage
// (one tick far above the rest) left out of φ rather than muting the test.
func TestWindowDispersion(t *testing.T) {
	ticks := func(bad func(i int) float64) []tick {
		p := make([]tick, 180)
		for i := range p {
			p[i] = tick{total: 1000, bad: bad(i)}
		}
		return p
	}
	count := func(t tick) (float64, bool) { return t.bad, true }
	if w := windowDispersion(ticks(func(int) float64 { return 10 }), count); w.phi != 1 || w.ticks != 180 || w.extreme != 0 {
		t.Errorf("steady: %+v, want φ 1 from 180 ticks", w)
	}
	// Alternating 5 and 15 of 1000: χ² = 180·25/(1000·0.01·0.99) ≈ 454.5
	// over 179 degrees of freedom, with 20 more at 1.
	w := windowDispersion(ticks(func(i int) float64 { return float64(5 + 10*(i%2)) }), count)
	if want := (180*25/9.9 + 20) / (179 + 20); w.phi < want*0.999 || w.phi > want*1.001 {
		t.Errorf("swinging: φ %v, want %v", w.phi, want)
	}
	outage := windowDispersion(ticks(func(i int) float64 {
		if i == 90 {
			return 500
		}
		return 10
	}), count)
	if outage.phi != 1 || outage.extreme != 1 || outage.ticks != 179 {
		t.Errorf("outage: %+v, want φ 1 from 179 ticks, one left out", outage)
	}
	if w := windowDispersion(nil, count); w.phi != 1 {
		t.Errorf("no ticks (an aggregate window): φ %v, want 1", w.phi)
	}
	// The quasi-binomial bound is the binomial one at φ = 1, and wider above.
	if quasiRateUpperBound(200, 10000, 1, 0.005) != rateUpperBound(200, 10000, 0.005) {
		t.Error("quasi-binomial bound at φ = 1 differs from the binomial")
	}
	if !(quasiRateUpperBound(200, 10000, 4, 0.005) > rateUpperBound(200, 10000, 0.005)) {
		t.Error("quasi-binomial bound at φ = 4 not wider")
	}
}

// TestBeforeAfterOutageIsNotARegression: the whole service is the
// candidate of a before/after comparison, so a downstream outage just after
// the deployment — 20 s of half the requests failing, then back to 1 % —
// is one source's excursion, not a version effect: it must not alarm (the
// uncapped test flagged it at once). The regression twin: the same start
// that persists is caught within the burst budget's window.
func TestBeforeAfterOutageIsNotARegression(t *testing.T) {
	steady := func(int) float64 { return 10 }
	play := func(t *testing.T, cand func(i int) float64) (GuardVerdict, int) {
		t.Helper()
		c, rec := newClock(), &recorder{}
		e := NewEngine(mustParse(t, beforeAfterConfig), EngineOptions{Handler: rec, Now: c.now})
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1)})
		for i := 0; i < 180; i++ {
			_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1000-steady(i)), requests("checkout", "v1", 500, steady(i))})
			c.advance(10 * time.Second)
			e.Evaluate()
		}
		if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Strategy: "all_at_once"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 120; i++ {
			b := cand(i)
			_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 1000-b), requests("checkout", "v2", 503, b)})
			c.advance(10 * time.Second)
			e.Evaluate()
			if v := rec.last(t); v.State == StateRegressed {
				return v, i
			}
		}
		return rec.last(t), -1
	}
	outage := func(i int) float64 {
		if i >= 2 && i < 4 { // 20 s at 50 %
			return 500
		}
		return 10
	}
	if v, at := play(t, outage); at >= 0 {
		t.Errorf("a 20 s outage after the deployment alarmed at tick %d: %+v", at, v.Signals[0])
	}
	persists := func(i int) float64 {
		if i >= 2 {
			return 500
		}
		return 10
	}
	v, at := play(t, persists)
	if at < 0 || at > 2+DefaultBurstTicks+3 {
		t.Fatalf("a persistent 50 %% error rate from tick 2 alarmed at tick %d, want by %d", at, 2+DefaultBurstTicks+3)
	}
	if r := v.Signals[0].Reason; !strings.Contains(r, "burst budget") {
		t.Errorf("the reason does not say the burst budget applied: %q", r)
	}
}

// TestRateTestBurstBudget: the capped e-value never exceeds the uncapped
// one (so Ville's bound holds), a 3-tick excursion stays below 1/α from 1,
// and a persistent doubling still gets there.
func TestRateTestBurstBudget(t *testing.T) {
	const alpha = 0.01
	capped, raw := NewRateTest(0.01, alpha).WithBurstBudget(DefaultBurstTicks), NewRateTest(0.01, alpha)
	for k := 0; k < 60; k++ {
		x := 10.0
		if k >= 5 && k < 8 {
			x = 300
		}
		capped.Observe(x, 1000)
		raw.Observe(x, 1000)
		if capped.LogEValue() > raw.LogEValue()+1e-12 {
			t.Fatalf("tick %d: capped log e %v above the uncapped %v", k, capped.LogEValue(), raw.LogEValue())
		}
	}
	if capped.Regressed() || !raw.Regressed() {
		t.Errorf("3-tick excursion: capped regressed %v (want false), uncapped %v (want true)", capped.Regressed(), raw.Regressed())
	}
	rt := NewRateTest(0.01, alpha).WithBurstBudget(DefaultBurstTicks)
	for k := 0; k < 30 && !rt.Regressed(); k++ {
		rt.Observe(20, 1000)
	}
	if !rt.Regressed() {
		t.Error("a persistent doubling was not caught in 30 ticks of 1000")
	}
}
