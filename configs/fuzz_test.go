package configs

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse. It must never panic, must
// return exactly one of a configuration and an error, and a configuration it
// accepts must hold what validation promises.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(testdata, "*", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "example.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"~",
		"---\n---\n",
		"[]",
		"guards: [~]",
		"guards: [{name: a, service: a, signals: [{name: e}]}]",
		"guards:\n  - &g {name: a, service: a, signals: [{name: e}]}\n  - *g\n",
		"global: &x {evaluation_interval: *x}",
		"nats: {url: '%zz', tls: {ca: a, ca_file: b}}",
		"global: {evaluation_interval: 9999999999999999999h}",
		"guards: [{name: a, service: a, alpha: .nan, signals: [{name: e, bad_status_min: 1e30}]}]",
		"\t",
		"a: !!binary gIGC",
		"? [a, b]\n: c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v: want exactly one", cfg, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("Parse returned an empty error message")
			}
			return
		}
		// What validate guarantees of an accepted configuration.
		if cfg.Global.EvaluationInterval <= 0 || cfg.Global.NoDataTimeout < cfg.Global.EvaluationInterval {
			t.Fatalf("accepted global %+v", cfg.Global)
		}
		if cfg.OTLP.MaxRequestBytes <= 0 {
			t.Fatalf("accepted otlp.max_request_bytes %d", cfg.OTLP.MaxRequestBytes)
		}
		names := map[string]bool{}
		for i, g := range cfg.Guards {
			if g.Name == "" || names[g.Name] {
				t.Fatalf("accepted guards[%d].name %q (empty or duplicate)", i, g.Name)
			}
			names[g.Name] = true
			if !(g.Alpha > 0 && g.Alpha <= 0.5) {
				t.Fatalf("accepted guards[%d].alpha %v", i, g.Alpha)
			}
			if len(g.Signals) == 0 {
				t.Fatalf("accepted guards[%d] without signals", i)
			}
			for j, s := range g.Signals {
				if (s.Type != SignalErrorRatio && s.Type != SignalLatency) || s.Metric == "" || s.BadStatusMin < 100 || s.BadStatusMin > 599 ||
					!(s.Tolerance >= 0) || math.IsInf(s.Tolerance, 1) {
					t.Fatalf("accepted guards[%d].signals[%d] %+v", i, j, s)
				}
			}
		}
	})
}
