package detector

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// CountTest is the anytime-valid test for a rate ratio of DETECTION.md.
//
// Per tick the candidate has x bad events out of nc requests and the baseline
// y out of nb. Given e = x+y bad events, x ~ Binomial(e, q(θ)) with
// q(θ) = ρθ/(ρθ+1−ρ), ρ = nc/(nc+nb) and θ the ratio of the candidate's
// bad-event rate to the baseline's. The log-likelihood of every θ on a fixed
// log-spaced grid is kept, so a tick costs O(grid) and the state is a few
// hundred floats.
//
// The e-value against the null θ ≤ θ₀ is the likelihood ratio mixed with a
// prior over the grid points above θ₀ (weight ∝ 1/j on the j-th); it is a non-negative
// supermartingale under the null, so by Ville's inequality it crosses 1/α
// with probability at most α however often it is looked at.
//
// The same construction, for each grid point as a null, gives a confidence
// sequence for θ, each end valid at all times at level α: the interval reported is
// bounded by the neighbours of the outermost grid points not rejected, which
// keeps its coverage when the true θ falls between grid points.
type CountTest struct {
	theta0  float64
	alpha   float64
	grid    []float64
	logGrid []float64
	i0      int // index of theta0 in grid
	logL    []float64
	// logW are the prior's log-weights on the alternatives above θ₀: the
	// j-th gets weight ∝ 1/j (j <= maxAlternatives), which puts most mass
	// on the moderate effects that matter and still catches large ones in
	// a tick or two.
	logW []float64
	maxE float64

	// Running sums since the test began.
	CandidateBad, BaselineBad     float64
	CandidateTotal, BaselineTotal float64
	Ticks                         int
}

// Grid: θ = 2^(k/8) for k = -48..48 (1/64 to 64, steps of about 9 %), and θ₀.
const (
	gridSteps   = 48
	gridPerStep = 8
	// maxAlternatives bounds the prior's support above θ₀ (32 steps: θ₀·16).
	maxAlternatives = 32
)

// NewCountTest builds a test of θ ≤ theta0 at level alpha.
func NewCountTest(theta0, alpha float64) *CountTest {
	grid := make([]float64, 0, 2*gridSteps+2)
	for k := -gridSteps; k <= gridSteps; k++ {
		grid = append(grid, math.Pow(2, float64(k)/gridPerStep))
	}
	i0 := sort.SearchFloat64s(grid, theta0)
	if i0 == len(grid) || grid[i0] != theta0 {
		grid = append(grid, 0)
		copy(grid[i0+1:], grid[i0:])
		grid[i0] = theta0
	}
	t := &CountTest{theta0: theta0, alpha: alpha, grid: grid, i0: i0, logL: make([]float64, len(grid)), maxE: 1}
	t.logGrid = make([]float64, len(grid))
	for i, th := range grid {
		t.logGrid[i] = math.Log(th)
	}
	n := min(maxAlternatives, len(grid)-1-i0)
	var h float64
	for j := 1; j <= n; j++ {
		h += 1 / float64(j)
	}
	for j := 1; j <= n; j++ {
		t.logW = append(t.logW, -math.Log(float64(j)*h))
	}
	return t
}

// Observe adds one tick.
func (t *CountTest) Observe(x, nc, y, nb float64) {
	t.CandidateBad += x
	t.BaselineBad += y
	t.CandidateTotal += nc
	t.BaselineTotal += nb
	t.Ticks++
	if nc <= 0 || nb <= 0 || x+y <= 0 {
		return // no information about θ in this tick
	}
	// log q(θ)^x (1−q(θ))^y = x·log θ − (x+y)·log(1 + ρ(θ−1)) + terms
	// the same for every θ, which cancel in every ratio read from logL.
	rho := nc / (nc + nb)
	e := x + y
	for i, th := range t.grid {
		t.logL[i] += x*t.logGrid[i] - e*math.Log1p(rho*(th-1))
	}
	if e := t.EValue(); e > t.maxE {
		t.maxE = e
	}
}

// EValue is the mixture likelihood ratio against θ ≤ θ₀ (+Inf once it
// overflows a float64; LogEValue goes on).
func (t *CountTest) EValue() float64 { return math.Exp(t.LogEValue()) }

// LogEValue is the natural log of the e-value, computed in log space so
// that it never overflows.
func (t *CountTest) LogEValue() float64 {
	if len(t.logW) == 0 {
		return 0 // no alternative above θ₀ on the grid
	}
	mx := math.Inf(-1)
	for j, w := range t.logW {
		mx = math.Max(mx, t.logL[t.i0+1+j]+w)
	}
	var s float64
	for j, w := range t.logW {
		s += math.Exp(t.logL[t.i0+1+j] + w - mx)
	}
	return mx + math.Log(s) - t.logL[t.i0]
}

// PValue is the always-valid p-value: min(1, 1/max e-value so far).
func (t *CountTest) PValue() float64 { return math.Min(1, 1/t.maxE) }

