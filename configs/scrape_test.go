package configs

import (
	"reflect"
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"gopkg.in/yaml.v3"
)

// defaultScrape spells the documented scrape defaults out rather than reading
// DefaultScrapeConfig, so that changing a default fails here.
func defaultScrape(job string) ScrapeConfig {
	return ScrapeConfig{
		JobName:          job,
		ScrapeInterval:   Duration(10 * time.Second),
		ScrapeTimeout:    Duration(10 * time.Second),
		MetricsPath:      "/metrics",
		Scheme:           "http",
		BodySizeLimit:    16 << 20,
		ScrapeProtocols:  []string{"PrometheusProto", "OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4"},
		HTTPClientConfig: commoncfg.HTTPClientConfig{FollowRedirects: true, EnableHTTP2: true},
	}
}

func TestScrapeConfigValues(t *testing.T) {
	before := []any{DefaultScrapeConfig, DefaultScrapeTimeout, DefaultFileSDConfig}
	full := defaultScrape("checkout")
	full.ScrapeInterval, full.ScrapeTimeout = Duration(30*time.Second), Duration(5*time.Second)
	full.MetricsPath, full.Scheme, full.HonorLabels = "/internal/metrics", "https", true
	full.Params = map[string][]string{"format": {"prometheus"}}
	full.ScrapeProtocols = []string{"PrometheusText0.0.4"}
	full.BodySizeLimit = 512 << 10
	full.StaticConfigs = []StaticConfig{
		{Targets: []string{"10.0.0.1:8080", "[::1]:8080"}, Labels: map[string]string{"version": "v1", "__metrics_path__": "/m"}},
		{Targets: []string{"canary:8080"}},
	}
	full.FileSDConfigs = []FileSDConfig{
		{Files: []string{"/etc/rollguard/targets/*.json"}, RefreshInterval: Duration(time.Minute)},
		{Files: []string{"a.yml", "b.yaml"}, RefreshInterval: Duration(5 * time.Second)},
	}
	full.HTTPClientConfig.BasicAuth = &commoncfg.BasicAuth{Username: "rollguard", Password: "s3cret"}
	full.HTTPClientConfig.TLSConfig = commoncfg.TLSConfig{CAFile: "/etc/rollguard/ca.pem", ServerName: "app.internal"}

	short := defaultScrape("fast")
	short.ScrapeInterval, short.ScrapeTimeout = Duration(2*time.Second), Duration(2*time.Second)
	bearer := defaultScrape("bearer")
	bearer.HTTPClientConfig.Authorization = &commoncfg.Authorization{Type: "Bearer", Credentials: "t0ken"}

	cfg, err := Parse([]byte(`
scrape_configs:
  - job_name: checkout
    scrape_interval: 30s
    scrape_timeout: 5s
    metrics_path: /internal/metrics
    scheme: https
    params: {format: [prometheus]}
    honor_labels: true
    scrape_protocols: [PrometheusText0.0.4]
    body_size_limit: 512KiB
    basic_auth: {username: rollguard, password: s3cret}
    tls_config: {ca_file: /etc/rollguard/ca.pem, server_name: app.internal}
    static_configs:
      - targets: ["10.0.0.1:8080", "[::1]:8080"]
        labels: {version: v1, __metrics_path__: /m}
      - targets: [canary:8080]
    file_sd_configs:
      - files: [/etc/rollguard/targets/*.json]
      - files: [a.yml, b.yaml]
        refresh_interval: 5s
  - job_name: minimal
  - job_name: fast
    scrape_interval: 2s
  - job_name: bearer
    bearer_token: t0ken
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ScrapeConfig{full, defaultScrape("minimal"), short, bearer}
	if len(cfg.ScrapeConfigs) != len(want) {
		t.Fatalf("%d scrape configs, want %d", len(cfg.ScrapeConfigs), len(want))
	}
	for i := range want {
		if got := cfg.ScrapeConfigs[i]; !reflect.DeepEqual(got, want[i]) {
			t.Errorf("scrape_configs[%d]\n got: %+v\nwant: %+v", i, got, want[i])
		}
	}
	after := []any{DefaultScrapeConfig, DefaultScrapeTimeout, DefaultFileSDConfig}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("Parse changed the package defaults\nbefore: %+v\n after: %+v", before, after)
	}
}

// Secrets of the scrape client marshal redacted, so the configuration can be
// shown (the API, check config) without leaking them.
func TestScrapeSecretsRedacted(t *testing.T) {
	cfg, err := Parse([]byte(`
scrape_configs:
  - job_name: a
    basic_auth: {username: u, password: hunter2}
  - job_name: b
    authorization: {credentials: t0psecret}
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg.ScrapeConfigs)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "hunter2") || strings.Contains(s, "t0psecret") || strings.Count(s, "<secret>") != 2 {
		t.Errorf("marshalled scrape configs leak or lose secrets:\n%s", s)
	}
}

