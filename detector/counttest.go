package detector

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// CountTest is the anytime-valid test for a rate ratio of DETECTION.md,
// made valid for the traffic real services send (docs/detection.md, "What
// the test assumes").
//
// Per tick the candidate has x bad events out of nc requests and the baseline
// y out of nb. Given e = x+y bad events, x ~ Binomial(e, q(θ)) with
// q(θ) = ρθ/(ρθ+1−ρ), ρ = nc/(nc+nb) and θ the ratio of the candidate's
// bad-event rate to the baseline's. Three things make it hold when requests
// are not independent:
//
//   - The unit of independence is a pod × tick block (ObserveBlocks). The
//     dispersion φ — how much more the counts vary than independent
//     requests would — is estimated continuously from the variation between
//     pods of the same cohort (a permanent A/A among the baseline's pods),
//     over single ticks and over windows of 30 and 180 ticks; without pod
//     labels, from each cohort's variation between ticks. Each tick's
//     log-likelihood is divided by the φ estimated before it (a
//     quasi-likelihood): retries that fail in clusters of three count as
//     one piece of evidence, not three.
//   - Pods differ persistently. The spread τ of the pods' rates within each
//     cohort (a lower confidence bound, so it is 0 when pods do not differ)
//     widens the tolerance for a candidate with few pods: the null edge is
//     θ₀·exp(z·τ·√(1/k_c+1/k_b)), z the normal quantile at the share of α
//     set aside for the pod draw (PodAlphaShare). A candidate whose single pod
//     is as far from the others as baseline pods are from each other is not
//     a version effect.
//   - A regression can begin long after the deployment did. The e-value is
//     a mixture over the tick at which the regression started (a mixture
//     Shiryaev–Roberts e-detector, Shin, Ramdas & Rinaldo): weight
//     FreshShare on the deployment's first tick, the rest spread over later
//     ticks ∝ H/((s+H)(s+H+1)). Each start's likelihood ratio is an
//     e-process under the null, so the mixture is one, and Ville's
//     inequality bounds its false alarms at α over the whole watch, however
//     long; a late regression pays log(1/weight of its start) instead of
//     first undoing the evidence for health gathered before it.
//
// The alternatives are θ₀·2^(j/16), j = 1..64 (up to θ₀·16), with prior
// weight ∝ 1/j: anchored at θ₀, so no band of ratios just above the
// tolerance is left without an alternative. Everything is in log space:
// nothing overflows. The state is a few hundred floats and the per-pod
// window sums; MarshalBinary checkpoints it.
//
// The same likelihood, for each grid point as a null, gives a confidence
// sequence for θ, each end valid at all times at level α: the interval
// reported is bounded by the neighbours of the outermost grid points not
// rejected, which keeps its coverage when the true θ falls between grid
// points.
type CountTest struct {
	theta0 float64
	alpha  float64
	// grid is θ₀·2^(k/16) for k = −kBelow..alternatives; i0 indexes θ₀.
	grid    []float64
	logGrid []float64
	i0      int
	// logL is the tempered log-likelihood of every grid point (up to a
	// constant), for the confidence sequence.
	logL []float64
	// logW are the prior's log-weights on the alternatives above θ₀.
	logW []float64
	// logR is, per alternative, the log of Σ_s π_s·Π_{u≥s} LR_u over the
	// starts s so far; started is Σ_s π_s.
	logR    []float64
	started float64
	starts  int // informative ticks: the start index s
	logE    float64
	maxLogE float64
	lr      []float64 // scratch: one tick's log-likelihood ratios
	// rawLogE is the e-detector's log e-value before the burst cap;
	// capLoss is what the cap has taken from it (logE = rawLogE − capLoss).
	rawLogE, capLoss float64
	// BurstTicks is the longest excursion of a single source the test does
	// not take for a version effect (see burstCap).
	BurstTicks int
	// Recent are the levels of the last BurstTicks ticks (burstBudget).
	Recent []level

	disp dispersion
	// shock and pend: ticks of a common shock are held and tested together
	// with the tick after it (see shockGate).
	shock shockGate
	pend  pending // the ticks of a shock under way
	prev  pending // the last ordinary tick, held for one tick
	// edge is the null's edge in use for the next tick: θ₀ widened by the
	// pods' spread (≥ θ₀, decided before the tick is seen).
	edge float64

	// Dropped counts the shared shocks left out of the test.
	Dropped int

	// Running sums since the test began.
	CandidateBad, BaselineBad     float64
	CandidateTotal, BaselineTotal float64
	Ticks                         int
}

