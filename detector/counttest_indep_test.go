package detector

// The statistics of counttest.go and ratetest.go checked against
// computations that share none of their code: the mixture likelihood ratio
// rebuilt from exact binomial probabilities (math/big), Ville's inequality
// by exact enumeration of the binomial outcomes, and the before-window's
// upper confidence bound by exact binomial tails.
//
// Not done here: a comparison with a numerical integral over a continuous
// prior on θ. The test's prior is discrete (weights ∝ 1/j on the 64
// alternatives θ₀·2^(j/16), j = 1..64); no continuous prior reproduces it
// exactly, so such a comparison could only agree approximately and would
// test nothing the exact discrete check below does not.

import (
	"fmt"
	"math"
	"math/big"
	"testing"
)

// indepPrec is the precision, in bits, of the independent computations.
const indepPrec = 256

func bigF(x float64) *big.Float { return new(big.Float).SetPrec(indepPrec).SetFloat64(x) }

func bigPow(b *big.Float, k int) *big.Float {
	r := bigF(1)
	for i := 0; i < k; i++ {
		r.Mul(r, b)
	}
	return r
}

// bigBinomPMF is C(n, k) p^k (1−p)^(n−k), with 1−p given as np so that it
// is not rounded through float64.
func bigBinomPMF(n, k int, p, np *big.Float) *big.Float {
	c := new(big.Float).SetPrec(indepPrec).SetInt(new(big.Int).Binomial(int64(n), int64(k)))
	c.Mul(c, bigPow(p, k))
	return c.Mul(c, bigPow(np, n-k))
}

// bigQ is q(θ) = ρθ/(ρθ+1−ρ) and 1−q(θ) = (1−ρ)/(ρθ+1−ρ).
func bigQ(rho, theta float64) (q, nq *big.Float) {
	r := bigF(rho)
	rt := new(big.Float).SetPrec(indepPrec).Mul(r, bigF(theta))
	omr := new(big.Float).SetPrec(indepPrec).Sub(bigF(1), r)
	den := new(big.Float).SetPrec(indepPrec).Add(rt, omr)
	q = new(big.Float).SetPrec(indepPrec).Quo(rt, den)
	nq = new(big.Float).SetPrec(indepPrec).Quo(omr, den)
	return q, nq
}

// indepAlternatives are the alternatives of DETECTION.md's test as built
// here: θ₀·2^(j/16) for j = 1..64.
func indepAlternatives(theta0 float64) []float64 {
	var alts []float64
	for j := 1; j <= 64; j++ {
		alts = append(alts, theta0*math.Exp2(float64(j)/16))
	}
	return alts
}

// indepStartWeight is the prior weight of a regression beginning at the
// s-th informative tick: 0.6 for the first, then 0.4·360/((s−2+360)(s−1+360)).
func indepStartWeight(s int) *big.Float {
	if s == 1 {
		return bigF(0.6)
	}
	a := float64(s - 2 + 360)
	w := new(big.Float).SetPrec(indepPrec).Mul(bigF(0.4), bigF(360))
	w.Quo(w, bigF(a))
	return w.Quo(w, bigF(a+1))
}

type countTick struct{ x, nc, y, nb float64 }

// observeUngated adds one tick straight to the e-detector at dispersion 1,
// as Observe does once the shock gate passes a tick on: the gate's holding
// of ticks is tested on its own (counttest_robust_test.go), the arithmetic
// here.
func observeUngated(ct *CountTest, x, nc, y, nb float64) {
	ct.CandidateBad += x
	ct.BaselineBad += y
	ct.CandidateTotal += nc
	ct.BaselineTotal += nb
	ct.Ticks++
	if nc > 0 && nb > 0 && x+y > 0 {
		ct.update(x, nc, y, nb, phiPair{1, 1}, math.Inf(1))
	}
}

