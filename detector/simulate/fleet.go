package simulate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/rollguard/rollguard/detector"
)

// This file is the nuisance suite's traffic model (DETECTION.md, "Real
// traffic is not independent"; issue 12): a fleet of pods, each reporting its
// own counts per tick, with the nuisances that break the independent-requests
// model of Canary — retry clusters, a bursty pod, persistent pod offsets,
// per-pod per-tick noise, outages seen a few seconds apart by the two
// versions, an autocorrelated saturation gauge — and the contenders fed
// per-pod blocks or their sums.

// Fleet describes one canary as a set of pods. The zero Nuisance is the
// clean fleet: Poisson requests per pod per tick, each failing independently.
type Fleet struct {
	// Pods is the number of pods of both versions together; the first
	// CandidatePods of them run the candidate.
	Pods, CandidatePods int
	// RequestsPerSecond is the load of the whole fleet, spread evenly over
	// the pods: each pod's requests in a tick are Poisson with mean
	// RequestsPerSecond/Pods·Tick.
	RequestsPerSecond float64
	Tick              time.Duration
	// BaselineErrorProb is p₀, a request's probability of failing.
	BaselineErrorProb float64
	// Theta multiplies the candidate pods' error probability from tick
	// ChangeAt on (0: from the start); 1 is an A/A run. With ChangeAt > 0 the
	// candidate is healthy first and regresses later.
	Theta    float64
	ChangeAt int
	Nuisance Nuisance
}

// FleetWatchTicks is the suite's watch: 6 h of 10 s ticks.
const FleetWatchTicks = 2160

// DefaultFleet is the setting: 20 pods, 200 requests/s in all (10 per
// pod), 10 s ticks, p₀ = 1 %, one candidate pod (a 5 % canary), A/A, clean.
func DefaultFleet() Fleet {
	return Fleet{Pods: 20, CandidatePods: 1, RequestsPerSecond: 200, Tick: 10 * time.Second, BaselineErrorProb: 0.01, Theta: 1}
}

// Nuisance is what makes a fleet's counts depart from independent requests.
// Every field's zero value turns its nuisance off; they combine. Unless said
// otherwise both versions are affected alike.
type Nuisance struct {
	// RetryCluster > 1: errors arrive in clusters of this many (a failed
	// request retried RetryCluster−1 times, every attempt failing). A pod's
	// clusters in a tick are Poisson(n·p/RetryCluster), n its requests; each
	// adds RetryCluster bad events and RetryCluster−1 requests (the
	// retries) to the pod's total, so the error rate stays about p.
	RetryCluster int

	// Bursts: a fleet-wide Poisson process of BurstsPerHour; each burst
	// picks a pod uniformly (candidate or baseline) and multiplies its error
	// probability by BurstFactor for BurstLength (rounded to whole ticks,
	// from the tick in which the burst starts).
	BurstsPerHour, BurstFactor float64
	BurstLength                time.Duration

	// PodOffsetSigma > 0: each pod's error probability is p₀·exp(σZ − σ²/2),
	// Z standard normal, drawn once per run (mean-preserving).
	PodOffsetSigma float64
	// TickNoiseSigma > 0: each pod's error probability is multiplied, per
	// tick, by an independent exp(σZ − σ²/2) (mean-preserving; capped at 1).
	TickNoiseSigma float64

	// Outages of a shared downstream: a Poisson process of OutagesPerHour,
	// each lasting OutageLength, during which a request fails with
	// probability OutageFailure on top of its own. The baseline sees an
	// outage starting at s over [s, s+OutageLength), the candidate
	// OutageLead earlier, over [s−OutageLead, s−OutageLead+OutageLength).
	// In a tick a cohort's requests fail with probability
	// 1 − (1−p)·Π(1 − OutageFailure·f), f each outage's share of the tick
	// that the cohort's window covers.
	OutagesPerHour, OutageFailure float64
	OutageLength, OutageLead      time.Duration

	// Gauge replaces the error counts by a saturation gauge: per pod an
	// AR(1) process, one step per tick, g ← φg + √(1−φ²)·Z (stationary
	// N(0, 1), started from it); a reading is bad when above the stationary
	// 90th percentile. Each pod's tick is the block {Bad: 0 or 1, Total: 1}.
	// The other nuisances, Theta and the request load do not apply.
	Gauge    bool
	GaugePhi float64
}

// The nuisances, one at a time.

// RetryClusters: errors in clusters of 3.
func RetryClusters() Nuisance { return Nuisance{RetryCluster: 3} }

