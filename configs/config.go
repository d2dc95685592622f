// Package configs owns rollguard's configuration: the YAML types, their
// defaults, strict loading (unknown keys are errors) and validation whose
// errors name the field path and the line. It knows nothing of how the
// configuration is used.
package configs

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Baseline modes.
const (
	// BaselineAuto compares against the stable version while it reports
	// (cohort) and falls back to before/after when it does not: an
	// all-at-once or blue/green release, or a stable version gone silent.
	BaselineAuto = "auto"
	// BaselineCohort compares the candidate with the stable version over the same ticks.
	BaselineCohort = "cohort"
	// BaselineBeforeAfter compares the candidate with the service's own
	// window before the deployment.
	BaselineBeforeAfter = "before_after"
)

// BaselineConfig says what a candidate is compared against.
type BaselineConfig struct {
	Mode string `yaml:"mode" json:"mode"`
	// Window is the stretch before the deployment a before/after
	// comparison uses; it assumes that window is representative.
	Window Duration `yaml:"window" json:"window"`
	// MinRequests is the smallest pre-deployment window worth comparing
	// with; a smaller one is no_data, never a pass.
	MinRequests float64 `yaml:"min_requests" json:"min_requests"`
	// Watch is how long a before/after comparison watches the new version
	// before its deployment may end as promoted: the previous version is
	// silent from the start, so global.promotion_hold alone would end the
	// watch after a few minutes.
	Watch Duration `yaml:"watch" json:"watch"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *BaselineConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultBaseline
	type plain BaselineConfig
	return n.Decode((*plain)(c))
}

// Signal types a guard can watch.
const (
	SignalErrorRatio = "error_ratio"
	SignalLatency    = "latency"
	// SignalSLO checks the candidate's error ratio against an absolute
	// objective with the multiwindow, multi-burn-rate rule.
	SignalSLO = "slo"
	// SignalSaturation counts a gauge's readings above Level (a pool in use,
	// a queue's depth) against all its readings.
	SignalSaturation = "saturation"
	// SignalDataIntegrity counts data-integrity failures (partial writes,
	// failed transactions: a counter, Metric) per request (TotalMetric's
	// count); the playbook asks for a data audit when it moves.
	SignalDataIntegrity = "data_integrity"
	// SignalThroughput compares the candidate's share of successful
	// requests with the traffic weight its deployment declares: a canary
	// that serves less than its share (crashing, failing health checks,
	// taken out of the load balancer) has regressed.
	SignalThroughput = "throughput"
)

// RuleConfig makes a signal a rule-based check, as Argo Rollouts and
// Flagger users know them: every interval the candidate fails the check if
// its value is above Max, or above MaxRatio times the baseline's; the
// signal regresses after FailureLimit failed checks (consecutive or in
// total). Its false-alarm rate is not controlled: see docs/detection.md.
type RuleConfig struct {
	Max          float64  `yaml:"max" json:"max,omitempty"`
	MaxRatio     float64  `yaml:"max_ratio" json:"max_ratio,omitempty"`
	Interval     Duration `yaml:"interval" json:"interval"`
	FailureLimit int      `yaml:"failure_limit" json:"failure_limit"`
	Consecutive  bool     `yaml:"consecutive" json:"consecutive"`
}

// DefaultRule is Argo's usual analysis: 3 consecutive failed 1-minute checks.
var DefaultRule = RuleConfig{Interval: Duration(time.Minute), FailureLimit: 3, Consecutive: true}

// UnmarshalYAML sets the defaults before decoding.
func (c *RuleConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultRule
	type plain RuleConfig
	return n.Decode((*plain)(c))
}

// Defaults. The error-ratio defaults follow the OpenTelemetry HTTP semantic
// conventions, so the common case needs no query.
var (
	DefaultGlobal = GlobalConfig{
		EvaluationInterval: Duration(10 * time.Second),
		NoDataTimeout:      Duration(2 * time.Minute),
		PromotionHold:      Duration(10 * time.Minute),
		NewVersionHold:     Duration(time.Minute),
	}
	DefaultNATS = NATSConfig{
		SubjectPrefix: "rollguard",
		Stream:        "ROLLGUARD",
		Replicas:      1,
		Embedded:      EmbeddedNATS{Host: "127.0.0.1", Port: 4222},
	}
	DefaultOTLP = OTLPConfig{
		HTTPListenAddress: ":4318",
		GRPCListenAddress: ":4317",
		MaxRequestBytes:   16 << 20,
	}
	DefaultLimits = LimitsConfig{
		MaxLabelsPerSeries:     64,
		MaxLabelValueLength:    2048,
		MaxSeries:              200_000,
		MaxSeriesPerVersion:    20_000,
		MaxTimestampAhead:      Duration(10 * time.Minute),
		MaxPointsPerRequest:    500_000,
		MaxBucketsPerHistogram: 2048,
		MaxJSONDepth:           64,
	}
	DefaultBaseline = BaselineConfig{
		Mode:        BaselineAuto,
		Window:      Duration(30 * time.Minute),
		MinRequests: 1000,
		Watch:       Duration(time.Hour),
	}
	DefaultGuard = GuardConfig{
		ServiceLabel: "service.name",
		VersionLabel: "service.version",
		// OpenTelemetry's resource attributes first, then Prometheus's.
		InstanceLabels: []string{"k8s.pod.name", "service.instance.id", "pod", "instance", "host.name"},
		Alpha:          0.01,
		Baseline:       DefaultBaseline,
	}
	DefaultSignal = SignalConfig{
		Type:         SignalErrorRatio,
		Metric:       "http.server.request.duration",
		StatusLabel:  "http.response.status_code",
		BadStatusMin: 500,
		Tolerance:    0.1,
	}
)

// Modes of the daemon.
const (
	// ModeStandalone ingests, detects and acts; it also merges the partial
	// aggregates sidecars publish on <subject_prefix>.agg.<guard>.
	ModeStandalone = "standalone"
	// ModeSidecar ingests locally and publishes per-tick partial aggregates
	// to NATS; it neither detects nor acts.
	ModeSidecar = "sidecar"
)

// SidecarConfig configures sidecar mode.
type SidecarConfig struct {
	// ID names this sidecar in the id of every message it publishes, so
	// that a retried publish is deduplicated; empty means the hostname.
	ID string `yaml:"id"`
}

// Config is the whole configuration file.
type Config struct {
	// Mode is standalone (the default) or sidecar.
	Mode          string         `yaml:"mode"`
	Sidecar       SidecarConfig  `yaml:"sidecar"`
	Global        GlobalConfig   `yaml:"global"`
	NATS          NATSConfig     `yaml:"nats"`
	OTLP          OTLPConfig     `yaml:"otlp"`
	Web           WebConfig      `yaml:"web"`
	Limits        LimitsConfig   `yaml:"limits"`
	PromQL        PromQLConfig   `yaml:"promql"`
	ScrapeConfigs []ScrapeConfig `yaml:"scrape_configs"`
	Guards        []GuardConfig  `yaml:"guards"`
	// PlaybookDefaults is the playbook every guard runs unless its own
	// playbook block overrides part of it.
	PlaybookDefaults GlobalPlaybookConfig `yaml:"playbook"`
	Cluster          ClusterConfig        `yaml:"cluster"`
}

// GlobalConfig holds settings shared by every guard.
type GlobalConfig struct {
	// EvaluationInterval is the tick: how often every guard is evaluated.
	EvaluationInterval Duration `yaml:"evaluation_interval"`
	// NoDataTimeout is how long a cohort of an active deployment may stay
	// silent before its verdict becomes no_data.
	NoDataTimeout Duration `yaml:"no_data_timeout"`
	// PromotionHold: a deployment ends as promoted once its previous version
	// has had no traffic this long while the new one served and did not regress.
	PromotionHold Duration `yaml:"promotion_hold"`
	// NewVersionHold: a version seen in traffic but never announced
	// supersedes a deployment under way only once it has served for this
	// long (version churn, e.g. a new service.version every few seconds,
	// cannot hide the canary being judged). Announced versions act at once.
	NewVersionHold Duration `yaml:"new_version_hold"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *GlobalConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultGlobal
	type plain GlobalConfig
	return n.Decode((*plain)(c))
}