// indepCountEValue is the e-detector rebuilt from exact binomial
// probabilities: Σ_j w_j Σ_{s≤t} π_s Π_{u=s..t} Binom(x_u; e_u, q_u(θ_j)) /
// Binom(x_u; e_u, q_u(θ₀)), weights w_j = (1/j)/H over the alternatives and
// π_s over the informative ticks, plus the weight of the starts still to
// come. A tick where a cohort had no traffic or no bad event carries no
// information and is not a start. The ticks are few and single blocks, so
// the dispersion is 1 and the edge θ₀.
func indepCountEValue(theta0 float64, ticks []countTick) float64 {
	alts := indepAlternatives(theta0)
	h := bigF(0)
	for j := 1; j <= len(alts); j++ {
		h.Add(h, new(big.Float).SetPrec(indepPrec).Quo(bigF(1), bigF(float64(j))))
	}
	var informative []countTick
	for _, s := range ticks {
		if s.nc > 0 && s.nb > 0 && s.x+s.y > 0 {
			informative = append(informative, s)
		}
	}
	// lr[u][j] is tick u's likelihood ratio of θ_j against θ₀.
	lr := make([][]*big.Float, len(informative))
	for u, s := range informative {
		rho := s.nc / (s.nc + s.nb)
		e, x := int(s.x+s.y), int(s.x)
		q0, n0 := bigQ(rho, theta0)
		p0 := bigBinomPMF(e, x, q0, n0)
		for _, th := range alts {
			q1, n1 := bigQ(rho, th)
			lr[u] = append(lr[u], new(big.Float).SetPrec(indepPrec).Quo(bigBinomPMF(e, x, q1, n1), p0))
		}
	}
	sum, started := bigF(0), bigF(0)
	for s := range informative {
		pi := indepStartWeight(s + 1)
		started.Add(started, pi)
		for j := range alts {
			prod := new(big.Float).SetPrec(indepPrec).Set(pi)
			for u := s; u < len(informative); u++ {
				prod.Mul(prod, lr[u][j])
			}
			w := new(big.Float).SetPrec(indepPrec).Mul(bigF(float64(j+1)), h)
			sum.Add(sum, prod.Quo(prod, w))
		}
	}
	if rest := new(big.Float).SetPrec(indepPrec).Sub(bigF(1), started); rest.Sign() > 0 {
		sum.Add(sum, rest)
	}
	f, _ := sum.Float64()
	return f
}