// BurstyPods: one burst every 2 h on average, a random pod ×10 for 1 min.
func BurstyPods() Nuisance {
	return Nuisance{BurstsPerHour: 0.5, BurstFactor: 10, BurstLength: time.Minute}
}

// PodOffsets: persistent per-pod offsets, σ = 0.2 on the log scale.
func PodOffsets() Nuisance { return Nuisance{PodOffsetSigma: 0.2} }

// TickNoise: per-pod per-tick log-normal noise, σ = 0.7.
func TickNoise() Nuisance { return Nuisance{TickNoiseSigma: 0.7} }

// MisalignedOutages: 6 outages an hour, 20 s each, half the requests
// failing, the candidate seeing each 5 s before the baseline.
func MisalignedOutages() Nuisance {
	return Nuisance{OutagesPerHour: 6, OutageFailure: 0.5, OutageLength: 20 * time.Second, OutageLead: 5 * time.Second}
}

// SaturationGauge: the AR(1) gauge with coefficient phi (0.9, 0.99).
func SaturationGauge(phi float64) Nuisance { return Nuisance{Gauge: true, GaugePhi: phi} }

// z90 is the standard normal's 0.9 quantile.
const z90 = 1.2815515655446004

// Validate says what is wrong with f, naming the field.
func (f Fleet) Validate() error {
	n := f.Nuisance
	switch {
	case f.Pods < 2:
		return fmt.Errorf("fleet: Pods must be at least 2, got %d", f.Pods)
	case f.CandidatePods < 1 || f.CandidatePods >= f.Pods:
		return fmt.Errorf("fleet: CandidatePods must be in [1, Pods-1] = [1, %d], got %d", f.Pods-1, f.CandidatePods)
	case f.Tick <= 0:
		return fmt.Errorf("fleet: Tick must be > 0, got %v", f.Tick)
	case f.ChangeAt < 0:
		return fmt.Errorf("fleet: ChangeAt must be >= 0, got %d", f.ChangeAt)
	case n.Gauge:
		if !(n.GaugePhi >= 0 && n.GaugePhi < 1) {
			return fmt.Errorf("fleet: GaugePhi must be in [0, 1), got %v", n.GaugePhi)
		}
		if f.Theta != 1 || n.RetryCluster > 1 || n.BurstsPerHour != 0 || n.PodOffsetSigma != 0 || n.TickNoiseSigma != 0 || n.OutagesPerHour != 0 {
			return fmt.Errorf("fleet: the gauge is an A/A signal of its own: Theta must be 1 and the count nuisances off")
		}
		return nil
	case !(f.RequestsPerSecond > 0):
		return fmt.Errorf("fleet: RequestsPerSecond must be > 0, got %v", f.RequestsPerSecond)
	case !(f.BaselineErrorProb > 0 && f.Theta > 0 && f.BaselineErrorProb*f.Theta < 1):
		return fmt.Errorf("fleet: BaselineErrorProb %v and Theta %v must give probabilities in (0, 1)", f.BaselineErrorProb, f.Theta)
	case n.RetryCluster < 0:
		return fmt.Errorf("fleet: RetryCluster must be >= 0, got %d", n.RetryCluster)
	case n.BurstsPerHour < 0 || (n.BurstsPerHour > 0 && (!(n.BurstFactor > 0) || n.BurstLength <= 0)):
		return fmt.Errorf("fleet: bursts need BurstsPerHour >= 0, and with bursts BurstFactor > 0 and BurstLength > 0 (got %v, %v, %v)", n.BurstsPerHour, n.BurstFactor, n.BurstLength)
	case n.PodOffsetSigma < 0 || n.TickNoiseSigma < 0:
		return fmt.Errorf("fleet: PodOffsetSigma %v and TickNoiseSigma %v must be >= 0", n.PodOffsetSigma, n.TickNoiseSigma)
	case n.OutagesPerHour < 0 || (n.OutagesPerHour > 0 && (!(n.OutageFailure > 0 && n.OutageFailure <= 1) || n.OutageLength <= 0 || n.OutageLead < 0)):
		return fmt.Errorf("fleet: outages need OutagesPerHour >= 0, and with outages OutageFailure in (0, 1], OutageLength > 0, OutageLead >= 0 (got %v, %v, %v, %v)", n.OutagesPerHour, n.OutageFailure, n.OutageLength, n.OutageLead)
	}
	return nil
}