// Regressed reports whether the e-value has ever reached 1/α.
func (t *CountTest) Regressed() bool { return t.maxE >= 1/t.alpha }

// Threshold is the e-value at which the test declares a regression.
func (t *CountTest) Threshold() float64 { return 1 / t.alpha }

// Theta0 is the edge of the null: 1 + tolerance.
func (t *CountTest) Theta0() float64 { return t.theta0 }

// Estimate is the observed ratio of bad-event rates (candidate over baseline),
// or NaN when it is not defined yet.
func (t *CountTest) Estimate() float64 {
	if t.CandidateTotal == 0 || t.BaselineTotal == 0 || t.BaselineBad == 0 {
		if t.CandidateBad > 0 && t.BaselineTotal > 0 && t.CandidateTotal > 0 {
			return math.Inf(1)
		}
		return math.NaN()
	}
	return (t.CandidateBad / t.CandidateTotal) / (t.BaselineBad / t.BaselineTotal)
}

// Interval is the always-valid confidence interval for θ at level α. Its
// ends are 0 and +Inf while the data cannot bound them.
func (t *CountTest) Interval() (lo, hi float64) {
	n := len(t.grid)
	thr := math.Log(1 / t.alpha)
	mx := t.logL[0]
	for _, v := range t.logL {
		mx = math.Max(mx, v)
	}
	// prefix[j] = Σ_{k<j} exp(logL_k − mx); suffix likewise from above.
	prefix := make([]float64, n+1)
	for k := 0; k < n; k++ {
		prefix[k+1] = prefix[k] + math.Exp(t.logL[k]-mx)
	}
	rejectedBelow := func(j int) bool { // null θ_j against alternatives below it
		if j == 0 || prefix[j] == 0 {
			return false
		}
		return math.Log(prefix[j]/float64(j))+mx-t.logL[j] >= thr
	}
	rejectedAbove := func(j int) bool { // null θ_j against alternatives above it
		m := n - 1 - j
		s := prefix[n] - prefix[j+1]
		if m == 0 || s <= 0 {
			return false
		}
		return math.Log(s/float64(m))+mx-t.logL[j] >= thr
	}
	hi = math.Inf(1)
	for j := n - 1; j >= 0; j-- {
		if !rejectedBelow(j) {
			if j+1 < n {
				hi = t.grid[j+1]
			}
			break
		}
	}
	lo = 0
	for j := 0; j < n; j++ {
		if !rejectedAbove(j) {
			if j > 0 {
				lo = t.grid[j-1]
			}
			break
		}
	}
	return lo, hi
}

// logMeanExp is log(mean(exp(v))) computed without overflow.
func logMeanExp(v []float64) float64 {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, x)
	}
	var s float64
	for _, x := range v {
		s += math.Exp(x - mx)
	}
	return mx + math.Log(s/float64(len(v)))
}

// Block is one unit of independence's counts in one tick: the bad and total
// events of one pod (instance) of a cohort. Without pod labels a cohort's
// tick is a single block.
type Block struct{ Bad, Total float64 }

// ObserveBlocks adds one tick given per pod.
func (t *CountTest) ObserveBlocks(cand, base []Block) {
	var x, nc, y, nb float64
	for _, b := range cand {
		x, nc = x+b.Bad, nc+b.Total
	}
	for _, b := range base {
		y, nb = y+b.Bad, nb+b.Total
	}
	t.Observe(x, nc, y, nb)
}

// MarshalBinary checkpoints the test's state, so that a restarted daemon
// goes on with the same evidence instead of spending α again.
func (t *CountTest) MarshalBinary() ([]byte, error) {
	return json.Marshal(countTestState{t.theta0, t.alpha, t.logL, t.maxE, t.CandidateBad, t.BaselineBad, t.CandidateTotal, t.BaselineTotal, t.Ticks})
}

// UnmarshalBinary restores a checkpoint made by MarshalBinary.
func (t *CountTest) UnmarshalBinary(b []byte) error {
	var s countTestState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("count test checkpoint: %w", err)
	}
	n := NewCountTest(s.Theta0, s.Alpha)
	if len(s.LogL) != len(n.logL) {
		return fmt.Errorf("count test checkpoint: %d grid points, want %d", len(s.LogL), len(n.logL))
	}
	copy(n.logL, s.LogL)
	n.maxE, n.CandidateBad, n.BaselineBad, n.CandidateTotal, n.BaselineTotal, n.Ticks = s.MaxE, s.CandidateBad, s.BaselineBad, s.CandidateTotal, s.BaselineTotal, s.Ticks
	*t = *n
	return nil
}

type countTestState struct {
	Theta0, Alpha                                            float64
	LogL                                                     []float64
	MaxE                                                     float64
	CandidateBad, BaselineBad, CandidateTotal, BaselineTotal float64
	Ticks                                                    int
}
