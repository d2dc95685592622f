package main

// The nuisance suite (DETECTION.md, "Real traffic is not independent" and
// "The detection benchmark"; issue 12): A/A runs of a per-pod fleet under
// each nuisance — retry clusters, a bursty pod, persistent pod offsets,
// per-pod per-tick noise, misaligned outages, an autocorrelated saturation
// gauge, restarts — and the power cases the robust test must keep: a 5 %
// canary and a 50 % share at θ = 2, a regression that starts after 2 h of
// health, and both with checkpointed restarts.

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/rollguard/rollguard/detector/simulate"
)

const (
	nuisanceAlpha  = 0.01
	nuisanceTheta0 = 1.1 // the product's default tolerance of 0.1
	nuisanceTheta  = 2.0 // the power cases' regression: 1 % → 2 %
	restartTicks   = 180 // 30 minutes
	lateChange     = 720 // 2 hours
	// faGoal is the A/A goal: the upper end of the 95 % interval ≤ 1.5·α.
	faGoal = 1.5 * nuisanceAlpha
)

// Contender names of the suite.
const (
	nPods       = "rollguard (pods)"
	nSummed     = "rollguard (summed)"
	nOracle     = "oracle SPRT (summed)"
	nCond       = "θ-oracle (summed)"
	nEdge       = "θ-oracle at the edge (summed)"
	nFresh      = "rollguard (pods), fresh restart every 30 min"
	nCheckpoint = "rollguard (pods), checkpointed restart every 30 min"
)

// Case names: the report's rows, and the seeds (seedOf).
const (
	caseClean      = "clean fleet"
	caseRetries    = "a. retry clusters of 3"
	caseBursts     = "b. bursty pod (1 burst per 2 h, ×10 for 1 min)"
	caseOffsets    = "c. persistent pod offsets (σ = 0.2)"
	caseNoise      = "d. per-pod per-tick noise (σ = 0.7)"
	caseOutages    = "e. outages 6/h, 20 s, 50 % failing, candidate 5 s early"
	caseGauge09    = "f. saturation gauge, AR(1) φ = 0.9"
	caseGauge099   = "f. saturation gauge, AR(1) φ = 0.99"
	caseRestarts   = "g. restarts every 30 min (clean fleet)"
	powerCanary    = "5 % canary (1 of 20 pods), θ = 2 from the start"
	powerHalf      = "50 % share (10 of 20 pods), θ = 2 from the start"
	powerLate      = "5 % canary, θ = 2 after 2 h healthy"
	nuisanceSeedNS = "nuisance: "
)

func fleetContender(name string, pods bool, restart bool, checkpoint bool) simulate.FleetContender {
	return simulate.FleetContender{Name: name, New: func() simulate.FleetDetector {
		d := simulate.NewFleetRollguard(nuisanceTheta0, nuisanceAlpha, pods)
		if restart {
			d.WithRestarts(restartTicks, checkpoint)
		}
		return d
	}}
}

func gaugeContender(name string, pods bool) simulate.FleetContender {
	return simulate.FleetContender{Name: name, New: func() simulate.FleetDetector {
		return simulate.NewFleetRollguard(nuisanceTheta0, nuisanceAlpha, pods).WithGauge()
	}}
}

