// Package simulate is the detection benchmark of DETECTION.md: a seeded
// simulator of canary traffic, the detectors rollguard is measured against
// (the oracle SPRT, an Argo/Flagger-style threshold rule, a Kayenta-style
// fixed-horizon test) and the statistics of the report.
//
// It owns the traffic model and the peers; of rollguard it knows only
// detector.CountTest, fed exactly as the engine feeds it (per-tick counts per
// cohort). It must not know about ingest, configuration or the engine, so the
// figures it produces measure the statistics and nothing else.
package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Signal is what makes a request "bad".
type Signal int

const (
	// ErrorRatio: a request fails with probability BaselineErrorProb in the
	// baseline and BaselineErrorProb·Theta in the candidate.
	ErrorRatio Signal = iota
	// LatencyP99: a request is bad when it is slower than the baseline's p99
	// (DETECTION.md, "Distribution signals"): latency is log-normal, the
	// candidate's multiplied by LatencyShift, and each cohort's slow
	// requests per tick are counted against the baseline's true p99.
	LatencyP99
)

func (s Signal) String() string {
	switch s {
	case ErrorRatio:
		return "error ratio"
	case LatencyP99:
		return "p99 latency"
	}
	return fmt.Sprintf("Signal(%d)", int(s))
}

// z99 is the standard normal's 0.99 quantile.
const z99 = 2.3263478740408408

// Traffic describes one canary: the service's load, how it is split, and how
// much worse the candidate is.
type Traffic struct {
	// RequestsPerSecond is the mean load over a day, both cohorts together.
	RequestsPerSecond float64
	// Tick is how often counts are reported (and the detectors evaluated).
	Tick time.Duration
	// DiurnalSwing is the relative amplitude of the 24 h sinusoid on the
	// load: the rate is RequestsPerSecond·(1 + DiurnalSwing·sin(2π·h/24)),
	// h the hour of day. A run starts at an hour of day drawn from its seed.
	DiurnalSwing float64
	// CanaryShare is ρ, the candidate's expected share of requests.
	CanaryShare float64

	Signal Signal
	// BaselineErrorProb is p₀ (ErrorRatio).
	BaselineErrorProb float64
	// Theta is the candidate's error probability over the baseline's
	// (ErrorRatio); 1 is an A/A run.
	Theta float64
	// LatencyMedian and LatencySigma define the baseline's log-normal
	// latency: log(latency) ~ N(log(LatencyMedian), LatencySigma²).
	LatencyMedian time.Duration
	LatencySigma  float64
	// LatencyShift multiplies the candidate's latency (LatencyP99); 1 is an
	// A/A run.
	LatencyShift float64
}

// BadProbs are the true probabilities that a candidate and a baseline request
// are bad — what the oracle knows and the other detectors must estimate.
func (t Traffic) BadProbs() (candidate, baseline float64) {
	if t.Signal == LatencyP99 {
		// P(σZ + log shift > σ z99) for the candidate; 1 % for the baseline.
		return normalUpper(z99 - math.Log(t.LatencyShift)/t.LatencySigma), 0.01
	}
	return t.BaselineErrorProb * t.Theta, t.BaselineErrorProb
}

// Ratio is the true θ: the candidate's bad-event probability over the
// baseline's.
func (t Traffic) Ratio() float64 {
	c, b := t.BadProbs()
	return c / b
}

// Validate says what is wrong with t, naming the field.
func (t Traffic) Validate() error {
	switch {
	case !(t.RequestsPerSecond > 0):
		return fmt.Errorf("traffic: RequestsPerSecond must be > 0, got %v", t.RequestsPerSecond)
	case t.Tick <= 0:
		return fmt.Errorf("traffic: Tick must be > 0, got %v", t.Tick)
	case !(t.DiurnalSwing >= 0 && t.DiurnalSwing < 1):
		return fmt.Errorf("traffic: DiurnalSwing must be in [0, 1), got %v", t.DiurnalSwing)
	case !(t.CanaryShare > 0 && t.CanaryShare < 1):
		return fmt.Errorf("traffic: CanaryShare must be in (0, 1), got %v", t.CanaryShare)
	}
	switch t.Signal {
	case ErrorRatio:
		if !(t.BaselineErrorProb > 0 && t.Theta > 0 && t.BaselineErrorProb*t.Theta < 1) {
			return fmt.Errorf("traffic: BaselineErrorProb %v and Theta %v must give probabilities in (0, 1)", t.BaselineErrorProb, t.Theta)
		}
	case LatencyP99:
		if t.LatencyMedian <= 0 || !(t.LatencySigma > 0) || !(t.LatencyShift > 0) {
			return fmt.Errorf("traffic: LatencyMedian %v, LatencySigma %v and LatencyShift %v must be > 0", t.LatencyMedian, t.LatencySigma, t.LatencyShift)
		}
	default:
		return fmt.Errorf("traffic: unknown Signal %d", int(t.Signal))
	}
	return nil
}

// Tick is one reporting interval's counts, as the engine would see them.
type Tick struct {
	CandidateRequests, CandidateBad int
	BaselineRequests, BaselineBad   int
}

