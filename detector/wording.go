package detector

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The wording of evidence is written once, here, and used wherever a
// verdict is told to people: the playbook's timeline and status updates,
// replay, the demo, the UI and the post-mortem.

// Explain is the evidence of the signals that gave the guard its state.
func Explain(v GuardVerdict) string {
	var parts []string
	for _, ev := range v.Signals {
		if ev.State == v.State {
			parts = append(parts, Describe(ev))
		}
	}
	if len(parts) == 0 {
		return "no signal has a verdict yet"
	}
	return strings.Join(parts, "; ")
}

// Describe says one signal's evidence on one line: the cohorts' bad-event
// rates with their counts and the test's standing, or the engine's reason
// where counts would not say it.
func Describe(ev Evidence) string {
	switch {
	case ev.State == StateNoData || (ev.State == StateInconclusive && ev.Reason != ""):
		return ev.Signal + ": " + ev.Reason
	case ev.Kind == "rule" && ev.Reason != "":
		return ev.Signal + ": " + ev.Reason
	case ev.Kind == "rule":
		return fmt.Sprintf("%s: candidate %s (%.0f/%.0f), rule-based", ev.Signal, percent(ev.Candidate.Ratio), ev.Candidate.Bad, ev.Candidate.Total)
	case ev.Candidate.Total == 0 && ev.Baseline.Total == 0:
		return ev.Signal + ": nothing tested yet"
	case ev.State == StateRegressed && ev.Candidate.Bad == 0 && ev.Baseline.Bad == 0 && ev.Reason != "":
		// Counts that are not bad events (throughput: successful requests).
		return fmt.Sprintf("%s: %s, e-value %s >= %s", ev.Signal, ev.Reason, eValue(ev), number(ev.Threshold))
	}
	slower := ""
	if ev.Quantile > 0 {
		slower = " slower than " + seconds(ev.Boundary)
	}
	base := "baseline"
	if ev.Kind == "before_after" {
		base = "baseline (before the deployment)"
	}
	s := fmt.Sprintf("%s: candidate %s%s (%.0f/%.0f) vs %s %s (%.0f/%.0f)", ev.Signal,
		percent(ev.Candidate.Ratio), slower, ev.Candidate.Bad, ev.Candidate.Total,
		base, percent(ev.Baseline.Ratio), ev.Baseline.Bad, ev.Baseline.Total)
	switch ev.State {
	case StateRegressed:
		return s + fmt.Sprintf(", e-value %s >= %s", eValue(ev), number(ev.Threshold)) + modelNote(ev.Model)
	case StateHealthy:
		return s + fmt.Sprintf(", ratio at most %.3g <= %g", float64(ev.IntervalHigh), ev.Theta0) + modelNote(ev.Model)
	}
	return s + fmt.Sprintf(", e-value %s < %s", eValue(ev), number(ev.Threshold)) + modelNote(ev.Model)
}

// modelNote says what the test learnt of the data where it changed the
// verdict's reading: counts more dispersed than independent requests, a
// tolerance widened by the pods' spread, or no pod label to learn from.
func modelNote(m *Model) string {
	if m == nil {
		return ""
	}
	if m.Assumption == BeforeAfterAssumption {
		return " (before/after: no α claimed)"
	}
	var notes []string
	if m.CandidatePods <= 1 && m.BaselinePods <= 1 {
		notes = append(notes, "no pod label")
	}
	if m.Dispersion >= 1.05 {
		notes = append(notes, "counts "+strconv.FormatFloat(m.Dispersion, 'f', 1, 64)+"× over-dispersed")
	}
	if m.Edge > 0 && m.PodSpread > 0 {
		notes = append(notes, "tolerance widened to "+strconv.FormatFloat(m.Edge, 'g', 3, 64)+" by the pods' spread")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

func percent(ratio float64) string {
	p := 100 * ratio
	if p != 0 && p < 1 {
		return strconv.FormatFloat(p, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// number writes an e-value: whole numbers from 100, three digits below.
func number(f float64) string {
	switch {
	case f >= 1e6:
		return strconv.FormatFloat(f, 'g', 3, 64)
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

// eValue writes an evidence's e-value; one too large for a float64 is
// written from its log, as a power of e.
func eValue(ev Evidence) string {
	if e := float64(ev.EValue); math.IsInf(e, 1) && ev.LogEValue > 0 {
		return "e^" + strconv.FormatFloat(ev.LogEValue, 'f', 0, 64)
	}
	return number(float64(ev.EValue))
}

// BoundQuantile names the quantile a latency arm's boundary stands for: the
// boundary is the histogram bucket's bound at or above the baseline's asked
// quantile, so it names both the asked quantile and the one the baseline's
// requests show it to be ("the baseline's p99, its p99.89 over the test").
// Every wording of latency evidence (verdicts, post-mortem) calls it.
func BoundQuantile(e Evidence) string {
	asked := strconv.FormatFloat(e.Quantile*100, 'f', -1, 64)
	s := "the baseline's p" + asked
	if e.Baseline.Total > 0 && e.Baseline.Ratio >= 0 && e.Baseline.Ratio <= 1 {
		if real := strconv.FormatFloat(100*(1-e.Baseline.Ratio), 'g', 4, 64); real != asked {
			s += ": the bucket bound at or above it is its p" + real + " over the test"
		}
	}
	return s
}