func nuisanceScenarios(o options) (aa, power []simulate.FleetScenario) {
	pods := fleetContender(nPods, true, false, false)
	summed := fleetContender(nSummed, false, false, false)
	p0 := simulate.DefaultFleet().BaselineErrorProb
	oracle := simulate.FleetContender{Name: nOracle, New: func() simulate.FleetDetector {
		return simulate.Summed{D: simulate.NewOracleSPRT(p0, p0*nuisanceTheta, nuisanceAlpha)}
	}}
	// The θ-oracles see what rollguard sees (the candidate's share of each
	// tick's bad events) and know θ = 2: against θ = 1, and against the
	// tolerance's edge θ₀ = 1.1 — rollguard's own null, so the fastest any
	// valid test of it can be on average at θ = 2.
	cond := simulate.FleetContender{Name: nCond, New: func() simulate.FleetDetector {
		return simulate.Summed{D: simulate.NewConditionalSPRT(nuisanceTheta, nuisanceAlpha)}
	}}
	edge := simulate.FleetContender{Name: nEdge, New: func() simulate.FleetDetector {
		return simulate.Summed{D: simulate.NewConditionalSPRTAt(nuisanceTheta0, nuisanceTheta, nuisanceAlpha)}
	}}
	sc := func(name string, f simulate.Fleet, runs int, cs ...simulate.FleetContender) simulate.FleetScenario {
		return simulate.FleetScenario{Name: name, Fleet: f, Runs: runs, Ticks: simulate.FleetWatchTicks, Seed: seedOf(o.seed, nuisanceSeedNS+name), Contenders: cs}
	}
	fleet := func(n simulate.Nuisance) simulate.Fleet {
		f := simulate.DefaultFleet()
		f.Nuisance = n
		return f
	}
	for _, c := range []struct {
		name string
		n    simulate.Nuisance
	}{
		{caseClean, simulate.Nuisance{}},
		{caseRetries, simulate.RetryClusters()},
		{caseBursts, simulate.BurstyPods()},
		{caseOffsets, simulate.PodOffsets()},
		{caseNoise, simulate.TickNoise()},
		{caseOutages, simulate.MisalignedOutages()},
		{caseGauge09, simulate.SaturationGauge(0.9)},
		{caseGauge099, simulate.SaturationGauge(0.99)},
	} {
		if c.n.Gauge {
			// The engine tests gauge readings with detector.NewGaugeTest.
			aa = append(aa, sc(c.name, fleet(c.n), o.nuisanceRuns, gaugeContender(nPods, true), gaugeContender(nSummed, false)))
			continue
		}
		aa = append(aa, sc(c.name, fleet(c.n), o.nuisanceRuns, pods, summed))
	}
	aa = append(aa, sc(caseRestarts, fleet(simulate.Nuisance{}), o.nuisanceRuns,
		fleetContender(nFresh, true, true, false), fleetContender(nCheckpoint, true, true, true)))

	checkpointed := fleetContender(nCheckpoint, true, true, true)
	canary := fleet(simulate.Nuisance{})
	canary.Theta = nuisanceTheta
	half := canary
	half.CandidatePods = 10
	late := canary
	late.ChangeAt = lateChange
	power = []simulate.FleetScenario{
		sc(powerCanary, canary, o.nuisancePowerRuns, pods, summed, oracle, cond, edge, checkpointed),
		sc(powerHalf, half, o.nuisancePowerRuns, pods, summed, oracle, cond, edge),
		sc(powerLate, late, o.nuisancePowerRuns, pods, summed, checkpointed),
	}
	return aa, power
}

// nuisanceResults is the suite's outcome, by case name.
type nuisanceResults struct {
	aa, power []simulate.FleetResult
	byName    map[string]simulate.FleetResult
	wall      time.Duration
}

// runNuisance plays the suite case by case, printing each case's wall time.
func runNuisance(ctx context.Context, o options) (*nuisanceResults, error) {
	aa, power := nuisanceScenarios(o)
	r := &nuisanceResults{byName: map[string]simulate.FleetResult{}}
	start := time.Now()
	for _, group := range []struct {
		scs []simulate.FleetScenario
		out *[]simulate.FleetResult
	}{{aa, &r.aa}, {power, &r.power}} {
		for _, sc := range group.scs {
			t0 := time.Now()
			res, err := simulate.RunFleet(ctx, []simulate.FleetScenario{sc}, o.workers, nil)
			if err != nil {
				return nil, fmt.Errorf("nuisance suite: %w", err)
			}
			fmt.Fprintf(os.Stderr, "detectbench: nuisance: %s: %d runs in %s\n", sc.Name, sc.Runs, time.Since(t0).Round(100*time.Millisecond))
			*group.out = append(*group.out, res[0])
			r.byName[sc.Name] = res[0]
		}
	}
	r.wall = time.Since(start)
	return r, nil
}

func (r *nuisanceResults) alarms(scenario, contender string) []int {
	a := r.byName[scenario].Contender(contender)
	if a == nil {
		panic("detectbench: no contender " + contender + " in " + scenario) // a bug in this file
	}
	return a
}

// fromChange turns first-alarm ticks into ticks counted from the change: an
// alarm before it is a false alarm, not a detection, and counts as never
// (−1); the number of those is returned.
func fromChange(alarms []int, change int) (shifted []int, early int) {
	shifted = make([]int, len(alarms))
	for i, a := range alarms {
		switch {
		case a < 0:
			shifted[i] = -1
		case a < change:
			shifted[i] = -1
			early++
		default:
			shifted[i] = a - change
		}
	}
	return shifted, early
}