// FleetTick is one tick's per-pod counts: one block per candidate pod and one
// per baseline pod, in pod order.
type FleetTick struct {
	Candidate, Baseline []detector.Block
}

// Sums is the tick's counts summed per version: what a test sees without pod
// labels.
func (k FleetTick) Sums() (x, nc, y, nb float64) {
	for _, b := range k.Candidate {
		x, nc = x+b.Bad, nc+b.Total
	}
	for _, b := range k.Baseline {
		y, nb = y+b.Bad, nb+b.Total
	}
	return x, nc, y, nb
}

// Sum is Sums as a Tick, for the Detectors of Canary.
func (k FleetTick) Sum() Tick {
	x, nc, y, nb := k.Sums()
	return Tick{CandidateRequests: int(nc), CandidateBad: int(x), BaselineRequests: int(nb), BaselineBad: int(y)}
}

// FleetBurst is one burst: the tick it starts in and the pod it hits.
type FleetBurst struct{ Tick, Pod int }

// FleetRun generates one run's ticks. It is deterministic in its seed.
type FleetRun struct {
	f       Fleet
	rng     *rand.Rand
	tick    int
	tickSec float64
	lambda  float64 // requests per pod per tick

	offset []float64 // per pod, persistent (nil without offsets)

	burstTicks int
	nextBurst  float64 // seconds
	burstUntil []int   // per pod: bursting while tick < burstUntil
	bursts     []FleetBurst

	nextOutage float64   // seconds
	outages    []float64 // starts (seconds, baseline's clock) of outages that may still cover a tick
	outageLog  []float64

	gauge []float64

	blocks []detector.Block // candidate pods, then baseline pods
}

// NewFleetRun starts a run. Runs with equal fleets and seeds are equal.
func NewFleetRun(f Fleet, seed1, seed2 uint64) *FleetRun {
	r := &FleetRun{
		f: f, rng: rand.New(rand.NewPCG(seed1, seed2)),
		tickSec: f.Tick.Seconds(),
		blocks:  make([]detector.Block, f.Pods),
	}
	r.lambda = f.RequestsPerSecond / float64(f.Pods) * r.tickSec
	n := f.Nuisance
	if n.Gauge {
		r.gauge = make([]float64, f.Pods)
		for i := range r.gauge {
			r.gauge[i] = r.rng.NormFloat64()
		}
		return r
	}
	if n.PodOffsetSigma > 0 {
		s := n.PodOffsetSigma
		r.offset = make([]float64, f.Pods)
		for i := range r.offset {
			r.offset[i] = math.Exp(s*r.rng.NormFloat64() - s*s/2)
		}
	}
	if n.BurstsPerHour > 0 {
		r.burstTicks = max(1, int(math.Round(n.BurstLength.Seconds()/r.tickSec)))
		r.burstUntil = make([]int, f.Pods)
		r.nextBurst = r.rng.ExpFloat64() * 3600 / n.BurstsPerHour
	}
	if n.OutagesPerHour > 0 {
		r.nextOutage = r.rng.ExpFloat64() * 3600 / n.OutagesPerHour
	}
	return r
}

// Bursts are the bursts so far.
func (r *FleetRun) Bursts() []FleetBurst { return r.bursts }

// Outages are the start times (on the baseline's clock) of the outages drawn
// so far.
func (r *FleetRun) Outages() []time.Duration {
	d := make([]time.Duration, len(r.outageLog))
	for i, s := range r.outageLog {
		d[i] = time.Duration(s * float64(time.Second))
	}
	return d
}

// PodOffset is pod i's persistent factor on p₀ (1 without offsets).
func (r *FleetRun) PodOffset(i int) float64 {
	if r.offset == nil {
		return 1
	}
	return r.offset[i]
}