// NATSConfig says where commands go. With no URL an embedded server is started.
type NATSConfig struct {
	URL             string              `yaml:"url"`
	User            string              `yaml:"user"`
	Password        commoncfg.Secret    `yaml:"password"`
	Token           commoncfg.Secret    `yaml:"token"`
	CredentialsFile string              `yaml:"credentials_file"`
	TLS             commoncfg.TLSConfig `yaml:"tls"`
	// SubjectPrefix is the first token of every subject rollguard uses.
	SubjectPrefix string `yaml:"subject_prefix"`
	// Stream is the JetStream stream that holds commands, results, status and incident events.
	Stream   string       `yaml:"stream"`
	Embedded EmbeddedNATS `yaml:"embedded"`
	// Replicas of rollguard's streams and KV buckets: 3 on a three-node cluster.
	Replicas int `yaml:"replicas"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *NATSConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultNATS
	type plain NATSConfig
	return atKey(n, "tls", n.Decode((*plain)(c)))
}

// atKey gives an error from a library's own unmarshaler (which knows no
// lines) the line of the key it came from.
func atKey(n *yaml.Node, key string, err error) error {
	var te *yaml.TypeError
	var le *lineError
	if err == nil || errors.As(err, &te) || errors.As(err, &le) {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return &lineError{line: n.Content[i].Line, msg: err.Error()}
		}
	}
	return err
}

// EmbeddedNATS configures the in-process server used when no URL is set.
type EmbeddedNATS struct {
	Host string `yaml:"host"`
	// Port -1 picks a free port.
	Port int `yaml:"port"`
}

// OTLPConfig configures the OTLP receivers. An empty address disables that listener.
type OTLPConfig struct {
	HTTPListenAddress string `yaml:"http_listen_address"`
	GRPCListenAddress string `yaml:"grpc_listen_address"`
	MaxRequestBytes   int64  `yaml:"max_request_bytes"`
	// TLS and authentication of both OTLP listeners.
	ServerConfig `yaml:",inline"`
}

// WebConfig secures the web listener (API, remote write, /metrics). Its
// address is the --web.listen-address flag. /-/healthy and /-/ready stay
// open for probes.
type WebConfig struct {
	ServerConfig `yaml:",inline"`
}

// LimitsConfig bounds what any input may make rollguard hold. Over a limit a
// series is dropped and counted in rollguard_*_dropped_total{reason}; the
// rest of the request is kept.
type LimitsConfig struct {
	MaxLabelsPerSeries  int `yaml:"max_labels_per_series"`
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// MaxSeries bounds the cumulative series each input tracks to turn
	// totals into increments (only series of guarded metrics are tracked).
	MaxSeries int `yaml:"max_series"`
	// MaxSeriesPerVersion bounds the series one (guard, version) may hold
	// of MaxSeries, so that junk series of one version cannot starve
	// another version (the canary) of room.
	MaxSeriesPerVersion int `yaml:"max_series_per_version"`
	// MaxTimestampAhead: a point stamped further than this after its
	// receive time is dropped (reason too_far_ahead) and changes no state.
	MaxTimestampAhead Duration `yaml:"max_timestamp_ahead"`
	// MaxPointsPerRequest: a request carrying more data points (or
	// samples) than this is refused whole with 413 before it is kept.
	MaxPointsPerRequest int `yaml:"max_points_per_request"`
	// MaxBucketsPerHistogram: a histogram point with more buckets (or
	// bounds) is dropped (reason too_many_buckets).
	MaxBucketsPerHistogram int `yaml:"max_buckets_per_histogram"`
	// MaxJSONDepth: an OTLP/JSON body nested deeper is refused with 400
	// before it is decoded.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxConcurrentDecodes: requests decoded at once across the OTLP and
	// remote-write receivers; further ones wait for a slot (and give up
	// with 503 when their client goes away). 0: two per CPU.
	MaxConcurrentDecodes int `yaml:"max_concurrent_decodes"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *LimitsConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultLimits
	type plain LimitsConfig
	return n.Decode((*plain)(c))
}

