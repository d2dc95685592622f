package simulate

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func errorTraffic(share, theta, swing float64) Traffic {
	return Traffic{
		RequestsPerSecond: 50, Tick: 10 * time.Second, DiurnalSwing: swing, CanaryShare: share,
		Signal: ErrorRatio, BaselineErrorProb: 0.01, Theta: theta,
	}
}

func latencyTraffic(share, shift float64) Traffic {
	return Traffic{
		RequestsPerSecond: 50, Tick: 10 * time.Second, CanaryShare: share,
		Signal: LatencyP99, LatencyMedian: 100 * time.Millisecond, LatencySigma: 0.5, LatencyShift: shift,
	}
}

// within fails the test when got is more than 5 standard errors from want.
func within(t *testing.T, what string, got, want, stderr float64) {
	t.Helper()
	if math.Abs(got-want) > 5*stderr {
		t.Errorf("%s = %.5g, want %.5g ± %.3g (5 standard errors)", what, got, want, 5*stderr)
	}
}

// sums plays ticks ticks of one canary.
func sums(tr Traffic, ticks int, seed uint64) (Tick, *Canary) {
	c := NewCanary(tr, seed, 0)
	var s Tick
	for range ticks {
		k := c.Next()
		s.CandidateRequests += k.CandidateRequests
		s.CandidateBad += k.CandidateBad
		s.BaselineRequests += k.BaselineRequests
		s.BaselineBad += k.BaselineBad
	}
	return s, c
}

// proportion checks bad/requests against p with its binomial standard error.
func proportion(t *testing.T, what string, bad, requests int, p float64) {
	t.Helper()
	n := float64(requests)
	within(t, what, float64(bad)/n, p, math.Sqrt(p*(1-p)/n))
}

func TestCanaryRatesMatchParameters(t *testing.T) {
	const ticks = 5000
	for _, tr := range []Traffic{errorTraffic(0.05, 2, 0), errorTraffic(0.5, 5, 0), latencyTraffic(0.5, 1.2), latencyTraffic(0.05, 1)} {
		s, _ := sums(tr, ticks, 1)
		name := tr.Signal.String()
		// Arrivals: Poisson with mean rate·tick per tick, split by ρ.
		mean := tr.RequestsPerSecond * tr.Tick.Seconds() * ticks
		all := float64(s.CandidateRequests + s.BaselineRequests)
		within(t, name+": requests", all, mean, math.Sqrt(mean))
		proportion(t, name+": canary share", s.CandidateRequests, s.CandidateRequests+s.BaselineRequests, tr.CanaryShare)
		pc, pb := tr.BadProbs()
		proportion(t, name+": candidate bad ratio", s.CandidateBad, s.CandidateRequests, pc)
		proportion(t, name+": baseline bad ratio", s.BaselineBad, s.BaselineRequests, pb)
	}
}

func TestBadProbs(t *testing.T) {
	if pc, pb := errorTraffic(0.5, 1.5, 0).BadProbs(); pc != 0.015 || pb != 0.01 {
		t.Errorf("error ratio: BadProbs = %v, %v", pc, pb)
	}
	// Latency ×1.2 at σ = 0.5: P(Z > z99 − log(1.2)/0.5) = P(Z > 1.9617) ≈ 0.0249.
	pc, pb := latencyTraffic(0.5, 1.2).BadProbs()
	if math.Abs(pc-0.02490) > 1e-4 || pb != 0.01 {
		t.Errorf("latency: BadProbs = %v, %v, want 0.0249, 0.01", pc, pb)
	}
	c := NewCanary(latencyTraffic(0.5, 1), 1, 1)
	if got := c.P99Boundary(); got.Round(time.Millisecond) != 320*time.Millisecond {
		t.Errorf("p99 boundary = %v, want 320ms (100ms·e^(0.5·2.326))", got)
	}
}

