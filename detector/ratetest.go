package detector

import "math"

// RateTest is the before/after test: the candidate's rate of bad events
// against a fixed reference rate p0, anytime-valid. Each tick's x bad of n
// is Binomial(n, p); the e-value against p <= p0 mixes the likelihood ratio
// over p = p0·θ for the grid points θ > 1, a supermartingale under the null.
type RateTest struct {
	p0    float64
	alpha float64
	grid  []float64 // θ values > 1
	logL  []float64
	maxE  float64
	phi   float64 // each tick's log-likelihood is divided by it (Tempered)
	// Burst budget (WithBurstBudget): burst is the longest excursion not
	// taken for a version effect (0: none), capLoss what the cap has taken
	// from the log e-value, recent the levels before the last burst+2 ticks.
	burst   int
	capLoss float64
	recent  []level
	Bad     float64
	Total   float64
	Ticks   int
}

// NewRateTest tests p <= p0 at level alpha.
func NewRateTest(p0, alpha float64) *RateTest {
	var grid []float64
	// θ = 2^(k/8), k = 1..48: up to 64 times p0.
	for k := 1; k <= 48; k++ {
		th := math.Pow(2, float64(k)/8)
		if p0*th >= 1 {
			break
		}
		grid = append(grid, th)
	}
	return &RateTest{p0: p0, alpha: alpha, grid: grid, logL: make([]float64, len(grid)), maxE: 1, phi: 1}
}

// Tempered divides every tick's log-likelihood ratio by phi (when above 1):
// counts phi times as variable as independent requests carry 1/phi of the
// evidence. Under independent requests a tempered ratio's expectation is at
// most 1 (Jensen), so the test stays valid and only gives up power.
func (t *RateTest) Tempered(phi float64) *RateTest {
	if phi > 1 {
		t.phi = phi
	}
	return t
}

// WithBurstBudget caps the rise of the log e-value within any ticks+2
// ticks at log(0.9/α), counted from the lowest level in them (or from 1):
// the candidate of a before/after comparison is the whole service, one
// source, and an excursion of ticks or fewer — a downstream outage, a
// burst of retries — is the same data as a short regression; only
// persistence tells them apart. As in the count test's burst budget
// (CountTest.burstBudget) the capped e-value is the uncapped one times
// factors ≤ 1, never above it, so Ville's inequality bounds its false
// alarms as before; a regression that persists is caught a window later at
// most.
func (t *RateTest) WithBurstBudget(ticks int) *RateTest {
	if ticks > 0 {
		t.burst = ticks
		t.recent = make([]level, 0, ticks+2)
	}
	return t
}

// Observe adds a tick of x bad events out of n.
func (t *RateTest) Observe(x, n float64) {
	t.Bad += x
	t.Total += n
	t.Ticks++
	if n <= 0 || len(t.grid) == 0 {
		return
	}
	before := t.LogEValue()
	for i, th := range t.grid {
		p := t.p0 * th
		t.logL[i] += (x*math.Log(th) + (n-x)*(math.Log1p(-p)-math.Log1p(-t.p0))) / t.phi
	}
	if t.burst > 0 {
		// One tick per Observe: a window of burst ticks keeps the levels
		// of the last burst+2.
		var ceiling float64
		t.recent, ceiling = burstCeiling(t.recent, t.Ticks, t.burst, before, math.Log(0.9/t.alpha))
		if over := t.LogEValue() - ceiling; over > 0 {
			t.capLoss += over
		}
	}
	if e := t.EValue(); e > t.maxE {
		t.maxE = e
	}
}

// EValue is the mixture likelihood ratio against p <= p0.
func (t *RateTest) EValue() float64 { return math.Exp(t.LogEValue()) }

// LogEValue is the natural log of the e-value; it never overflows.
func (t *RateTest) LogEValue() float64 {
	if len(t.grid) == 0 {
		return 0
	}
	return logMeanExp(t.logL) - t.capLoss
}

// Regressed reports whether the e-value has ever reached 1/α.
func (t *RateTest) Regressed() bool { return t.maxE >= 1/t.alpha }

// PValue is the always-valid p-value.
func (t *RateTest) PValue() float64 { return math.Min(1, 1/t.maxE) }

// rateUpperBound is an upper confidence bound, at level delta, for a
// binomial rate of which bad of n were seen: the largest p with
// n·KL(bad/n ‖ p) <= log(1/delta) (Chernoff), found by bisection.
func rateUpperBound(bad, n, delta float64) float64 {
	if n <= 0 {
		return 1
	}
	phat := bad / n
	limit := math.Log(1/delta) / n
	lo, hi := phat, 1.0
	for i := 0; i < 60; i++ {
		mid := (lo + hi) / 2
		if klBernoulli(phat, mid) > limit {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo
}

func klBernoulli(p, q float64) float64 {
	const eps = 1e-15
	q = math.Min(math.Max(q, eps), 1-eps)
	var k float64
	if p > 0 {
		k += p * math.Log(p/q)
	}
	if p < 1 {
		k += (1 - p) * math.Log((1-p)/(1-q))
	}
	return k
}
