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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"

	"github.com/expr-lang/expr"
	"gopkg.in/yaml.v3"
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

// Template is the part of an AnalysisTemplate with one web metric that a
// run uses.
type Template struct {
	Name string
	// Args are the template's arguments with their default values.
	Args              map[string]string
	Count             *int
	FailureLimit      int
	InconclusiveLimit int
	// ConsecutiveErrorLimit is Argo's default, 4, unless the template says.
	ConsecutiveErrorLimit int
	URL                   string // with {{args.NAME}} placeholders
	Headers               map[string]string
	SuccessCondition      string
	FailureCondition      string
}

// ParseTemplates reads the AnalysisTemplates of a YAML stream (other kinds
// are skipped); each must have exactly one metric, with the web provider.
func ParseTemplates(stream []byte) ([]Template, error) {
	var out []Template
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	for {
		var doc struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct {
				Args []struct {
					Name  string
					Value *string
				}
				Metrics []struct {
					Name                  string
					Count                 *int
					FailureLimit          int    `yaml:"failureLimit"`
					InconclusiveLimit     int    `yaml:"inconclusiveLimit"`
					ConsecutiveErrorLimit *int   `yaml:"consecutiveErrorLimit"`
					SuccessCondition      string `yaml:"successCondition"`
					FailureCondition      string `yaml:"failureCondition"`
					Provider              struct {
						Web *struct {
							URL     string
							Headers []struct{ Key, Value string }
						}
					}
				}
			}
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if doc.Kind != "AnalysisTemplate" {
			continue
		}
		if len(doc.Spec.Metrics) != 1 || doc.Spec.Metrics[0].Provider.Web == nil {
			return nil, fmt.Errorf("template %s: want one web metric", doc.Metadata.Name)
		}
		m := doc.Spec.Metrics[0]
		t := Template{Name: doc.Metadata.Name, Args: map[string]string{}, Count: m.Count, FailureLimit: m.FailureLimit,
			InconclusiveLimit: m.InconclusiveLimit, ConsecutiveErrorLimit: 4, URL: m.Provider.Web.URL, Headers: map[string]string{},
			SuccessCondition: m.SuccessCondition, FailureCondition: m.FailureCondition}
		if m.ConsecutiveErrorLimit != nil {
			t.ConsecutiveErrorLimit = *m.ConsecutiveErrorLimit
		}
		for _, a := range doc.Spec.Args {
			if a.Value != nil {
				t.Args[a.Name] = *a.Value
			}
		}
		for _, h := range m.Provider.Web.Headers {
			t.Headers[h.Key] = h.Value
		}
		out = append(out, t)
	}
}

var argRe = regexp.MustCompile(`\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}`)

// Metric is the template's metric with args (over the defaults) in place.
func (t Template) Metric(args map[string]string) (Metric, error) {
	var missing error
	sub := func(s string) string {
		return argRe.ReplaceAllStringFunc(s, func(m string) string {
			name := argRe.FindStringSubmatch(m)[1]
			if v, ok := args[name]; ok {
				return v
			}
			if v, ok := t.Args[name]; ok {
				return v
			}
			missing = fmt.Errorf("template %s: argument %q has no value", t.Name, name)
			return ""
		})
	}
	m := Metric{URL: sub(t.URL), Headers: map[string]string{}, SuccessCondition: t.SuccessCondition, FailureCondition: t.FailureCondition}
	for k, v := range t.Headers {
		m.Headers[k] = sub(v)
	}
	return m, missing
}

// The phases of a run that has not ended.
const (
	Pending = "Pending"
	Running = "Running"
)

// Run is an AnalysisRun of one template: its measurements so far.
type Run struct {
	T                                      Template
	Measurements                           []string
	failed, inconclusive, consecutiveError int
}

// Add records a measurement's phase.
func (r *Run) Add(phase string) {
	r.Measurements = append(r.Measurements, phase)
	switch phase {
	case Failed:
		r.failed++
	case Inconclusive:
		r.inconclusive++
	}
	if phase == Error {
		r.consecutiveError++
	} else {
		r.consecutiveError = 0
	}
}

// Phase is Argo's assessMetricStatus: failures over failureLimit fail the
// run, inconclusive measurements over inconclusiveLimit make it
// Inconclusive, consecutive errors over their limit an Error; once count
// measurements are taken it is Successful; a run without a count is
// Running until terminated (the rollout ended), and then Successful.
func (r *Run) Phase(terminating bool) string {
	switch {
	case len(r.Measurements) == 0:
		return Pending
	case r.failed > r.T.FailureLimit:
		return Failed
	case r.inconclusive > r.T.InconclusiveLimit:
		return Inconclusive
	case r.consecutiveError > r.T.ConsecutiveErrorLimit:
		return Error
	case r.T.Count != nil && len(r.Measurements) >= *r.T.Count:
		return Successful
	case terminating:
		return Successful
	}
	return Running
}
