package detector

import (
	"math"
	"testing"
)

func TestDescribe(t *testing.T) {
	counts := func(v string, bad, total float64) CohortCounts {
		return CohortCounts{Version: v, Bad: bad, Total: total, Ratio: bad / total}
	}
	for _, tc := range []struct {
		ev   Evidence
		want string
	}{
		{Evidence{Signal: "errors", Kind: "sequential", State: StateRegressed,
			Candidate: counts("v2", 122, 2000), Baseline: counts("v1", 190, 19000), EValue: 312.4, Threshold: 200},
			"errors: candidate 6.1% (122/2000) vs baseline 1.0% (190/19000), e-value 312 >= 200"},
		{Evidence{Signal: "latency:p99", Kind: "sequential", State: StateHealthy, Quantile: 0.99, Boundary: 0.25,
			Candidate: counts("v2", 10, 2000), Baseline: counts("v1", 95, 19000), IntervalHigh: 1.049, Theta0: 1.1},
			"latency:p99: candidate 0.50% slower than 250 ms (10/2000) vs baseline 0.50% (95/19000), ratio at most 1.05 <= 1.1"},
		{Evidence{Signal: "errors", Kind: "before_after", State: StateInconclusive,
			Candidate: counts("v2", 3, 400), Baseline: counts("v1 (before)", 700, 70000), EValue: 0.5, Threshold: 400},
			"errors: candidate 0.75% (3/400) vs baseline (before the deployment) 1.0% (700/70000), e-value 0.5 < 400"},
		{Evidence{Signal: "errors", Kind: "sequential", State: StateNoData, Reason: "baseline v1 has had no traffic for 2m10s"},
			"errors: baseline v1 has had no traffic for 2m10s"},
		{Evidence{Signal: "errors", Kind: "sequential", State: StateInconclusive, EValue: 1, Threshold: 200},
			"errors: nothing tested yet"},
		{Evidence{Signal: "p99-rule", Kind: "rule", State: StateRegressed, Reason: "rule-based: 3 consecutive failed checks of 1m"},
			"p99-rule: rule-based: 3 consecutive failed checks of 1m"},
		{Evidence{Signal: "slo", Kind: "rule", State: StateInconclusive, Candidate: counts("v2", 1, 400)},
			"slo: candidate 0.25% (1/400), rule-based"},
		{Evidence{Signal: "throughput", Kind: "sequential", State: StateRegressed, EValue: 1234.5, Threshold: 200,
			Candidate: CohortCounts{Version: "v2", Total: 300, Ratio: 0.03}, Baseline: CohortCounts{Version: "v1", Total: 9700, Ratio: 0.97},
			Reason: "the candidate served 3% of successful requests where its weight of 10% predicts more"},
			"throughput: the candidate served 3% of successful requests where its weight of 10% predicts more, e-value 1234 >= 200"},
		{Evidence{Signal: "errors", Kind: "sequential", State: StateRegressed, EValue: Float(math.Inf(1)), LogEValue: 812.4, Threshold: 200,
			Candidate: counts("v2", 3671, 71664), Baseline: counts("v1", 697, 71395)},
			"errors: candidate 5.1% (3671/71664) vs baseline 0.98% (697/71395), e-value e^812 >= 200"},
	} {
		if got := Describe(tc.ev); got != tc.want {
			t.Errorf("describe(%s %s):\ngot  %s\nwant %s", tc.ev.Signal, tc.ev.State, got, tc.want)
		}
	}
}

// TestBoundQuantile: a latency arm's boundary is a bucket bound at or above
// the asked quantile; the wording names the quantile the baseline shows it
// to be (issue 12: a "p99" bound that was the baseline's p99.89). The twin:
// a bound that is the asked quantile names just that.
func TestBoundQuantile(t *testing.T) {
	for _, tc := range []struct {
		ratio, total float64
		want         string
	}{
		{0.0011, 100000, "the baseline's p99: the bucket bound at or above it is its p99.89 over the test"},
		{0.01, 100000, "the baseline's p99"},
		{0, 0, "the baseline's p99"},
	} {
		e := Evidence{Quantile: 0.99, Baseline: CohortCounts{Total: tc.total, Ratio: tc.ratio}}
		if got := BoundQuantile(e); got != tc.want {
			t.Errorf("baseline ratio %v of %v: %q, want %q", tc.ratio, tc.total, got, tc.want)
		}
	}
}