const (
	// gridPerDoubling: alternatives are 2^(1/16) (4.4 %) apart.
	gridPerDoubling = 16
	// alternatives above θ₀ (64: up to θ₀·16), and the grid reaches down
	// to 1/64 for the confidence sequence's lower end.
	alternatives = 64
	gridFloor    = 1.0 / 64

	// FreshShare is the prior weight of "the regression began with the
	// deployment"; the rest is spread over later ticks.
	FreshShare = 0.6
	priorPower = 1.0
	// startHorizon is H of the later starts' weights H/((s+H)(s+H+1)):
	// 360 ten-second ticks, an hour.
	startHorizon = 360
	// PodAlphaShare is the share of α set aside for the draw of the
	// candidate's pods (the tolerance's widening); the e-value gets the rest.
	PodAlphaShare = 0.1
)

// NewCountTest builds a test of θ ≤ theta0 at level alpha.
func NewCountTest(theta0, alpha float64) *CountTest {
	kBelow := int(math.Ceil(gridPerDoubling * math.Log2(theta0/gridFloor)))
	t := &CountTest{theta0: theta0, alpha: alpha, i0: kBelow, edge: theta0, BurstTicks: DefaultBurstTicks}
	for k := -kBelow; k <= alternatives; k++ {
		th := theta0 * math.Exp2(float64(k)/gridPerDoubling)
		if k == 0 {
			th = theta0
		}
		t.grid = append(t.grid, th)
		t.logGrid = append(t.logGrid, math.Log(th))
	}
	t.logL = make([]float64, len(t.grid))
	var h float64
	for j := 1; j <= alternatives; j++ {
		h += math.Pow(float64(j), -priorPower)
	}
	for j := 1; j <= alternatives; j++ {
		t.logW = append(t.logW, -priorPower*math.Log(float64(j))-math.Log(h))
		t.logR = append(t.logR, math.Inf(-1))
	}
	_ = t.disp.init() // empty: nothing to check
	return t
}

// maxShape is the largest within-tick dispersion the beta-binomial models.
const maxShape = 4

// phiPair is the dispersion within a tick and over the long run.
type phiPair struct{ tick, total float64 }

// pending is the ticks held while a common shock lasts; Extreme when one
// of them was an outage (shockGate.extreme).
type pending struct {
	X, Nc, Y, Nb float64
	Ticks        int
	Extreme      bool
	// Few: a held tick's candidate had fewer than BurstPods pods, so the
	// burst cap applies to the block.
	Few bool `json:",omitempty"`
}

func (p *pending) add(o pending) {
	p.X, p.Nc, p.Y, p.Nb, p.Ticks = p.X+o.X, p.Nc+o.Nc, p.Y+o.Y, p.Nb+o.Nb, p.Ticks+o.Ticks
	p.Few = p.Few || o.Few
}

// flush tests the held ticks as one, and empties p.
func (t *CountTest) flush(p *pending, phi phiPair) {
	if p.X+p.Y > 0 {
		limit := math.Inf(1)
		if p.Few && t.BurstTicks >= 0 {
			var ceiling float64
			t.Recent, ceiling = burstCeiling(t.Recent, t.Ticks, t.window(), t.logE, t.burstBudget())
			limit = ceiling - t.logE
		}
		t.update(p.X, p.Nc, p.Y, p.Nb, phi, limit)
	}
	*p = pending{}
}

// level is the log e-value before a test of held ticks, at the tick that
// flushed them.
type level struct {
	Tick int
	LogE float64
}

// burstCeiling is the burst budget's rule, for the count test and the
// before/after rate test alike: it records the level now (the log e-value
// before a test of new ticks) among the levels of the window (ticks after
// tick−window, and the last one before them: the level the window started
// from) and returns the highest level the test may reach after it — the
// lowest level there, or 1 if that is lower, plus budget. A rise from
// below 1 counts from 1: the budget is there to keep a burst from carrying
// the e-value past the threshold, and from below 1 it cannot carry it
// further than from 1.
func burstCeiling(levels []level, tick, window int, now, budget float64) ([]level, float64) {
	levels = append(levels, level{Tick: tick, LogE: now})
	i := 0
	for i+1 < len(levels) && levels[i+1].Tick < tick-window {
		i++
	}
	levels = append(levels[:0], levels[i:]...)
	lo := now
	for _, l := range levels {
		lo = math.Min(lo, l.LogE)
	}
	return levels, math.Max(lo, 0) + budget
}