// lgBinomPMF is the binomial pmf in float64 through log-gamma.
func lgBinomPMF(n, k int, p float64) float64 {
	if p <= 0 {
		if k == 0 {
			return 1
		}
		return 0
	}
	if p >= 1 {
		if k == n {
			return 1
		}
		return 0
	}
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return math.Exp(a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
}

func qOf(rho, theta float64) float64 { return rho * theta / (rho*theta + 1 - rho) }

func relErr(got, want float64) float64 {
	if got == want {
		return 0
	}
	return math.Abs(got-want) / math.Max(math.Abs(want), math.SmallestNonzeroFloat64)
}

// TestCountTestEValueIndependent: the e-value after every tick of several
// small-count sequences, for several θ₀ (including ones with fewer than 32
// alternatives left on the grid, and none), equals the mixture rebuilt from
// exact binomial probabilities within 1e-9 relative; Regressed and PValue
// follow the independent running maximum.
func TestCountTestEValueIndependent(t *testing.T) {
	seqs := map[string][]countTick{
		"one tick":          {{3, 100, 1, 100}},
		"mixed shares":      {{5, 50, 2, 150}, {0, 80, 3, 20}, {7, 500, 1, 500}, {2, 10, 0, 90}},
		"no-info ticks":     {{0, 100, 0, 100}, {4, 0, 3, 100}, {6, 100, 2, 100}, {3, 100, 5, 0}, {1, 30, 1, 70}},
		"candidate better":  {{0, 100, 8, 100}, {1, 100, 9, 100}, {0, 200, 4, 100}},
		"clear regression":  {{12, 100, 1, 100}, {15, 100, 2, 100}, {9, 100, 0, 100}, {20, 100, 3, 100}},
		"small shares":      {{2, 5, 10, 995}, {1, 5, 6, 995}, {3, 5, 12, 995}},
		"large share":       {{30, 950, 1, 50}, {28, 950, 3, 50}},
		"extreme rho low":   {{3, 1e-9, 5, 1 - 1e-9}},
		"extreme rho high":  {{3, 1 - 1e-9, 5, 1e-9}},
		"single bad events": {{1, 100, 0, 100}, {0, 100, 1, 100}, {1, 100, 0, 100}, {1, 100, 0, 100}},
	}
	for _, theta0 := range []float64{1, 1.1, 1.25, 2, 40, 64, 100} {
		for name, seq := range seqs {
			t.Run(fmt.Sprintf("theta0=%g/%s", theta0, name), func(t *testing.T) {
				const alpha = 0.01
				ct := NewCountTest(theta0, alpha)
				maxE := 1.0
				for i := range seq {
					s := seq[i]
					observeUngated(ct, s.x, s.nc, s.y, s.nb)
					want := indepCountEValue(theta0, seq[:i+1])
					got := ct.EValue()
					if math.IsNaN(got) || relErr(got, want) > 1e-9 {
						t.Fatalf("after tick %d: EValue = %.17g, independent mixture = %.17g (rel err %.3g)", i+1, got, want, relErr(got, want))
					}
					if s.nc > 0 && s.nb > 0 && s.x+s.y > 0 {
						maxE = math.Max(maxE, want)
					}
					if p, wp := ct.PValue(), math.Min(1, 1/maxE); relErr(p, wp) > 1e-9 {
						t.Fatalf("after tick %d: PValue = %v, want min(1, 1/max e) = %v", i+1, p, wp)
					}
					if ct.Regressed() != (maxE >= 1/(alpha*(1-PodAlphaShare))) {
						t.Fatalf("after tick %d: Regressed = %v with max e-value %v", i+1, ct.Regressed(), maxE)
					}
				}
			})
		}
	}
}

// TestCountTestVilleOneTick: with one tick of e bad events and x its
// candidate share, the probability under θ₀ that the e-value reaches 1/α is
// the exact binomial tail of the crossing x values; it is at most α. The
// e-value's expectation under θ₀ is exactly 1 (a martingale), and at most 1
// inside the null (θ = θ₀/2: a supermartingale).
func TestCountTestVilleOneTick(t *testing.T) {
	const nTotal = 1000.0
	crossings := 0
	for _, theta0 := range []float64{1, 1.1, 2} {
		for _, rho := range []float64{0.05, 0.3, 0.5, 0.9} {
			nc, nb := rho*nTotal, (1-rho)*nTotal
			r := nc / (nc + nb)
			q0, qIn := qOf(r, theta0), qOf(r, theta0/2)
			for _, e := range []int{1, 2, 5, 10, 20, 40, 80, 150} {
				evals := make([]float64, e+1)
				for x := 0; x <= e; x++ {
					ct := NewCountTest(theta0, 0.5)
					observeUngated(ct, float64(x), nc, float64(e-x), nb)
					evals[x] = ct.EValue()
				}
				var mean, meanIn float64
				for x, ev := range evals {
					mean += lgBinomPMF(e, x, q0) * ev
					meanIn += lgBinomPMF(e, x, qIn) * ev
				}
				if math.Abs(mean-1) > 1e-9 {
					t.Errorf("θ₀=%v ρ=%v e=%d: E_θ₀[e-value] = %.15f, want 1", theta0, rho, e, mean)
				}
				if meanIn > 1+1e-9 {
					t.Errorf("θ₀=%v ρ=%v e=%d: E_θ₀/2[e-value] = %.15f, want <= 1", theta0, rho, e, meanIn)
				}
				for _, alpha := range []float64{0.2, 0.05, 0.01, 0.001} {
					var tail float64
					for x, ev := range evals {
						if ev >= 1/alpha {
							tail += lgBinomPMF(e, x, q0)
						}
					}
					if tail > 0 {
						crossings++
					}
					if tail > alpha*(1+1e-12) {
						t.Errorf("θ₀=%v ρ=%v e=%d α=%v: P_θ₀(e-value >= 1/α) = %.6g > α", theta0, rho, e, alpha, tail)
					}
				}
			}
		}
	}
	if crossings < 20 {
		t.Fatalf("only %d configurations can cross 1/α at all: the check is vacuous", crossings)
	}
}

// TestCountTestVilleThreeTicks: Ville's inequality over several looks, by
// exact enumeration of every outcome of three ticks: the probability under
// θ₀ that the e-value reaches 1/α after any of them is at most α.
func TestCountTestVilleThreeTicks(t *testing.T) {
	type look struct {
		e      int
		nc, nb float64
	}
	looks := []look{{8, 500, 500}, {12, 200, 800}, {10, 700, 300}}
	for _, theta0 := range []float64{1, 1.1} {
		for _, alpha := range []float64{0.2, 0.05, 0.02} {
			var pCross, pAny, mean float64
			var rec func(i int, prob float64, xs []int)
			rec = func(i int, prob float64, xs []int) {
				if i == len(looks) {
					ct := NewCountTest(theta0, alpha)
					for k, l := range looks {
						observeUngated(ct, float64(xs[k]), l.nc, float64(l.e-xs[k]), l.nb)
					}
					pAny += prob
					mean += prob * ct.EValue()
					if ct.Regressed() {
						pCross += prob
					}
					return
				}
				l := looks[i]
				q0 := qOf(l.nc/(l.nc+l.nb), theta0)
				for x := 0; x <= l.e; x++ {
					rec(i+1, prob*lgBinomPMF(l.e, x, q0), append(xs, x))
				}
			}
			rec(0, 1, nil)
			if math.Abs(pAny-1) > 1e-9 || math.Abs(mean-1) > 1e-9 {
				t.Fatalf("θ₀=%v: total probability %v, E[e-value after 3 ticks] %v; both should be 1", theta0, pAny, mean)
			}
			if pCross == 0 {
				t.Errorf("θ₀=%v α=%v: no outcome crosses: the check is vacuous", theta0, alpha)
			}
			if pCross > alpha {
				t.Errorf("θ₀=%v α=%v: P_θ₀(∃t ≤ 3: e-value >= 1/α) = %.6g > α", theta0, alpha, pCross)
			}
			t.Logf("θ₀=%v α=%v: P(cross within 3 looks) = %.4g", theta0, alpha, pCross)
		}
	}
}

// TestCountTestIntervalCoverage: each end of the confidence sequence is
// valid at level α at all times. By exact enumeration of every outcome of
// three ticks, for true ratios on and between grid points, the probability
// that the upper end falls below θ at any of the three looks is at most α,
// and likewise for the lower end above θ.
func TestCountTestIntervalCoverage(t *testing.T) {
	type look struct {
		e      int
		nc, nb float64
	}
	looks := []look{{10, 500, 500}, {14, 300, 700}, {12, 600, 400}}
	for _, theta := range []float64{0.5, 1, 1.3, 2, 3.7} {
		for _, alpha := range []float64{0.2, 0.05} {
			var missHigh, missLow float64
			var rec func(i int, prob float64, xs []int)
			rec = func(i int, prob float64, xs []int) {
				if i == len(looks) {
					ct := NewCountTest(1, alpha)
					high, low := false, false
					for k, l := range looks {
						observeUngated(ct, float64(xs[k]), l.nc, float64(l.e-xs[k]), l.nb)
						lo, hi := ct.Interval()
						high = high || hi < theta
						low = low || lo > theta
					}
					if high {
						missHigh += prob
					}
					if low {
						missLow += prob
					}
					return
				}
				l := looks[i]
				q := qOf(l.nc/(l.nc+l.nb), theta)
				for x := 0; x <= l.e; x++ {
					rec(i+1, prob*lgBinomPMF(l.e, x, q), append(xs, x))
				}
			}
			rec(0, 1, nil)
			if missHigh+missLow == 0 {
				t.Errorf("θ=%v α=%v: the interval never misses: the check is vacuous", theta, alpha)
			}
			if missHigh > alpha || missLow > alpha {
				t.Errorf("θ=%v α=%v: P(∃t: upper end < θ) = %.4g, P(∃t: lower end > θ) = %.4g; each must be <= α",
					theta, alpha, missHigh, missLow)
			}
		}
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// TestCountTestEdgeCases: no events, silent cohorts, traffic shares next to
// 0 and 1, counts of a billion, coverage of the interval, and the p-value's
// monotonicity.
func TestCountTestEdgeCases(t *testing.T) {
	t.Run("zero events", func(t *testing.T) {
		for _, theta0 := range []float64{1, 1.1} {
			ct := NewCountTest(theta0, 0.01)
			check := func(when string) {
				// 1 up to the rounding of the prior's weights.
				if e := ct.EValue(); math.Abs(e-1) > 1e-12 {
					t.Errorf("θ₀=%v %s: e-value %v, want 1", theta0, when, e)
				}
				if lo, hi := ct.Interval(); lo != 0 || !math.IsInf(hi, 1) {
					t.Errorf("θ₀=%v %s: interval [%v, %v], want [0, +Inf)", theta0, when, lo, hi)
				}
				if p := ct.PValue(); p != 1 || ct.Regressed() {
					t.Errorf("θ₀=%v %s: p-value %v regressed %v", theta0, when, p, ct.Regressed())
				}
			}
			check("before any tick")
			for i := 0; i < 50; i++ {
				observeUngated(ct, 0, 1000, 0, 1000)
			}
			check("after 50 ticks without bad events")
		}
	})

	t.Run("silent cohort", func(t *testing.T) {
		ct := NewCountTest(1.1, 0.01)
		observeUngated(ct, 6, 100, 2, 100)
		observeUngated(ct, 4, 100, 1, 100)
		e0, p0 := ct.EValue(), ct.PValue()
		lo0, hi0 := ct.Interval()
		for _, s := range []countTick{{9, 0, 3, 100}, {9, 100, 3, 0}, {0, 0, 0, 0}, {50, 100, 0, 0}} {
			observeUngated(ct, s.x, s.nc, s.y, s.nb)
			lo, hi := ct.Interval()
			if ct.EValue() != e0 || ct.PValue() != p0 || lo != lo0 || hi != hi0 {
				t.Errorf("tick %+v with a silent cohort changed the test: e %v→%v, interval [%v,%v]→[%v,%v]",
					s, e0, ct.EValue(), lo0, hi0, lo, hi)
			}
		}
		if ct.Ticks != 6 || ct.CandidateBad != 6+4+9+9+50 || ct.BaselineBad != 2+1+3+3 {
			t.Errorf("running sums not kept on silent ticks: %+v", ct)
		}
	})

	t.Run("shares near 0 and 1", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			nc, nb float64
		}{{"rho=1e-9", 1e-9, 1 - 1e-9}, {"rho=1-1e-9", 1 - 1e-9, 1e-9}, {"rho=1e-300", 1e-300, 1}} {
			ct := NewCountTest(1.1, 0.01)
			seq := []countTick{{3, tc.nc, 5, tc.nb}, {0, tc.nc, 7, tc.nb}, {2, tc.nc, 0, tc.nb}}
			for i, s := range seq {
				observeUngated(ct, s.x, s.nc, s.y, s.nb)
				e := ct.EValue()
				lo, hi := ct.Interval()
				if !finite(e) || e < 0 || math.IsNaN(ct.PValue()) || math.IsNaN(lo) || math.IsNaN(hi) || lo > hi || !finite(lo) {
					t.Errorf("%s tick %d: e %v p %v interval [%v, %v]", tc.name, i+1, e, ct.PValue(), lo, hi)
				}
				if tc.name != "rho=1e-300" {
					if want := indepCountEValue(1.1, seq[:i+1]); relErr(e, want) > 1e-9 {
						t.Errorf("%s tick %d: e-value %.17g, independent %.17g", tc.name, i+1, e, want)
					}
				}
			}
			if est := ct.Estimate(); math.IsNaN(est) {
				t.Errorf("%s: estimate NaN", tc.name)
			}
		}
	})

	t.Run("billion counts", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			x, y      float64
			theta0    float64
			regressed bool
			truth     float64
		}{
			{"20% worse, tolerance 10%", 1.2e9, 1e9, 1.1, true, 1.2},
			{"5% worse, tolerance 10%", 1.05e9, 1e9, 1.1, false, 1.05},
			{"same, no tolerance", 1e9, 1e9, 1, false, 1},
			{"better, no tolerance", 0.8e9, 1e9, 1, false, 0.8},
			{"10% worse, no tolerance", 1.1e9, 1e9, 1, true, 1.1},
			{"20% better, tolerance 10%", 0.8e9, 1e9, 1.1, false, 0.8},
		} {
			ct := NewCountTest(tc.theta0, 0.01)
			for i := 0; i < 3; i++ {
				observeUngated(ct, tc.x, 1e11, tc.y, 1e11)
			}
			e := ct.EValue()
			lo, hi := ct.Interval()
			// e-values past 1e308 saturate to +Inf; anything else is a bug.
			if math.IsNaN(e) || e < 0 || (math.IsInf(e, 1) && !tc.regressed) {
				t.Errorf("%s: e-value %v", tc.name, e)
			}
			if ct.Regressed() != tc.regressed {
				t.Errorf("%s: regressed %v (e-value %v), want %v", tc.name, ct.Regressed(), e, tc.regressed)
			}
			if p := ct.PValue(); math.IsNaN(p) || p < 0 || p > 1 {
				t.Errorf("%s: p-value %v", tc.name, p)
			}
			if !finite(lo) || !finite(hi) || lo > tc.truth || hi < tc.truth || hi/lo > 1.5 {
				t.Errorf("%s: interval [%v, %v] should be finite, narrow and contain %v", tc.name, lo, hi, tc.truth)
			}
			if est := ct.Estimate(); math.Abs(est-tc.truth) > 1e-9 {
				t.Errorf("%s: estimate %v", tc.name, est)
			}
		}
	})

	t.Run("interval covers the truth", func(t *testing.T) {
		// Expected counts, no noise: candidate bad rate twice the baseline's.
		ct := NewCountTest(1.1, 0.01)
		for i := 0; i < 30; i++ {
			observeUngated(ct, 20, 1000, 10, 1000)
		}
		lo, hi := ct.Interval()
		if !(lo > 1.1 && lo <= 2 && hi >= 2 && hi < 4) {
			t.Errorf("interval [%v, %v] should contain 2 and exclude the null", lo, hi)
		}
		if !ct.Regressed() {
			t.Errorf("30 ticks of 20 against 10 bad events did not regress: e %v", ct.EValue())
		}
		// At a quarter traffic share and a ratio of 1/2.
		ct = NewCountTest(1, 0.01)
		for i := 0; i < 40; i++ {
			observeUngated(ct, 5, 250, 30, 750)
		}
		if lo, hi := ct.Interval(); !(lo <= 0.5 && hi >= 0.5 && hi < 1) {
			t.Errorf("interval [%v, %v] should contain 0.5 and lie below 1", lo, hi)
		}
	})

	t.Run("p-value monotone", func(t *testing.T) {
		ct := NewCountTest(1, 0.001)
		seq := []countTick{{5, 100, 1, 100}, {0, 100, 6, 100}, {9, 100, 2, 100}, {0, 100, 0, 100},
			{1, 100, 8, 100}, {3, 0, 0, 100}, {12, 100, 1, 100}, {0, 100, 10, 100}, {0, 100, 10, 100}}
		prev, maxE := 1.0, 1.0
		for i, s := range seq {
			observeUngated(ct, s.x, s.nc, s.y, s.nb)
			maxE = math.Max(maxE, ct.EValue())
			p := ct.PValue()
			if p > prev {
				t.Errorf("tick %d: p-value rose from %v to %v", i+1, prev, p)
			}
			if want := math.Min(1, 1/maxE); p != want {
				t.Errorf("tick %d: p-value %v, want min(1, 1/max e-value) = %v", i+1, p, want)
			}
			prev = p
		}
		if prev == 1 {
			t.Error("the sequence never moved the p-value: the check is vacuous")
		}
	})
}

