package remotewrite_test

// The cases of the Prometheus remote-write receiver compliance suite,
// github.com/prometheus/compliance, remotewrite/receiver, at commit
// 67b8327a2e93 (the Go module version v0.0.0-20260806071727-67b8327a2e93),
// written again here as a table over our own request builders: the suite
// is a test-only module (package main, its cases in _test.go files,
// pointed at a URL through a Prometheus config file) that cannot be
// imported, and its module path is not the one it is fetched by.
//
//   Copyright The Prometheus Authors
//   Licensed under the Apache License, Version 2.0 (the "License");
//   you may not use this file except in compliance with the License.
//   You may obtain a copy of the License at
//   http://www.apache.org/licenses/LICENSE-2.0
//   Unless required by applicable law or agreed to in writing, software
//   distributed under the License is distributed on an "AS IS" BASIS,
//   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
//   See the License for the specific language governing permissions and
//   limitations under the License.
//
// Each case is a request and what the suite accepts as its answer: a
// success (2xx) must report exactly the samples, histogram samples and
// exemplars written; a failure must be a 400 (or the exact status named)
// reporting no more than that. As the suite does, every case expected to
// succeed is also run as a second, SHOULD-level case that wants exactly 204.
// The suite has 205 cases so; all of them must pass, twice: once with no
// guard reading any series (all dropped at the door, as most are in a
// daemon) and once with a guard reading every series.

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/proto"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

// complianceCase is one case of the suite.
type complianceCase struct {
	name string
	// series are sent in one 2.0 request, unless build is set.
	series []cSeries
	build  func(t *testing.T, now time.Time) *http.Request
	// success: the request must be written whole (2xx), else refused.
	success bool
	// written: samples, histogram samples and exemplars, exactly on a
	// success, at most on a refusal.
	written [3]int
	// status, when set, is the exact status wanted.
	status int
	// raw: run once, without the 204 variant.
	raw bool
}

// cSeries is one TimeSeries: a float sample (value), or a histogram
// sample (hist), or neither (exemplars or metadata alone).
type cSeries struct {
	labels    []string // name, value pairs, in the order sent
	value     float64
	hist      *writev2.Histogram
	none      bool
	offset    time.Duration // of the sample, from now
	created   time.Duration // before now; 0: none
	exemplars []cExemplar
	meta      *cMeta
}

type cExemplar struct {
	labels []string
	value  float64
	offset time.Duration
}

type cMeta struct {
	typ        writev2.Metadata_MetricType
	help, unit string
}

func TestCompliance(t *testing.T) {
	cases := complianceCases()
	n := 0
	for _, c := range cases {
		n++
		if c.success && !c.raw {
			n++
		}
	}
	if n != 205 {
		t.Fatalf("%d cases, want the suite's 205", n)
	}
	for _, run := range []struct {
		name   string
		filter sources.Filter
		kept   bool // valid series reach the Appender
	}{
		{"dropped at the door", sources.FilterFunc(func(string) bool { return false }), false},
		{"read by a guard", nil, true},
	} {
		t.Run(run.name, func(t *testing.T) {
			rec := &recorder{}
			rw := remotewrite.NewReceiver(remotewrite.Config{Appender: rec, Filter: run.filter})
			srv := httptest.NewServer(rw.Handler())
			defer srv.Close()
			// Each request is stamped 10 ms after the one before, as the
			// suite's ticker spaces them: a case sent twice in the same
			// millisecond would be a duplicate the second time.
			start, sent := time.Now(), 0
			now := func() time.Time {
				sent++
				return start.Add(time.Duration(sent) * 10 * time.Millisecond)
			}
			for _, c := range cases {
				if c.success && !c.raw {
					t.Run(c.name+" returns 204", func(t *testing.T) {
						complianceCheck(t, srv, c, now(), http.StatusNoContent)
					})
				}
				t.Run(c.name, func(t *testing.T) { complianceCheck(t, srv, c, now(), c.status) })
			}
			// Sent twice, the cases' counters and histograms have increments
			// to hand on, classic ones (of custom buckets) included.
			got := rec.got()
			if kept := slices.ContainsFunc(got, func(s string) bool {
				return strings.Contains(s, "custom_latency_hist{") && strings.Contains(s, "le=")
			}); kept != run.kept {
				t.Errorf("%d samples handed on, custom_latency_hist's buckets among them: %v, want %v", len(got), kept, run.kept)
			}
		})
	}
}