// DefaultBurstTicks is the longest excursion of one pod the test does not
// take for a version effect: 6 ticks, a minute at the default 10 s
// evaluation interval. BurstPods is the candidate pod count below which it
// applies: with three pods or more a burst on one of them shows as
// variation between the candidate's pods, which the tick's dispersion
// already weighs.
const (
	DefaultBurstTicks = 6
	BurstPods         = 3
)

// burstBudget is the most the log e-value may rise within any BurstTicks+1
// ticks while the candidate has fewer than BurstPods pods (or no pod
// label): a pod that bursts — ten times its errors for a minute, then back
// to normal — is, on the candidate's only pod, the same data as a short
// regression, and only persistence tells them apart. With the rise over
// any window() ticks held to log(threshold), an excursion no longer than
// BurstTicks ticks cannot carry the e-value from 1 (or below) past the
// threshold, however strong it is; a regression that persists gets there
// a window later at most, and one that builds its evidence gradually (a
// ratio of 2 at a 5 % canary gains about 0.3 a tick) is hardly slowed. The capped e-value is the uncapped one times factors ≤ 1, so it is
// never above it and Ville's inequality bounds its false alarms as before:
// the cap only gives up power.
func (t *CountTest) burstBudget() float64 {
	return math.Log(0.9 * t.Threshold())
}

// window is the ticks over which burstBudget holds: a burst of BurstTicks
// ticks that does not start on a tick's edge touches one tick more, and
// the test holds every ordinary tick for one tick.
func (t *CountTest) window() int { return t.BurstTicks + 2 }

// Flush tests the ticks held now (the first ticks, a shock under way, the
// last ordinary tick) without waiting for the tick that would follow: the
// data stopped. The engine calls it after a few quiet evaluations.
func (t *CountTest) Flush() {
	phi := t.disp.phis()
	t.flush(&t.prev, phi)
	t.flush(&t.pend, phi)
}

// maxMerge bounds the ticks held together: a shock that lasts longer is
// tested a minute at a time (at 10 s ticks).
const maxMerge = 6

// shockGate recognises a common shock — an outage downstream, a burst of
// load — from the bad events of both cohorts together: more than the
// running rate of the ticks before it predicts, by two standard
// deviations (at the dispersion in use) and one event. The cohorts see a
// shared outage a few seconds apart, so a tick can hold one cohort's share
// of it and not yet the other's; held and tested with the ticks after it,
// the shock falls on both cohorts alike. The decision reads only the total
// e = x + y and the requests, which the test conditions on, so it leaves
// the test valid.
type shockGate struct {
	Rate   float64 // running bad-event rate of ordinary ticks
	Ticks  int
	Warmup []float64 // the first ticks' rates
}

// shockWarmup is how many ticks the running rate needs first.
const shockWarmup = 3

// warm adds one of the first ticks, and reports whether the running rate
// is now started: the median of their rates, which a shock among them
// does not move.
func (g *shockGate) warm(e, n float64) bool {
	g.Warmup = append(g.Warmup, e/n)
	g.Ticks++
	if g.Ticks < shockWarmup {
		return false
	}
	r := append([]float64(nil), g.Warmup...)
	sort.Float64s(r)
	g.Rate = (r[(len(r)-1)/2] + r[len(r)/2]) / 2
	g.Warmup = nil
	return true
}

func (g *shockGate) is(e, n, phi float64) bool {
	return g.Ticks >= shockWarmup && g.beyond(e, n, phi, 2, 1)
}

// extreme reports a shock far beyond what dispersion explains (six
// standard deviations and three events): an outage, not a cluster of
// retries. Such a tick does not teach the variation between ticks.
func (g *shockGate) extreme(e, n, phi float64) bool { return g.beyond(e, n, phi, 6, 3) }

// beyond reports e bad events of n above the running rate by sd standard
// deviations (at dispersion phi) and events more.
func (g *shockGate) beyond(e, n, phi, sd, events float64) bool {
	mu := g.Rate * n
	return e > mu+sd*math.Sqrt(phi*mu)+events
}

