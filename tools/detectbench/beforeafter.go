package main

// The before/after suite (issue 12, item 6): all-at-once releases played
// through the product's own detector.Engine with a guard in
// baseline.mode before_after — a clean control, the nuisances that break the
// "the window before stands for what follows" assumption (a daily cycle, a
// trend, hourly downstream outages), and one power case.

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/detector/simulate"
)

// Case names: the report's rows, and the seeds (seedOf).
const (
	baClean   = "clean (stationary 1 %)"
	baRetries = "a. retry clusters of 3"
	baNoise   = "d. per-tick noise on the rate (σ = 0.7)"
	baDaily   = "h. daily cycle ±30 %, deployed at a random time of day"
	baTrend   = "i. error rate trending +10 %/h"
	baOutages = "j. downstream outages 1/h, 20 s, 50 % failing"
	baLong    = ", watched 6 h"
	baPower   = "θ = 2 from the deployment (1 % → 2 %)"
	baSeedNS  = "before/after: "
	baAlpha   = 0.01 // the guard's default α
	baTheta   = 2.0
	baFaGoal  = 1.5 * baAlpha
)

type beforeAfterResults struct {
	aa    []simulate.BeforeAfterResult
	power simulate.BeforeAfterResult
	wall  time.Duration
}

func beforeAfterScenarios(o options) (aa []simulate.BeforeAfterScenario, power simulate.BeforeAfterScenario) {
	base := simulate.DefaultBeforeAfter()
	sc := func(name string, b simulate.BeforeAfter, runs int) simulate.BeforeAfterScenario {
		return simulate.BeforeAfterScenario{Name: name, Setup: b, Runs: runs, Seed: seedOf(o.seed, baSeedNS+name)}
	}
	long := base
	long.Watch = 6 * time.Hour
	aa = []simulate.BeforeAfterScenario{
		sc(baClean, base, o.nuisanceRuns),
		sc(baRetries, base.RetryClusters(), o.nuisanceRuns),
		sc(baNoise, base.TickNoise(), o.nuisanceRuns),
		sc(baDaily, base.DailyCycle(), o.nuisanceRuns),
		sc(baTrend, base.Trend(), o.nuisanceRuns),
		sc(baOutages, base.HourlyOutages(), o.nuisanceRuns),
		sc(baDaily+baLong, long.DailyCycle(), o.nuisanceRuns),
		sc(baTrend+baLong, long.Trend(), o.nuisanceRuns),
	}
	p := base
	p.Theta = baTheta
	return aa, sc(baPower, p, o.nuisancePowerRuns)
}

// runBeforeAfter plays the suite case by case, printing each case's wall time.
func runBeforeAfter(ctx context.Context, o options) (*beforeAfterResults, error) {
	aa, power := beforeAfterScenarios(o)
	r := &beforeAfterResults{}
	start := time.Now()
	for _, sc := range append(aa, power) {
		t0 := time.Now()
		res, err := simulate.RunBeforeAfter(ctx, []simulate.BeforeAfterScenario{sc}, o.workers, nil)
		if err != nil {
			return nil, fmt.Errorf("before/after suite: %w", err)
		}
		fmt.Fprintf(os.Stderr, "detectbench: before/after: %s: %d runs in %s\n", sc.Name, sc.Runs, time.Since(t0).Round(100*time.Millisecond))
		if sc.Name == baPower {
			r.power = res[0]
		} else {
			r.aa = append(r.aa, res[0])
		}
	}
	r.wall = time.Since(start)
	return r, nil
}

