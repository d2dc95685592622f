package wire

import (
	"time"

	"github.com/rollguard/rollguard/internal/jsonfloat"
)

// Deployment is service Service moving from PreviousVersion (stable) to
// Version (candidate), as commands and incident events carry it. Its JSON
// encoding is that of detector.Deployment.
type Deployment struct {
	ID              string   `json:"id"`
	Service         string   `json:"service"`
	Version         string   `json:"version"`
	PreviousVersion string   `json:"previous_version"`
	Commit          string   `json:"commit,omitempty"`
	PreviousCommit  string   `json:"previous_commit,omitempty"`
	Flags           []string `json:"flags"`
	Migration       string   `json:"migration"`
	Strategy        string   `json:"strategy,omitempty"`
	// Weight is the percent of traffic routed to the candidate, when the
	// deploy tool knows it.
	Weight    float64   `json:"weight,omitempty"`
	Source    string    `json:"source"` // "api" or "implicit"
	StartedAt time.Time `json:"started_at"`
	// SupersededBy is set when a newer deployment of the service replaced this one.
	SupersededBy string `json:"superseded_by,omitempty"`
	// EndedAt and EndReason (superseded, promoted) are set once it is over.
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
}

// CohortCounts are the requests and bad events of one cohort.
type CohortCounts struct {
	Version string  `json:"version"`
	Total   float64 `json:"total"`
	Bad     float64 `json:"bad"`
	Ratio   float64 `json:"ratio"` // bad / total
}

// Evidence is why a signal has its verdict, in terms a person can check.
// Its JSON encoding is that of detector.Evidence.
type Evidence struct {
	Signal    string       `json:"signal"`
	Kind      string       `json:"kind"`  // "sequential", "rule", "before_after"
	State     string       `json:"state"` // regressed, healthy, inconclusive, no_data
	Baseline  CohortCounts `json:"baseline"`
	Candidate CohortCounts `json:"candidate"`
	// Estimate is the candidate's bad-event rate over the baseline's.
	Estimate Float `json:"ratio_estimate"`
	// IntervalLow and IntervalHigh bound that ratio at every time, at level Alpha.
	IntervalLow  Float   `json:"interval_low"`
	IntervalHigh Float   `json:"interval_high"`
	Theta0       float64 `json:"theta0"` // 1 + tolerance: the null is ratio <= theta0
	EValue       Float   `json:"e_value"`
	// LogEValue is ln(e-value), finite where the e-value overflows.
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

// Model is what a sequential test assumed of the data: the counts'
// dispersion φ, the pods' spread τ and the tolerance it widened theta0 to
// (edge), the pods of each cohort, and all of it in words.
type Model struct {
	Dispersion    float64 `json:"dispersion"`
	PodSpread     float64 `json:"pod_spread"`
	Edge          float64 `json:"edge"`
	CandidatePods int     `json:"candidate_pods"`
	BaselinePods  int     `json:"baseline_pods"`
	Assumption    string  `json:"assumption"`
}

// Float is a float64 that encodes NaN and ±Inf as JSON strings, as the
// detector's evidence does (the same type).
type Float = jsonfloat.Float