// Each bad scrape configuration is refused with the exact message that names
// the field and its line.
func TestScrapeConfigBad(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"missing job name", `
scrape_configs:
  - scrape_interval: 5s
`, "scrape_configs[0].job_name: is empty (line 3)"},
		{"duplicate job name", `
scrape_configs:
  - job_name: app
  - job_name: app
`, `scrape_configs[1].job_name: "app" is already used by scrape_configs[0] (line 4)`},
		{"timeout above interval", `
scrape_configs:
  - job_name: app
    scrape_timeout: 20s
`, "scrape_configs[0].scrape_timeout: must be <= scrape_interval (10s) (line 4)"},
		{"zero interval", `
scrape_configs:
  - job_name: app
    scrape_interval: 0s
`, "scrape_configs[0].scrape_interval: must be > 0 (line 4)"},
		{"invalid interval", `
scrape_configs:
  - job_name: app
    scrape_interval: often
`, `scrape_configs[0].scrape_interval: invalid duration "often": use a number and a unit, like 30s or 5m (line 4)`},
		{"relative metrics path", `
scrape_configs:
  - job_name: app
    metrics_path: metrics
`, `scrape_configs[0].metrics_path: "metrics" must start with '/' (line 4)`},
		{"unknown scheme", `
scrape_configs:
  - job_name: app
    scheme: ftp
`, `scrape_configs[0].scheme: unknown scheme "ftp" (known: http, https) (line 4)`},
		{"unknown protocol", `
scrape_configs:
  - job_name: app
    scrape_protocols: [PrometheusProto, JSON]
`, `scrape_configs[0].scrape_protocols[1]: unknown protocol "JSON" (known: PrometheusProto, OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText0.0.4) (line 4)`},
		{"protocol twice", `
scrape_configs:
  - job_name: app
    scrape_protocols: [PrometheusProto, PrometheusProto]
`, `scrape_configs[0].scrape_protocols[1]: "PrometheusProto" is listed twice (line 4)`},
		{"no protocols", `
scrape_configs:
  - job_name: app
    scrape_protocols: []
`, "scrape_configs[0].scrape_protocols: needs at least one protocol (line 4)"},
		{"zero body size limit", `
scrape_configs:
  - job_name: app
    body_size_limit: 0
`, "scrape_configs[0].body_size_limit: must be > 0 (line 4)"},
		{"invalid body size limit", `
scrape_configs:
  - job_name: app
    body_size_limit: 16 megs
`, `scrape_configs[0].body_size_limit: invalid size "16 megs": use bytes or a number and a unit, like 16MiB (line 4)`},
		{"target with a scheme", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["localhost:9090", "http://app:8080/metrics"]
`, `scrape_configs[0].static_configs[0].targets[1]: "http://app:8080/metrics" must be host:port, without a scheme, path or spaces (line 5)`},
		{"target without a port", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [app]
`, `scrape_configs[0].static_configs[0].targets[0]: "app" must be host:port (line 5)`},
		{"target with a bad port", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["app:99999"]
`, `scrape_configs[0].static_configs[0].targets[0]: "app:99999" has an invalid port: use 1..65535 (line 5)`},
		{"invalid label name", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["app:1"]
        labels: {service.version: v1}
`, `scrape_configs[0].static_configs[0].labels.service.version: "service.version" is not a valid label name (letters, digits and '_', not starting with a digit) (line 6)`},
		{"reserved label", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["app:1"]
        labels:
          __address__: other:1
`, `scrape_configs[0].static_configs[0].labels.__address__: label names starting with "__" are reserved (only __scheme__ and __metrics_path__ may be set) (line 7)`},
		{"bad scheme label", `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["app:1"]
        labels: {__scheme__: gopher}
`, `scrape_configs[0].static_configs[0].labels.__scheme__: unknown scheme "gopher" (known: http, https) (line 6)`},
		{"file_sd without files", `
scrape_configs:
  - job_name: app
    file_sd_configs:
      - refresh_interval: 1m
`, "scrape_configs[0].file_sd_configs[0].files: needs at least one file or glob (line 5)"},
		{"file_sd with another extension", `
scrape_configs:
  - job_name: app
    file_sd_configs:
      - files: [targets.txt]
`, `scrape_configs[0].file_sd_configs[0].files[0]: "targets.txt" must end in .json, .yml or .yaml (line 5)`},
		{"file_sd with a bad glob", `
scrape_configs:
  - job_name: app
    file_sd_configs:
      - files: ["[.json"]
`, `scrape_configs[0].file_sd_configs[0].files[0]: "[.json" is not a valid glob: syntax error in pattern (line 5)`},
		{"file_sd refresh zero", `
scrape_configs:
  - job_name: app
    file_sd_configs:
      - files: [t.json]
        refresh_interval: 0s
`, "scrape_configs[0].file_sd_configs[0].refresh_interval: must be > 0 (line 6)"},
		{"basic auth and bearer", `
scrape_configs:
  - job_name: app
    basic_auth: {username: u, password: p}
    bearer_token: t
`, "scrape_configs[0]: at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured (line 3)"},
		{"unknown key", `
scrape_configs:
  - job_name: app
    scrape_intervall: 5s
`, `scrape_configs[0].scrape_intervall: unknown field "scrape_intervall" (line 4)`},
		{"unknown key in basic_auth", `
scrape_configs:
  - job_name: app
    basic_auth: {user: u}
`, `scrape_configs[0].basic_auth.user: unknown field "user" (line 4)`},
		{"unknown key in a static config", `
scrape_configs:
  - job_name: app
    static_configs:
      - target: ["app:1"]
`, `scrape_configs[0].static_configs[0].target: unknown field "target" (line 5)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg.ScrapeConfigs)
			}
			if cfg != nil {
				t.Error("Parse returned a config with its error")
			}
			if err.Error() != tt.want {
				t.Errorf("wrong error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		back string
	}{
		{"16MiB", 16 << 20, "16MiB"},
		{"16MB", 16 << 20, "16MiB"},
		{"512KiB", 512 << 10, "512KiB"},
		{"1GiB", 1 << 30, "1GiB"},
		{"1048576", 1 << 20, "1MiB"},
		{"1000", 1000, "1000B"},
		{"1500KiB", 1500 << 10, "1500KiB"},
		{"7B", 7, "7B"},
	}
	for _, tt := range tests {
		var b ByteSize
		if err := yaml.Unmarshal([]byte(tt.in), &b); err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if b != tt.want || b.String() != tt.back {
			t.Errorf("%s = %d (%s), want %d (%s)", tt.in, b, b, tt.want, tt.back)
		}
	}
	for _, bad := range []string{"-1MiB", "MiB", "1.5MiB", "1TiB", "99999999999GiB", "[1]"} {
		var b ByteSize
		if err := yaml.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("%s accepted as %d", bad, b)
		}
	}
}

// http_headers is part of the scrape client's settings. Known bug: the
// strict key check (strict.go) panics on prometheus/common's Headers, whose
// map is inlined; the test skips while the bug stands and fails once fixed,
// so that this note goes with the fix.
func TestScrapeHTTPHeaders(t *testing.T) {
	var (
		cfg      *Config
		err      error
		panicked any
	)
	func() {
		defer func() { panicked = recover() }()
		cfg, err = Parse([]byte(`
scrape_configs:
  - job_name: app
    http_headers:
      X-Scope: {values: [tenant-1]}
`))
	}()
	if panicked != nil {
		t.Fatalf("Parse panics on http_headers: %v", panicked)
	}
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.ScrapeConfigs[0].HTTPClientConfig.HTTPHeaders
	if h == nil || len(h.Headers["X-Scope"].Values) != 1 || h.Headers["X-Scope"].Values[0] != "tenant-1" {
		t.Errorf("http_headers = %+v", h)
	}
}
