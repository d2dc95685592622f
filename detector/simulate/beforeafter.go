package simulate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sample"
)

// This file plays before/after deployments (issue 12, item 6) through the
// product's own detector.Engine: a service serves its stable version for the
// before-window, an all-at-once release replaces it, and the engine — with a
// guard in baseline.mode before_after — watches the new version for
// baseline.watch. The rule measured is the daemon's, not a copy of it.

// BeforeAfter describes one service whose version is replaced all at once.
// The zero nuisances give stationary traffic: Poisson requests per tick, each
// failing independently with BaselineErrorProb.
type BeforeAfter struct {
	RequestsPerSecond float64
	Tick              time.Duration
	BaselineErrorProb float64
	// Window is the before-window (the guard's baseline.window) and Watch
	// how long the new version is watched (baseline.watch).
	Window, Watch time.Duration
	// Theta multiplies the error probability from the deployment on; 1 is
	// an A/A run.
	Theta float64

	// DailySwing > 0: the error probability follows the day,
	// p₀·(1 + DailySwing·sin(2π·h/24)) at hour of day h; each run deploys at
	// a uniformly drawn time of day.
	DailySwing float64
	// TrendPerHour ≠ 0: the error probability grows by this fraction every
	// hour (compounded), p₀ at the deployment.
	TrendPerHour float64
	// Outages of a downstream: a Poisson process of OutagesPerHour over the
	// whole run, each lasting OutageLength, during which a request fails
	// with probability OutageFailure on top of its own (by the share of the
	// tick the outage covers).
	OutagesPerHour, OutageFailure float64
	OutageLength                  time.Duration
	// RetryCluster > 1: errors arrive in clusters of this many, as in
	// Nuisance.RetryCluster (the retries count in the total).
	RetryCluster int
	// TickNoiseSigma > 0: the error probability is multiplied, per tick, by
	// an independent exp(σZ − σ²/2), as in Nuisance.TickNoiseSigma.
	TickNoiseSigma float64
}

// DefaultBeforeAfter is the suite's service: 200 requests/s, 10 s ticks,
// p₀ = 1 %, the product's default 30 min before-window and 1 h watch, A/A.
func DefaultBeforeAfter() BeforeAfter {
	return BeforeAfter{RequestsPerSecond: 200, Tick: 10 * time.Second, BaselineErrorProb: 0.01,
		Window: time.Duration(configs.DefaultBaseline.Window), Watch: time.Duration(configs.DefaultBaseline.Watch), Theta: 1}
}

// DailyCycle is a ±30 % daily cycle of the error rate.
func (b BeforeAfter) DailyCycle() BeforeAfter { b.DailySwing = 0.3; return b }

// Trend is an error rate growing 10 % an hour.
func (b BeforeAfter) Trend() BeforeAfter { b.TrendPerHour = 0.1; return b }

// HourlyOutages are downstream outages about once an hour, 20 s each, half
// the requests failing.
func (b BeforeAfter) HourlyOutages() BeforeAfter {
	b.OutagesPerHour, b.OutageFailure, b.OutageLength = 1, 0.5, 20*time.Second
	return b
}

// RetryClusters are errors in clusters of 3.
func (b BeforeAfter) RetryClusters() BeforeAfter { b.RetryCluster = 3; return b }

// TickNoise is per-tick log-normal noise on the error rate, σ = 0.7.
func (b BeforeAfter) TickNoise() BeforeAfter { b.TickNoiseSigma = 0.7; return b }

// Validate says what is wrong with b, naming the field.
func (b BeforeAfter) Validate() error {
	switch {
	case !(b.RequestsPerSecond > 0):
		return fmt.Errorf("before/after: RequestsPerSecond must be > 0, got %v", b.RequestsPerSecond)
	case b.Tick <= 0 || b.Window < b.Tick || b.Watch < b.Tick:
		return fmt.Errorf("before/after: Tick (%v) must be > 0 and Window (%v) and Watch (%v) at least a tick", b.Tick, b.Window, b.Watch)
	case !(b.BaselineErrorProb > 0 && b.Theta > 0 && b.BaselineErrorProb*b.Theta < 1):
		return fmt.Errorf("before/after: BaselineErrorProb %v and Theta %v must give probabilities in (0, 1)", b.BaselineErrorProb, b.Theta)
	case !(b.DailySwing >= 0 && b.DailySwing < 1):
		return fmt.Errorf("before/after: DailySwing must be in [0, 1), got %v", b.DailySwing)
	case !(b.TrendPerHour > -1):
		return fmt.Errorf("before/after: TrendPerHour must be > -1, got %v", b.TrendPerHour)
	case b.OutagesPerHour < 0 || (b.OutagesPerHour > 0 && (!(b.OutageFailure > 0 && b.OutageFailure <= 1) || b.OutageLength <= 0)):
		return fmt.Errorf("before/after: outages need OutagesPerHour >= 0, and with outages OutageFailure in (0, 1] and OutageLength > 0 (got %v, %v, %v)", b.OutagesPerHour, b.OutageFailure, b.OutageLength)
	case b.RetryCluster < 0 || b.TickNoiseSigma < 0:
		return fmt.Errorf("before/after: RetryCluster %d and TickNoiseSigma %v must be >= 0", b.RetryCluster, b.TickNoiseSigma)
	}
	return nil
}