// baQuantile is the nearest-rank q-quantile of the finite values of v.
func baQuantile(v []float64, q float64) float64 {
	s := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// baMinutes formats ticks of length tick as m:ss.
func baMinutes(ticks float64, tick time.Duration) string {
	if math.IsInf(ticks, 1) {
		return "∞"
	}
	s := int(math.Round(ticks * tick.Seconds()))
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func writeBeforeAfter(b *strings.Builder, o options, r *beforeAfterResults) {
	fmt.Fprintf(b, "## Before/after suite\n\n")
	if r == nil {
		fmt.Fprintf(b, "Not run (`-nuisance-runs 0`).\n\n")
		return
	}
	s := simulate.DefaultBeforeAfter()
	fmt.Fprintf(b, "Issue 12, item 6. An all-at-once release played through the daemon's own `detector.Engine` (a guard with `baseline.mode: before_after` and the defaults: α = %g, tolerance 0.1, "+
		"`baseline.window` %s, `baseline.watch` %s, min_requests %g): the service serves v1 for the window (%d ticks of %s), v2 is announced (`strategy: all_at_once`) and serves alone for the watch (%d ticks), "+
		"every tick Appended (Poisson requests at %g/s, each failing with p₀ = %g %%) then Evaluated on a fake clock. A run counts as a false alarm when any verdict of the watch is `regressed`. "+
		"Runs: %d A/A per case, %d for the power case; run i of a case draws from PCG(FNV-1a(\"%s\" + case name) xor %d, i). Wall time: %s on -workers %d.\n\n",
		baAlpha, time.Duration(configs.DefaultBaseline.Window), time.Duration(configs.DefaultBaseline.Watch), configs.DefaultBaseline.MinRequests,
		s.WindowTicks(), s.Tick, s.WatchTicks(), s.RequestsPerSecond, 100*s.BaselineErrorProb,
		o.nuisanceRuns, o.nuisancePowerRuns, baSeedNS, o.seed, r.wall.Round(time.Second), o.workers)
	fmt.Fprintf(b, "- The nuisances, over the window and the watch alike: (a) errors in clusters of 3, as in the nuisance suite; (d) the rate multiplied per tick by exp(σZ − σ²/2), σ = 0.7; "+
		"(h) p = p₀·(1 + 0.3·sin(2π·h/24)) at hour of day h, the run's first tick at a uniformly drawn time of day; "+
		"(i) p = p₀·1.1^(t/1 h), t from the deployment; (j) a downstream's outages, a Poisson process of 1 an hour, 20 s each with half the requests failing (by the share of each tick covered). "+
		"The rows \"watched 6 h\" set `baseline.watch: 6h`: how far the window's rate stays representative is a matter of how long it is used.\n")
	fmt.Fprintf(b, "- The reference is the window's rate, bounded quasi-binomially with the dispersion φ between its ticks (Pearson χ² per degree of freedom, a tick six standard deviations above the rest left out; shown below as the median and p90 over runs), "+
		"and the candidate's ticks are tested with their likelihood tempered by the same φ and under the burst budget (the log e-value may rise at most log(0.9/α) within any %d ticks: the candidate is the whole service, one source, so an excursion of a minute or less is not taken for a version effect). "+
		"rollguard keeps no history beyond that window, so it cannot take the same time of day or week: a daily cycle or a trend is outside what the window shows, and no α is claimed for before/after.\n\n", detector.DefaultBurstTicks+2)

	fmt.Fprintf(b, "### False alarms (A/A, watch %s unless said, α = %g)\n\n", time.Duration(configs.DefaultBaseline.Watch), baAlpha)
	fmt.Fprintf(b, "Share of runs with any `regressed` verdict, [95 %% Wilson interval]; \"within α\" when the interval's upper end is ≤ 1.5·α = %g %%.\n\n", 100*baFaGoal)
	fmt.Fprintf(b, "| case | runs | false alarms [95 %% interval] | window's φ (median; p90) | within α |\n|---|---|---|---|---|\n")
	for _, res := range r.aa {
		k := simulate.Summarise(res.Alarms).Detected
		n := res.Scenario.Runs
		lo, hi := simulate.Wilson(k, n)
		within := "yes"
		if hi > baFaGoal {
			within = "**no**"
		}
		fmt.Fprintf(b, "| %s | %d | %.2f %% [%.2f – %.2f %%] | %.3g; %.3g | %s |\n", res.Scenario.Name, n,
			100*float64(k)/float64(n), 100*lo, 100*hi, baQuantile(res.Dispersions, 0.5), baQuantile(res.Dispersions, 0.9), within)
	}
	d := simulate.Summarise(r.power.Alarms)
	fmt.Fprintf(b, "\n### Time to detect (before/after, θ = %g)\n\n", baTheta)
	fmt.Fprintf(b, "From the deployment, in m:ss (a run not caught within the watch counts as ∞).\n\n")
	fmt.Fprintf(b, "| case | runs | median | p90 | caught |\n|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| %s | %d | %s | %s | %.1f %% |\n\n", r.power.Scenario.Name, d.Runs, baMinutes(d.Median, s.Tick), baMinutes(d.P90, s.Tick), 100*d.Rate())
}
