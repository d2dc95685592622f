package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

const testdata = "../testdata/configs"

// badConfigs maps every file under testdata/configs/bad to the exact error
// Parse must return for it. A file without an entry (or an entry without a
// file) fails TestParseBad, so fixtures and expectations stay in step.
var badConfigs = map[string]string{
	"empty.yaml":         "configuration is empty",
	"comments_only.yaml": "configuration is empty",
	"null_document.yaml": "configuration is empty",

	// Syntax errors come from yaml.v3 as "line N: problem".
	"bad_indentation.yaml": "line 3: mapping values are not allowed in this context",
	"unclosed_quote.yaml":  "line 3: found unexpected end of stream",
	// yaml.v3 reports parser (as opposed to scanner) errors with a 0-based
	// line: the '[' that is never closed is on line 3. Pinned as it is, see
	// the report; the line comes from the library, not from rollguard.
	"unclosed_flow_sequence.yaml": "line 2: did not find expected ',' or ']'",

	"unknown_top_level_key.yaml": `guard: unknown field "guard" (line 3)`,
	"unknown_signal_key.yaml":    `guards[0].signals[1].treshold: unknown field "treshold" (line 8)`,

	"tolerance_not_a_number.yaml":      "guards[0].signals[0].tolerance: expected a number, got a string `high` (line 6)",
	"tolerance_not_a_number_flow.yaml": "guards[0].signals[0].tolerance: expected a number, got a string `high` (line 4)",
	"guards_not_a_list.yaml":           "guards: expected a list, got a mapping (line 2)",
	"duration_not_a_scalar.yaml":       "global.evaluation_interval: expected a duration like 30s or 5m, got a list (line 2)",
	"scalar_document.yaml":             "expected a mapping, got a string `rollguard` (line 1)",

	"invalid_duration.yaml":               `global.evaluation_interval: invalid duration "10 seconds": use a number and a unit, like 30s or 5m (line 2)`,
	"no_data_timeout_below_interval.yaml": "global.no_data_timeout: must be >= global.evaluation_interval (5m) (line 1)",

	"negative_tolerance.yaml": "guards[0].signals[0].tolerance: must be >= 0 (line 6)",
	"tolerance_nan.yaml":      "guards[0].signals[0].tolerance: must be >= 0 (line 6)",
	"tolerance_inf.yaml":      "guards[0].signals[0].tolerance: must be finite (line 6)",
	"alpha_above_half.yaml":   "guards[0].alpha: must be > 0 and <= 0.5 (line 4)",
	"alpha_zero.yaml":         "guards[0].alpha: must be > 0 and <= 0.5 (line 4)",
	"bad_status_min.yaml":     "guards[0].signals[0].bad_status_min: must be an HTTP status code between 100 and 599 (line 6)",

	"missing_guard_name.yaml":        "guards[0].name: is empty (line 2)",
	"missing_second_guard_name.yaml": "guards[1].name: is empty (line 6)",
	"duplicate_guard_name.yaml":      `guards[1].name: "checkout" is already used by guards[0] (line 6)`,
	"duplicate_signal_name.yaml":     `guards[0].signals[1].name: "errors" is already used by guards[0].signals[0] (line 6)`,
	"empty_signals.yaml":             "guards[0].signals: needs at least one signal (line 4)",
	"missing_signals.yaml":           "guards[0].signals: needs at least one signal (line 2)",
	"unknown_signal_type.yaml":       `guards[0].signals[0].type: unknown signal type "latency_p99" (known: error_ratio, latency, slo, saturation, data_integrity, throughput) (line 6)`,
	"service_with_dot.yaml":          `guards[0].service: "shop.checkout" must be one NATS subject token (no '.', '*', '>' or spaces) (line 3)`,

	"bad_nats_url.yaml":   `nats.url: "localhost:4222" is not a NATS URL like nats://host:4222 (line 2)`,
	"token_and_user.yaml": "nats.token: set either token, user/password or credentials_file, not several (line 5)",
	"tls_ca_twice.yaml":   "nats.tls: at most one of ca, ca_file & ca_ref must be configured (line 3)",

	"playbook_bad_template.yaml":     "playbook.templates.customer: template: customer:1: unclosed action (line 3)",
	"playbook_data_audit.yaml":       `playbook.data_audit: "sometimes" must be one of on_integrity, always, never (line 2)`,
	"playbook_hold_too_long.yaml":    "playbook.healthy_hold: must be shorter than containment_timeout (5m), or a flag kill could never be seen to work (line 2)",
	"playbook_unknown_approval.yaml": `guards[0].playbook.approval[0]: "rolback" is not an action (known: flag_kill, rollback, data_audit) (line 5)`,

	"mode_unknown.yaml":             `mode: "central" must be one of standalone, sidecar (line 2)`,
	"mode_not_a_string.yaml":        "mode: expected a string, got a list (line 2)",
	"sidecar_without_nats_url.yaml": "nats.url: is required in sidecar mode: the NATS server the central rollguard reads aggregates from (line 4)",
	"sidecar_bad_id.yaml":           `sidecar.id: "host/1" must contain only letters, digits, '.', '_' and '-' (line 6)`,
	"sidecar_unknown_key.yaml":      `sidecar.name: unknown field "name" (line 5)`,
}