// TestDiurnalSwing: over a day the load averages the mean rate, and with a
// ±50 % swing the busiest hour (06:00) carries about three times the quietest
// (18:00); the counts follow the rate hour by hour.
func TestDiurnalSwing(t *testing.T) {
	tr := errorTraffic(0.5, 1, 0.5)
	const perDay = 24 * 360
	c := NewCanary(tr, 3, 0)
	var total, expected float64
	perHour := make([]float64, 24)
	wantHour := make([]float64, 24)
	for i := range perDay {
		k := c.Next()
		n := float64(k.CandidateRequests + k.BaselineRequests)
		h := int(math.Mod(c.StartHour()+float64(i)/360, 24))
		perHour[h] += n
		wantHour[h] += c.Rate(i) * tr.Tick.Seconds()
		total += n
		expected += c.Rate(i) * tr.Tick.Seconds()
	}
	mean := tr.RequestsPerSecond * 86400
	if math.Abs(expected-mean) > 1e-6*mean {
		t.Errorf("rate integrates to %v over a day, want %v", expected, mean)
	}
	within(t, "requests in a day", total, mean, math.Sqrt(mean))
	// Peak at 6 h, trough at 18 h: 1.5 and 0.5 times the mean.
	within(t, "requests 06:00–07:00", perHour[6], wantHour[6], math.Sqrt(wantHour[6]))
	within(t, "requests 18:00–19:00", perHour[18], wantHour[18], math.Sqrt(wantHour[18]))
	if r := wantHour[6] / wantHour[18]; r < 2.8 || r > 3.05 {
		t.Errorf("peak/trough hourly load = %.2f, want about 1.5/0.5", r)
	}
}

func TestCanaryDeterministic(t *testing.T) {
	tr := errorTraffic(0.05, 2, 0.5)
	a, b, other := NewCanary(tr, 7, 9), NewCanary(tr, 7, 9), NewCanary(tr, 7, 10)
	if a.StartHour() != b.StartHour() || a.StartHour() == other.StartHour() {
		t.Errorf("start hours %v, %v, %v: want equal for equal seeds, different otherwise", a.StartHour(), b.StartHour(), other.StartHour())
	}
	for i := range 100 {
		if x, y := a.Next(), b.Next(); x != y {
			t.Fatalf("tick %d: %+v != %+v", i, x, y)
		}
	}
}

func TestPoisson(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const n = 20000
	for _, mean := range []float64{0.3, 4, 9.9, 10, 12, 250, 700} {
		var s, s2 float64
		atMean := 0
		for range n {
			k := float64(poisson(r, mean))
			s += k
			s2 += k * k
			if k == math.Floor(mean) {
				atMean++
			}
		}
		m := s / n
		v := s2/n - m*m
		within(t, "poisson mean", m, mean, math.Sqrt(mean/n))
		within(t, "poisson variance", v, mean, math.Sqrt((mean+2*mean*mean)/n))
		// The probability mass at ⌊mean⌋, which a wrong shape would miss.
		k := math.Floor(mean)
		lg, _ := math.Lgamma(k + 1)
		p := math.Exp(-mean + k*math.Log(mean) - lg)
		proportion(t, "poisson P(X = ⌊mean⌋)", atMean, n, p)
	}
	if poisson(r, 0) != 0 {
		t.Error("poisson(0) != 0")
	}
}

func TestBinomial(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	const draws = 20000
	for _, c := range []struct {
		n int
		p float64
	}{{25, 0.01}, {500, 0.01}, {750, 0.065}, {1000, 0.3}, {400, 0.9}} {
		var s float64
		for range draws {
			s += float64(binomial(r, c.n, c.p))
		}
		within(t, "binomial mean", s/draws, float64(c.n)*c.p, math.Sqrt(float64(c.n)*c.p*(1-c.p)/draws))
	}
	if binomial(r, 0, 0.5) != 0 || binomial(r, 10, 0) != 0 || binomial(r, 10, 1) != 10 {
		t.Error("binomial edge cases")
	}
}

func TestValidate(t *testing.T) {
	good := errorTraffic(0.05, 1, 0.5)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Traffic){
		"RequestsPerSecond": func(t *Traffic) { t.RequestsPerSecond = 0 },
		"Tick":              func(t *Traffic) { t.Tick = 0 },
		"DiurnalSwing":      func(t *Traffic) { t.DiurnalSwing = 1 },
		"CanaryShare":       func(t *Traffic) { t.CanaryShare = 1 },
		"Theta":             func(t *Traffic) { t.Theta = 200 },
		"LatencySigma":      func(t *Traffic) { t.Signal = LatencyP99; t.LatencyMedian = time.Second },
	} {
		tr := good
		mutate(&tr)
		if err := tr.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