func complianceCheck(t *testing.T, srv *httptest.Server, c complianceCase, now time.Time, status int) {
	var req *http.Request
	if c.build != nil {
		req = c.build(t, now)
	} else {
		req = v2HTTPRequest(t, complianceRequest(c.series, now))
	}
	u, err := req.URL.Parse(srv.URL + "/api/v1/write")
	if err != nil {
		t.Fatal(err)
	}
	req.URL, req.Host = u, u.Host
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var written [3]int
	for i, h := range []string{remotewrite.HeaderSamplesWritten, remotewrite.HeaderHistogramsWritten, remotewrite.HeaderExemplarsWritten} {
		if v := resp.Header.Get(h); v != "" {
			if written[i], err = strconv.Atoi(v); err != nil {
				t.Fatalf("%s: %q", h, v)
			}
		}
	}
	switch {
	case status != 0 && resp.StatusCode != status:
		t.Fatalf("answered %d (%s), want %d", resp.StatusCode, body, status)
	case resp.StatusCode/100 == 2:
		if !c.success {
			t.Fatalf("answered %d, want a refusal", resp.StatusCode)
		}
		if written != c.written {
			t.Errorf("written samples, histograms, exemplars = %v, want %v", written, c.written)
		}
	case resp.StatusCode/100 == 4:
		if status == 0 && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("answered %d (%s), want 400", resp.StatusCode, body)
		}
		if c.success && status == 0 {
			t.Fatalf("answered %d (%s), want a success", resp.StatusCode, body)
		}
		for i := range written {
			if written[i] > c.written[i] {
				t.Errorf("written samples, histograms, exemplars = %v, want at most %v", written, c.written)
			}
		}
	default:
		t.Fatalf("answered %d (%s)", resp.StatusCode, body)
	}
}

// complianceRequest builds the 2.0 request of a case's series.
func complianceRequest(ss []cSeries, now time.Time) *writev2.Request {
	st := writev2.NewSymbolTable()
	refs := func(kv []string) []uint32 {
		var out []uint32
		for _, s := range kv {
			out = append(out, st.Symbolize(s))
		}
		return out
	}
	req := &writev2.Request{}
	for _, s := range ss {
		ts := &writev2.TimeSeries{LabelsRefs: refs(s.labels)}
		ms := now.Add(s.offset).UnixMilli()
		switch {
		case s.none:
		case s.hist != nil:
			h := proto.Clone(s.hist).(*writev2.Histogram)
			h.Timestamp = ms
			ts.Histograms = []*writev2.Histogram{h}
		default:
			ts.Samples = []*writev2.Sample{{Value: s.value, Timestamp: ms}}
		}
		for _, e := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, &writev2.Exemplar{LabelsRefs: refs(e.labels), Value: e.value, Timestamp: now.Add(e.offset).UnixMilli()})
		}
		if m := s.meta; m != nil {
			ts.Metadata = &writev2.Metadata{Type: m.typ, HelpRef: st.Symbolize(m.help), UnitRef: st.Symbolize(m.unit)}
		}
		if s.created != 0 {
			ts.CreatedTimestamp = now.Add(-s.created).UnixMilli()
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	return req
}

func v2HTTPRequest(t *testing.T, req *writev2.Request) *http.Request {
	data, err := req.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, data)))
	r.RequestURI = ""
	r.Header.Set("Content-Type", ctV2)
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	return r
}