// learn folds an ordinary tick into the running rate (the mean of the
// first 60, then an exponential average over about 60 ticks).
func (g *shockGate) learn(e, n float64) {
	g.Ticks++
	w := 1 / float64(min(g.Ticks, 60))
	g.Rate += w * (e/n - g.Rate)
}

// GaugeAutocorrelation is the correlation between a pod's consecutive gauge
// readings assumed until its cohort's pods show otherwise, and
// gaugePriorWeight the pairs of readings it weighs as: a pool that fills
// and drains over a quarter of an hour shows little of it in minutes.
// 0.99 with the weight of 1000 pairs (50 ticks of a 20-pod fleet): at 0.97
// and 200 an AR(1) gauge at φ = 0.99 per tick alarmed in 1.1 % of 6 h A/A
// runs at α = 1 % (upper end of the 95 % interval 1.96 %); now 0.65 % of
// 2000 (nuisance case f).
const (
	GaugeAutocorrelation = 0.99
	gaugePriorWeight     = 1000
)

// NewGaugeTest is the count test for gauge readings (saturation: a reading
// above the level is a bad event): readings are taken as autocorrelated
// until the data show otherwise, so that a pool that stays saturated for a
// while counts as the one piece of evidence it is.
func NewGaugeTest(theta0, alpha float64) *CountTest {
	t := NewCountTest(theta0, alpha)
	t.AssumeAutocorrelated(GaugeAutocorrelation, gaugePriorWeight)
	return t
}

// AssumeAutocorrelated makes the test take consecutive ticks of a pod as
// correlated with coefficient r until the baseline's pods show otherwise
// (with the weight of 20 + weight pairs of ticks). Gauge readings are: a
// saturated pool stays saturated for a while. Call it before the first tick.
func (t *CountTest) AssumeAutocorrelated(r, weight float64) {
	t.disp.Lag.Prior, t.disp.Lag.Weight = math.Min(math.Max(r, 0), 0.99), math.Max(weight, 0)
}

// startWeight is π_s, the prior weight of a regression beginning at the
// s-th informative tick (s ≥ 1); Σ_s π_s = 1.
func startWeight(s int) float64 {
	if s == 1 {
		return FreshShare
	}
	h := float64(startHorizon)
	a := float64(s-2) + h
	return (1 - FreshShare) * h / (a * (a + 1))
}

// Observe adds one tick of summed counts: each cohort is one block, and
// the test assumes what it must without pod labels (Assumption).
func (t *CountTest) Observe(x, nc, y, nb float64) {
	t.ObserveBlocks([]Block{{Bad: x, Total: nc}}, []Block{{Bad: y, Total: nb}})
}

// Block is one unit of independence's counts in one tick: the bad and total
// events of one pod (instance) of a cohort. Without pod labels a cohort's
// tick is a single block. Pod names a block across ticks; blocks without one
// are named by their position.
type Block struct {
	Pod        string
	Bad, Total float64
}