// knownBugs are bad files for which Parse returns a wrong message (or none)
// today. Their entry in badConfigs is the message Parse should return; the
// test skips them while the bug stands and fails once the message is right,
// so that the entry here is removed with the fix.
var knownBugs = map[string]string{}

func TestParseBad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "bad", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, f := range files {
		onDisk[filepath.Base(f)] = true
	}
	for name := range badConfigs {
		if !onDisk[name] {
			t.Errorf("badConfigs lists %s, which is not in %s/bad", name, testdata)
		}
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			want, ok := badConfigs[name]
			if !ok {
				t.Fatalf("%s has no expected message in badConfigs", f)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(b)
			got := "<nil>"
			if err != nil {
				got = err.Error()
			}
			if bug, known := knownBugs[name]; known {
				if got == want {
					t.Fatalf("known bug fixed (%s): remove %s from knownBugs", bug, name)
				}
				t.Skipf("known bug: %s; got %q, want %q", bug, got, want)
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", want)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with error %q", got)
			}
			if got != want {
				t.Errorf("wrong error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "good", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files in %s/good", testdata)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatalf("Load(%s): %v", f, err)
			}
			if cfg == nil {
				t.Fatal("Load returned no config and no error")
			}
		})
	}
}

// defaultSignal and defaultGuard spell the documented defaults out rather
// than reading DefaultSignal and DefaultGuard, so that changing a default
// fails here.
func defaultSignal(name string) SignalConfig {
	return SignalConfig{
		Name:         name,
		Type:         "error_ratio",
		Metric:       "http.server.request.duration",
		StatusLabel:  "http.response.status_code",
		BadStatusMin: 500,
		Tolerance:    0.1,
	}
}

func defaultGuard(name, service string, signals ...SignalConfig) GuardConfig {
	return GuardConfig{
		Name:           name,
		Service:        service,
		ServiceLabel:   "service.name",
		VersionLabel:   "service.version",
		InstanceLabels: []string{"k8s.pod.name", "service.instance.id", "pod", "instance", "host.name"},
		Alpha:          0.01,
		Baseline:       DefaultBaseline,
		Signals:        signals,
	}
}

func defaultConfig(guards ...GuardConfig) *Config {
	return &Config{
		Global: DefaultGlobal,
		NATS: NATSConfig{
			SubjectPrefix: "rollguard",
			Stream:        "ROLLGUARD",
			Embedded:      EmbeddedNATS{Host: "127.0.0.1", Port: 4222},
			Replicas:      1,
		},
		OTLP:   OTLPConfig{HTTPListenAddress: ":4318", MaxRequestBytes: 16 << 20},
		Guards: guards,
	}
}

// checkConfig compares the sections this test knows: global, nats, the
// OTLP/HTTP receiver and the guards. Sections added later (limits, scrape
// configs, the gRPC receiver) have their own tests, so adding one does not
// break every case here.
func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	if got.Global != want.Global {
		t.Errorf("global\n got: %+v\nwant: %+v", got.Global, want.Global)
	}
	if !reflect.DeepEqual(got.NATS, want.NATS) {
		t.Errorf("nats\n got: %+v\nwant: %+v", got.NATS, want.NATS)
	}
	if got.OTLP.HTTPListenAddress != want.OTLP.HTTPListenAddress || got.OTLP.MaxRequestBytes != want.OTLP.MaxRequestBytes {
		t.Errorf("otlp\n got: %+v\nwant: %+v", got.OTLP, want.OTLP)
	}
	if !reflect.DeepEqual(got.Guards, want.Guards) {
		t.Errorf("guards\n got: %+v\nwant: %+v", got.Guards, want.Guards)
	}
}

