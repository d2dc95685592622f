package detector

import (
	"time"

	"github.com/rollguard/rollguard/internal/jsonfloat"
)

// State is a verdict's outcome.
type State string

// The verdict states of DETECTION.md.
const (
	StateRegressed    State = "regressed"
	StateHealthy      State = "healthy"
	StateInconclusive State = "inconclusive"
	StateNoData       State = "no_data"
)

// CohortCounts are the requests and bad events of one cohort.
type CohortCounts struct {
	Version string  `json:"version"`
	Total   float64 `json:"total"`
	Bad     float64 `json:"bad"`
	Ratio   float64 `json:"ratio"` // bad / total
}

// Evidence is why a signal has its verdict, in terms a person can check.
type Evidence struct {
	Signal    string       `json:"signal"`
	Kind      string       `json:"kind"` // "sequential" (anytime-valid) or, later, "rule"
	State     State        `json:"state"`
	Baseline  CohortCounts `json:"baseline"`
	Candidate CohortCounts `json:"candidate"`
	// Estimate is the candidate's bad-event rate over the baseline's.
	Estimate Float `json:"ratio_estimate"`
	// IntervalLow and IntervalHigh bound that ratio at every time, at level Alpha.
	IntervalLow  Float   `json:"interval_low"`
	IntervalHigh Float   `json:"interval_high"`
	Theta0       float64 `json:"theta0"` // 1 + tolerance: the null is ratio <= theta0
	EValue       Float   `json:"e_value"`
	// LogEValue is ln(e-value): it says how strong the evidence is where
	// the e-value itself overflows (+Inf).
	LogEValue float64 `json:"log_e_value"`
	PValue    float64 `json:"p_value"`
	Threshold float64 `json:"threshold"` // regressed when e_value >= threshold (1/alpha)
	Alpha     float64 `json:"alpha"`
	Ticks     int     `json:"ticks"`
	// Quantile and Boundary, for a latency test: requests slower than
	// Boundary (seconds; the baseline's Quantile) are the bad events.
	Quantile    float64   `json:"quantile,omitempty"`
	Boundary    float64   `json:"boundary,omitempty"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// CandidateSeen and BaselineSeen are when each cohort last reported
	// traffic (the window start when it has not since).
	CandidateSeen time.Time `json:"candidate_seen"`
	BaselineSeen  time.Time `json:"baseline_seen"`
	Reason        string    `json:"reason,omitempty"`
	// Model, for a sequential test, says what it assumed of the data.
	Model *Model `json:"model,omitempty"`
}

// Model is what a sequential test assumed of the data and learnt from it
// (docs/detection.md, "What the test assumes").
type Model struct {
	// Dispersion is φ: how many times more the counts varied, within each
	// cohort, than independent requests would (1: as independent).
	Dispersion float64 `json:"dispersion"`
	// PodSpread is τ, the relative spread of the pods' rates within a
	// cohort (a lower confidence bound), and Edge the tolerance it widened
	// Theta0 to: the test's null is ratio <= Edge.
	PodSpread float64 `json:"pod_spread"`
	Edge      float64 `json:"edge"`
	// CandidatePods and BaselinePods are the blocks of the last tick: 1
	// when the samples carry no pod label.
	CandidatePods int `json:"candidate_pods"`
	BaselinePods  int `json:"baseline_pods"`
	// Assumption says it in words.
	Assumption string `json:"assumption"`
}

// GuardVerdict is one guard's verdict on one deployment at one evaluation.
type GuardVerdict struct {
	Guard      string     `json:"guard"`
	Deployment Deployment `json:"deployment"`
	State      State      `json:"state"`
	At         time.Time  `json:"at"`
	// Since is the start of the data behind the verdict: the deployment's
	// start, or when its tests were restarted (verification, restart).
	Since   time.Time  `json:"since"`
	Signals []Evidence `json:"signals"`
}

// Float is a float64 that encodes NaN and ±Inf as JSON strings, since JSON
// numbers cannot hold them.
type Float = jsonfloat.Float

// combine folds signal states into the guard's (Worst).
func combine(ev []Evidence) State {
	states := make([]State, len(ev))
	for i, e := range ev {
		states[i] = e.State
	}
	return Worst(states...)
}

// Worst is the detector's one precedence for folding states — a guard's
// signals, or the guards of a service: any regression wins, then missing
// data (never a pass), then inconclusive; healthy only when every state
// is; no state at all is no data.
func Worst(states ...State) State {
	if len(states) == 0 {
		return StateNoData
	}
	state := StateHealthy
	for _, s := range states {
		switch s {
		case StateRegressed:
			return StateRegressed
		case StateNoData:
			state = StateNoData
		case StateInconclusive:
			if state == StateHealthy {
				state = StateInconclusive
			}
		}
	}
	return state
}