// ObserveBlocks adds one tick given per pod.
func (t *CountTest) ObserveBlocks(cand, base []Block) {
	var x, nc, y, nb float64
	pods := 0
	for _, b := range cand {
		x, nc = x+b.Bad, nc+b.Total
		if b.Total > 0 {
			pods++
		}
	}
	for _, b := range base {
		y, nb = y+b.Bad, nb+b.Total
	}
	t.CandidateBad += x
	t.BaselineBad += y
	t.CandidateTotal += nc
	t.BaselineTotal += nb
	t.Ticks++
	extreme := false
	if nc > 0 && nb > 0 {
		phi := t.disp.phis()
		cur := pending{X: x, Nc: nc, Y: y, Nb: nb, Ticks: 1, Few: pods < BurstPods}
		shock := t.shock.is(x+y, nc+nb, phi.tick)
		extreme = shock && t.shock.extreme(x+y, nc+nb, phi.tick)
		switch {
		case t.shock.Ticks < shockWarmup:
			// No running rate yet to recognise a shock by: the first
			// ticks are held and tested as one, and their median rate
			// starts the running rate.
			t.pend.add(cur)
			if t.shock.warm(x+y, nc+nb) && !t.shock.is(x+y, nc+nb, phi.tick) {
				t.flush(&t.pend, phi)
			}
		case shock:
			// The tick before may hold one cohort's first seconds of it.
			t.pend.add(t.prev)
			t.pend.add(cur)
			t.pend.Extreme = t.pend.Extreme || extreme
			t.prev = pending{}
			if t.pend.Ticks >= maxMerge {
				t.flush(&t.pend, phi)
			}
		case t.pend.Ticks > 0:
			// The first ordinary tick after a shock holds the last
			// seconds of it for the cohort that saw it later. An outage
			// (an extreme shock) that ended within maxMerge ticks says
			// nothing about the versions — its bad events are the
			// downstream's — and tested it would count as strong evidence
			// of health, burying a regression's: its ticks are left out,
			// decided on the totals alone, so the test stays valid. A
			// milder shock is tested as one block.
			t.pend.add(cur)
			if t.pend.Extreme {
				t.pend = pending{}
				t.Dropped++
			} else {
				t.flush(&t.pend, phi)
			}
			t.shock.learn(x+y, nc+nb)
		default:
			t.flush(&t.prev, phi)
			t.prev = cur
			t.shock.learn(x+y, nc+nb)
		}
	}
	// The tick's own variation informs the ticks after it, never itself;
	// an outage both cohorts share is not the counts' dispersion.
	t.disp.observe(cand, base, extreme)
	t.edge = t.theta0 * math.Exp(normalUpper(t.alpha*PodAlphaShare)*t.disp.spread())
}

// update adds one informative tick at dispersion phi.
func (t *CountTest) update(x, nc, y, nb float64, phi phiPair, limit float64) {
	// log q(θ)^x (1−q(θ))^y = x·log θ − (x+y)·log(1 + ρ(θ−1)) + terms
	// the same for every θ, which cancel in every ratio read from logL.
	rho := nc / (nc + nb)
	e := x + y
	for i, th := range t.grid {
		t.logL[i] += (x*t.logGrid[i] - e*math.Log1p(rho*(th-1))) / phi.total
	}
	// The e-detector: each start's product of likelihood ratios against
	// the edge in use, and a new start at this tick.
	t.starts++
	pi := startWeight(t.starts)
	logPi := math.Log(pi)
	t.started += pi
	lr := t.ratios(x, e, rho, phi)
	for j := range t.logR {
		t.logR[j] = logAddExp(t.logR[j], logPi) + lr[j]
	}
	// E = Σ_j w_j R_j + the weight of starts still to come (each is 1
	// until it starts).
	mx := math.Inf(-1)
	for j, w := range t.logW {
		mx = math.Max(mx, t.logR[j]+w)
	}
	var sum float64
	for j, w := range t.logW {
		sum += math.Exp(t.logR[j] + w - mx)
	}
	raw := logAddExp(mx+math.Log(sum), math.Log(math.Max(0, 1-t.started)))
	if up := raw - t.rawLogE; up > limit {
		t.capLoss += up - limit
	}
	t.rawLogE = raw
	t.logE = raw - t.capLoss
	t.maxLogE = math.Max(t.maxLogE, t.logE)
}

// ratios are one tick's log-likelihood ratios of the alternatives against
// the edge in use (0 for alternatives at or below it). At dispersion 1 the
// binomial's; above it the beta-binomial's (Dirichlet-multinomial): x of e
// is BetaBinomial(e, κq, κ(1−q)) with κ = e/(φ−1), the share of bad events
// that gamma-mixed Poisson counts of variance φ times their mean give. Its
// likelihood ratio grows polynomially in x, not exponentially, so a tick
// that is an outlier of the noise — a pod's bad minute — cannot carry the
// test alone.
func (t *CountTest) ratios(x, e, rho float64, phi phiPair) []float64 {
	lr := t.lr[:0]
	// The long run's share of the dispersion (autocorrelation, pods that
	// stay apart) tempers each tick's ratio; the tick's own share shapes
	// its likelihood.
	// The beta-binomial shapes the tick up to a dispersion of maxShape;
	// beyond it (κ would fall below e/3 and the model put its mass on
	// "all or none of the bad events are the candidate's") the rest
	// tempers too.
	shape := math.Min(phi.tick, maxShape)
	m := phi.total / shape
	if shape < 1.02 {
		ledge := x*math.Log(t.edge) - e*math.Log1p(rho*(t.edge-1))
		for j := range t.logR {
			i := t.i0 + 1 + j
			var l float64
			if t.grid[i] > t.edge {
				l = (x*t.logGrid[i] - e*math.Log1p(rho*(t.grid[i]-1)) - ledge) / m
			}
			lr = append(lr, l)
		}
		t.lr = lr
		return lr
	}
	kappa := e / (shape - 1)
	logBB := func(theta float64) float64 {
		q := rho * theta / (rho*theta + 1 - rho)
		a, b := kappa*q, kappa*(1-q)
		la, _ := math.Lgamma(x + a)
		la0, _ := math.Lgamma(a)
		lb, _ := math.Lgamma(e - x + b)
		lb0, _ := math.Lgamma(b)
		return la - la0 + lb - lb0
	}
	ledge := logBB(t.edge)
	for j := range t.logR {
		i := t.i0 + 1 + j
		var l float64
		if t.grid[i] > t.edge {
			l = (logBB(t.grid[i]) - ledge) / m
		}
		lr = append(lr, l)
	}
	t.lr = lr
	return lr
}

