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

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/sources"
)

// hostileExposition is a target's text exposition at scrape n: the first
// scrape sets every series' base; the second carries, beside a healthy
// counter, a NaN and a negative counter, a point stamped in the year 2200,
// a classic histogram whose buckets go down and one whose +Inf bucket is
// not its count; the third is healthy again.
func hostileExposition(n int) string {
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var b strings.Builder
	b.WriteString("# TYPE http_requests_total counter\n")
	b.WriteString("# TYPE lat histogram\n# TYPE lat2 histogram\n")
	switch n {
	case 1:
		b.WriteString(`http_requests_total{code="200"} 10` + "\n")
		b.WriteString(`http_requests_total{code="500"} 1` + "\n")
		b.WriteString(`http_requests_total{code="400"} 1` + "\n")
		b.WriteString(`http_requests_total{code="502"} 5` + "\n")
		b.WriteString("lat_bucket{le=\"0.1\"} 1\nlat_bucket{le=\"1\"} 2\nlat_bucket{le=\"+Inf\"} 3\nlat_count 3\nlat_sum 1\n")
		b.WriteString("lat2_bucket{le=\"0.1\"} 1\nlat2_bucket{le=\"+Inf\"} 3\nlat2_count 3\nlat2_sum 1\n")
	case 2:
		b.WriteString(`http_requests_total{code="200"} 15` + "\n")
		b.WriteString(`http_requests_total{code="500"} NaN` + "\n")
		b.WriteString(`http_requests_total{code="400"} -3` + "\n")
		fmt.Fprintf(&b, "http_requests_total{code=\"502\"} 1e9 %d\n", year2200)
		b.WriteString("lat_bucket{le=\"0.1\"} 9\nlat_bucket{le=\"1\"} 4\nlat_bucket{le=\"+Inf\"} 9\nlat_count 9\nlat_sum 2\n")
		b.WriteString("lat2_bucket{le=\"0.1\"} 1\nlat2_bucket{le=\"+Inf\"} 5\nlat2_count 7\nlat2_sum 2\n")
	default:
		b.WriteString(`http_requests_total{code="200"} 16` + "\n")
		b.WriteString(`http_requests_total{code="500"} 2` + "\n")
		b.WriteString(`http_requests_total{code="400"} 3` + "\n")
		b.WriteString(`http_requests_total{code="502"} 9` + "\n")
		b.WriteString("lat_bucket{le=\"0.1\"} 2\nlat_bucket{le=\"1\"} 4\nlat_bucket{le=\"+Inf\"} 5\nlat_count 5\nlat_sum 2\n")
		b.WriteString("lat2_bucket{le=\"0.1\"} 2\nlat2_bucket{le=\"+Inf\"} 4\nlat2_count 4\nlat2_sum 2\n")
	}
	return b.String()
}

// Points of a scrape that are the target's error are dropped one by one and
// counted by reason, the first named in the target's status; the rest of
// the scrape is kept, and the next healthy scrape counts from the state the
// refused points left alone (a year-2200 point, taken before the fix, made
// every later point of its series out of order, silently).
func TestScrapeRefusesPoints(t *testing.T) {
	var mu sync.Mutex
	scrapes := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		scrapes++
		n := scrapes
		mu.Unlock()
		w.Header().Set("Content-Type", ctText)
		fmt.Fprint(w, hostileExposition(n))
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{}
	m, _ := newManager(t, rec, fmt.Sprintf(`
scrape_configs:
  - job_name: app
    scrape_interval: 1h
    scrape_protocols: [PrometheusText0.0.4]
    static_configs:
      - targets: [%s]
`, hostOf(srv)))
	scrape := func() []sources.Sample {
		t.Helper()
		if err := m.ScrapeNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		return rec.take()
	}
	scrape()
	second := scrape()
	if c := find(second, "http_requests_total", "code", "200"); len(c) != 1 || c[0].Value != 5 {
		t.Errorf("the healthy counter of the hostile scrape: %+v, want an increment of 5", c)
	}
	for _, code := range []string{"500", "400", "502"} {
		if c := find(second, "http_requests_total", "code", code); len(c) != 0 {
			t.Errorf("code=%s handed on: %+v", code, c)
		}
	}
	if h := append(find(second, "lat"), find(second, "lat2")...); len(h) != 0 {
		t.Errorf("inconsistent histograms handed on: %+v", h)
	}
	for reason, want := range map[string]float64{
		sources.DropInvalidValue: 2, sources.DropTooFarAhead: 1, sources.DropInconsistentHistogram: 2,
	} {
		if n := testutil.ToFloat64(m.metrics.dropped.WithLabelValues(reason)); n != want {
			t.Errorf("dropped{reason=%q} = %v, want %v", reason, n, want)
		}
	}
	st := m.Targets()[0]
	if st.Health != HealthUp || !strings.HasPrefix(st.LastRefusal, `http_requests_total{`) || !strings.Contains(st.LastRefusal, ": invalid_value") {
		t.Errorf("target status %s, last refusal %q", st.Health, st.LastRefusal)
	}

	// The healthy twin: the next scrape counts from the bases the refused
	// points left alone.
	third := scrape()
	for code, want := range map[string]float64{"200": 1, "500": 1, "400": 2, "502": 4} {
		if c := find(third, "http_requests_total", "code", code); len(c) != 1 || c[0].Value != want {
			t.Errorf("code=%s after the hostile scrape: %+v, want an increment of %v", code, c, want)
		}
	}
	if h := find(third, "lat"); len(h) != 1 || h[0].Count != 2 {
		t.Errorf("lat after the hostile scrape: %+v, want a count increment of 2", h)
	}
	if h := find(third, "lat2"); len(h) != 1 || h[0].Count != 1 {
		t.Errorf("lat2 after the hostile scrape: %+v, want a count increment of 1", h)
	}
	if st := m.Targets()[0]; st.LastRefusal != "" {
		t.Errorf("last refusal after a healthy scrape: %q", st.LastRefusal)
	}
}
