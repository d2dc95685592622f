package configs

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"gopkg.in/yaml.v3"
)

// DefaultPromQL is the default of the promql block.
var DefaultPromQL = PromQLConfig{
	Timeout:          Duration(10 * time.Second),
	HTTPClientConfig: commoncfg.DefaultHTTPClientConfig,
}

// PromQLConfig says where signals defined by queries are evaluated: any
// server with the Prometheus HTTP API (Prometheus, Thanos, Mimir,
// VictoriaMetrics).
type PromQLConfig struct {
	URL              string                     `yaml:"url"`
	Timeout          Duration                   `yaml:"timeout"`
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *PromQLConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultPromQL
	type plain PromQLConfig
	return n.Decode((*plain)(c))
}

// QueryConfig defines a signal by PromQL instead of pushed data. Each query
// is a Go template evaluated once per cohort per tick, with .Service,
// .Version and .Window (the evaluation interval, like "10s"); its result
// must be a scalar or a single-element vector: the count in that window.
type QueryConfig struct {
	Total string `yaml:"total" json:"total"`
	Bad   string `yaml:"bad" json:"bad"`
}

// QueryParams are what a signal's query templates can use.
type QueryParams struct {
	Service, Version, Window string
}

// Render expands a query template.
func Render(tmpl string, p QueryParams) (string, error) {
	t, err := template.New("query").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return "", err
	}
	return b.String(), nil
}

// InputMetric is the metric name a signal's samples arrive under: its
// configured metric, or for a query-defined signal a name of its own that
// only the PromQL poller produces.
func InputMetric(g GuardConfig, s SignalConfig) string {
	if s.Query != nil {
		return "rollguard:promql:" + g.Name + ":" + s.Name
	}
	return s.Metric
}

// InputMetrics are all the metrics a signal reads: its input metric, and
// for a data-integrity signal (or a throughput signal that sets it) the
// metric that counts its requests.
func InputMetrics(g GuardConfig, s SignalConfig) []string {
	if (s.Type == SignalDataIntegrity || s.Type == SignalThroughput && s.TotalMetric != "") && s.Query == nil {
		return []string{s.Metric, s.TotalMetric}
	}
	return []string{InputMetric(g, s)}
}

func (c *Config) validatePromQL() []fieldError {
	var errs []fieldError
	uses := false
	for i, g := range c.Guards {
		for j, s := range g.Signals {
			if s.Query == nil {
				continue
			}
			uses = true
			p := fmt.Sprintf("guards[%d].signals[%d].query", i, j)
			for name, q := range map[string]string{"total": s.Query.Total, "bad": s.Query.Bad} {
				if strings.TrimSpace(q) == "" {
					errs = append(errs, fieldError{p + "." + name, "is empty"})
					continue
				}
				if _, err := Render(q, QueryParams{Service: "s", Version: "v", Window: "10s"}); err != nil {
					errs = append(errs, fieldError{p + "." + name, "invalid template: " + err.Error()})
				}
			}
		}
	}
	if c.PromQL.URL == "" {
		if uses {
			errs = append(errs, fieldError{"promql.url", "is empty, but a signal is defined by a query"})
		}
		return errs
	}
	if u, err := url.Parse(c.PromQL.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fieldError{"promql.url", fmt.Sprintf("%q is not an http(s) URL", c.PromQL.URL)})
	}
	if c.PromQL.Timeout <= 0 {
		errs = append(errs, fieldError{"promql.timeout", "must be > 0"})
	}
	if err := c.PromQL.HTTPClientConfig.Validate(); err != nil {
		errs = append(errs, fieldError{"promql", err.Error()})
	}
	return errs
}
