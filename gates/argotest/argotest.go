// Package argotest measures a rollguard gate as Argo Rollouts' web metric
// provider does, for tests. Argo's own module cannot be fetched here (it is
// not among the modules known to install, and it brings the Kubernetes
// client with it), so this follows its documented contract
// (https://argoproj.github.io/argo-rollouts/analysis/web/) and the code
// behind it — metricproviders/web (GET the URL, a non-2xx answer or a body
// that is not JSON is an Error, no jsonPath means the whole body is the
// result) and utils/evaluate (EvaluateResult, EvalCondition) — with the
// same expression language, github.com/expr-lang/expr.
package argotest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/expr-lang/expr"
)

// The measurement phases of an AnalysisRun.
const (
	Successful   = "Successful"
	Failed       = "Failed"
	Inconclusive = "Inconclusive"
	Error        = "Error"
)

// Metric is the part of an AnalysisTemplate metric a measurement uses.
type Metric struct {
	URL              string
	Headers          map[string]string
	SuccessCondition string
	FailureCondition string
}

// Measure takes one measurement: the phase, the result value and, for an
// Error, why.
func Measure(c *http.Client, m Metric) (string, any, error) {
	req, err := http.NewRequest(http.MethodGet, m.URL, nil)
	if err != nil {
		return Error, nil, err
	}
	for k, v := range m.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Error, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Error, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return Error, nil, fmt.Errorf("received non 2xx response code: %d %s", resp.StatusCode, body)
	}
	var result any
	if err := json.Unmarshal(body, &result); err != nil {
		return Error, nil, fmt.Errorf("could not parse JSON body: %v", err)
	}
	phase, err := Evaluate(result, m.SuccessCondition, m.FailureCondition)
	return phase, result, err
}

// Evaluate is Argo's EvaluateResult: a failure condition that holds fails
// the measurement; with only a success condition, one that does not hold
// fails it; neither holding is inconclusive.
func Evaluate(result any, success, failure string) (string, error) {
	var ok, failed bool
	var err error
	if success != "" {
		if ok, err = condition(result, success); err != nil {
			return Error, err
		}
	}
	if failure != "" {
		if failed, err = condition(result, failure); err != nil {
			return Error, err
		}
	}
	switch {
	case success == "" && failure == "":
		return Successful, nil
	case success != "" && failure == "":
		failed = !ok
	case success == "" && failure != "":
		ok = !failed
	}
	switch {
	case failed:
		return Failed, nil
	case !ok:
		return Inconclusive, nil
	}
	return Successful, nil
}

// condition is Argo's EvalCondition with the environment it gives.
func condition(result any, cond string) (bool, error) {
	env := map[string]any{
		"result": result,
		"isNaN":  math.IsNaN,
		"isInf":  func(f float64) bool { return math.IsInf(f, 0) },
		"isNil":  func(any) bool { return result == nil },
	}
	program, err := expr.Compile(cond, expr.Env(env))
	if err != nil {
		return false, err
	}
	out, err := expr.Run(program, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expected bool, but got %T", out)
	}
	return b, nil
}
