package simulate

import (
	"math"

	"github.com/rollguard/rollguard/detector"
)

// A Detector is fed one tick at a time and says whether it has declared the
// candidate worse. Once it has, it keeps saying so: the first alarm is what
// the benchmark measures.
type Detector interface {
	Observe(Tick) (alarm bool)
}

// Rollguard is the product's test, detector.CountTest with no tolerance
// (θ₀ = 1), fed every tick and looked at every tick.
type Rollguard struct{ test *detector.CountTest }

// NewRollguard tests θ ≤ 1 at level alpha.
func NewRollguard(alpha float64) *Rollguard {
	return &Rollguard{test: detector.NewCountTest(1, alpha)}
}

func (d *Rollguard) Observe(k Tick) bool {
	d.test.Observe(float64(k.CandidateBad), float64(k.CandidateRequests), float64(k.BaselineBad), float64(k.BaselineRequests))
	return d.test.Regressed()
}

// OracleSPRT is Wald's one-sided SPRT of p₀ against p₁ on the candidate's
// requests, knowing both probabilities. Knowing p₀, the baseline carries no
// information (it is Binomial(n, p₀) under both hypotheses), so the oracle
// ignores it: this is the lower bound on delay for the alternative p₁, and
// says nothing about any other alternative. It stops at the first tick at
// which log L ≥ log(1/α); under p₀, by Ville's inequality, that happens with
// probability at most α.
type OracleSPRT struct {
	gain, loss float64 // log(p1/p0), log((1-p1)/(1-p0))
	threshold  float64
	llr        float64
	alarmed    bool
}

// NewOracleSPRT tests p0 against p1 > p0 at level alpha.
func NewOracleSPRT(p0, p1, alpha float64) *OracleSPRT {
	return &OracleSPRT{
		gain:      math.Log(p1 / p0),
		loss:      math.Log1p(-p1) - math.Log1p(-p0),
		threshold: math.Log(1 / alpha),
	}
}

func (d *OracleSPRT) Observe(k Tick) bool {
	if d.alarmed {
		return true
	}
	x := float64(k.CandidateBad)
	d.llr += x*d.gain + (float64(k.CandidateRequests)-x)*d.loss
	d.alarmed = d.llr >= d.threshold
	return d.alarmed
}

// ConditionalSPRT is the SPRT of θ = 1 against the true θ on the likelihood
// rollguard uses — given a tick's bad events, the candidate's share of them is
// Binomial(e, q(θ)) — so it sees only what rollguard sees and knows only θ,
// not p₀. Rollguard is this test with the point θ replaced by a mixture over
// θ; the gap between the two is the price of not knowing θ, and the gap
// between this test and OracleSPRT the price of not knowing p₀.
type ConditionalSPRT struct {
	theta0, theta, threshold, llr float64
	alarmed                       bool
}

// NewConditionalSPRT tests θ = 1 against theta > 1 at level alpha.
func NewConditionalSPRT(theta, alpha float64) *ConditionalSPRT {
	return NewConditionalSPRTAt(1, theta, alpha)
}

// NewConditionalSPRTAt tests θ = theta0 against theta > theta0: with theta0
// the tolerance's edge (1.1) it is the fastest test of rollguard's own null
// that knows the alternative — what no valid test of that null can beat on
// average at that θ (Wald's bound), so the floor of rollguard's delay.
func NewConditionalSPRTAt(theta0, theta, alpha float64) *ConditionalSPRT {
	return &ConditionalSPRT{theta0: theta0, theta: theta, threshold: math.Log(1 / alpha)}
}

func (d *ConditionalSPRT) Observe(k Tick) bool {
	if d.alarmed {
		return true
	}
	nc, nb := float64(k.CandidateRequests), float64(k.BaselineRequests)
	if nc <= 0 || nb <= 0 {
		return false
	}
	rho := nc / (nc + nb)
	q0 := rho * d.theta0 / (rho*d.theta0 + 1 - rho)
	q1 := rho * d.theta / (rho*d.theta + 1 - rho)
	d.llr += float64(k.CandidateBad)*math.Log(q1/q0) + float64(k.BaselineBad)*(math.Log1p(-q1)-math.Log1p(-q0))
	d.alarmed = d.llr >= d.threshold
	return d.alarmed
}

