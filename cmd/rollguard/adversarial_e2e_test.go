package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/rollguard/rollguard/detector"
)

// adversarialConfig is testConfig with a small points limit (so that the
// over-the-limit requests stay cheap to build) and a second guard, fed by
// remote write with Prometheus-style labels.
var adversarialConfig = strings.Replace(testConfig, "guards:\n", "limits:\n  max_points_per_request: 5000\nguards:\n", 1) + `
  - name: payments
    service: payments
    service_label: job
    version_label: version
    alpha: 0.001
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`

// hostile is one hostile request and the answer it must get.
type hostile struct {
	name    string
	do      func(td *testDaemon) (*http.Response, error)
	status  int
	contain string // in the response body, when set
}

// TestAdversarialSuite sends the daemon the hostile requests issue 13 found
// (numbers no metric can have, a point from year 2200, nesting and volume
// that cost memory, unparseable bodies, cross-origin and mistyped state
// changes, an oversized announcement), each with the answer it must get;
// then a bad canary must still get its flag kill — nothing sent before
// blinded the detector or broke the playbook — and the process's peak
// memory must not have grown by more than a bound (the 560k-deep JSON alone
// once cost 0.85 GB).
func TestAdversarialSuite(t *testing.T) {
	td := startDaemon(t, adversarialConfig)
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
	canary := newService(t, td.otlp, "checkout", "v2", 0.05, 2)
	stable.serve(t, 500) // v1 is seen first: it becomes the stable version
	canary.serve(t, 500)

	resetPeak := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	rssBefore := procStatusKB(t, "VmRSS")

	cases := []hostile{
		{name: "OTLP NaN delta sum", status: 200, contain: "rejectedDataPoints",
			do: func(td *testDaemon) (*http.Response, error) { return postOTLP(td, deltaSum(math.NaN()), "") }},
		{name: "OTLP negative delta sum", status: 200, contain: "rejectedDataPoints",
			do: func(td *testDaemon) (*http.Response, error) { return postOTLP(td, deltaSum(-1e6), "") }},
		{name: "OTLP +Inf delta sum", status: 200, contain: "rejectedDataPoints",
			do: func(td *testDaemon) (*http.Response, error) { return postOTLP(td, deltaSum(math.Inf(1)), "") }},
		{name: "OTLP point from year 2200", status: 200,
			do: func(td *testDaemon) (*http.Response, error) {
				return postOTLP(td, cumulativeAt(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)), "")
			}},
		{name: "OTLP histogram with 3000 bounds", status: 200, contain: "rejectedDataPoints",
			do: func(td *testDaemon) (*http.Response, error) { return postOTLP(td, wideHistogram(3000), "") }},
		{name: "OTLP over max_points_per_request", status: 413,
			do: func(td *testDaemon) (*http.Response, error) { return postOTLP(td, manyGauges(6000), "") }},
		{name: "OTLP/JSON nested 560k deep, gzip'd", status: 400,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.otlp, "application/json", "gzip", gzipped(deepJSON(560_000)), nil)
			}},
		{name: "OTLP garbage protobuf", status: 400,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.otlp, "application/x-protobuf", "", []byte("\xff\xff\xff\xff not a protobuf"), nil)
			}},
		{name: "OTLP gzip bomb over max_request_bytes", status: 413,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.otlp, "application/x-protobuf", "gzip", gzipped(make([]byte, 17<<20)), nil)
			}},
		{name: "remote write NaN counter", status: 400, contain: "http_requests_total",
			do: func(td *testDaemon) (*http.Response, error) { return postRW(td, rwRequest(1, math.NaN())) }},
		{name: "remote write over max_points_per_request", status: 413,
			do: func(td *testDaemon) (*http.Response, error) { return postRW(td, rwRequest(6000, 1)) }},
		{name: "remote write garbage snappy", status: 400,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.web+"/api/v1/write", "application/x-protobuf", "snappy", []byte("not snappy at all"),
					map[string]string{"X-Prometheus-Remote-Write-Version": "0.1.0"})
			}},
		{name: "cross-origin text/plain announcement", status: 403,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.web+"/api/v1/deployments", "text/plain", "", []byte(`{"service":"checkout","version":"evil"}`),
					map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
			}},
		{name: "same-origin text/plain announcement", status: 415,
			do: func(td *testDaemon) (*http.Response, error) {
				return post(td.web+"/api/v1/deployments", "text/plain", "", []byte(`{"service":"checkout","version":"evil"}`), nil)
			}},
		{name: "announcement with 5000 flags", status: 400,
			do: func(td *testDaemon) (*http.Response, error) {
				flags := make([]string, 5000)
				for i := range flags {
					flags[i] = "f" + strconv.Itoa(i)
				}
				b, _ := json.Marshal(map[string]any{"service": "checkout", "version": "evil", "flags": flags})
				return post(td.web+"/api/v1/deployments", "application/json", "", b, nil)
			}},
	}
	for _, c := range cases {
		resp, err := c.do(td)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.contain != "" && !strings.Contains(body.String(), c.contain)) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, resp.StatusCode, body.String(), c.status, c.contain)
		}
	}
	for _, d := range td.engine.Deployments() {
		if d.Version == "evil" {
			t.Errorf("a refused announcement opened %+v", d)
		}
	}

	// The detector is not blinded and the playbook still acts: the bad
	// canary gets its flag kill.
	checkFor(t, 90*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		if len(td.commands()) == 0 {
			return fmt.Errorf("no command yet; verdict %+v", td.verdict("checkout"))
		}
		return nil
	})
	if v := td.verdict("checkout"); v == nil || v.State != detector.StateRegressed {
		t.Errorf("verdict %+v, want regressed", v)
	}

	if peak := procStatusKB(t, "VmHWM"); resetPeak && peak > 0 {
		grew := (peak - rssBefore) >> 10
		t.Logf("peak RSS %d MiB, %d MiB over the start of the suite", peak>>10, grew)
		if grew > 256 {
			t.Errorf("the hostile requests raised peak RSS by %d MiB (bound 256 MiB)", grew)
		}
	}
}