// UnmarshalYAML sets the defaults before decoding.
func (c *OTLPConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultOTLP
	type plain OTLPConfig
	return n.Decode((*plain)(c))
}

// GuardConfig guards one service: which signals to compare between the
// stable and the candidate version, at which false-alarm level, and which
// feature flags a deployment of it can kill.
type GuardConfig struct {
	Name    string `yaml:"name" json:"name"`
	Service string `yaml:"service" json:"service"`
	// ServiceLabel is the attribute or label that names the service.
	ServiceLabel string `yaml:"service_label" json:"service_label"`
	// VersionLabel is the attribute or label that carries the version (the cohort).
	VersionLabel string `yaml:"version_label" json:"version_label"`
	// InstanceLabels name the pod (instance) a sample comes from: the first
	// present is used. The tests take a pod × tick as their unit of
	// independence and learn the counts' dispersion from the variation
	// between a cohort's pods; samples with none of these labels make their
	// cohort one block (docs/detection.md, "What the test assumes").
	InstanceLabels []string `yaml:"instance_labels" json:"instance_labels"`
	// Alpha is the guard's false-alarm level, split evenly across its signals.
	Alpha float64 `yaml:"alpha" json:"alpha"`
	// Burst is the longest excursion of one source — the only pod of a
	// candidate with fewer than three, a cohort without pod labels, the
	// whole service compared before/after — that is not taken for a
	// version effect: a regression there must outlast it (the burst
	// budget, docs/detection.md). Unset: 6 evaluation intervals (a minute
	// at the default 10 s); 0 switches the budget off.
	Burst *Duration `yaml:"burst" json:"burst,omitempty"`
	// Flags are killed on a regression when the deployment declares none.
	Flags []string `yaml:"flags" json:"flags"`
	// Baseline says what the candidate is compared against.
	Baseline BaselineConfig `yaml:"baseline" json:"baseline"`
	Signals  []SignalConfig `yaml:"signals" json:"signals"`
	// Playbook overrides the global playbook settings for this guard.
	Playbook *GuardPlaybookConfig `yaml:"playbook" json:"-"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *GuardConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultGuard
	type plain GuardConfig
	return n.Decode((*plain)(c))
}

// SignalConfig is one thing to compare between cohorts.
type SignalConfig struct {
	Name string `yaml:"name" json:"name"`
	Type string `yaml:"type" json:"type"`
	// Metric is the histogram or counter whose count is the number of requests.
	Metric string `yaml:"metric" json:"metric"`
	// StatusLabel carries the response status; BadStatusMin and above are bad.
	StatusLabel  string `yaml:"status_label" json:"status_label"`
	BadStatusMin int    `yaml:"bad_status_min" json:"bad_status_min"`
	// Tolerance is how much worse the candidate may be before it counts as a
	// regression: the null hypothesis is ratio <= 1 + tolerance.
	Tolerance float64 `yaml:"tolerance" json:"tolerance"`
	// Quantiles, for a latency signal: the baseline quantiles whose bucket
	// boundary splits fast from slow requests (one test each, α split).
	Quantiles []float64 `yaml:"quantiles" json:"quantiles,omitempty"`
	// Rule, when set, replaces the sequential test by a rule-based check.
	Rule *RuleConfig `yaml:"rule" json:"rule,omitempty"`
	// Objective, for an slo signal: the share of good requests promised, like 0.999.
	Objective float64 `yaml:"objective" json:"objective,omitempty"`
	// Level, for a saturation signal: readings above it are saturated.
	Level float64 `yaml:"level" json:"level,omitempty"`
	// TotalMetric, for a data_integrity signal: the histogram or counter of
	// requests the failures are counted against. For a throughput signal
	// (optional): the requests each version was sent, as the load balancer
	// or mesh counts them; the candidate's share of successful requests is
	// then compared with its realised share of these, not with the
	// declared weight.
	TotalMetric string `yaml:"total_metric" json:"total_metric,omitempty"`
	// Query, when set, defines the signal by PromQL polled every tick
	// instead of by pushed or scraped samples.
	Query *QueryConfig `yaml:"query" json:"query,omitempty"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *SignalConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultSignal
	type plain SignalConfig
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	if c.Type == SignalLatency && len(c.Quantiles) == 0 {
		c.Quantiles = []float64{0.5, 0.9, 0.99}
	}
	return nil
}