// ThresholdRule is the Argo Rollouts / Flagger-style check: every
// CheckTicks ticks (one minute) it compares the candidate's bad-request
// ratio over that minute with Ratio times the baseline's, and alarms after
// Consecutive failing checks in a row.
//
// A check fails when candidateBad/candidateRequests > Ratio ×
// baselineBad/baselineRequests, evaluated literally: with no baseline
// failures any candidate failure fails the check (x > 1.5 × 0), and with
// none in either cohort the check passes. A minute in which either cohort
// served no requests has no ratio; it passes (Argo counts a query without
// a value as inconclusive, not failed) — at the simulated load it does not
// happen.
type ThresholdRule struct {
	Ratio       float64
	Consecutive int
	CheckTicks  int

	ticks, failures int
	window          Tick
	alarmed         bool
}

// NewThresholdRule is the rule of DETECTION.md: ratio > 1.5 for 3
// consecutive checks, one check per checkTicks ticks.
func NewThresholdRule(checkTicks int) *ThresholdRule {
	return &ThresholdRule{Ratio: 1.5, Consecutive: 3, CheckTicks: checkTicks}
}

func (d *ThresholdRule) Observe(k Tick) bool {
	if d.alarmed {
		return true
	}
	d.window.CandidateRequests += k.CandidateRequests
	d.window.CandidateBad += k.CandidateBad
	d.window.BaselineRequests += k.BaselineRequests
	d.window.BaselineBad += k.BaselineBad
	if d.ticks++; d.ticks%d.CheckTicks != 0 {
		return false
	}
	if d.CheckFails(d.window) {
		d.failures++
	} else {
		d.failures = 0
	}
	d.window = Tick{}
	d.alarmed = d.failures >= d.Consecutive
	return d.alarmed
}

// CheckFails is one check over one window's counts.
func (d *ThresholdRule) CheckFails(w Tick) bool {
	if w.CandidateRequests == 0 || w.BaselineRequests == 0 {
		return false
	}
	// cand/nc > Ratio·base/nb, cross-multiplied so that equality is exact.
	return float64(w.CandidateBad)*float64(w.BaselineRequests) > d.Ratio*float64(w.BaselineBad)*float64(w.CandidateRequests)
}

// FixedHorizon is the Kayenta-style peer: a test designed to be run once,
// on all the data up to a fixed horizon. Kayenta's judge uses Mann-Whitney U,
// which is for continuous metrics; for counts the matching fixed-sample test
// is the exact conditional binomial test: given e = X + Y bad events so far,
// X ~ Binomial(e, ρ̂) under "no worse", ρ̂ the candidate's share of requests so
// far; reject when P(Binomial(e, ρ̂) ≥ X) ≤ α. (Exact for Poisson counts;
// with Bernoulli requests the conditional law is hypergeometric and the test
// is slightly conservative, like Fisher's.)
//
// It looks after every Every ticks from the start; with Once it looks only at
// the first of those looks at or after Horizon ticks, which is how it is meant
// to be used. Without Once it peeks at every look — how it gets misused, and
// how a dashboard refreshing a fixed-horizon verdict behaves.
type FixedHorizon struct {
	Alpha   float64
	Every   int
	Horizon int
	Once    bool

	ticks   int
	sum     Tick
	alarmed bool
	done    bool
}

// NewFixedHorizonOnce looks once, after horizon ticks.
func NewFixedHorizonOnce(alpha float64, horizon int) *FixedHorizon {
	return &FixedHorizon{Alpha: alpha, Every: horizon, Horizon: horizon, Once: true}
}

// NewFixedHorizonPeeking looks after every `every` ticks.
func NewFixedHorizonPeeking(alpha float64, every int) *FixedHorizon {
	return &FixedHorizon{Alpha: alpha, Every: every}
}

func (d *FixedHorizon) Observe(k Tick) bool {
	if d.alarmed || d.done {
		return d.alarmed
	}
	d.sum.CandidateRequests += k.CandidateRequests
	d.sum.CandidateBad += k.CandidateBad
	d.sum.BaselineRequests += k.BaselineRequests
	d.sum.BaselineBad += k.BaselineBad
	if d.ticks++; d.ticks%d.Every != 0 || d.ticks < d.Horizon {
		return false
	}
	d.alarmed = d.PValue(d.sum) <= d.Alpha
	d.done = d.Once
	return d.alarmed
}

// PValue is the one-sided exact conditional binomial p-value on cumulative
// counts.
func (d *FixedHorizon) PValue(s Tick) float64 {
	if s.CandidateRequests == 0 || s.BaselineRequests == 0 {
		return 1
	}
	rho := float64(s.CandidateRequests) / float64(s.CandidateRequests+s.BaselineRequests)
	return BinomialUpperTail(s.CandidateBad, s.CandidateBad+s.BaselineBad, rho)
}