// TestParseValues checks that each good file decodes to exactly the
// configuration it spells out, defaults included.
func TestParseValues(t *testing.T) {
	full := defaultConfig(
		GuardConfig{
			Name: "checkout", Service: "checkout", ServiceLabel: "app", VersionLabel: "version",
			InstanceLabels: DefaultGuard.InstanceLabels, Alpha: 0.05, Flags: []string{"new-checkout-flow", "fast-pay"}, Baseline: DefaultBaseline,
			Signals: []SignalConfig{
				{Name: "errors", Type: "error_ratio", Metric: "http_requests_total", StatusLabel: "code", BadStatusMin: 400, Tolerance: 0},
				defaultSignal("server-errors"),
			},
		},
		func() GuardConfig {
			g := defaultGuard("cart_guard", "cart", defaultSignal("errors"))
			g.Alpha = 0.5
			return g
		}(),
	)
	full.Global = GlobalConfig{EvaluationInterval: Duration(30 * time.Second), NoDataTimeout: Duration(5 * time.Minute), PromotionHold: Duration(10 * time.Minute), NewVersionHold: Duration(time.Minute)}
	full.NATS = NATSConfig{
		URL:      "nats://nats-1:4222,nats://nats-2:4222",
		User:     "rollguard",
		Password: commoncfg.Secret("secret"),
		TLS: commoncfg.TLSConfig{
			CAFile:     "/etc/rollguard/ca.pem",
			CertFile:   "/etc/rollguard/client.pem",
			KeyFile:    "/etc/rollguard/client-key.pem",
			ServerName: "nats.internal",
		},
		SubjectPrefix: "guard",
		Stream:        "GUARD_1",
		Embedded:      EmbeddedNATS{Host: "0.0.0.0", Port: -1},
		Replicas:      1,
	}
	full.OTLP = OTLPConfig{HTTPListenAddress: "127.0.0.1:14318", MaxRequestBytes: 1 << 20}

	token := defaultConfig(defaultGuard("checkout", "checkout",
		func() SignalConfig { s := defaultSignal("errors"); s.Tolerance = 0.25; return s }()))
	token.NATS.URL = "tls://nats.example.com:4443"
	token.NATS.Token = "s3cr3t"

	creds := defaultConfig(defaultGuard("checkout", "checkout", defaultSignal("errors")))
	creds.NATS.URL = "nats://nats:4222"
	creds.NATS.CredentialsFile = "/etc/rollguard/rollguard.creds"

	noGuards := defaultConfig()
	noGuards.Global.EvaluationInterval = Duration(time.Minute)

	sidecar := defaultConfig(defaultGuard("checkout", "checkout", defaultSignal("errors")))
	sidecar.NATS.URL = "nats://nats:4222"

	anchored := func() SignalConfig { s := defaultSignal("errors"); s.Tolerance = 0.2; return s }()

	tests := []struct {
		file string
		want *Config
	}{
		{"minimal.yaml", defaultConfig(defaultGuard("checkout", "checkout", defaultSignal("errors")))},
		{"full.yaml", full},
		{"token.yaml", token},
		{"credentials_file.yaml", creds},
		{"no_guards.yaml", noGuards},
		{"sidecar.yaml", sidecar},
		{"anchors.yaml", defaultConfig(defaultGuard("checkout", "checkout", anchored), defaultGuard("cart", "cart", anchored))},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			got, err := Load(filepath.Join(testdata, "good", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, got, tt.want)
		})
	}
	// Every good file has its values checked here.
	files, _ := filepath.Glob(filepath.Join(testdata, "good", "*.yaml"))
	var names, listed []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for _, tt := range tests {
		listed = append(listed, tt.file)
	}
	sort.Strings(names)
	sort.Strings(listed)
	if !reflect.DeepEqual(names, listed) {
		t.Errorf("good files %v, but TestParseValues checks %v", names, listed)
	}
}