// procStatusKB reads a kB field of /proc/self/status, or 0.
func procStatusKB(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func post(url, contentType, encoding string, body []byte, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	return c.Do(req)
}

// postOTLP sends metrics as OTLP/JSON, which shows partial success in a
// readable body.
func postOTLP(td *testDaemon, md pmetric.Metrics, encoding string) (*http.Response, error) {
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalJSON()
	if err != nil {
		return nil, err
	}
	return post(td.otlp, "application/json", encoding, b, nil)
}

// checkoutMetric is a metric of service checkout at version v2 named as the
// guard's request histogram, with a 5xx status.
func checkoutMetric(md pmetric.Metrics) pmetric.Metric {
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.version", "v2")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	return m
}

func deltaSum(v float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	s := checkoutMetric(md).SetEmptySum()
	s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	s.SetIsMonotonic(true)
	p := s.DataPoints().AppendEmpty()
	now := time.Now()
	p.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
	p.SetTimestamp(pcommon.NewTimestampFromTime(now))
	p.Attributes().PutInt("http.response.status_code", 500)
	p.SetDoubleValue(v)
	return md
}

func cumulativeAt(at time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	h := checkoutMetric(md).SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	p := h.DataPoints().AppendEmpty()
	p.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Now().Add(-time.Minute)))
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.Attributes().PutInt("http.response.status_code", 200)
	p.SetCount(10)
	return md
}

func wideHistogram(bounds int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	h := checkoutMetric(md).SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	p := h.DataPoints().AppendEmpty()
	now := time.Now()
	p.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
	p.SetTimestamp(pcommon.NewTimestampFromTime(now))
	p.Attributes().PutInt("http.response.status_code", 200)
	for i := 0; i < bounds; i++ {
		p.ExplicitBounds().Append(float64(i))
		p.BucketCounts().Append(0)
	}
	p.BucketCounts().Append(1)
	p.SetCount(1)
	return md
}

func manyGauges(n int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "junk")
	g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	g.SetName("junk.gauge")
	pts := g.SetEmptyGauge().DataPoints()
	now := pcommon.NewTimestampFromTime(time.Now())
	for i := 0; i < n; i++ {
		p := pts.AppendEmpty()
		p.SetTimestamp(now)
		p.SetDoubleValue(1)
		p.Attributes().PutInt("i", int64(i))
	}
	return md
}

func deepJSON(depth int) []byte {
	return append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// rwRequest is a remote-write 1.0 request of n series of the payments
// guard's request counter for version v2, each at value v.
func rwRequest(n int, v float64) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "http_requests_total"},
				{Name: "code", Value: "500"},
				{Name: "i", Value: strconv.Itoa(i)},
				{Name: "job", Value: "payments"},
				{Name: "version", Value: "v2"},
			},
			Samples: []prompb.Sample{{Value: v, Timestamp: now}},
		})
	}
	return req
}

func postRW(td *testDaemon, req *prompb.WriteRequest) (*http.Response, error) {
	b, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	return post(td.web+"/api/v1/write", "application/x-protobuf", "snappy", snappy.Encode(nil, b),
		map[string]string{"X-Prometheus-Remote-Write-Version": "0.1.0"})
}