// complianceHistogram is the suite's histogram: integer buckets, positive
// ones (23 observations), negative ones (3), a zero bucket (1), or custom
// buckets (30, schema -53), and a count that matches them unless badCount.
func complianceHistogram(sum float64, positive, negative, zero, custom, badCount bool) *writev2.Histogram {
	h := &writev2.Histogram{Sum: sum}
	count := uint64(0)
	if positive {
		h.PositiveSpans = []*writev2.BucketSpan{{Offset: 0, Length: 3}, {Offset: 2, Length: 2}}
		h.PositiveDeltas = []int64{1, 2, 1, 3, 1} // 1 3 4 7 8
		count += 23
	}
	if negative {
		h.NegativeSpans = []*writev2.BucketSpan{{Offset: 0, Length: 2}}
		h.NegativeDeltas = []int64{1, 1} // 1 2
		count += 3
	}
	if zero {
		h.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1}
		count++
	}
	if custom {
		h.Schema = -53
		h.CustomValues = []float64{0.1, 0.5, 1, 2.5, 5, 10}
		h.PositiveSpans = []*writev2.BucketSpan{{Offset: 0, Length: 6}}
		h.PositiveDeltas = []int64{2, 1, 2, 3, -1, -2} // 2 3 5 8 7 5
		count = 30
	}
	if badCount {
		count = 99
	}
	h.Count = &writev2.Histogram_CountInt{CountInt: count}
	return h
}

// complianceValues are the values every float case is sent with.
var complianceValues = []struct {
	name string
	v    float64
}{
	{"1.0", 1}, {"StaleNaN", math.Float64frombits(0x7ff0000000000002)},
	{"NaN", math.Float64frombits(0x7ff8000000000001)}, {"Inf", math.Inf(1)}, {"-Inf", math.Inf(-1)},
}