// indepRateEValue is the uniform mixture over θ = 2^(k/8), k = 1..48 with
// p0·θ < 1, of Π_s Binom(x_s; n_s, p0·θ) / Binom(x_s; n_s, p0).
func indepRateEValue(p0 float64, ticks [][2]int) float64 {
	var thetas []float64
	for k := 1; k <= 48; k++ {
		if th := math.Exp2(float64(k) / 8); p0*th < 1 {
			thetas = append(thetas, th)
		}
	}
	if len(thetas) == 0 {
		return 1
	}
	bp0 := bigF(p0)
	nbp0 := new(big.Float).SetPrec(indepPrec).Sub(bigF(1), bp0)
	sum := bigF(0)
	for _, th := range thetas {
		p := new(big.Float).SetPrec(indepPrec).Mul(bp0, bigF(th))
		np := new(big.Float).SetPrec(indepPrec).Sub(bigF(1), p)
		lr := bigF(1)
		for _, s := range ticks {
			x, n := s[0], s[1]
			lr.Mul(lr, bigBinomPMF(n, x, p, np))
			lr.Quo(lr, bigBinomPMF(n, x, bp0, nbp0))
		}
		sum.Add(sum, lr)
	}
	sum.Quo(sum, bigF(float64(len(thetas))))
	f, _ := sum.Float64()
	return f
}