// SignalAlpha is the false-alarm level of each of the guard's signals
// that spends one (a latency signal splits it again across its
// quantiles). α is split only across the signals that spend it: an slo
// signal (burn-rate alerts) and a rule-based one control no false-alarm
// rate, so they take no share.
func (g GuardConfig) SignalAlpha() float64 {
	n := 0
	for _, s := range g.Signals {
		if s.SpendsAlpha() {
			n++
		}
	}
	if n == 0 {
		return g.Alpha
	}
	return g.Alpha / float64(n)
}

// SpendsAlpha reports whether the signal's verdict is an anytime-valid
// test at a share of the guard's α.
func (s SignalConfig) SpendsAlpha() bool { return s.Type != SignalSLO && s.Rule == nil }

// Duration is a Prometheus-style duration ("30s", "5m", "1h").
type Duration time.Duration

// UnmarshalYAML parses a Prometheus-style duration and reports the line on error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &lineError{line: n.Line, msg: "expected a duration like 30s or 5m, got a " + map[yaml.Kind]string{yaml.SequenceNode: "list", yaml.MappingNode: "mapping"}[n.Kind]}
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return &lineError{line: n.Line, msg: fmt.Sprintf("invalid duration %q: use a number and a unit, like 30s or 5m", s)}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in its short form.
func (d Duration) MarshalYAML() (any, error) { return model.Duration(d).String(), nil }