// fleetMinutes formats ticks of the fleet's tick as m:ss.
func fleetMinutes(ticks float64) string {
	if math.IsInf(ticks, 1) {
		return "∞"
	}
	s := int(math.Round(ticks * simulate.DefaultFleet().Tick.Seconds()))
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func intervalCell(k, n int) string {
	lo, hi := simulate.Wilson(k, n)
	return fmt.Sprintf("%.2f %% [%.2f – %.2f %%]", 100*float64(k)/float64(n), 100*lo, 100*hi)
}

func writeNuisance(b *strings.Builder, o options, r *nuisanceResults) {
	fmt.Fprintf(b, "## Nuisance suite\n\n")
	if r == nil {
		fmt.Fprintf(b, "Not run (`-nuisance-runs 0`).\n\n")
		return
	}
	f := simulate.DefaultFleet()
	fmt.Fprintf(b, "DETECTION.md, \"Real traffic is not independent\" (issue 12). A fleet of %d pods serves %g requests/s in all (Poisson per pod per %s tick, %g per pod), "+
		"p₀ = %g %%; the canary is %d pod of %d (5 %%) unless said. Each run watches %d ticks (6 h). "+
		"Runs per case: %d A/A, %d for the power cases; seeds: run i of a case draws from PCG(FNV-1a(\"%s\" + case name) xor %d, i). Wall time: %s on -workers %d.\n\n",
		f.Pods, f.RequestsPerSecond, f.Tick, f.RequestsPerSecond/float64(f.Pods), 100*f.BaselineErrorProb, f.CandidatePods, f.Pods, simulate.FleetWatchTicks,
		o.nuisanceRuns, o.nuisancePowerRuns, nuisanceSeedNS, o.seed, r.wall.Round(time.Second), o.workers)
	fmt.Fprintf(b, "- **%s**: `detector.CountTest` with θ₀ = %g (the default tolerance 0.1) at α = %g, fed each tick's per-pod blocks through `ObserveBlocks`.\n", nPods, nuisanceTheta0, nuisanceAlpha)
	fmt.Fprintf(b, "- **%s**: the same test fed each version's summed counts through `Observe` — what it sees without pod labels.\n", nSummed)
	fmt.Fprintf(b, "- **restarts** (g): every 30 min the test is replaced — *fresh*: a new `CountTest` (α spent again, the old behaviour); *checkpointed*: `MarshalBinary` then `UnmarshalBinary` into a new `CountTest`. The first alarm of a run is what counts, whichever test raised it.\n")
	fmt.Fprintf(b, "- **%s**: Wald's SPRT of p₀ = 1 %% against p₁ = 2 %% on the candidate's summed requests, knowing both — the lower bound on delay at θ = 2 (power cases only).\n", nOracle)
	fmt.Fprintf(b, "- **%s** and **%s**: the SPRT of θ = 1, and of θ = θ₀ = %g (the tolerance's edge, rollguard's own null), against the true θ = 2 on the conditional likelihood rollguard uses (the candidate's share of each tick's bad events): they see what rollguard sees and know θ. No valid test of θ ≤ θ₀ can beat the second on average at θ = 2 (Wald), so it is the floor of rollguard's delay; oracle → θ-oracle is the price of not knowing p₀, θ-oracle → edge the price of the tolerance, edge → rollguard the price of not knowing θ nor when the regression began, of the dispersion learnt and of the ticks held.\n", nCond, nEdge, nuisanceTheta0)
	fmt.Fprintf(b, "- The nuisances: (a) errors in clusters of 3 (clusters Poisson(n·p/3); the retries count in the total); "+
		"(b) bursts, a fleet-wide Poisson process of 1 per 2 h, each multiplying a uniformly drawn pod's (candidate or baseline) error probability by 10 for 1 min; "+
		"(c) each pod's p = p₀·exp(σZ − σ²/2), σ = 0.2, drawn once per run; (d) the same per pod and tick, σ = 0.7; "+
		"(e) a shared downstream's outages, 6 per hour (Poisson), 20 s each with half the requests failing, the candidate seeing each over [s−5 s, s+15 s), the baseline over [s, s+20 s), by the share of each tick covered; "+
		"(f) a saturation gauge instead of errors: per pod an AR(1) with φ = 0.9 or 0.99 per tick (stationary N(0, 1)), a reading bad when above the 90th percentile, one block {bad: 0 or 1, total: 1} per pod and tick; "+
		"(g) restarts on the clean fleet.\n\n")

	fmt.Fprintf(b, "### False alarms (A/A, 6 h, α = %g)\n\n", nuisanceAlpha)
	fmt.Fprintf(b, "Share of runs with any alarm, [95 %% Wilson interval]; PASS when the interval's upper end is ≤ 1.5·α = %g %%.\n\n", 100*faGoal)
	fmt.Fprintf(b, "| case | contender | runs | false alarms [95 %% interval] | goal |\n|---|---|---|---|---|\n")
	for _, res := range r.aa {
		for i, c := range res.Scenario.Contenders {
			k := simulate.Summarise(res.Alarms[i]).Detected
			n := res.Scenario.Runs
			_, hi := simulate.Wilson(k, n)
			verdict := "PASS"
			if hi > faGoal {
				verdict = "**FAIL**"
			}
			fmt.Fprintf(b, "| %s | %s | %d | %s | %s |\n", res.Scenario.Name, c.Name, n, intervalCell(k, n), verdict)
		}
	}

	fmt.Fprintf(b, "\n### Time to detect (θ = 2: 1 %% → 2 %%)\n\n")
	fmt.Fprintf(b, "Median and p90 in m:ss over all runs, a run not caught within the watch counting as ∞; \"caught\": the share of runs with an alarm. "+
		"For the late regression the delay runs from the change (tick %d, 2 h), and a run that alarmed before it counts as not caught. "+
		"Goals (DETECTION.md): median ≤ 1.3 × the oracle's at a 5 %% canary and ≤ 2 × at a 50 %% share; a regression after 2 h of health caught within 1.5 × the fresh-start median; "+
		"checkpointed restarts leave the delay unchanged (median within ±5 %%; the runs whose alarm moved are counted). Rows without a goal are shown for comparison.\n\n", lateChange)
	fmt.Fprintf(b, "| case | contender | runs | median | p90 | caught | compared with | its median / p90 | ratio (median; p90) | goal |\n|---|---|---|---|---|---|---|---|---|---|\n")
	type row struct {
		scenario, contender string
		change              int
		refScenario, refC   string
		refChange           int
		goal                float64 // ratio of medians; 0: none; −1: unchanged
	}
	rows := []row{
		{powerCanary, nPods, 0, powerCanary, nOracle, 0, 1.3},
		{powerCanary, nSummed, 0, powerCanary, nOracle, 0, 0},
		{powerCanary, nOracle, 0, "", "", 0, 0},
		{powerCanary, nCond, 0, powerCanary, nOracle, 0, 0},
		{powerCanary, nEdge, 0, powerCanary, nOracle, 0, 0},
		{powerCanary, nPods, 0, powerCanary, nEdge, 0, 0},
		{powerCanary, nCheckpoint, 0, powerCanary, nPods, 0, -1},
		{powerHalf, nPods, 0, powerHalf, nOracle, 0, 2},
		{powerHalf, nSummed, 0, powerHalf, nOracle, 0, 0},
		{powerHalf, nOracle, 0, "", "", 0, 0},
		{powerHalf, nCond, 0, powerHalf, nOracle, 0, 0},
		{powerHalf, nEdge, 0, powerHalf, nOracle, 0, 0},
		{powerHalf, nPods, 0, powerHalf, nEdge, 0, 0},
		{powerLate, nPods, lateChange, powerCanary, nPods, 0, 1.5},
		{powerLate, nSummed, lateChange, powerCanary, nSummed, 0, 0},
		{powerLate, nCheckpoint, lateChange, powerLate, nPods, lateChange, -1},
	}
	var notes []string
	for _, rw := range rows {
		a, early := fromChange(r.alarms(rw.scenario, rw.contender), rw.change)
		d := simulate.Summarise(a)
		if early > 0 {
			notes = append(notes, fmt.Sprintf("%s, %s: %d of %d runs alarmed before the change (counted as not caught).", rw.scenario, rw.contender, early, d.Runs))
		}
		ref, refCell, ratioCell, goalCell := "—", "—", "—", "—"
		if rw.refC != "" {
			ra, _ := fromChange(r.alarms(rw.refScenario, rw.refC), rw.refChange)
			rd := simulate.Summarise(ra)
			ref = rw.refC
			if rw.refScenario != rw.scenario {
				ref += ", " + rw.refScenario
			}
			refCell = fleetMinutes(rd.Median) + " / " + fleetMinutes(rd.P90)
			ratioCell = ratio(d.Median, rd.Median) + "; " + ratio(d.P90, rd.P90)
			q := d.Median / rd.Median
			finite := !math.IsInf(d.Median, 1) && !math.IsInf(rd.Median, 1)
			switch {
			case rw.goal < 0:
				moved := 0
				for i := range a {
					if a[i] != ra[i] {
						moved++
					}
				}
				goalCell = fmt.Sprintf("unchanged: %s (%d of %d runs' alarms moved)", metCell(finite && math.Abs(q-1) <= 0.05), moved, len(a))
			case rw.goal > 0:
				goalCell = fmt.Sprintf("≤ %g×: %s", rw.goal, metCell(finite && q <= rw.goal))
			}
		}
		fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %.1f %% | %s | %s | %s | %s |\n", rw.scenario, rw.contender, d.Runs,
			fleetMinutes(d.Median), fleetMinutes(d.P90), 100*d.Rate(), ref, refCell, ratioCell, goalCell)
	}
	b.WriteString("\n")
	for _, n := range notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
}

func metCell(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