func logAddExp(a, b float64) float64 {
	switch {
	case math.IsInf(a, -1):
		return b
	case math.IsInf(b, -1):
		return a
	case a > b:
		return a + math.Log1p(math.Exp(b-a))
	default:
		return b + math.Log1p(math.Exp(a-b))
	}
}

// EValue is the e-detector's e-value against θ ≤ θ₀ (+Inf once it overflows
// a float64; LogEValue goes on).
func (t *CountTest) EValue() float64 { return math.Exp(t.LogEValue()) }

// LogEValue is the natural log of the e-value, computed in log space so
// that it never overflows.
func (t *CountTest) LogEValue() float64 { return t.logE }

// PValue is the always-valid p-value: min(1, 1/max e-value so far).
func (t *CountTest) PValue() float64 { return math.Min(1, math.Exp(-t.maxLogE)) }

// Regressed reports whether the e-value has ever reached the threshold.
func (t *CountTest) Regressed() bool { return t.maxLogE >= math.Log(t.Threshold()) }

// Threshold is the e-value at which the test declares a regression: 1 over
// the e-value's share of α.
func (t *CountTest) Threshold() float64 { return 1 / (t.alpha * (1 - PodAlphaShare)) }

// Theta0 is the edge of the null: 1 + tolerance.
func (t *CountTest) Theta0() float64 { return t.theta0 }

// Edge is the null's edge in use: Theta0 widened by the pods' spread.
func (t *CountTest) Edge() float64 { return t.edge }

// Dispersion is φ, how many times more the counts vary than independent
// requests would (1 when they do not).
func (t *CountTest) Dispersion() float64 { return t.disp.phi() }

// PodSpread is τ, the lower confidence bound on the relative spread of
// the pods' bad-event rates within a cohort (0 when they do not differ).
func (t *CountTest) PodSpread() float64 { return t.disp.Tau }

// Pods is the number of blocks of each cohort in the last tick with traffic.
func (t *CountTest) Pods() (candidate, baseline int) { return t.disp.Now[0], t.disp.Now[1] }

// Assumption says in words what the test took as independent.
func (t *CountTest) Assumption() string {
	c, b := t.Pods()
	if c <= 1 && b <= 1 {
		return fmt.Sprintf("no pod label: each cohort's tick is one block; dispersion %.3g from the variation between ticks; requests within a tick taken as exchangeable", t.Dispersion()) + t.burstNote() + t.droppedNote()
	}
	s := fmt.Sprintf("pod × tick blocks (%d candidate, %d baseline pods); dispersion %.3g from the variation between pods of a cohort", c, b, t.Dispersion())
	if t.edge > t.theta0*1.0005 {
		s += fmt.Sprintf("; the pods' spread (%.3g %%) widens the tolerance to %.3g", 100*t.disp.Tau, t.edge)
	}
	return s + t.burstNote() + t.droppedNote()
}

// burstNote says when the burst budget applies: the candidate has fewer
// than BurstPods pods.
func (t *CountTest) burstNote() string {
	if c, _ := t.Pods(); c >= BurstPods || t.BurstTicks < 0 {
		return ""
	}
	return fmt.Sprintf("; fewer than %d candidate pods, so an excursion of %d ticks or less is not taken for a version effect (burst budget)", BurstPods, t.BurstTicks)
}

