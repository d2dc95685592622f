package detector

import (
	"math"
	"math/rand/v2"
	"testing"
)

// poisson draws from Poisson(lambda) by inversion; lambda is small here.
func poisson(r *rand.Rand, lambda float64) float64 {
	l, k, p := math.Exp(-lambda), 0.0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// simulate runs one canary of ticks ticks: n requests per tick in total, a
// share rho to the candidate, baseline error probability p0 and candidate
// p0*theta. It returns the first tick at which the test regressed, or -1.
func simulate(r *rand.Rand, ticks int, n, rho, p0, theta, tolerance, alpha float64) (int, *CountTest) {
	t := NewCountTest(1+tolerance, alpha)
	nc, nb := n*rho, n*(1-rho)
	for i := 0; i < ticks; i++ {
		x := poisson(r, nc*p0*theta)
		y := poisson(r, nb*p0)
		t.Observe(x, nc, y, nb)
		if t.Regressed() {
			return i, t
		}
	}
	return -1, t
}

// TestCountTestFalseAlarms: A/A canaries looked at every tick for 120 ticks
// alarm at most alpha of the time (the anytime-valid promise). A fixed
// threshold evaluated as often would not.
func TestCountTestFalseAlarms(t *testing.T) {
	const runs, alpha = 2000, 0.05
	for _, rho := range []float64{0.05, 0.5} {
		r := rand.New(rand.NewPCG(42, uint64(rho*100)))
		alarms := 0
		for i := 0; i < runs; i++ {
			if at, _ := simulate(r, 120, 1000, rho, 0.01, 1, 0, alpha); at >= 0 {
				alarms++
			}
		}
		rate := float64(alarms) / runs
		// Upper end of a 3-sigma binomial band around alpha.
		limit := alpha + 3*math.Sqrt(alpha*(1-alpha)/runs)
		t.Logf("rho=%.2f: %d/%d false alarms (%.4f, limit %.4f)", rho, alarms, runs, rate, limit)
		if rate > limit {
			t.Errorf("rho=%.2f: false-alarm rate %.4f above %.4f", rho, rate, limit)
		}
	}
}

// TestCountTestDetects: a candidate 3x worse is caught within a bounded
// number of ticks in every run, and a 1.5x one in most.
func TestCountTestDetects(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, tc := range []struct {
		theta    float64
		maxTicks int
		minRate  float64
	}{{3, 60, 1}, {1.5, 600, 0.95}} {
		detected := 0
		for i := 0; i < 200; i++ {
			if at, _ := simulate(r, tc.maxTicks, 1000, 0.5, 0.01, tc.theta, 0, 0.01); at >= 0 {
				detected++
			}
		}
		if rate := float64(detected) / 200; rate < tc.minRate {
			t.Errorf("theta=%v: detected %.2f of runs within %d ticks, want >= %.2f", tc.theta, rate, tc.maxTicks, tc.minRate)
		}
	}
}

// TestCountTestTolerance: a candidate 1.05x worse is inside a 10 % tolerance
// and must not be flagged; the same candidate is flagged with no tolerance
// given enough data.
func TestCountTestTolerance(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	if at, _ := simulate(r, 2000, 20000, 0.5, 0.01, 1.05, 0.1, 0.01); at >= 0 {
		t.Errorf("flagged a 5 %% worse candidate at tick %d despite a 10 %% tolerance", at)
	}
	if at, _ := simulate(r, 2000, 20000, 0.5, 0.01, 1.2, 0, 0.01); at < 0 {
		t.Error("a 20 % worse candidate was not flagged with no tolerance")
	}
}

// TestCountTestInterval: the always-valid interval covers the true ratio,
// and narrows so that a healthy candidate is eventually declared healthy.
func TestCountTestInterval(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	misses := 0
	for i := 0; i < 200; i++ {
		_, ct := simulate(r, 100, 2000, 0.5, 0.02, 2, 10, 0.05) // tolerance 10: never stops early
		lo, hi := ct.Interval()
		if lo > 2 || hi < 2 {
			misses++
		}
	}
	if misses > 10 { // 5 % of 200
		t.Errorf("interval missed the true ratio in %d/200 runs", misses)
	}

	_, ct := simulate(r, 300, 20000, 0.5, 0.01, 1, 0.25, 0.01)
	lo, hi := ct.Interval()
	if !(hi <= 1.25 && lo < 1) {
		t.Errorf("healthy canary: interval [%v, %v], want upper end <= 1.25", lo, hi)
	}
}

// TestCountTestNoInformation: ticks without traffic or without bad events
// leave the e-value at 1 and the interval unbounded.
func TestCountTestNoInformation(t *testing.T) {
	ct := NewCountTest(1.1, 0.01)
	ct.Observe(0, 100, 0, 100)
	ct.Observe(5, 100, 0, 0) // baseline silent: no information
	ct.Observe(0, 0, 5, 100)
	if e := ct.EValue(); math.Abs(e-1) > 1e-12 {
		t.Errorf("e-value = %v, want 1", e)
	}
	if lo, hi := ct.Interval(); lo != 0 || !math.IsInf(hi, 1) {
		t.Errorf("interval = [%v, %v], want [0, +Inf]", lo, hi)
	}
	if p := ct.PValue(); p != 1 {
		t.Errorf("p-value = %v", p)
	}
	if ct.Ticks != 3 || ct.CandidateBad != 5 || ct.BaselineBad != 5 {
		t.Errorf("sums = %+v", ct)
	}
}

func BenchmarkCountTestObserve(b *testing.B) {
	ct := NewCountTest(1.1, 0.01)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ct.Observe(12, 1000, 10, 1000)
	}
}

func BenchmarkCountTestInterval(b *testing.B) {
	ct := NewCountTest(1.1, 0.01)
	for i := 0; i < 100; i++ {
		ct.Observe(12, 1000, 10, 1000)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ct.Interval()
	}
}
