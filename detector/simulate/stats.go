package simulate

import (
	"math"
	"slices"
)

// BinomialUpperTail is P(X ≥ x) for X ~ Binomial(n, p). It sums the
// probability mass from x away from the mean, where the terms shrink, so
// neither tail underflows to a wrong answer.
func BinomialUpperTail(x, n int, p float64) float64 {
	switch {
	case x <= 0:
		return 1
	case x > n || p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	logPMF := func(k int) float64 {
		a, _ := math.Lgamma(float64(n + 1))
		b, _ := math.Lgamma(float64(k + 1))
		c, _ := math.Lgamma(float64(n - k + 1))
		return a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
	}
	odds := p / (1 - p)
	if float64(x) > float64(n)*p {
		term := math.Exp(logPMF(x))
		sum := term
		for k := x; k < n && term > sum*1e-17; k++ {
			term *= odds * float64(n-k) / float64(k+1)
			sum += term
		}
		return math.Min(1, sum)
	}
	// 1 − P(X ≤ x−1), summed downward from x−1.
	term := math.Exp(logPMF(x - 1))
	sum := term
	for k := x - 1; k > 0 && term > sum*1e-17; k-- {
		term *= float64(k) / (odds * float64(n-k+1))
		sum += term
	}
	return math.Max(0, 1-sum)
}

// Wilson is the Wilson score interval for a binomial proportion k/n at 95 %.
func Wilson(k, n int) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959963984540054
	p := float64(k) / float64(n)
	nf := float64(n)
	den := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, mid-half), math.Min(1, mid+half)
}

// Delays summarises the first-alarm ticks of one detector over a set of runs.
type Delays struct {
	Runs, Detected int
	// Median and P90 are in ticks, counting the alarm tick itself (an alarm
	// on the first tick is 1). Runs without an alarm count as +∞, so a
	// detector that catches fewer than half the runs has an infinite median.
	Median, P90 float64
}

// Summarise turns first-alarm tick indexes (−1: never) into Delays. The
// quantiles are nearest-rank: the ⌈q·n⌉-th smallest delay.
func Summarise(alarms []int) Delays {
	d := Delays{Runs: len(alarms)}
	if len(alarms) == 0 {
		return Delays{Median: math.NaN(), P90: math.NaN()}
	}
	v := make([]float64, len(alarms))
	for i, a := range alarms {
		if a < 0 {
			v[i] = math.Inf(1)
			continue
		}
		v[i] = float64(a + 1)
		d.Detected++
	}
	slices.Sort(v)
	d.Median = nearestRank(v, 0.5)
	d.P90 = nearestRank(v, 0.9)
	return d
}

// Rate is the share of runs with an alarm.
func (d Delays) Rate() float64 { return float64(d.Detected) / float64(d.Runs) }

func nearestRank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