// TestDefaultsPerItem checks that defaults are applied to each guard and
// signal on its own: a value set on one does not leak into the next, and
// parsing does not change the package's Default values.
func TestDefaultsPerItem(t *testing.T) {
	before := []any{DefaultGlobal, DefaultNATS, DefaultOTLP, DefaultGuard, DefaultSignal}
	cfg, err := Parse([]byte(`
global:
  no_data_timeout: 1m
guards:
  - name: a
    service: a
    alpha: 0.2
    flags: [f1]
    signals:
      - name: s1
        tolerance: 0.5
        bad_status_min: 400
      - name: s2
  - name: b
    service: b
    signals:
      - name: s1
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Global, (GlobalConfig{EvaluationInterval: Duration(10 * time.Second), NoDataTimeout: Duration(time.Minute), PromotionHold: Duration(10 * time.Minute), NewVersionHold: Duration(time.Minute)}); got != want {
		t.Errorf("global = %+v, want %+v", got, want)
	}
	s1 := defaultSignal("s1")
	s1.Tolerance, s1.BadStatusMin = 0.5, 400
	a := defaultGuard("a", "a", s1, defaultSignal("s2"))
	a.Alpha, a.Flags = 0.2, []string{"f1"}
	want := []GuardConfig{a, defaultGuard("b", "b", defaultSignal("s1"))}
	if !reflect.DeepEqual(cfg.Guards, want) {
		t.Errorf("guards\n got: %+v\nwant: %+v", cfg.Guards, want)
	}
	after := []any{DefaultGlobal, DefaultNATS, DefaultOTLP, DefaultGuard, DefaultSignal}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("Parse changed the package defaults\nbefore: %+v\n after: %+v", before, after)
	}
}

// TestMode: standalone by default; a sidecar's id is the hostname unless set.
func TestMode(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no hostname: %v", err)
	}
	for _, tc := range []struct {
		file, mode, id string
	}{{"minimal.yaml", ModeStandalone, host}, {"sidecar.yaml", ModeSidecar, "edge-1.eu-west"}} {
		cfg, err := Load(filepath.Join(testdata, "good", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Mode != tc.mode || cfg.Sidecar.ID != tc.id {
			t.Errorf("%s: mode %q, sidecar id %q; want %q, %q", tc.file, cfg.Mode, cfg.Sidecar.ID, tc.mode, tc.id)
		}
	}
	cfg, err := Parse([]byte("mode: sidecar\nnats:\n  url: nats://n:4222\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sidecar.ID != host {
		t.Errorf("sidecar without an id: id %q, want the hostname %q", cfg.Sidecar.ID, host)
	}
}

func TestSignalAlpha(t *testing.T) {
	tests := []struct {
		alpha   float64
		signals int
		want    float64
	}{
		{0.01, 0, 0.01},
		{0.01, 1, 0.01},
		{0.01, 2, 0.005},
		{0.5, 4, 0.125},
	}
	for _, tt := range tests {
		g := GuardConfig{Alpha: tt.alpha, Signals: make([]SignalConfig, tt.signals)}
		if got := g.SignalAlpha(); got != tt.want {
			t.Errorf("SignalAlpha(alpha %v, %d signals) = %v, want %v", tt.alpha, tt.signals, got, tt.want)
		}
	}
	// Signals that spend no α (slo burn rates, rules) take no share.
	g := GuardConfig{Alpha: 0.01, Signals: []SignalConfig{{Type: SignalErrorRatio}, {Type: SignalSLO},
		{Type: SignalLatency, Rule: &RuleConfig{}}, {Type: SignalSaturation}}}
	if got := g.SignalAlpha(); got != 0.005 {
		t.Errorf("SignalAlpha with an slo and a rule signal beside two tests = %v, want 0.005", got)
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := Load("example.yaml")
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	// The example says every key shows its default: it must equal the
	// defaults plus its one guard, that guard's flag and its latency signal.
	lat := defaultSignal("latency")
	lat.Type, lat.Quantiles = SignalLatency, []float64{0.5, 0.99}
	g := defaultGuard("checkout", "checkout", defaultSignal("errors"), lat)
	g.Flags = []string{"new-checkout-flow"}
	checkConfig(t, cfg, defaultConfig(g))
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "read config: ") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file = %v, want a wrapped not-exist error prefixed %q", err, "read config: ")
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		back string
	}{
		{"30s", 30 * time.Second, "30s"},
		{"5m", 5 * time.Minute, "5m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"1d", 24 * time.Hour, "1d"},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte("global:\n  evaluation_interval: " + tt.in + "\n  no_data_timeout: 1000d\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		d := cfg.Global.EvaluationInterval
		if time.Duration(d) != tt.want || d.String() != tt.back {
			t.Errorf("%s parsed as %v (%s), want %v (%s)", tt.in, time.Duration(d), d, tt.want, tt.back)
		}
		if m, _ := d.MarshalYAML(); m != tt.back {
			t.Errorf("%s marshals as %v, want %s", tt.in, m, tt.back)
		}
	}
}