func (d Duration) String() string { return model.Duration(d).String() }

// Load reads and validates a configuration file.
func Load(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(b)
}

// Parse decodes and validates a configuration document. Unknown keys, wrong
// types and invalid values are errors naming the field path and the line.
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg := &Config{Mode: ModeStandalone, Global: DefaultGlobal, NATS: DefaultNATS, OTLP: DefaultOTLP, Limits: DefaultLimits, PromQL: DefaultPromQL, PlaybookDefaults: DefaultPlaybook, Cluster: DefaultCluster}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("configuration is empty")
	}
	doc := root.Content[0]
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return nil, fmt.Errorf("configuration is empty")
	}
	if n := countNodes(doc, maxNodes); n > maxNodes {
		return nil, fmt.Errorf("configuration expands to more than %d YAML nodes through aliases", maxNodes)
	}
	if err := checkKeys(doc, typeOf(cfg), ""); err != nil {
		return nil, err
	}
	if err := doc.Decode(cfg); err != nil {
		return nil, decodeError(doc, err)
	}
	if cfg.Sidecar.ID == "" {
		cfg.Sidecar.ID, _ = os.Hostname() // validate says so if it is unknown
	}
	if errs := cfg.validate(); len(errs) > 0 {
		fe := errs[0]
		return nil, fmt.Errorf("%s: %s (line %d)", fe.path, fe.msg, lineOf(doc, fe.path))
	}
	return cfg, nil
}

type fieldError struct{ path, msg string }

// maxNodes bounds the document after alias expansion: aliases fanned out
// over guards and signals would otherwise cost minutes of CPU.
const maxNodes = 100_000

