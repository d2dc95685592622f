package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/internal/promtest"
)

// promqlConfig is testConfig's settings with one query-defined guard,
// named guard, whose queries go to url; extra goes before the guards.
func promqlConfig(url, guard, extra string) string {
	settings := testConfig[:strings.Index(testConfig, "guards:\n")]
	return settings + fmt.Sprintf(`promql:
  url: %s
%sguards:
  - name: %s
    service: checkout
    alpha: 0.001
    signals:
      - name: errors
        query:
          total: sum(requests_total{job="{{.Service}}",version="{{.Version}}"})
          bad: sum(errors_total{job="{{.Service}}",version="{{.Version}}"})
`, url, extra, guard)
}

// TestReloadAllOrNothing: a reload that one component cannot apply (a
// scrape job whose CA file is missing, web credentials in a missing file)
// changes nothing: the PromQL poller keeps querying the old Prometheus,
// and the guards, scrape jobs and credentials stay as they were. Its twin,
// the same change with nothing missing, is applied whole.
func TestReloadAllOrNothing(t *testing.T) {
	promA, promB := promtest.NewQueryAPI(t), promtest.NewQueryAPI(t)
	td := startDaemon(t, promqlConfig(promA.URL, "checkout", ""))
	if code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`); code != http.StatusCreated {
		t.Fatalf("announce: %d %s", code, b)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := promA.Queries(); n == 0 {
			return fmt.Errorf("no query reached the configured Prometheus")
		}
		return nil
	})

	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	password := filepath.Join(dir, "password")
	if err := os.WriteFile(password, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	scrapeJob := func(caFile string) string {
		s := "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [127.0.0.1:1]\n"
		if caFile != "" {
			s += "    tls_config: {ca_file: " + caFile + "}\n"
		}
		return s
	}
	webAuth := func(passwordFile string) string {
		return "web:\n  basic_auth:\n    username: ops\n    password_file: " + passwordFile + "\n"
	}
	for _, tc := range []struct{ name, extra, wantErr string }{
		{"scrape fails", scrapeJob(missing) + webAuth(password), `scrape: scrape job "app": `},
		{"web credentials fail", scrapeJob("") + webAuth(missing), "web: basic_auth: "},
	} {
		if err := os.WriteFile(td.file, []byte(promqlConfig(promB.URL, "checkout-new", tc.extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, b := td.post("/-/reload", "")
		var answer struct{ Error string }
		_ = json.Unmarshal(b, &answer)
		if want := "reload failed, previous configuration kept: " + tc.wantErr; code != http.StatusInternalServerError || !strings.HasPrefix(answer.Error, want) {
			t.Fatalf("%s: reload answered %d %s, want 500 with %q", tc.name, code, b, want)
		}
		// Two rounds of queries (total and bad, per version) after the
		// reload, all to the old Prometheus.
		after := promA.Queries()
		checkFor(t, 10*time.Second, func() error {
			if n := promA.Queries() + promB.Queries(); n < after+8 {
				return fmt.Errorf("%d queries since the reload", n-after)
			}
			return nil
		})
		if n := promB.Queries(); n != 0 {
			t.Errorf("%s: the poller sent %d queries to the Prometheus of the refused configuration", tc.name, n)
		}
		if cfg := td.Config(); cfg.Guards[0].Name != "checkout" || td.poller.Config() != cfg {
			t.Errorf("%s: guard %q, poller's configuration is the daemon's: %v", tc.name, cfg.Guards[0].Name, td.poller.Config() == cfg)
		}
		if targets := td.scraper.Targets(); len(targets) != 0 {
			t.Errorf("%s: scrape targets %+v after a refused reload", tc.name, targets)
		}
		if code, b := td.get("/api/v1/guards"); code != http.StatusOK || !strings.Contains(string(b), `"name": "checkout"`) {
			t.Errorf("%s: guards without credentials: %d %s", tc.name, code, b)
		}
	}

	// The twin: nothing missing, everything applied.
	if err := os.WriteFile(td.file, []byte(promqlConfig(promB.URL, "checkout-new", scrapeJob("")+webAuth(password))), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := td.post("/-/reload", ""); code != http.StatusOK {
		t.Fatalf("valid reload: %d %s", code, b)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := promB.Queries(); n == 0 {
			return fmt.Errorf("no query reached the new Prometheus")
		}
		return nil
	})
	if cfg := td.Config(); cfg.Guards[0].Name != "checkout-new" || td.poller.Config() != cfg {
		t.Errorf("guard %q after the valid reload", cfg.Guards[0].Name)
	}
	if targets := td.scraper.Targets(); len(targets) != 1 {
		t.Errorf("scrape targets %+v after the valid reload", targets)
	}
	if code, _ := td.get("/api/v1/guards"); code != http.StatusUnauthorized {
		t.Errorf("guards without credentials after the valid reload: %d, want 401", code)
	}
}