// TestRateTestEValueIndependent: the before/after e-value equals the mixture
// rebuilt from exact binomial probabilities, including grids cut short by
// p0·θ < 1 and the empty grid.
func TestRateTestEValueIndependent(t *testing.T) {
	for _, tc := range []struct {
		p0    float64
		ticks [][2]int
	}{
		{0.01, [][2]int{{2, 100}, {0, 50}, {5, 100}, {1, 200}, {0, 0}}},
		{0.01, [][2]int{{0, 100}, {0, 100}, {1, 300}}},
		{0.05, [][2]int{{9, 60}, {12, 80}, {10, 70}}},
		{0.1, [][2]int{{15, 100}, {8, 80}, {0, 0}, {30, 120}}},
		{0.2, [][2]int{{30, 100}, {25, 100}}},
		{0.6, [][2]int{{70, 100}, {8, 10}}},
		{0.95, [][2]int{{100, 100}}},
	} {
		rt := NewRateTest(tc.p0, 0.01)
		maxE := 1.0
		for i, s := range tc.ticks {
			rt.Observe(float64(s[0]), float64(s[1]))
			want := indepRateEValue(tc.p0, tc.ticks[:i+1])
			got := rt.EValue()
			if math.IsNaN(got) || relErr(got, want) > 1e-9 {
				t.Fatalf("p0=%v after tick %d: EValue %.17g, independent %.17g (rel err %.3g)", tc.p0, i+1, got, want, relErr(got, want))
			}
			if s[1] > 0 {
				maxE = math.Max(maxE, want)
			}
			if p := rt.PValue(); relErr(p, math.Min(1, 1/maxE)) > 1e-9 {
				t.Errorf("p0=%v after tick %d: PValue %v, want %v", tc.p0, i+1, p, math.Min(1, 1/maxE))
			}
			if rt.Regressed() != (maxE >= 100) {
				t.Errorf("p0=%v after tick %d: Regressed %v with max e %v", tc.p0, i+1, rt.Regressed(), maxE)
			}
		}
	}
}

