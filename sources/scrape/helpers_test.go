package scrape

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/sources"
)

// recorder is an Appender that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	samples []sources.Sample
	calls   int
	err     error
}

func (r *recorder) Append(s []sources.Sample) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	r.samples = append(r.samples, s...)
	return nil
}

// take returns the samples appended since the last take.
func (r *recorder) take() []sources.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.samples
	r.samples = nil
	return s
}

// find returns the samples of metric whose labels include kv.
func find(samples []sources.Sample, metric string, kv ...string) []sources.Sample {
	var out []sources.Sample
outer:
	for _, s := range samples {
		if s.Metric != metric {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.Labels.Get(kv[i]) != kv[i+1] {
				continue outer
			}
		}
		out = append(out, s)
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "scrape", Level: hclog.Debug, Output: testWriter{t}})
}

// scrapeConfigs parses the scrape_configs of a configuration document.
func scrapeConfigs(t testing.TB, doc string) []configs.ScrapeConfig {
	t.Helper()
	cfg, err := configs.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	return cfg.ScrapeConfigs
}

// newManager builds a manager with its own registry, stopped at the end of
// the test, and applies doc's scrape_configs.
func newManager(t testing.TB, app sources.Appender, doc string) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewManager(Config{Appender: app, Logger: testLogger(t), Registerer: reg})
	t.Cleanup(m.Stop)
	if err := m.ApplyConfig(scrapeConfigs(t, doc)); err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// runManager runs m until the returned cancel is called; cancel waits for Run
// to return.
func runManager(t testing.TB, m *Manager) (cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	cancel = func() {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(cancel)
	return cancel
}

// checkFor calls f every step until it returns nil, failing the test with
// f's last error after total.
func checkFor(t testing.TB, total, _ time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, total, f)
}

// hostOf is the host:port of a test server.
func hostOf(srv *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
}

// fixedBody serves body with the content type ct.
func fixedBody(ct, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ct)
		fmt.Fprint(w, body)
	})
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