func (t *CountTest) droppedNote() string {
	if t.Dropped == 0 {
		return ""
	}
	return fmt.Sprintf("; %d shared shock(s) left out", t.Dropped)
}

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

// MarshalBinary checkpoints the test's state, so that a restarted daemon
// goes on with the same evidence instead of spending α again.
func (t *CountTest) MarshalBinary() ([]byte, error) {
	return json.Marshal(countTestState{
		Theta0: t.theta0, Alpha: t.alpha, LogL: floats(t.logL), LogR: floats(t.logR), Started: t.started, Starts: t.starts,
		LogE: t.logE, MaxLogE: t.maxLogE, Disp: &t.disp, Edge: t.edge, Shock: t.shock, Pending: t.pend, Previous: t.prev,
		CandidateBad: t.CandidateBad, BaselineBad: t.BaselineBad, CandidateTotal: t.CandidateTotal, BaselineTotal: t.BaselineTotal, Ticks: t.Ticks,
		Dropped: t.Dropped, RawLogE: t.rawLogE, CapLoss: t.capLoss, Recent: t.Recent, BurstTicks: &t.BurstTicks,
	})
}

// UnmarshalBinary restores a checkpoint made by MarshalBinary.
func (t *CountTest) UnmarshalBinary(b []byte) error {
	var s countTestState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("count test checkpoint: %w", err)
	}
	if !(s.Theta0 > 0) || !(s.Alpha > 0 && s.Alpha < 1) {
		return fmt.Errorf("count test checkpoint: θ₀ %v and α %v out of range", s.Theta0, s.Alpha)
	}
	n := NewCountTest(s.Theta0, s.Alpha)
	if len(s.LogL) != len(n.logL) || len(s.LogR) != len(n.logR) {
		return fmt.Errorf("count test checkpoint: %d grid points and %d alternatives, want %d and %d", len(s.LogL), len(s.LogR), len(n.logL), len(n.logR))
	}
	for i, v := range s.LogL {
		n.logL[i] = float64(v)
	}
	for i, v := range s.LogR {
		n.logR[i] = float64(v)
	}
	if s.Disp != nil {
		n.disp = *s.Disp
		if err := n.disp.init(); err != nil {
			return fmt.Errorf("count test checkpoint: dispersion: %w", err)
		}
	}
	n.shock, n.pend, n.prev = s.Shock, s.Pending, s.Previous
	n.started, n.starts, n.logE, n.maxLogE, n.edge = s.Started, s.Starts, s.LogE, s.MaxLogE, math.Max(s.Edge, s.Theta0)
	n.CandidateBad, n.BaselineBad, n.CandidateTotal, n.BaselineTotal, n.Ticks = s.CandidateBad, s.BaselineBad, s.CandidateTotal, s.BaselineTotal, s.Ticks
	n.Dropped = s.Dropped
	// A checkpoint from before the burst budget had no cap taken.
	n.rawLogE, n.capLoss, n.Recent = s.LogE, 0, s.Recent
	if s.CapLoss != 0 || s.RawLogE != 0 {
		n.rawLogE, n.capLoss = s.RawLogE, s.CapLoss
	}
	if !(n.capLoss >= 0) || math.Abs(n.rawLogE-n.capLoss-n.logE) > 1e-9*math.Max(1, math.Abs(n.logE)) {
		return fmt.Errorf("count test checkpoint: log e-value %v is not %v less the burst cap's %v", n.logE, n.rawLogE, n.capLoss)
	}
	if s.BurstTicks != nil {
		n.BurstTicks = *s.BurstTicks
	}
	*t = *n
	return nil
}

type countTestState struct {
	Theta0, Alpha                                            float64
	LogL, LogR                                               []Float
	Started                                                  float64
	Starts                                                   int
	LogE, MaxLogE                                            float64
	Disp                                                     *dispersion
	Edge                                                     float64
	Shock                                                    shockGate
	Pending, Previous                                        pending
	CandidateBad, BaselineBad, CandidateTotal, BaselineTotal float64
	Ticks, Dropped                                           int
	RawLogE, CapLoss                                         float64
	Recent                                                   []level
	BurstTicks                                               *int
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

func floats(v []float64) []Float {
	out := make([]Float, len(v))
	for i, x := range v {
		out[i] = Float(x)
	}
	return out
}