// TestRateTestVille: one tick of n requests, and three ticks enumerated
// exhaustively: under p0 the e-value's expectation is 1 and the
// probability of reaching 1/α is at most α.
func TestRateTestVille(t *testing.T) {
	crossings := 0
	for _, p0 := range []float64{0.01, 0.1, 0.3} {
		for _, n := range []int{10, 50, 200} {
			evals := make([]float64, n+1)
			var mean, meanIn float64
			for x := 0; x <= n; x++ {
				rt := NewRateTest(p0, 0.5)
				rt.Observe(float64(x), float64(n))
				evals[x] = rt.EValue()
				mean += lgBinomPMF(n, x, p0) * evals[x]
				meanIn += lgBinomPMF(n, x, p0/2) * evals[x]
			}
			if math.Abs(mean-1) > 1e-9 || meanIn > 1+1e-9 {
				t.Errorf("p0=%v n=%d: E_p0[e] = %.15f (want 1), E_p0/2[e] = %.15f (want <= 1)", p0, n, mean, meanIn)
			}
			for _, alpha := range []float64{0.2, 0.05, 0.01, 0.001} {
				var tail float64
				for x, e := range evals {
					if e >= 1/alpha {
						tail += lgBinomPMF(n, x, p0)
					}
				}
				if tail > 0 {
					crossings++
				}
				if tail > alpha*(1+1e-12) {
					t.Errorf("p0=%v n=%d α=%v: P(e >= 1/α) = %.6g > α", p0, n, alpha, tail)
				}
			}
		}
	}
	if crossings < 10 {
		t.Fatalf("only %d configurations can cross: the check is vacuous", crossings)
	}

	const p0, alpha = 0.1, 0.05
	ns := []int{20, 30, 25}
	var pCross float64
	var rec func(i int, prob float64, xs []int)
	rec = func(i int, prob float64, xs []int) {
		if i == len(ns) {
			rt := NewRateTest(p0, alpha)
			for k, n := range ns {
				rt.Observe(float64(xs[k]), float64(n))
			}
			if rt.Regressed() {
				pCross += prob
			}
			return
		}
		for x := 0; x <= ns[i]; x++ {
			rec(i+1, prob*lgBinomPMF(ns[i], x, p0), append(xs, x))
		}
	}
	rec(0, 1, nil)
	if pCross == 0 || pCross > alpha {
		t.Errorf("three looks: P(∃t: e >= 1/α) = %.6g, want in (0, %v]", pCross, alpha)
	}
}