func countNodes(n *yaml.Node, budget int) int {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	count := 1
	for _, c := range n.Content {
		if count > budget {
			break
		}
		count += countNodes(c, budget-count)
	}
	return count
}

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	hostRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,253}$`)
	tokenRe = regexp.MustCompile(`^[^.*>\s]+$`)
)

func (c *Config) validate() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	switch c.Mode {
	case ModeStandalone:
	case ModeSidecar:
		if c.NATS.URL == "" {
			add("nats.url", "is required in sidecar mode: the NATS server the central rollguard reads aggregates from")
		}
	default:
		add("mode", "%q must be one of standalone, sidecar", c.Mode)
	}
	if !hostRe.MatchString(c.Sidecar.ID) {
		if c.Sidecar.ID == "" {
			add("sidecar.id", "is empty and the hostname is unknown: set it")
		} else {
			add("sidecar.id", "%q must contain only letters, digits, '.', '_' and '-'", c.Sidecar.ID)
		}
	}
	if c.Global.EvaluationInterval <= 0 {
		add("global.evaluation_interval", "must be > 0")
	}
	if c.Global.PromotionHold <= 0 {
		add("global.promotion_hold", "must be > 0")
	}
	if c.Global.NoDataTimeout < c.Global.EvaluationInterval {
		add("global.no_data_timeout", "must be >= global.evaluation_interval (%s)", c.Global.EvaluationInterval)
	}
	n := c.NATS
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" {
				add("nats.url", "%q is not a NATS URL like nats://host:4222", u)
				break
			}
		}
	}
	if n.Token != "" && (n.User != "" || n.CredentialsFile != "") {
		add("nats.token", "set either token, user/password or credentials_file, not several")
	}
	if n.User != "" && n.CredentialsFile != "" {
		add("nats.credentials_file", "set either user/password or credentials_file, not both")
	}
	if !tokenRe.MatchString(n.SubjectPrefix) {
		add("nats.subject_prefix", "%q must be one NATS subject token (no '.', '*', '>' or spaces)", n.SubjectPrefix)
	}
	if !nameRe.MatchString(n.Stream) {
		add("nats.stream", "%q must contain only letters, digits, '_' and '-'", n.Stream)
	}
	if n.Embedded.Port < -1 || n.Embedded.Port > 65535 {
		add("nats.embedded.port", "must be -1 (any free port) or 0..65535")
	}
	if c.OTLP.HTTPListenAddress == "" && c.OTLP.GRPCListenAddress == "" {
		add("otlp.http_listen_address", "is empty, and so is otlp.grpc_listen_address: set at least one")
	}
	errs = append(errs, c.OTLP.ServerConfig.validate("otlp")...)
	errs = append(errs, c.Web.ServerConfig.validate("web")...)
	if c.Limits.MaxLabelsPerSeries <= 0 {
		add("limits.max_labels_per_series", "must be > 0")
	}
	if c.Limits.MaxLabelValueLength <= 0 {
		add("limits.max_label_value_length", "must be > 0")
	}
	if c.Limits.MaxSeries <= 0 {
		add("limits.max_series", "must be > 0")
	}
	if c.Limits.MaxSeriesPerVersion <= 0 || c.Limits.MaxSeriesPerVersion > c.Limits.MaxSeries {
		add("limits.max_series_per_version", "must be > 0 and at most limits.max_series (%d)", c.Limits.MaxSeries)
	}
	if c.Limits.MaxTimestampAhead <= 0 {
		add("limits.max_timestamp_ahead", "must be > 0")
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"max_points_per_request", c.Limits.MaxPointsPerRequest}, {"max_buckets_per_histogram", c.Limits.MaxBucketsPerHistogram},
		{"max_json_depth", c.Limits.MaxJSONDepth}} {
		if l.v <= 0 {
			add("limits."+l.name, "must be > 0")
		}
	}
	if c.Limits.MaxConcurrentDecodes < 0 {
		add("limits.max_concurrent_decodes", "must be >= 0 (0: two per CPU)")
	}
	if c.Global.NewVersionHold < 0 {
		add("global.new_version_hold", "must be >= 0")
	}
	if c.OTLP.MaxRequestBytes <= 0 {
		add("otlp.max_request_bytes", "must be > 0")
	}
	errs = append(errs, c.validateScrape()...)
	errs = append(errs, c.validatePromQL()...)
	errs = append(errs, c.validatePlaybook()...)
	errs = append(errs, c.validateCluster()...)
	names := map[string]int{}
	for i, g := range c.Guards {
		p := fmt.Sprintf("guards[%d]", i)
		switch {
		case g.Name == "":
			add(p+".name", "is empty")
		case !nameRe.MatchString(g.Name):
			add(p+".name", "%q must contain only letters, digits, '_' and '-'", g.Name)
		default:
			if j, dup := names[g.Name]; dup {
				add(p+".name", "%q is already used by guards[%d]", g.Name, j)
			}
			names[g.Name] = i
		}
		if g.Service == "" {
			add(p+".service", "is empty")
		} else if !tokenRe.MatchString(g.Service) {
			add(p+".service", "%q must be one NATS subject token (no '.', '*', '>' or spaces)", g.Service)
		}
		if g.ServiceLabel == "" {
			add(p+".service_label", "is empty")
		}
		if g.VersionLabel == "" {
			add(p+".version_label", "is empty")
		}
		if g.Burst != nil && *g.Burst < 0 {
			add(p+".burst", "must be >= 0 (0 switches the burst budget off)")
		}
		if !(g.Alpha > 0 && g.Alpha <= 0.5) {
			add(p+".alpha", "must be > 0 and <= 0.5")
		}
		for j, f := range g.Flags {
			if strings.TrimSpace(f) == "" {
				add(fmt.Sprintf("%s.flags[%d]", p, j), "is empty")
			}
		}
		if len(g.Signals) == 0 {
			add(p+".signals", "needs at least one signal")
		}
		switch g.Baseline.Mode {
		case BaselineAuto, BaselineCohort, BaselineBeforeAfter:
		default:
			add(p+".baseline.mode", "%q must be one of auto, cohort, before_after", g.Baseline.Mode)
		}
		if g.Baseline.Window <= 0 {
			add(p+".baseline.window", "must be > 0")
		}
		if g.Baseline.Watch <= 0 {
			add(p+".baseline.watch", "must be > 0")
		}
		if !(g.Baseline.MinRequests >= 0) {
			add(p+".baseline.min_requests", "must be >= 0")
		}
		signals := map[string]int{}
		for j, s := range g.Signals {
			sp := fmt.Sprintf("%s.signals[%d]", p, j)
			switch {
			case s.Name == "":
				add(sp+".name", "is empty")
			case !nameRe.MatchString(s.Name):
				add(sp+".name", "%q must contain only letters, digits, '_' and '-'", s.Name)
			default:
				if k, dup := signals[s.Name]; dup {
					add(sp+".name", "%q is already used by %s.signals[%d]", s.Name, p, k)
				}
				signals[s.Name] = j
			}
			switch s.Type {
			case SignalErrorRatio:
				if len(s.Quantiles) > 0 {
					add(sp+".quantiles", "only a latency signal has quantiles")
				}
			case SignalLatency:
				if s.Query != nil {
					add(sp+".query", "a latency signal reads histograms; define error ratios by query")
				}
				for k, q := range s.Quantiles {
					if !(q > 0 && q < 1) {
						add(fmt.Sprintf("%s.quantiles[%d]", sp, k), "must be between 0 and 1, like 0.99")
					}
				}
			case SignalSLO:
				if !(s.Objective > 0 && s.Objective < 1) {
					add(sp+".objective", "must be between 0 and 1, like 0.999")
				}
				if s.Rule != nil {
					add(sp+".rule", "an slo signal has its own burn-rate rule")
				}
			case SignalSaturation:
				if s.Level == 0 {
					add(sp+".level", "is required: readings above it count as saturated")
				}
			case SignalDataIntegrity:
				if s.TotalMetric == "" {
					add(sp+".total_metric", "is required: the requests the failures are counted against")
				}
				if s.Metric == DefaultSignal.Metric {
					add(sp+".metric", "must name the counter of integrity failures (like db.client.failed_writes), not the request histogram")
				}
			case SignalThroughput:
				if s.Rule != nil {
					add(sp+".rule", "a throughput signal has no rule form")
				}
			default:
				add(sp+".type", "unknown signal type %q (known: %s)", s.Type,
					strings.Join([]string{SignalErrorRatio, SignalLatency, SignalSLO, SignalSaturation, SignalDataIntegrity, SignalThroughput}, ", "))
			}
			if s.Type != SignalSLO && s.Objective != 0 {
				add(sp+".objective", "only an slo signal has an objective")
			}
			if r := s.Rule; r != nil {
				if r.Max <= 0 && r.MaxRatio <= 0 {
					add(sp+".rule", "set max, max_ratio or both")
				}
				if r.Max < 0 || r.MaxRatio < 0 {
					add(sp+".rule", "max and max_ratio must be >= 0")
				}
				if r.Interval <= 0 {
					add(sp+".rule.interval", "must be > 0")
				}
				if r.FailureLimit < 1 {
					add(sp+".rule.failure_limit", "must be >= 1")
				}
			}
			if s.Metric == "" {
				add(sp+".metric", "is empty")
			}
			if s.StatusLabel == "" {
				add(sp+".status_label", "is empty")
			}
			if s.BadStatusMin < 100 || s.BadStatusMin > 599 {
				add(sp+".bad_status_min", "must be an HTTP status code between 100 and 599")
			}
			switch {
			case math.IsNaN(s.Tolerance) || s.Tolerance < 0:
				add(sp+".tolerance", "must be >= 0")
			case math.IsInf(s.Tolerance, 1):
				add(sp+".tolerance", "must be finite")
			case s.Tolerance >= 31:
				add(sp+".tolerance", "must be below 31: a candidate 32 times worse is the most the test resolves")
			}
		}
	}
	return errs
}
