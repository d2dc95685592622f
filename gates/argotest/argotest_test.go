package argotest

import "testing"

// TestRunPhase is Argo's rule for a run's result (assessMetricStatus),
// including the trap the templates avoid: once count is reached, a run
// within its limits is Successful whatever its measurements were.
func TestRunPhase(t *testing.T) {
	one, three := 1, 3
	for _, tc := range []struct {
		name         string
		t            Template
		measurements []string
		terminating  bool
		want         string
	}{
		{"nothing yet", Template{Count: &one}, nil, false, Pending},
		{"one success", Template{Count: &one}, []string{Successful}, false, Successful},
		{"one inconclusive", Template{Count: &one}, []string{Inconclusive}, false, Inconclusive},
		{"one failure", Template{Count: &one}, []string{Failed}, false, Failed},
		{"count reached within the limits", Template{Count: &three, InconclusiveLimit: 3}, []string{Inconclusive, Inconclusive, Inconclusive}, false, Successful},
		{"over the inconclusive limit", Template{Count: &three, InconclusiveLimit: 2}, []string{Inconclusive, Inconclusive, Inconclusive}, false, Inconclusive},
		{"no count: running", Template{InconclusiveLimit: 40}, []string{Inconclusive, Successful}, false, Running},
		{"no count: ended with the rollout", Template{InconclusiveLimit: 40}, []string{Inconclusive}, true, Successful},
		{"errors", Template{ConsecutiveErrorLimit: 4}, []string{Error, Error, Error, Error, Error}, false, Error},
		{"errors not in a row", Template{ConsecutiveErrorLimit: 4}, []string{Error, Error, Error, Error, Inconclusive, Error}, true, Inconclusive},
	} {
		r := Run{T: tc.t}
		for _, m := range tc.measurements {
			r.Add(m)
		}
		if got := r.Phase(tc.terminating); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestTemplate substitutes arguments over the defaults.
func TestTemplate(t *testing.T) {
	ts, err := ParseTemplates([]byte(`
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: g}
spec:
  args: [{name: service}, {name: url, value: "http://r:9469"}]
  metrics:
    - name: m
      count: 1
      successCondition: "result.outcome == 'success'"
      provider:
        web:
          url: "{{args.url}}/api/v1/gates/argo?service={{ args.service }}"
          headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
---
kind: Rollout
`))
	if err != nil || len(ts) != 1 || *ts[0].Count != 1 {
		t.Fatalf("%v %+v", err, ts)
	}
	m, err := ts[0].Metric(map[string]string{"service": "checkout", "token": "t"})
	if err != nil || m.URL != "http://r:9469/api/v1/gates/argo?service=checkout" || m.Headers["Authorization"] != "Bearer t" {
		t.Errorf("%v %+v", err, m)
	}
	if _, err := ts[0].Metric(nil); err == nil {
		t.Error("a missing argument is not an error")
	}
}