func complianceCases() []complianceCase {
	var cases []complianceCase
	add := func(c ...complianceCase) { cases = append(cases, c...) }
	lb := func(kv ...string) []string { return kv }
	name := func(n string) []string { return lb("__name__", n) }
	upJob := func(instance string) []string {
		return lb("__name__", "up", "job", "testjob", "instance", instance)
	}
	samples := func(ss ...cSeries) []cSeries { return ss }

	// Metrics: one series, then several, with each value.
	for _, v := range complianceValues {
		one := func(n string, labels []string, success bool) complianceCase {
			return complianceCase{name: "SingleMetric/" + v.name + "/" + n, series: samples(cSeries{labels: labels, value: v.v}),
				success: success, written: [3]int{1, 0, 0}}
		}
		add(one("simple metric", name("up"), true),
			one("simple metric with multiple labels", upJob("localhost:9090"), true),
			one("simple metric with newlines", lb("__name__", "up", "job", "test\njob\n", "instance", "localhost:9090"), true),
			one("simple metric with dots", lb("__name__", "resource.cpu.usage", "job.name", "testjob", "instance.name", "localhost:9090"), true),
			one("simple metric with spaces", lb("__name__", "resource cpu usage", "job name", "testjob", "instance name", "localhost:9090"), true),
			one("simple metric without name label", lb("job", "testjob", "instance", "localhost:9090"), false),
			one("empty metric", nil, false))
		many := func(n string, named [4]bool, success bool, written int) complianceCase {
			var ss []cSeries
			for i, hasName := range named {
				instance := "localhost:909" + strconv.Itoa(i)
				ls := upJob(instance)
				if !hasName {
					ls = lb("job", "testjob", "instance", instance)
				}
				ss = append(ss, cSeries{labels: ls, value: v.v})
			}
			return complianceCase{name: "MultipleMetrics/" + v.name + "/" + n, series: ss, success: success, written: [3]int{written, 0, 0}}
		}
		add(many("multiple metrics", [4]bool{true, true, true, true}, true, 4),
			many("multiple metrics, without name label", [4]bool{}, false, 0),
			many("multiple metrics, 1 without name label", [4]bool{false, true, true, true}, false, 3))
	}
	add(complianceCase{name: "CounterWithCreatedTimestamp", success: true, written: [3]int{1, 0, 0},
		series: samples(cSeries{labels: lb("__name__", "http_requests_total", "job", "api"), value: 100, created: time.Hour})})

	// Histograms.
	for _, h := range []struct {
		name                                  string
		labels                                []string
		positive, negative, zero, custom, bad bool
	}{
		{"basic_histogram", name("test_histogram"), true, true, true, false, false},
		{"custom_buckets_histogram", name("test_histogram"), true, false, false, true, false},
		{"positive_only_histogram", lb("__name__", "test_histogram", "job", "test"), true, false, true, false, false},
		{"negative_only_histogram", lb("__name__", "test_histogram", "instance", "localhost"), false, true, false, false, false},
		{"minimal_histogram", name("minimal_hist"), false, false, true, false, false},
		{"bad_count_histogram", name("minimal_hist"), true, false, false, false, true},
	} {
		add(complianceCase{name: "Histograms/" + h.name, success: !h.bad, written: [3]int{0, 1, 0},
			series: samples(cSeries{labels: h.labels, hist: complianceHistogram(1, h.positive, h.negative, h.zero, h.custom, h.bad)})})
	}
	histMeta := func(help, unit string) *cMeta {
		return &cMeta{typ: writev2.Metadata_METRIC_TYPE_HISTOGRAM, help: help, unit: unit}
	}
	add(complianceCase{name: "HistogramWithCreatedTimestamp", success: true, written: [3]int{0, 1, 0},
		series: samples(cSeries{labels: lb("__name__", "request_duration_seconds", "job", "api"),
			hist: complianceHistogram(1.5, true, true, true, false, false), created: 30 * time.Minute})},
		complianceCase{name: "MultipleHistograms", success: true, written: [3]int{0, 2, 0}, series: samples(
			cSeries{labels: lb("__name__", "hist1", "job", "test"), hist: complianceHistogram(10.5, true, false, true, false, false)},
			cSeries{labels: lb("__name__", "hist2", "job", "test"), hist: complianceHistogram(5.2, false, true, false, false, false)})},
		complianceCase{name: "EmptyHistogram", success: true, written: [3]int{0, 1, 0},
			series: samples(cSeries{labels: name("empty_hist"), hist: complianceHistogram(0, false, false, false, false, false)})},
		complianceCase{name: "HistogramWithMetadata", success: true, written: [3]int{0, 1, 0},
			series: samples(cSeries{labels: lb("__name__", "request_duration_seconds", "job", "api"),
				hist: complianceHistogram(2.5, true, true, true, false, false), meta: histMeta("HTTP request duration in seconds", "seconds")})},
		complianceCase{name: "HistogramWithExemplar", success: true, written: [3]int{0, 1, 1},
			series: samples(cSeries{labels: lb("__name__", "http_request_duration_seconds", "method", "GET"),
				hist:      complianceHistogram(1.23, true, false, true, false, false),
				exemplars: []cExemplar{{labels: lb("trace_id", "abc123def456", "span_id", "span789"), value: 1.23}}})},
		complianceCase{name: "HistogramWithMetadataAndExemplar", success: true, written: [3]int{0, 1, 1},
			series: samples(cSeries{labels: lb("__name__", "response_size_bytes", "service", "upload"),
				hist: complianceHistogram(10485760, true, true, true, false, false), meta: histMeta("HTTP response size in bytes", "bytes"),
				exemplars: []cExemplar{{labels: lb("trace_id", "large_upload_trace", "user_id", "user456"), value: 10485760}}})},
		complianceCase{name: "MultipleHistogramsWithMetadata", success: true, written: [3]int{0, 2, 0}, series: samples(
			cSeries{labels: lb("__name__", "cpu_usage_histogram", "instance", "server1"),
				hist: complianceHistogram(0.75, true, false, true, false, false), meta: histMeta("CPU usage distribution", "ratio")},
			cSeries{labels: lb("__name__", "memory_usage_histogram", "instance", "server1"),
				hist: complianceHistogram(8589934592, true, true, false, false, false), meta: histMeta("Memory usage distribution", "bytes")})})

	// Exemplars.
	for _, e := range []struct {
		name          string
		labels, exLbs []string
		value         float64
	}{
		{"basic_exemplar", lb("__name__", "http_requests_total", "job", "api"), lb("trace_id", "abc123def456"), 1},
		{"exemplar_with_span_id", lb("__name__", "request_duration_seconds", "method", "GET"), lb("trace_id", "xyz789", "span_id", "span123"), 0.125},
		{"exemplar_without_trace_id", lb("__name__", "cpu_usage", "instance", "host1"), lb("user_id", "user123"), 0.85},
		{"exemplar_with_multiple_labels", lb("__name__", "request_latency", "service", "auth"), lb("trace_id", "trace456", "user", "admin", "endpoint", "/login"), 0.05},
		{"exemplar_no_labels", name("simple_counter"), nil, 1},
		{"exemplar_with_special_chars", name("test_metric"), lb("trace_id", "trace-with-dashes_and_underscores.123"), 42},
		{"exemplar_with_unicode", lb("__name__", "unicode_test", "region", "🌍"), lb("trace_id", "unicode_trace_测试"), 100},
	} {
		add(complianceCase{name: "Exemplars/" + e.name, success: true, written: [3]int{1, 0, 1},
			series: samples(cSeries{labels: e.labels, value: e.value, exemplars: []cExemplar{{labels: e.exLbs, value: e.value}}})})
	}
	ex := func(value float64, offset time.Duration, kv ...string) []cExemplar {
		return []cExemplar{{labels: kv, value: value, offset: offset}}
	}
	add(complianceCase{name: "ExemplarWithCreatedTimestamp", success: true, written: [3]int{1, 0, 1},
		series: samples(cSeries{labels: lb("__name__", "http_requests_total", "job", "api"), value: 250, created: 2 * time.Hour,
			exemplars: ex(250, 0, "trace_id", "abc123", "span_id", "span456")})},
		complianceCase{name: "MultipleExemplars", success: true, written: [3]int{3, 0, 3}, series: samples(
			cSeries{labels: lb("__name__", "request_duration", "method", "GET"), value: 0.1, exemplars: ex(0.1, 0, "trace_id", "trace1", "span_id", "span1")},
			cSeries{labels: lb("__name__", "request_duration", "method", "POST"), value: 0.25, exemplars: ex(0.25, 0, "trace_id", "trace2", "span_id", "span2")},
			cSeries{labels: lb("__name__", "error_count", "service", "payment"), value: 1, exemplars: ex(1, 0, "trace_id", "trace3", "user", "test_user")})},
		complianceCase{name: "ExemplarTimestamps", success: true, written: [3]int{3, 0, 3}, series: samples(
			cSeries{labels: name("latency_hist"), value: 0.05, offset: -time.Hour, exemplars: ex(0.05, -time.Hour, "trace_id", "old_trace")},
			cSeries{labels: name("latency_hist"), value: 0.15, offset: -time.Minute, exemplars: ex(0.15, -time.Minute, "trace_id", "recent_trace")},
			cSeries{labels: name("latency_hist"), value: 0.08, exemplars: ex(0.08, 0, "trace_id", "current_trace")})})
	for _, e := range []struct {
		name    string
		labels  []string
		success bool
	}{
		{"exemplar_without_name_label", lb("job", "test"), false},
		{"exemplar_with_empty_name", lb("__name__", ""), false},
		{"exemplar_with_valid_name", name("valid_metric"), true},
	} {
		add(complianceCase{name: "ExemplarValidation/" + e.name, raw: true, success: e.success, written: [3]int{1, 0, 1},
			series: samples(cSeries{labels: e.labels, value: 1, exemplars: ex(1, 0, "trace_id", "test_trace")})})
	}
	for _, e := range []struct {
		name string
		v    float64
	}{
		{"zero_value", 0}, {"negative_value", -123.456}, {"large_value", 1e10}, {"small_value", 1e-10},
		{"nan_value", math.Float64frombits(0x7ff8000000000001)}, {"inf_value", math.Inf(1)}, {"-inf_value", math.Inf(-1)},
	} {
		add(complianceCase{name: "ExemplarSpecialValues/" + e.name, success: true, written: [3]int{1, 0, 1},
			series: samples(cSeries{labels: name("test_metric"), value: e.v, exemplars: ex(e.v, 0, "trace_id", "special_value_trace")})})
	}

	// Metadata.
	for _, m := range []struct {
		name       string
		labels     []string
		typ        writev2.Metadata_MetricType
		help, unit string
	}{
		{"counter_metadata", name("http_requests_total"), writev2.Metadata_METRIC_TYPE_COUNTER, "Total number of HTTP requests", "requests"},
		{"gauge_metadata", name("cpu_usage_percent"), writev2.Metadata_METRIC_TYPE_GAUGE, "Current CPU usage percentage", "percent"},
		{"histogram_metadata", name("request_duration_seconds"), writev2.Metadata_METRIC_TYPE_HISTOGRAM, "Request duration in seconds", "seconds"},
		{"metadata_no_help_no_unit", name("simple_counter"), writev2.Metadata_METRIC_TYPE_COUNTER, "", ""},
		{"metadata_with_special_chars", lb("__name__", "test_metric", "job", "test"), writev2.Metadata_METRIC_TYPE_GAUGE, "Test metric with\nnewlines and \"quotes\"", "bytes/sec"},
		{"unspecified_metadata_type", name("unknown_metric"), writev2.Metadata_METRIC_TYPE_UNSPECIFIED, "Unknown metric type", ""},
		{"info_metadata_type", name("build_info"), writev2.Metadata_METRIC_TYPE_INFO, "Build information", ""},
		{"stateset_metadata_type", name("node_state"), writev2.Metadata_METRIC_TYPE_STATESET, "Node state information", ""},
		{"summary_metadata_type", name("request_latency_summary"), writev2.Metadata_METRIC_TYPE_SUMMARY, "Request latency summary", "seconds"},
		{"gauge_histogram_metadata_type", name("temperature_histogram"), writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM, "Temperature distribution gauge histogram", "celsius"},
	} {
		s := cSeries{labels: m.labels, value: 1, meta: &cMeta{typ: m.typ, help: m.help, unit: m.unit}}
		written := [3]int{1, 0, 0}
		if m.typ == writev2.Metadata_METRIC_TYPE_HISTOGRAM {
			s.hist, written = complianceHistogram(1, true, true, true, false, false), [3]int{0, 1, 0}
		}
		add(complianceCase{name: "Metadata/" + m.name, success: true, written: written, series: samples(s)})
	}
	counterMeta := func(help, unit string) *cMeta {
		return &cMeta{typ: writev2.Metadata_METRIC_TYPE_COUNTER, help: help, unit: unit}
	}
	gaugeMeta := func(help, unit string) *cMeta {
		return &cMeta{typ: writev2.Metadata_METRIC_TYPE_GAUGE, help: help, unit: unit}
	}
	add(complianceCase{name: "CounterMetadataWithCreatedTimestamp", success: true, written: [3]int{1, 0, 0},
		series: samples(cSeries{labels: lb("__name__", "http_requests_total", "job", "api"), value: 150, created: time.Hour,
			meta: counterMeta("Total HTTP requests", "requests")})},
		complianceCase{name: "MetadataWithSamples", success: true, written: [3]int{1, 0, 0},
			series: samples(cSeries{labels: lb("__name__", "http_requests_total", "job", "test"), value: 42,
				meta: counterMeta("Total HTTP requests", "requests")})},
		complianceCase{name: "MultipleMetadata", success: true, written: [3]int{3, 0, 0}, series: samples(
			cSeries{labels: name("cpu_usage"), value: 85.5, meta: gaugeMeta("CPU usage percentage", "percent")},
			cSeries{labels: name("memory_usage"), value: 4096000000, meta: gaugeMeta("Memory usage in bytes", "bytes")},
			cSeries{labels: lb("__name__", "disk_usage", "device", "sda1"), value: 75.2, meta: gaugeMeta("Disk usage percentage", "percent")})},
		complianceCase{name: "MetadataWithComplexLabels", success: true, written: [3]int{0, 1, 0},
			series: samples(cSeries{labels: lb("__name__", "http_request_duration_seconds", "job", "api-server", "instance", "localhost:8080",
				"method", "GET", "status", "200", "endpoint", "/api/v1/users"),
				hist: complianceHistogram(0.25, true, true, true, false, false), meta: histMeta("HTTP request duration in seconds", "seconds")})},
		// The suite attaches metadata by metric name: a series without one
		// gets none, but for the empty name it sends on purpose.
		complianceCase{name: "MetadataValidation/metadata_without_name_label", raw: true, written: [3]int{1, 0, 0},
			series: samples(cSeries{labels: lb("job", "test"), value: 1})},
		complianceCase{name: "MetadataValidation/metadata_with_empty_name", raw: true, written: [3]int{1, 0, 0},
			series: samples(cSeries{labels: lb("__name__", ""), value: 1, meta: gaugeMeta("Test help", "unit")})},
		complianceCase{name: "MetadataValidation/metadata_with_valid_name", raw: true, success: true, written: [3]int{1, 0, 0},
			series: samples(cSeries{labels: name("valid_metric_name"), value: 1, meta: counterMeta("Test help", "unit")})})

	// Samples, histograms, metadata and exemplars together.
	add(complianceCase{name: "SamplesWithMetadataAndExemplars", success: true, written: [3]int{1, 0, 1},
		series: samples(cSeries{labels: lb("__name__", "http_requests_total", "job", "api", "method", "POST"), value: 1,
			meta: counterMeta("Total number of HTTP requests", "requests"), exemplars: ex(1, 0, "trace_id", "request_trace_123", "user_id", "user789")})},
		complianceCase{name: "HistogramsWithMetadataAndExemplars", success: true, written: [3]int{0, 1, 1},
			series: samples(cSeries{labels: lb("__name__", "request_duration_seconds", "service", "auth"),
				hist: complianceHistogram(0.456, true, true, true, false, false), meta: histMeta("HTTP request duration distribution", "seconds"),
				exemplars: ex(0.456, 0, "trace_id", "slow_request_trace", "endpoint", "/login")})},
		complianceCase{name: "ComplexSamplesRequest", success: true, written: [3]int{2, 0, 1}, series: samples(
			cSeries{labels: lb("__name__", "cpu_usage", "instance", "server1"), value: 0.85, meta: gaugeMeta("CPU usage ratio", "ratio"),
				exemplars: ex(0.85, 0, "trace_id", "high_cpu_trace", "process", "worker")},
			cSeries{labels: lb("__name__", "memory_usage", "instance", "server1"), value: 8589934592, meta: gaugeMeta("Memory usage in bytes", "bytes")})},
		complianceCase{name: "ComplexHistogramsRequest", success: true, written: [3]int{0, 2, 1}, series: samples(
			cSeries{labels: lb("__name__", "response_time_hist", "endpoint", "/api/v1/users"), hist: complianceHistogram(0.125, true, false, true, false, false),
				meta: histMeta("Response time distribution", "seconds"), exemplars: ex(0.125, 0, "trace_id", "fast_response", "user", "premium")},
			cSeries{labels: lb("__name__", "request_size_hist", "method", "POST"), hist: complianceHistogram(1024, false, true, true, false, false),
				meta: histMeta("Request size distribution", "bytes")})},
		complianceCase{name: "MultipleMetricFamiliesSamples", success: true, written: [3]int{2, 0, 1}, series: samples(
			cSeries{labels: lb("__name__", "http_requests_total", "status", "200"), value: 1000, meta: counterMeta("Total HTTP requests", "requests"),
				exemplars: ex(1000, 0, "trace_id", "successful_request")},
			cSeries{labels: lb("__name__", "temperature_celsius", "location", "datacenter1"), value: 23.5, meta: gaugeMeta("Temperature in Celsius", "celsius")})},
		complianceCase{name: "MultipleMetricFamiliesHistograms", success: true, written: [3]int{0, 1, 1},
			series: samples(cSeries{labels: lb("__name__", "request_duration_seconds", "handler", "/metrics"),
				hist: complianceHistogram(0.003, true, false, true, false, false), meta: histMeta("Request duration in seconds", "seconds"),
				exemplars: ex(0.003, 0, "trace_id", "metrics_scrape", "scraper", "prometheus")})},
		complianceCase{name: "EdgeCaseCombinations/metadata_without_data", raw: true, success: true,
			series: samples(cSeries{labels: name("orphan_metric"), none: true, meta: counterMeta("Orphaned metric metadata", "count")})},
		complianceCase{name: "EdgeCaseCombinations/exemplars_without_data", raw: true, success: true, written: [3]int{0, 0, 1},
			series: samples(cSeries{labels: name("orphan_metric"), none: true, exemplars: ex(42, 0, "trace_id", "orphan_trace")})},
		complianceCase{name: "EdgeCaseCombinations/mixed_timestamp_data", raw: true, success: true, written: [3]int{2, 0, 1}, series: samples(
			cSeries{labels: name("old_metric"), value: 1, offset: -time.Hour, exemplars: ex(1, -30*time.Minute, "trace_id", "old_trace")},
			cSeries{labels: name("new_metric"), value: 2})})
	var manySamples, manyHists []cSeries
	for i := range 50 {
		manySamples = append(manySamples, cSeries{labels: lb("__name__", fmt.Sprintf("counter_metric_%d", i), "series", fmt.Sprintf("series_%d", i)),
			value: float64(i * 100), meta: counterMeta(fmt.Sprintf("Counter metric number %d", i), "count"),
			exemplars: ex(float64(i*100), 0, "trace_id", fmt.Sprintf("trace_%d", i))})
		manyHists = append(manyHists, cSeries{labels: lb("__name__", fmt.Sprintf("histogram_metric_%d", i), "bucket", fmt.Sprintf("bucket_%d", i)),
			hist: complianceHistogram(float64(i)/10, true, i%2 == 0, true, false, false), meta: histMeta(fmt.Sprintf("Histogram metric number %d", i), "seconds"),
			exemplars: ex(float64(i)/10, 0, "trace_id", fmt.Sprintf("trace_%d", i))})
	}
	special := lb("__name__", "test_metric", "job", "test-job_with.special@chars", "instance", "localhost:9090", "environment", "test🚀")
	add(complianceCase{name: "ManySamples", success: true, written: [3]int{50, 0, 50}, series: manySamples},
		complianceCase{name: "ManyHistograms", success: true, written: [3]int{0, 50, 50}, series: manyHists},
		complianceCase{name: "SpecialCharactersCombined", success: true, written: [3]int{1, 0, 1},
			series: samples(cSeries{labels: special, value: 42,
				meta:      gaugeMeta("Test metric with special characters: äöü, newlines\nand \"quotes\"", "special/units"),
				exemplars: ex(42, 0, "trace_id", "special_trace_äöü-123", "span_id", "span_with.dots-and_underscores")})},
		complianceCase{name: "CustomBucketsHistogramWithExemplar", success: true, written: [3]int{0, 1, 1},
			series: samples(cSeries{labels: lb("__name__", "custom_latency_hist", "version", "v2"),
				hist: complianceHistogram(0.05, false, false, false, true, false), exemplars: ex(0.05, 0, "trace_id", "custom_bucket_trace", "bucket", "0.1")})})

	// The request itself: content type, encoding, body.
	corrupt := func(header, value string, at int, b byte) func(t *testing.T, now time.Time) *http.Request {
		return func(t *testing.T, now time.Time) *http.Request {
			r := v2HTTPRequest(t, complianceRequest(samples(cSeries{labels: name("up"), value: 1}), now))
			if header != "" {
				r.Header.Set(header, value)
			}
			body, _ := io.ReadAll(r.Body)
			body[at] = b
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			return r
		}
	}
	for _, ct := range []string{"application/json", "image/png"} {
		add(complianceCase{name: "BadContentTypes/" + ct, raw: true, status: http.StatusUnsupportedMediaType, build: corrupt("Content-Type", ct, 0, '0')})
	}
	for _, enc := range []string{"gzip", "deflate"} {
		add(complianceCase{name: "BadContentEncodings/" + enc, raw: true, status: http.StatusUnsupportedMediaType, build: corrupt("Content-Encoding", enc, 0, '0')})
	}
	add(complianceCase{name: "CorruptRequestBody", raw: true, build: corrupt("", "", 0, '0')})
	v1 := func(corruptAt0 bool) func(t *testing.T, now time.Time) *http.Request {
		return func(t *testing.T, now time.Time) *http.Request {
			req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
				{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "testjob"}, {Name: "instance", Value: "localhost:9090"}},
					Samples: []prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}}},
				{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}}, Samples: []prompb.Sample{{Value: 100, Timestamp: now.UnixMilli()}}},
			}}
			data, err := req.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			body := snappy.Encode(nil, data)
			if corruptAt0 {
				body[0] = 0xff
			}
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
			r.RequestURI = ""
			r.Header.Set("Content-Type", ctV1)
			r.Header.Set("Content-Encoding", "snappy")
			return r
		}
	}
	add(complianceCase{name: "RW1BasicCompatibility", raw: true, success: true, build: v1(false)},
		complianceCase{name: "RW1ErrorHandling", raw: true, build: v1(true)})
	return cases
}