// WindowTicks and WatchTicks are the window and the watch in ticks.
func (b BeforeAfter) WindowTicks() int { return int(b.Window / b.Tick) }
func (b BeforeAfter) WatchTicks() int  { return int(b.Watch / b.Tick) }

// beforeAfterConfig is the guard the engine runs: the product's defaults
// (α = 0.01, tolerance 0.1, min_requests) with the before/after baseline.
func (b BeforeAfter) config() (*configs.Config, error) {
	y := "global:\n  evaluation_interval: " + b.Tick.String() + "\n" +
		"guards:\n  - name: svc\n    service: svc\n    baseline:\n      mode: before_after\n" +
		"      window: " + b.Window.String() + "\n      watch: " + b.Watch.String() + "\n" +
		"    signals:\n      - name: errors\n"
	return configs.Parse([]byte(y))
}

// BeforeAfterOutcome is one run's outcome: the tick, counted from the
// deployment, of the first regressed verdict (−1: none within the watch),
// and the dispersion the before/after evidence reported.
type BeforeAfterOutcome struct {
	Alarm      int
	Dispersion float64
}

// versionTraffic is one version's samples, built once and refilled per tick
// (the engine keeps nothing of a sample it folds).
type versionTraffic struct{ ok, bad sample.Sample }

func newVersionTraffic(version string) versionTraffic {
	mk := func(status int) sample.Sample {
		return sample.Sample{Metric: "http.server.request.duration", Kind: sample.KindHistogram, Labels: sample.Labels{
			{Name: "http.response.status_code", Value: strconv.Itoa(status)},
			{Name: "service.name", Value: "svc"},
			{Name: "service.version", Value: version},
		}}
	}
	return versionTraffic{ok: mk(200), bad: mk(500)}
}

