package simulate

import (
	"math"
	"testing"
)

// upperTailBySum is P(X ≥ x) summed term by term from the pmf.
func upperTailBySum(x, n int, p float64) float64 {
	var s float64
	for k := x; k <= n; k++ {
		a, _ := math.Lgamma(float64(n + 1))
		b, _ := math.Lgamma(float64(k + 1))
		c, _ := math.Lgamma(float64(n - k + 1))
		s += math.Exp(a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	return s
}

func TestBinomialUpperTail(t *testing.T) {
	if got, want := BinomialUpperTail(8, 10, 0.5), 56.0/1024; math.Abs(got-want) > 1e-15 {
		t.Errorf("P(Bin(10, 1/2) ≥ 8) = %v, want %v", got, want)
	}
	for _, c := range []struct {
		x, n int
		p    float64
	}{
		{0, 10, 0.3}, {1, 10, 0.3}, {3, 10, 0.3}, {4, 10, 0.3}, {10, 10, 0.3}, {11, 10, 0.3},
		{30, 900, 0.05}, {45, 900, 0.05}, {60, 900, 0.05}, {120, 900, 0.05},
		{450, 900, 0.5}, {480, 900, 0.5}, {100, 1800, 0.5}, {1, 1800, 0.001},
	} {
		want := 0.0
		if c.x <= c.n {
			want = upperTailBySum(max(c.x, 0), c.n, c.p)
		}
		got := BinomialUpperTail(c.x, c.n, c.p)
		if math.Abs(got-want) > 1e-12*math.Max(1, want) && math.Abs(got-want)/want > 1e-9 {
			t.Errorf("P(Bin(%d, %v) ≥ %d) = %v, want %v", c.n, c.p, c.x, got, want)
		}
	}
}

func TestWilson(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{5, 10, 0.2366, 0.7634},
		{0, 10, 0, 0.2775},
		{50, 1000, 0.0381, 0.0653},
	} {
		lo, hi := Wilson(c.k, c.n)
		if math.Abs(lo-c.lo) > 1e-4 || math.Abs(hi-c.hi) > 1e-4 {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

func TestSummarise(t *testing.T) {
	// Delays 1, 6, ∞, ∞ (ticks): the median is the 2nd smallest, p90 the 4th.
	d := Summarise([]int{-1, 0, 5, -1})
	if d.Runs != 4 || d.Detected != 2 || d.Median != 6 || !math.IsInf(d.P90, 1) || d.Rate() != 0.5 {
		t.Errorf("Summarise = %+v", d)
	}
	// Fewer than half detected: the median is +∞.
	if d := Summarise([]int{3, -1, -1}); !math.IsInf(d.Median, 1) {
		t.Errorf("median = %v, want +Inf", d.Median)
	}
	d = Summarise([]int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0})
	if d.Median != 5 || d.P90 != 9 {
		t.Errorf("median, p90 = %v, %v, want 5, 9", d.Median, d.P90)
	}
}