// binomCDF is P(Binomial(n, p) <= k), summed exactly term by term.
func binomCDF(n, k int, p float64) float64 {
	var s float64
	for i := 0; i <= k; i++ {
		s += lgBinomPMF(n, i, p)
	}
	return s
}

// TestRateUpperBoundExact: the before-window's bound u = rateUpperBound(bad,
// n, δ) is an upper confidence bound at level δ: the chance, at rate u, of
// seeing as few as bad failures is at most δ (exact binomial sums); and, for
// several true rates p, the chance that the bound computed from a
// Binomial(n, p) draw falls below p is at most δ.
func TestRateUpperBoundExact(t *testing.T) {
	for _, tc := range []struct {
		bad, n int
		delta  float64
	}{
		{0, 100, 0.05}, {1, 100, 0.05}, {5, 50, 0.01}, {10, 1000, 0.005}, {0, 1000, 0.0005},
		{20, 2000, 0.0005}, {100, 10000, 0.0005}, {60, 6000, 0.0005}, {3, 10, 0.1}, {500, 1000, 0.01},
	} {
		u := rateUpperBound(float64(tc.bad), float64(tc.n), tc.delta)
		if !(u > float64(tc.bad)/float64(tc.n) && u < 1) {
			t.Errorf("UCB(%d/%d, δ=%v) = %v, not above the observed rate", tc.bad, tc.n, tc.delta, u)
			continue
		}
		// For bad = 0 the Chernoff bound is exact, (1−u)^n = δ, and the
		// bisection returns a point a rounding error below it: allow 1e-9.
		if p := binomCDF(tc.n, tc.bad, u); p > tc.delta*(1+1e-9) {
			t.Errorf("UCB(%d/%d, δ=%v) = %.6g: P(Binomial(n, u) <= %d) = %.6g > δ", tc.bad, tc.n, tc.delta, u, tc.bad, p)
		}
	}
	for _, tc := range []struct {
		n     int
		delta float64
	}{{100, 0.05}, {1000, 0.005}, {2000, 0.0005}} {
		for _, p := range []float64{0.001, 0.01, 0.05, 0.3} {
			var miss float64
			for x := 0; x <= tc.n; x++ {
				if rateUpperBound(float64(x), float64(tc.n), tc.delta) < p {
					miss += lgBinomPMF(tc.n, x, p)
				}
			}
			if miss > tc.delta {
				t.Errorf("n=%d δ=%v p=%v: P(UCB < p) = %.6g > δ", tc.n, tc.delta, p, miss)
			}
		}
	}
}