// SimulateBeforeAfter plays run run of b with seeds (seed, run): the
// window's ticks of v1, the announcement of v2 (all at once), then the
// watch's ticks of v2, each tick Appended and then Evaluated on a fake clock.
func SimulateBeforeAfter(b BeforeAfter, seed uint64, run int) (BeforeAfterOutcome, error) {
	cfg, err := b.config()
	if err != nil {
		return BeforeAfterOutcome{}, fmt.Errorf("before/after: guard config: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(run)))
	out := BeforeAfterOutcome{Alarm: -1, Dispersion: math.NaN()}
	var dayStart float64 // hours: the time of day at the first tick
	if b.DailySwing > 0 {
		dayStart = 24 * rng.Float64()
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := 0
	var regressed bool
	e := detector.NewEngine(cfg, detector.EngineOptions{Now: func() time.Time { return now }, Handler: detector.VerdictFunc(func(v detector.GuardVerdict) {
		if v.State == detector.StateRegressed {
			regressed = true
		}
		for _, ev := range v.Signals {
			if ev.Kind == "before_after" && ev.Model != nil {
				out.Dispersion = ev.Model.Dispersion
			}
		}
	})})

	tickSec := b.Tick.Seconds()
	lambda := b.RequestsPerSecond * tickSec
	pre, watch := b.WindowTicks(), b.WatchTicks()
	deployAt := float64(pre) * tickSec // seconds from the first tick
	var nextOutage float64
	if b.OutagesPerHour > 0 {
		nextOutage = rng.ExpFloat64() * 3600 / b.OutagesPerHour
	}
	var outages []float64
	prob := func(t int) float64 {
		t0 := float64(t) * tickSec
		t1 := t0 + tickSec
		mid := (t0 + t1) / 2
		p := b.BaselineErrorProb
		if b.DailySwing > 0 {
			h := dayStart + mid/3600
			p *= 1 + b.DailySwing*math.Sin(2*math.Pi*h/24)
		}
		if b.TrendPerHour != 0 {
			p *= math.Pow(1+b.TrendPerHour, (mid-deployAt)/3600)
		}
		if s := b.TickNoiseSigma; s > 0 {
			p *= math.Exp(s*rng.NormFloat64() - s*s/2)
		}
		if t >= pre {
			p *= b.Theta
		}
		p = min(p, 1)
		if b.OutagesPerHour > 0 {
			for nextOutage < t1 {
				outages = append(outages, nextOutage)
				nextOutage += rng.ExpFloat64() * 3600 / b.OutagesPerHour
			}
			pass, live := 1.0, outages[:0]
			for _, s := range outages {
				pass *= 1 - b.OutageFailure*overlap(s, s+b.OutageLength.Seconds(), t0, t1)/tickSec
				if s+b.OutageLength.Seconds() > t1 {
					live = append(live, s)
				}
			}
			outages = live
			p = 1 - (1-p)*pass
		}
		return p
	}
	batch := make([]sample.Sample, 2)
	send := func(v versionTraffic) {
		n := poisson(rng, lambda)
		var x int
		if c := b.RetryCluster; c > 1 {
			clusters := min(n, poisson(rng, float64(n)*prob(tick)/float64(c)))
			x, n = c*clusters, n+(c-1)*clusters
		} else {
			x = binomial(rng, n, prob(tick))
		}
		v.ok.Count, v.bad.Count = float64(n-x), float64(x)
		batch[0], batch[1] = v.ok, v.bad
		_ = e.Append(batch)
		now = now.Add(b.Tick)
		tick++
		e.Evaluate()
	}
	v1, v2 := newVersionTraffic("v1"), newVersionTraffic("v2")
	for range pre {
		send(v1)
	}
	if _, err := e.Announce(detector.Deployment{Service: "svc", Version: "v2", PreviousVersion: "v1", Strategy: "all_at_once"}); err != nil {
		return out, fmt.Errorf("before/after: announce: %w", err)
	}
	for i := range watch {
		send(v2)
		if regressed {
			out.Alarm = i
			break
		}
	}
	return out, nil
}

// BeforeAfterScenario is a set of runs of the same service; run i draws from
// PCG(Seed, i).
type BeforeAfterScenario struct {
	Name  string
	Setup BeforeAfter
	Runs  int
	Seed  uint64
}

// BeforeAfterResult holds a scenario's outcome per run.
type BeforeAfterResult struct {
	Scenario BeforeAfterScenario
	// Alarms is, per run, the first regressed tick from the deployment
	// (−1: none); Dispersions the φ the evidence reported.
	Alarms      []int
	Dispersions []float64
}

// RunBeforeAfter plays every scenario on workers goroutines; the results do
// not depend on workers or on scheduling.
func RunBeforeAfter(ctx context.Context, scenarios []BeforeAfterScenario, workers int, progress func(done, total int)) ([]BeforeAfterResult, error) {
	results := make([]BeforeAfterResult, len(scenarios))
	alarms := make([][][]int, len(scenarios))
	runs := make([]int, len(scenarios))
	for i, sc := range scenarios {
		if err := sc.Setup.Validate(); err != nil {
			return nil, fmt.Errorf("scenario %q: %w", sc.Name, err)
		}
		if _, err := sc.Setup.config(); err != nil {
			return nil, fmt.Errorf("scenario %q: guard config: %w", sc.Name, err)
		}
		// Contender 0: the first alarm; contender 1: the dispersion, in
		// millionths (runAll carries ints).
		a := newAlarms(2, sc.Runs)
		results[i] = BeforeAfterResult{Scenario: sc, Alarms: a[0], Dispersions: make([]float64, sc.Runs)}
		alarms[i], runs[i] = a, sc.Runs
	}
	err := runAll(ctx, runs, alarms, workers, progress, func(i, run int) []int {
		o, err := SimulateBeforeAfter(scenarios[i].Setup, scenarios[i].Seed, run)
		if err != nil {
			panic(err) // the setup was checked above: a bug of this file
		}
		phi := -1
		if !math.IsNaN(o.Dispersion) {
			phi = int(math.Round(o.Dispersion * 1e6))
		}
		return []int{o.Alarm, phi}
	})
	if err != nil {
		return nil, err
	}
	for i := range results {
		for run, m := range alarms[i][1] {
			results[i].Dispersions[run] = math.NaN()
			if m >= 0 {
				results[i].Dispersions[run] = float64(m) / 1e6
			}
		}
	}
	return results, nil
}