// Next draws the next tick. The returned slices are reused by the next call.
func (r *FleetRun) Next() FleetTick {
	f, n := r.f, r.f.Nuisance
	t := r.tick
	r.tick++
	k := FleetTick{Candidate: r.blocks[:f.CandidatePods], Baseline: r.blocks[f.CandidatePods:]}
	if n.Gauge {
		phi := n.GaugePhi
		s := math.Sqrt(1 - phi*phi)
		for i := range r.blocks {
			r.gauge[i] = phi*r.gauge[i] + s*r.rng.NormFloat64()
			bad := 0.0
			if r.gauge[i] > z90 {
				bad = 1
			}
			r.blocks[i] = detector.Block{Bad: bad, Total: 1}
		}
		return k
	}

	t0 := float64(t) * r.tickSec
	t1 := t0 + r.tickSec
	if n.BurstsPerHour > 0 {
		for r.nextBurst < t1 {
			pod := r.rng.IntN(f.Pods)
			r.burstUntil[pod] = max(r.burstUntil[pod], t+r.burstTicks)
			r.bursts = append(r.bursts, FleetBurst{Tick: t, Pod: pod})
			r.nextBurst += r.rng.ExpFloat64() * 3600 / n.BurstsPerHour
		}
	}
	passCand, passBase := 1.0, 1.0
	if n.OutagesPerHour > 0 {
		passCand, passBase = r.outagePass(t0, t1)
	}

	for i := range r.blocks {
		cand := i < f.CandidatePods
		p := f.BaselineErrorProb
		if r.offset != nil {
			p *= r.offset[i]
		}
		if s := n.TickNoiseSigma; s > 0 {
			p *= math.Exp(s*r.rng.NormFloat64() - s*s/2)
		}
		if r.burstUntil != nil && t < r.burstUntil[i] {
			p *= n.BurstFactor
		}
		if cand && t >= f.ChangeAt {
			p *= f.Theta
		}
		p = min(p, 1)
		if cand {
			p = 1 - (1-p)*passCand
		} else {
			p = 1 - (1-p)*passBase
		}
		req := poisson(r.rng, r.lambda)
		if c := n.RetryCluster; c > 1 {
			clusters := min(req, poisson(r.rng, float64(req)*p/float64(c)))
			r.blocks[i] = detector.Block{Bad: float64(c * clusters), Total: float64(req + (c-1)*clusters)}
			continue
		}
		r.blocks[i] = detector.Block{Bad: float64(binomial(r.rng, req, p)), Total: float64(req)}
	}
	return k
}

// outagePass draws the outages that reach the tick [t0, t1) (in seconds) and
// returns the probabilities that a candidate and a baseline request escape
// them.
func (r *FleetRun) outagePass(t0, t1 float64) (passCand, passBase float64) {
	n := r.f.Nuisance
	lead, length := n.OutageLead.Seconds(), n.OutageLength.Seconds()
	for r.nextOutage < t1+lead {
		r.outages = append(r.outages, r.nextOutage)
		r.outageLog = append(r.outageLog, r.nextOutage)
		r.nextOutage += r.rng.ExpFloat64() * 3600 / n.OutagesPerHour
	}
	passCand, passBase = 1, 1
	live := r.outages[:0]
	for _, s := range r.outages {
		passCand *= 1 - n.OutageFailure*overlap(s-lead, s-lead+length, t0, t1)/(t1-t0)
		passBase *= 1 - n.OutageFailure*overlap(s, s+length, t0, t1)/(t1-t0)
		if s+length > t1 { // may reach the next tick too
			live = append(live, s)
		}
	}
	r.outages = live
	return passCand, passBase
}

// overlap is the length of [a0, a1) ∩ [b0, b1).
func overlap(a0, a1, b0, b1 float64) float64 {
	return max(0, min(a1, b1)-max(a0, b0))
}

// --- contenders ---

// A FleetDetector is fed one FleetTick at a time and says whether it has
// declared the candidate worse; once it has, it keeps saying so. It must not
// keep the tick's slices.
type FleetDetector interface {
	ObserveFleet(FleetTick) (alarm bool)
}

// FleetRollguard is the product's detector.CountTest fed a fleet: per-pod
// blocks through ObserveBlocks (the product with pod labels) or the summed
// counts through Observe (without them). With restarts, the test is replaced
// every restartEvery ticks — by a fresh one (the old behaviour: α spent
// again) or by one restored from the old one's checkpoint (MarshalBinary,
// then UnmarshalBinary into a new CountTest). Its first alarm sticks across
// restarts: that is the alarm the benchmark measures.
type FleetRollguard struct {
	theta0, alpha float64
	pods          bool
	gauge         bool
	restartEvery  int
	checkpoint    bool

	test    *detector.CountTest
	ticks   int
	alarmed bool
}

// NewFleetRollguard tests θ ≤ theta0 at level alpha, fed per-pod blocks
// (pods) or per-version sums.
func NewFleetRollguard(theta0, alpha float64, pods bool) *FleetRollguard {
	return &FleetRollguard{theta0: theta0, alpha: alpha, pods: pods, test: detector.NewCountTest(theta0, alpha)}
}

// WithGauge makes the test the one the engine runs on gauge readings
// (detector.NewGaugeTest).
func (d *FleetRollguard) WithGauge() *FleetRollguard {
	d.gauge = true
	d.test = d.newTest()
	return d
}