// Canary generates one run's ticks. It is deterministic in its seed.
type Canary struct {
	traffic Traffic
	rng     *rand.Rand
	// startHour is the hour of day at which the run starts, from the seed:
	// a one-hour run sees a different part of the diurnal swing each time.
	startHour float64
	tick      int

	// Latency, in log-seconds: baseline's mean of log latency, the p99
	// boundary, and the candidate's shift.
	logMedian, logBoundary, logShift float64
}

// NewCanary starts a run. Runs with equal traffic and seeds are equal.
func NewCanary(t Traffic, seed1, seed2 uint64) *Canary {
	c := &Canary{traffic: t, rng: rand.New(rand.NewPCG(seed1, seed2))}
	c.startHour = 24 * c.rng.Float64()
	if t.Signal == LatencyP99 {
		c.logMedian = math.Log(t.LatencyMedian.Seconds())
		c.logBoundary = c.logMedian + z99*t.LatencySigma
		c.logShift = math.Log(t.LatencyShift)
	}
	return c
}

// StartHour is the hour of day (0 ≤ h < 24) at which the run starts.
func (c *Canary) StartHour() float64 { return c.startHour }

// Rate is the expected load, in requests per second, at tick i.
func (c *Canary) Rate(i int) float64 {
	t := c.traffic
	// The middle of the tick; over a 10 s tick the sinusoid is flat.
	h := c.startHour + (float64(i)+0.5)*t.Tick.Hours()
	return t.RequestsPerSecond * (1 + t.DiurnalSwing*math.Sin(2*math.Pi*h/24))
}

// P99Boundary is the baseline's true p99 latency (LatencyP99): the bucket
// boundary the count test counts against.
func (c *Canary) P99Boundary() time.Duration {
	return time.Duration(math.Exp(c.logBoundary) * float64(time.Second))
}

// Next draws the next tick. Arrivals are Poisson per cohort (a Poisson
// stream split with probability ρ), so the realised share varies from tick
// to tick as it does in production.
func (c *Canary) Next() Tick {
	t := c.traffic
	mean := c.Rate(c.tick) * t.Tick.Seconds()
	c.tick++
	var k Tick
	k.CandidateRequests = poisson(c.rng, mean*t.CanaryShare)
	k.BaselineRequests = poisson(c.rng, mean*(1-t.CanaryShare))
	switch t.Signal {
	case ErrorRatio:
		pc, pb := t.BadProbs()
		k.CandidateBad = binomial(c.rng, k.CandidateRequests, pc)
		k.BaselineBad = binomial(c.rng, k.BaselineRequests, pb)
	case LatencyP99:
		k.CandidateBad = c.slow(k.CandidateRequests, c.logShift)
		k.BaselineBad = c.slow(k.BaselineRequests, 0)
	}
	return k
}

// slow draws n log-normal latencies, shifted by logShift, and counts those
// above the baseline's p99. Drawing each request (rather than a binomial
// count) keeps the simulator honest about what a histogram would see.
func (c *Canary) slow(n int, logShift float64) int {
	s := 0
	for range n {
		if c.logMedian+logShift+c.traffic.LatencySigma*c.rng.NormFloat64() > c.logBoundary {
			s++
		}
	}
	return s
}

// poisson draws from Poisson(mean): by inversion for small means, by
// Hörmann's transformed rejection with squeeze (PTRS, 1993) — the algorithm
// numpy uses — above 10, where inversion would be slow and e^-mean underflows.
func poisson(r *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean < 10 {
		l, k, p := math.Exp(-mean), 0, 1.0
		for {
			p *= r.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	slam := math.Sqrt(mean)
	loglam := math.Log(mean)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invAlpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		if us == 0 {
			continue // u = -0.5 exactly: the hat is infinite there
		}
		k := math.Floor((2*a/us+b)*u + mean + 0.43)
		if us >= 0.07 && v <= vr {
			return int(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invAlpha)-math.Log(a/(us*us)+b) <= -mean+k*loglam-lg {
			return int(k)
		}
	}
}

// binomial draws from Binomial(n, p): by inversion (cost O(np)) when the
// expected count is small, as it is for error and slow-request counts, and by
// counting Bernoulli trials otherwise. Both are exact.
func binomial(r *rand.Rand, n int, p float64) int {
	if n <= 0 || p <= 0 {
		return 0
	}
	if p >= 1 {
		return n
	}
	if p > 0.5 {
		return n - binomial(r, n, 1-p)
	}
	if float64(n)*p > 200 { // (1-p)^n would underflow toward 0
		s := 0
		for range n {
			if r.Float64() < p {
				s++
			}
		}
		return s
	}
	u := r.Float64()
	pmf := math.Exp(float64(n) * math.Log1p(-p))
	odds := p / (1 - p)
	cdf := pmf
	k := 0
	for u >= cdf && k < n {
		pmf *= odds * float64(n-k) / float64(k+1)
		k++
		cdf += pmf
	}
	return k
}

// normalUpper is P(Z > z) for a standard normal Z.
func normalUpper(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }
