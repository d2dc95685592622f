package simulate

import (
	"context"
	"math"
	"slices"
	"testing"
)

const hour = 360 // ten-second ticks

// TestDetectLargeRegression: a candidate failing 5× as often is caught within
// the hour in every run by the oracle SPRT and by rollguard, at both shares.
func TestDetectLargeRegression(t *testing.T) {
	for _, share := range []float64{0.05, 0.5} {
		tr := errorTraffic(share, 5, 0.5)
		p1, p0 := tr.BadProbs()
		sc := Scenario{Name: "theta 5", Traffic: tr, Runs: 50, Ticks: hour, Seed: 11, Contenders: []Contender{
			{Name: "oracle", New: func() Detector { return NewOracleSPRT(p0, p1, 0.05) }},
			{Name: "rollguard", New: func() Detector { return NewRollguard(0.05) }},
			{Name: "rollguard α=0.01", New: func() Detector { return NewRollguard(0.01) }},
		}}
		res, err := Run(context.Background(), []Scenario{sc}, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range sc.Contenders {
			d := res[0].Delays(i)
			t.Logf("share %g, %s: caught %d/%d, median %v ticks, p90 %v", share, c.Name, d.Detected, d.Runs, d.Median, d.P90)
			if d.Detected != d.Runs {
				t.Errorf("share %g, %s: caught %d of %d runs within the hour", share, c.Name, d.Detected, d.Runs)
			}
		}
	}
}

// TestFalseAlarmsAnytimeValid is the promise the product makes: looked at
// every 10 s for an hour, rollguard alarms on healthy (A/A) canaries at most
// α of the time, while the same fixed-horizon test that keeps α when looked
// at once alarms far more often when looked at every minute.
func TestFalseAlarmsAnytimeValid(t *testing.T) {
	const alpha, runs = 0.05, 300
	sc := Scenario{Name: "A/A", Traffic: errorTraffic(0.5, 1, 0.5), Runs: runs, Ticks: hour, Seed: 12, Contenders: []Contender{
		{Name: "rollguard", New: func() Detector { return NewRollguard(alpha) }},
		{Name: "fixed horizon, every minute", New: func() Detector { return NewFixedHorizonPeeking(alpha, 6) }},
	}}
	res, err := Run(context.Background(), []Scenario{sc}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	rg, peek := res[0].Delays(0), res[0].Delays(1)
	rgLo, rgHi := Wilson(rg.Detected, runs)
	pkLo, pkHi := Wilson(peek.Detected, runs)
	t.Logf("rollguard: %d/%d false alarms [%.3f, %.3f]; peeking fixed horizon: %d/%d [%.3f, %.3f]", rg.Detected, runs, rgLo, rgHi, peek.Detected, runs, pkLo, pkHi)
	if rg.Rate() > alpha {
		t.Errorf("rollguard: false-alarm rate %.3f above α = %v", rg.Rate(), alpha)
	}
	if pkLo <= 2*alpha {
		t.Errorf("peeking fixed-horizon test: false-alarm rate %.3f (95 %% CI from %.3f) not clearly above α = %v; the benchmark would not show what it must", peek.Rate(), pkLo, alpha)
	}
}

// TestRunIndependentOfWorkers: the figures do not depend on how many
// goroutines simulate them.
func TestRunIndependentOfWorkers(t *testing.T) {
	sc := Scenario{Name: "θ 2", Traffic: errorTraffic(0.05, 2, 0.5), Runs: 60, Ticks: 120, Seed: 13, Contenders: []Contender{
		{Name: "rollguard", New: func() Detector { return NewRollguard(0.05) }},
		{Name: "rule", New: func() Detector { return NewThresholdRule(6) }},
	}}
	one, err := Run(context.Background(), []Scenario{sc}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	three, err := Run(context.Background(), []Scenario{sc}, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for c := range sc.Contenders {
		if !slices.Equal(one[0].Alarms[c], three[0].Alarms[c]) {
			t.Errorf("contender %d: 1 worker %v, 3 workers %v", c, one[0].Alarms[c], three[0].Alarms[c])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, []Scenario{sc}, 2, nil); err == nil {
		t.Error("canceled run returned no error")
	}
}

// minute is one check window of the threshold rule: the counts in its first
// tick, nothing in the other five.
func minute(candBad, candReq, baseBad, baseReq int) []Tick {
	w := make([]Tick, 6)
	w[0] = Tick{CandidateRequests: candReq, CandidateBad: candBad, BaselineRequests: baseReq, BaselineBad: baseBad}
	return w
}

// TestThresholdRuleHandBuilt: the rule fails a check when the candidate's
// ratio exceeds 1.5 × the baseline's, counts failures only when consecutive,
// and alarms at the end of the third.
func TestThresholdRuleHandBuilt(t *testing.T) {
	var ticks []Tick
	for _, m := range [][]Tick{
		minute(3, 100, 1, 100),  // 3 % > 1.5 %: fail 1
		minute(1, 100, 0, 100),  // no baseline errors, candidate has one: fail 2
		minute(0, 100, 0, 100),  // no errors anywhere: pass, the run of failures resets
		minute(2, 100, 1, 100),  // 2 % > 1.5 %: fail 1
		minute(3, 200, 1, 100),  // 1.5 % is not > 1.5 %: pass
		minute(2, 100, 1, 100),  // fail 1
		minute(5, 0, 0, 100),    // no candidate requests: no ratio, pass
		minute(2, 100, 1, 100),  // fail 1
		minute(1, 100, 0, 1000), // fail 2
		minute(4, 100, 2, 100),  // fail 3: alarm at the end of minute 10
		minute(0, 100, 5, 100),  // after the alarm it stays
	} {
		ticks = append(ticks, m...)
	}
	d := NewThresholdRule(6)
	first := -1
	for i, k := range ticks {
		alarm := d.Observe(k)
		if alarm && first < 0 {
			first = i
		}
		if first >= 0 && !alarm {
			t.Fatalf("tick %d: alarm withdrawn", i)
		}
	}
	if want := 10*6 - 1; first != want {
		t.Errorf("first alarm at tick %d, want %d (end of minute 10)", first, want)
	}
	// Two failures then a pass: no alarm.
	d = NewThresholdRule(6)
	for _, m := range [][]Tick{minute(3, 100, 1, 100), minute(3, 100, 1, 100), minute(1, 100, 1, 100), minute(3, 100, 1, 100)} {
		for _, k := range m {
			if d.Observe(k) {
				t.Fatal("alarm without three consecutive failures")
			}
		}
	}
}

// TestThresholdRuleFalseAlarmsCounted: a rule that alarms in a run counts as
// one false alarm for that run, at the tick it alarmed, whatever follows.
func TestThresholdRuleFalseAlarmsCounted(t *testing.T) {
	res := Result{Alarms: [][]int{{-1, 17, -1, 359, -1}}}
	d := res.Delays(0)
	if d.Detected != 2 || d.Runs != 5 {
		t.Errorf("Delays = %+v, want 2 of 5", d)
	}
}

func TestOracleSPRTHandComputed(t *testing.T) {
	// p₀ = 1 %, p₁ = 2 %: each bad request adds log 2, each good one
	// log(0.98/0.99); the threshold at α = 0.05 is log 20 ≈ 3.0.
	d := NewOracleSPRT(0.01, 0.02, 0.05)
	if d.Observe(Tick{CandidateRequests: 4, CandidateBad: 4, BaselineRequests: 1000, BaselineBad: 1000}) {
		t.Fatal("alarm at log L = 4·log 2 = 2.77 < log 20")
	}
	if !d.Observe(Tick{CandidateRequests: 1, CandidateBad: 1}) {
		t.Fatal("no alarm at log L = 5·log 2 = 3.47 ≥ log 20")
	}
	if !d.Observe(Tick{CandidateRequests: 10000}) {
		t.Fatal("alarm withdrawn")
	}
	// Good requests pull the evidence down.
	d = NewOracleSPRT(0.01, 0.02, 0.05)
	d.Observe(Tick{CandidateRequests: 100})
	if want := 100 * math.Log(0.98/0.99); math.Abs(d.llr-want) > 1e-12 {
		t.Errorf("log L = %v, want %v", d.llr, want)
	}
}

func TestConditionalSPRTHandComputed(t *testing.T) {
	// ρ = 1/2, θ = 3: q₁ = 3/4; each candidate bad event adds log(1.5), each
	// baseline one log(0.5).
	d := NewConditionalSPRT(3, 0.05)
	d.Observe(Tick{CandidateRequests: 100, CandidateBad: 4, BaselineRequests: 100, BaselineBad: 1})
	if want := 4*math.Log(1.5) + math.Log(0.5); math.Abs(d.llr-want) > 1e-12 {
		t.Errorf("log L = %v, want %v", d.llr, want)
	}
	d.Observe(Tick{CandidateBad: 9, BaselineRequests: 100}) // no candidate traffic: no information
	if want := 4*math.Log(1.5) + math.Log(0.5); math.Abs(d.llr-want) > 1e-12 {
		t.Errorf("after an empty tick log L = %v, want %v", d.llr, want)
	}
}

func TestFixedHorizon(t *testing.T) {
	// Candidate 10 bad, baseline 0, equal traffic: p = 2^-10 < 0.05.
	bad := Tick{CandidateRequests: 100, CandidateBad: 10, BaselineRequests: 100}
	quiet := Tick{CandidateRequests: 100, BaselineRequests: 100}

	peek := NewFixedHorizonPeeking(0.05, 6)
	once := NewFixedHorizonOnce(0.05, 180)
	for i := range 5 {
		k := quiet
		if i == 0 {
			k = bad
		}
		if peek.Observe(k) || once.Observe(k) {
			t.Fatalf("tick %d: looked before the first look", i)
		}
	}
	if !peek.Observe(quiet) {
		t.Error("peeking test: no alarm at its first look (tick 5)")
	}
	if once.Observe(quiet) {
		t.Fatal("once-at-30-min test alarmed at tick 5")
	}
	for i := 6; i < 179; i++ {
		if once.Observe(quiet) {
			t.Fatalf("once-at-30-min test alarmed at tick %d", i)
		}
	}
	if !once.Observe(quiet) {
		t.Error("once-at-30-min test: no alarm at tick 179")
	}

	// Looked at once, a test that did not reject never looks again.
	once = NewFixedHorizonOnce(0.05, 6)
	for range 6 {
		once.Observe(quiet)
	}
	for range 60 {
		if once.Observe(bad) {
			t.Fatal("once test looked a second time")
		}
	}
	if p := once.PValue(Tick{CandidateRequests: 100, CandidateBad: 10, BaselineRequests: 100}); math.Abs(p-math.Pow(2, -10)) > 1e-15 {
		t.Errorf("p-value = %v, want 2^-10", p)
	}
}