func (d *FleetRollguard) newTest() *detector.CountTest {
	if d.gauge {
		return detector.NewGaugeTest(d.theta0, d.alpha)
	}
	return detector.NewCountTest(d.theta0, d.alpha)
}

// WithRestarts restarts the test before every tick whose index is a positive
// multiple of every, from a checkpoint or afresh.
func (d *FleetRollguard) WithRestarts(every int, checkpoint bool) *FleetRollguard {
	d.restartEvery, d.checkpoint = every, checkpoint
	return d
}

func (d *FleetRollguard) ObserveFleet(k FleetTick) bool {
	if d.alarmed {
		return true
	}
	if d.restartEvery > 0 && d.ticks > 0 && d.ticks%d.restartEvery == 0 {
		d.restart()
	}
	d.ticks++
	if d.pods {
		d.test.ObserveBlocks(k.Candidate, k.Baseline)
	} else {
		d.test.Observe(k.Sums())
	}
	d.alarmed = d.test.Regressed()
	return d.alarmed
}

func (d *FleetRollguard) restart() {
	n := d.newTest()
	if d.checkpoint {
		b, err := d.test.MarshalBinary()
		if err == nil {
			err = n.UnmarshalBinary(b)
		}
		if err != nil {
			// A checkpoint that fails is a bug of the product, not a
			// figure: the benchmark stops rather than report one.
			panic(fmt.Sprintf("simulate: CountTest checkpoint round trip: %v", err))
		}
	}
	d.test = n
}

// Summed feeds a Detector of Canary ticks (the oracle SPRT) the fleet's
// per-version sums.
type Summed struct{ D Detector }

func (s Summed) ObserveFleet(k FleetTick) bool { return s.D.Observe(k.Sum()) }

// --- running a fleet scenario ---

// FleetContender names a FleetDetector and builds a fresh one for each run.
type FleetContender struct {
	Name string
	New  func() FleetDetector
}

// FleetScenario is a set of runs of the same fleet, every contender fed the
// same ticks in each run; run i draws from PCG(Seed, i).
type FleetScenario struct {
	Name       string
	Fleet      Fleet
	Runs       int
	Ticks      int
	Seed       uint64
	Contenders []FleetContender
}

// FleetResult holds, per contender, the tick index of its first alarm in
// each run (−1: none within the run).
type FleetResult struct {
	Scenario FleetScenario
	Alarms   [][]int // [contender][run]
}

// Contender returns the first-alarm ticks of the named contender, or nil.
func (r FleetResult) Contender(name string) []int {
	for i, c := range r.Scenario.Contenders {
		if c.Name == name {
			return r.Alarms[i]
		}
	}
	return nil
}

// SimulateFleet plays one run and returns each contender's first alarm tick.
// It stops once every contender has alarmed.
func SimulateFleet(sc FleetScenario, run int) []int {
	fr := NewFleetRun(sc.Fleet, sc.Seed, uint64(run))
	ds := make([]FleetDetector, len(sc.Contenders))
	first := make([]int, len(sc.Contenders))
	for i, c := range sc.Contenders {
		ds[i] = c.New()
		first[i] = -1
	}
	pending := len(ds)
	for t := 0; t < sc.Ticks && pending > 0; t++ {
		k := fr.Next()
		for i, d := range ds {
			if first[i] < 0 && d.ObserveFleet(k) {
				first[i] = t
				pending--
			}
		}
	}
	return first
}

// RunFleet plays every scenario on workers goroutines, like Run; the results
// do not depend on workers or on scheduling.
func RunFleet(ctx context.Context, scenarios []FleetScenario, workers int, progress func(done, total int)) ([]FleetResult, error) {
	results := make([]FleetResult, len(scenarios))
	alarms := make([][][]int, len(scenarios))
	runs := make([]int, len(scenarios))
	for i, sc := range scenarios {
		if err := sc.Fleet.Validate(); err != nil {
			return nil, fmt.Errorf("scenario %q: %w", sc.Name, err)
		}
		results[i] = FleetResult{Scenario: sc, Alarms: newAlarms(len(sc.Contenders), sc.Runs)}
		alarms[i], runs[i] = results[i].Alarms, sc.Runs
	}
	if err := runAll(ctx, runs, alarms, workers, progress, func(i, run int) []int { return SimulateFleet(scenarios[i], run) }); err != nil {
		return nil, err
	}
	return results, nil
}
