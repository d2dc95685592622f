package otlp_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
)

const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
	reqDur  = "http.server.request.duration"
)

// httpT0 is the end of the first export; series start a minute before it,
// so they are fresh and their first point counts in full.
var (
	httpT0    = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	httpStart = httpT0.Add(-time.Minute)
)

// sampleSink is the Appender under test: it records what it is handed.
type sampleSink struct {
	mu      sync.Mutex
	samples []sources.Sample
	err     error // returned by Append when set
}

func (s *sampleSink) Append(samples []sources.Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.samples = append(s.samples, samples...)
	return nil
}

func (s *sampleSink) take() []sources.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.samples
	s.samples = nil
	return out
}

// metricsBuilder builds OTLP metrics for service checkout at a version.
type metricsBuilder struct {
	md    pmetric.Metrics
	scope pmetric.MetricSlice
}

func newMetrics(version string) *metricsBuilder {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.version", version)
	return &metricsBuilder{md: md, scope: rm.ScopeMetrics().AppendEmpty().Metrics()}
}

// histogram adds a histogram data point with status code attribute code.
func (b *metricsBuilder) histogram(name string, temp pmetric.AggregationTemporality, code int64, start, ts time.Time,
	count uint64, sum float64, bounds []float64, buckets []uint64) *metricsBuilder {
	m := b.scope.AppendEmpty()
	m.SetName(name)
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(temp)
	dp := h.DataPoints().AppendEmpty()
	dp.Attributes().PutInt("http.response.status_code", code)
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetCount(count)
	dp.SetSum(sum)
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(buckets)
	return b
}

func (b *metricsBuilder) sum(name string, temp pmetric.AggregationTemporality, monotonic bool, start, ts time.Time, v int64) *metricsBuilder {
	m := b.scope.AppendEmpty()
	m.SetName(name)
	s := m.SetEmptySum()
	s.SetAggregationTemporality(temp)
	s.SetIsMonotonic(monotonic)
	dp := s.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetIntValue(v)
	return b
}

// doubleSum is a monotonic delta sum with a double value.
func (b *metricsBuilder) doubleSum(name string, v float64) *metricsBuilder {
	b.sum(name, pmetric.AggregationTemporalityDelta, true, httpStart, httpT0, 0)
	m := b.scope.At(b.scope.Len() - 1)
	m.Sum().DataPoints().At(0).SetDoubleValue(v)
	return b
}

func (b *metricsBuilder) gauge(name string, ts time.Time, v float64) *metricsBuilder {
	m := b.scope.AppendEmpty()
	m.SetName(name)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetDoubleValue(v)
	return b
}

func (b *metricsBuilder) summary(name string, start, ts time.Time, count uint64, sum float64) *metricsBuilder {
	m := b.scope.AppendEmpty()
	m.SetName(name)
	dp := m.SetEmptySummary().DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetCount(count)
	dp.SetSum(sum)
	q := dp.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(1.5)
	return b
}

// expHistogram adds a cumulative exponential histogram with one point per
// scale, a second apart from ts on, all with the same positive offset.
func (b *metricsBuilder) expHistogram(name string, start, ts time.Time, offset int32, scales ...int32) *metricsBuilder {
	m := b.scope.AppendEmpty()
	m.SetName(name)
	eh := m.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for i, scale := range scales {
		dp := eh.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Duration(i) * time.Second)))
		dp.SetScale(scale)
		dp.SetCount(uint64(2 + i))
		dp.Positive().SetOffset(offset)
		dp.Positive().BucketCounts().FromRaw([]uint64{1, uint64(1 + i)})
	}
	return b
}

// empty adds a metric with no data at all (no type), which the receiver cannot read.
func (b *metricsBuilder) empty(name string) *metricsBuilder {
	b.scope.AppendEmpty().SetName(name)
	return b
}

func (b *metricsBuilder) proto(t testing.TB) []byte {
	t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(b.md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (b *metricsBuilder) json(t testing.TB) []byte {
	t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(b.md).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// receiverServer runs a Receiver behind a real HTTP server.
type receiverServer struct {
	sink *sampleSink
	reg  *prometheus.Registry
	srv  *httptest.Server
}

func startReceiver(t *testing.T, cfg otlp.Config) *receiverServer {
	t.Helper()
	rs := &receiverServer{sink: &sampleSink{}, reg: prometheus.NewRegistry()}
	cfg.Appender, cfg.Registerer = rs.sink, rs.reg
	rs.srv = httptest.NewServer(otlp.NewReceiver(cfg).Handler())
	t.Cleanup(rs.srv.Close)
	return rs
}

type httpResult struct {
	code int
	ct   string
	body []byte
}

func (rs *receiverServer) post(t testing.TB, method, ct, encoding string, body []byte) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, rs.srv.URL+"/v1/metrics", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := rs.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, resp.Header.Get("Content-Type"), b}
}

// exportOK checks a 200 and decodes its ExportResponse in the request's encoding.
func exportOK(t testing.TB, r httpResult, asJSON bool) pmetricotlp.ExportResponse {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %q", r.code, r.body)
	}
	resp := pmetricotlp.NewExportResponse()
	var err error
	if asJSON {
		err = resp.UnmarshalJSON(r.body)
	} else {
		err = resp.UnmarshalProto(r.body)
	}
	if err != nil {
		t.Fatalf("decode ExportResponse %q: %v", r.body, err)
	}
	return resp
}

// rpcStatus decodes an error body, a google.rpc.Status in the response's encoding.
func rpcStatus(t testing.TB, r httpResult) *spb.Status {
	t.Helper()
	st := &spb.Status{}
	var err error
	switch r.ct {
	case ctJSON:
		err = protojson.Unmarshal(r.body, st)
	case ctProto:
		err = proto.Unmarshal(r.body, st)
	default:
		t.Fatalf("error response has Content-Type %q", r.ct)
	}
	if err != nil {
		t.Fatalf("decode google.rpc.Status %q: %v", r.body, err)
	}
	return st
}

var (
	bounds     = []float64{0.1, 1}
	codeLabels = func(version, code string) sources.Labels {
		return sources.Labels{{Name: "http.response.status_code", Value: code}, {Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}
	}
	plainLabels = func(version string) sources.Labels {
		return sources.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}
	}
)

func buckets(counts ...float64) []sources.Bucket {
	ub := append(append([]float64(nil), bounds...), math.Inf(1))
	out := make([]sources.Bucket, len(counts))
	for i, c := range counts {
		out[i] = sources.Bucket{UpperBound: ub[i], Count: c}
	}
	return out
}

func checkSamples(t testing.TB, got, want []sources.Sample) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	// When an increment began is checked where a test says it
	// (TestReceiverIncrementStart); elsewhere it is left out.
	got = append([]sources.Sample(nil), got...)
	for i := range got {
		if i < len(want) && want[i].StartUnixNano == 0 {
			got[i].StartUnixNano = 0
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("samples differ\n got: %+v\nwant: %+v", got, want)
	}
}

// TestReceiverEncodings posts the same delta histogram in every encoding the
// receiver accepts; each must yield the same sample and a response in the
// request's encoding.
func TestReceiverEncodings(t *testing.T) {
	m := newMetrics("v1").histogram(reqDur, pmetric.AggregationTemporalityDelta, 200, httpStart, httpT0, 10, 2.5, bounds, []uint64{6, 3, 1})
	want := []sources.Sample{{Metric: reqDur, Labels: codeLabels("v1", "200"), Kind: sources.KindHistogram,
		TimeUnixNano: httpT0.UnixNano(), Count: 10, Sum: 2.5, Buckets: buckets(6, 3, 1)}}
	tests := []struct {
		name, ct, encoding string
		body               []byte
		asJSON             bool
	}{
		{"protobuf", ctProto, "", m.proto(t), false},
		{"json", ctJSON, "", m.json(t), true},
		{"json with charset", ctJSON + "; charset=utf-8", "", m.json(t), true},
		{"protobuf gzip", ctProto, "gzip", gzipped(t, m.proto(t)), false},
		{"json gzip", ctJSON, "gzip", gzipped(t, m.json(t)), true},
		{"protobuf identity", ctProto, "identity", m.proto(t), false},
		{"protobuf GZIP upper case", ctProto, "GZIP", gzipped(t, m.proto(t)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startReceiver(t, otlp.Config{})
			r := rs.post(t, http.MethodPost, tt.ct, tt.encoding, tt.body)
			resp := exportOK(t, r, tt.asJSON)
			wantCT := ctProto
			if tt.asJSON {
				wantCT = ctJSON
			}
			if r.ct != wantCT {
				t.Errorf("response Content-Type %q, want %q", r.ct, wantCT)
			}
			if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 0 || ps.ErrorMessage() != "" {
				t.Errorf("partial success %d %q, want none", ps.RejectedDataPoints(), ps.ErrorMessage())
			}
			checkSamples(t, rs.sink.take(), want)
		})
	}
}

// TestReceiverTwoExports sends two exports of the same series and checks
// the samples of each: cumulative points become increments, delta points and
// gauges pass through.
func TestReceiverTwoExports(t *testing.T) {
	t1 := httpT0.Add(10 * time.Second)
	cum, delta := pmetric.AggregationTemporalityCumulative, pmetric.AggregationTemporalityDelta
	old := httpT0.Add(-time.Hour)
	tests := []struct {
		name          string
		first, second *metricsBuilder
		want1, want2  []sources.Sample
	}{
		{
			name:   "cumulative histogram of a fresh series",
			first:  newMetrics("v1").histogram(reqDur, cum, 500, httpStart, httpT0, 10, 2, bounds, []uint64{5, 3, 2}),
			second: newMetrics("v1").histogram(reqDur, cum, 500, httpStart, t1, 16, 3.5, bounds, []uint64{7, 6, 3}),
			want1: []sources.Sample{{Metric: reqDur, Labels: codeLabels("v1", "500"), Kind: sources.KindHistogram,
				TimeUnixNano: httpT0.UnixNano(), Count: 10, Sum: 2, Buckets: buckets(5, 3, 2)}},
			want2: []sources.Sample{{Metric: reqDur, Labels: codeLabels("v1", "500"), Kind: sources.KindHistogram,
				TimeUnixNano: t1.UnixNano(), Count: 6, Sum: 1.5, Buckets: buckets(2, 3, 1)}},
		},
		{
			name:   "cumulative histogram of an old series: the first export sets the base",
			first:  newMetrics("v1").histogram(reqDur, cum, 200, old, httpT0, 1000, 200, bounds, []uint64{500, 300, 200}),
			second: newMetrics("v1").histogram(reqDur, cum, 200, old, t1, 1004, 201, bounds, []uint64{502, 301, 201}),
			want1:  nil,
			want2: []sources.Sample{{Metric: reqDur, Labels: codeLabels("v1", "200"), Kind: sources.KindHistogram,
				TimeUnixNano: t1.UnixNano(), Count: 4, Sum: 1, Buckets: buckets(2, 1, 1)}},
		},
		{
			name:   "delta histogram passes through",
			first:  newMetrics("v2").histogram(reqDur, delta, 200, httpT0.Add(-10*time.Second), httpT0, 3, 1, bounds, []uint64{1, 1, 1}),
			second: newMetrics("v2").histogram(reqDur, delta, 200, httpT0, t1, 2, 0.5, bounds, []uint64{2, 0, 0}),
			want1: []sources.Sample{{Metric: reqDur, Labels: codeLabels("v2", "200"), Kind: sources.KindHistogram,
				TimeUnixNano: httpT0.UnixNano(), Count: 3, Sum: 1, Buckets: buckets(1, 1, 1)}},
			want2: []sources.Sample{{Metric: reqDur, Labels: codeLabels("v2", "200"), Kind: sources.KindHistogram,
				TimeUnixNano: t1.UnixNano(), Count: 2, Sum: 0.5, Buckets: buckets(2, 0, 0)}},
		},
		{
			name:   "delta sum passes through as counter increments",
			first:  newMetrics("v1").sum("requests", delta, true, httpT0.Add(-10*time.Second), httpT0, 7),
			second: newMetrics("v1").sum("requests", delta, true, httpT0, t1, 3),
			want1:  []sources.Sample{{Metric: "requests", Labels: plainLabels("v1"), Kind: sources.KindCounter, TimeUnixNano: httpT0.UnixNano(), Value: 7}},
			want2:  []sources.Sample{{Metric: "requests", Labels: plainLabels("v1"), Kind: sources.KindCounter, TimeUnixNano: t1.UnixNano(), Value: 3}},
		},
		{
			name:   "cumulative sum becomes increments",
			first:  newMetrics("v1").sum("requests", cum, true, httpStart, httpT0, 7),
			second: newMetrics("v1").sum("requests", cum, true, httpStart, t1, 10),
			want1:  []sources.Sample{{Metric: "requests", Labels: plainLabels("v1"), Kind: sources.KindCounter, TimeUnixNano: httpT0.UnixNano(), Value: 7}},
			want2:  []sources.Sample{{Metric: "requests", Labels: plainLabels("v1"), Kind: sources.KindCounter, TimeUnixNano: t1.UnixNano(), Value: 3}},
		},
		{
			name:   "non-monotonic sum reads as a gauge",
			first:  newMetrics("v1").sum("in_flight", cum, false, httpStart, httpT0, 7),
			second: newMetrics("v1").sum("in_flight", cum, false, httpStart, t1, 4),
			want1:  []sources.Sample{{Metric: "in_flight", Labels: plainLabels("v1"), Kind: sources.KindGauge, TimeUnixNano: httpT0.UnixNano(), Value: 7}},
			want2:  []sources.Sample{{Metric: "in_flight", Labels: plainLabels("v1"), Kind: sources.KindGauge, TimeUnixNano: t1.UnixNano(), Value: 4}},
		},
		{
			name:   "gauge passes through",
			first:  newMetrics("v1").gauge("cpu", httpT0, 0.75),
			second: newMetrics("v1").gauge("cpu", t1, 0.25),
			want1:  []sources.Sample{{Metric: "cpu", Labels: plainLabels("v1"), Kind: sources.KindGauge, TimeUnixNano: httpT0.UnixNano(), Value: 0.75}},
			want2:  []sources.Sample{{Metric: "cpu", Labels: plainLabels("v1"), Kind: sources.KindGauge, TimeUnixNano: t1.UnixNano(), Value: 0.25}},
		},
		{
			name:   "summary keeps count and sum as increments",
			first:  newMetrics("v1").summary("rpc.duration", httpStart, httpT0, 10, 5),
			second: newMetrics("v1").summary("rpc.duration", httpStart, t1, 12, 5.5),
			want1:  []sources.Sample{{Metric: "rpc.duration", Labels: plainLabels("v1"), Kind: sources.KindHistogram, TimeUnixNano: httpT0.UnixNano(), Count: 10, Sum: 5}},
			want2:  []sources.Sample{{Metric: "rpc.duration", Labels: plainLabels("v1"), Kind: sources.KindHistogram, TimeUnixNano: t1.UnixNano(), Count: 2, Sum: 0.5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startReceiver(t, otlp.Config{})
			exportOK(t, rs.post(t, http.MethodPost, ctProto, "", tt.first.proto(t)), false)
			checkSamples(t, rs.sink.take(), tt.want1)
			exportOK(t, rs.post(t, http.MethodPost, ctProto, "", tt.second.proto(t)), false)
			checkSamples(t, rs.sink.take(), tt.want2)
		})
	}
}

// TestReceiverPartialSuccess: points the receiver cannot read are rejected
// through OTLP partial_success and counted by reason; the rest of the
// request is still appended.
func TestReceiverPartialSuccess(t *testing.T) {
	good := sources.Sample{Metric: "cpu", Labels: plainLabels("v1"), Kind: sources.KindGauge, TimeUnixNano: httpT0.UnixNano(), Value: 0.5}
	tooMany := newMetrics("v1").gauge("cpu", httpT0, 0.5)
	for i := 0; i < 3; i++ {
		m := tooMany.scope.AppendEmpty()
		m.SetName("wide")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		for j := 0; j < 3; j++ {
			dp.Attributes().PutStr(fmt.Sprintf("k%d", j), "v")
		}
	}
	longValue := newMetrics("v1").gauge("cpu", httpT0, 0.5)
	lm := longValue.scope.AppendEmpty()
	lm.SetName("long")
	lm.SetEmptyGauge().DataPoints().AppendEmpty().Attributes().PutStr("path", strings.Repeat("x", 33))

	tests := []struct {
		name     string
		cfg      otlp.Config
		body     *metricsBuilder
		rejected int64
		reason   string
	}{
		{
			name: "histogram with a bucket layout that does not fit its bounds",
			body: newMetrics("v1").gauge("cpu", httpT0, 0.5).
				histogram(reqDur, pmetric.AggregationTemporalityDelta, 200, httpStart, httpT0, 2, 1, bounds, []uint64{1, 1}),
			rejected: 1, reason: "invalid_bucket_layout",
		},
		{
			name:     "metric without data",
			body:     newMetrics("v1").gauge("cpu", httpT0, 0.5).empty("nothing"),
			rejected: 1, reason: "unsupported_type_empty",
		},
		{
			name: "points over the label limit",
			// service.name, service.version and three point attributes: 5 > 4.
			cfg:      otlp.Config{MaxLabels: 4},
			body:     tooMany,
			rejected: 3, reason: "too_many_labels",
		},
		{
			name:     "a label value over the length limit",
			cfg:      otlp.Config{MaxLabelValueLength: 32},
			body:     longValue,
			rejected: 1, reason: "label_too_long",
		},
		{
			name:     "a negative delta counter",
			body:     newMetrics("v1").gauge("cpu", httpT0, 0.5).sum("requests", pmetric.AggregationTemporalityDelta, true, httpStart, httpT0, -5),
			rejected: 1, reason: "invalid_value",
		},
		{
			name:     "a NaN delta counter and a +Inf gauge",
			body:     newMetrics("v1").gauge("cpu", httpT0, 0.5).doubleSum("requests", math.NaN()).gauge("cpu2", httpT0, math.Inf(1)),
			rejected: 2, reason: "invalid_value",
		},
		{
			name:     "a histogram whose sum is NaN",
			body:     newMetrics("v1").gauge("cpu", httpT0, 0.5).summary("rpc.duration", httpStart, httpT0, 10, math.NaN()),
			rejected: 1, reason: "invalid_value",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startReceiver(t, tt.cfg)
			for _, asJSON := range []bool{false, true} {
				var r httpResult
				if asJSON {
					r = rs.post(t, http.MethodPost, ctJSON, "", tt.body.json(t))
				} else {
					r = rs.post(t, http.MethodPost, ctProto, "", tt.body.proto(t))
				}
				ps := exportOK(t, r, asJSON).PartialSuccess()
				if ps.RejectedDataPoints() != tt.rejected || ps.ErrorMessage() != tt.reason {
					t.Errorf("json=%v: partial success (%d, %q), want (%d, %q)", asJSON, ps.RejectedDataPoints(), ps.ErrorMessage(), tt.rejected, tt.reason)
				}
				checkSamples(t, rs.sink.take(), []sources.Sample{good})
			}
			// Two requests, each counted.
			want := map[string]float64{`reason="` + tt.reason + `"`: float64(2 * tt.rejected)}
			if got := counters(t, rs.reg, "rollguard_otlp_points_dropped_total"); !reflect.DeepEqual(got, want) {
				t.Errorf("rollguard_otlp_points_dropped_total = %v, want %v", got, want)
			}
		})
	}
}

// TestReceiverErrors: every refused request gets the right status and a
// google.rpc.Status body whose message says what was wrong, and nothing is
// appended.
func TestReceiverErrors(t *testing.T) {
	const limit = 1024
	valid := newMetrics("v1").gauge("cpu", httpT0, 1).proto(t)
	// Zeros compress to almost nothing: a gzip body under the limit that
	// inflates to 256 times it.
	bomb := gzipped(t, make([]byte, 256*limit))
	if len(bomb) >= limit {
		t.Fatalf("gzip bomb is %d bytes, want < %d", len(bomb), limit)
	}
	tests := []struct {
		name, method, ct, encoding string
		body                       []byte
		appendErr                  error
		code                       int
		rpcCode                    int32
		msg                        string // exact, or a prefix when it ends in "…"
		respCT                     string
	}{
		{
			name: "GET", method: http.MethodGet, ct: ctProto,
			code: http.StatusMethodNotAllowed, rpcCode: 12, respCT: ctProto,
			msg: "only POST is allowed on /v1/metrics",
		},
		{
			name: "text/plain", ct: "text/plain", body: valid,
			code: http.StatusUnsupportedMediaType, rpcCode: 3, respCT: ctProto,
			msg: `unsupported content type "text/plain": use application/x-protobuf or application/json`,
		},
		{
			name: "no content type", body: valid,
			code: http.StatusUnsupportedMediaType, rpcCode: 3, respCT: ctProto,
			msg: `unsupported content type "": use application/x-protobuf or application/json`,
		},
		{
			name: "brotli", ct: ctProto, encoding: "br", body: valid,
			code: http.StatusUnsupportedMediaType, rpcCode: 3, respCT: ctProto,
			msg: `unsupported content encoding "br": use gzip or none`,
		},
		{
			name: "brotli, JSON", ct: ctJSON, encoding: "br", body: []byte("{}"),
			code: http.StatusUnsupportedMediaType, rpcCode: 3, respCT: ctJSON,
			msg: `unsupported content encoding "br": use gzip or none`,
		},
		{
			name: "malformed protobuf", ct: ctProto, body: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01},
			code: http.StatusBadRequest, rpcCode: 3, respCT: ctProto,
			msg: "decode OTLP metrics: …",
		},
		{
			name: "malformed JSON", ct: ctJSON, body: []byte(`{"resourceMetrics": [`),
			code: http.StatusBadRequest, rpcCode: 3, respCT: ctJSON,
			msg: "decode OTLP metrics: …",
		},
		{
			name: "gzip header on a plain body", ct: ctProto, encoding: "gzip", body: valid,
			code: http.StatusBadRequest, rpcCode: 3, respCT: ctProto,
			msg: "decompress body: gzip: invalid header",
		},
		{
			name: "truncated gzip", ct: ctProto, encoding: "gzip", body: gzipped(t, valid)[:20],
			code: http.StatusBadRequest, rpcCode: 3, respCT: ctProto,
			msg: "read body: unexpected EOF",
		},
		{
			name: "body above the limit", ct: ctProto, body: make([]byte, limit+1),
			code: http.StatusRequestEntityTooLarge, rpcCode: 3, respCT: ctProto,
			msg: "request body larger than 1024 bytes",
		},
		{
			name: "compressed body above the limit", ct: ctProto, encoding: "gzip", body: gzipped(t, randomBytes(2*limit)),
			code: http.StatusRequestEntityTooLarge, rpcCode: 3, respCT: ctProto,
			msg: "request body larger than 1024 bytes",
		},
		{
			name: "gzip bomb", ct: ctProto, encoding: "gzip", body: bomb,
			code: http.StatusRequestEntityTooLarge, rpcCode: 3, respCT: ctProto,
			msg: "decompressed body larger than 1024 bytes",
		},
		{
			name: "gzip bomb, JSON", ct: ctJSON, encoding: "gzip", body: bomb,
			code: http.StatusRequestEntityTooLarge, rpcCode: 3, respCT: ctJSON,
			msg: "decompressed body larger than 1024 bytes",
		},
		{
			name: "appender failure", ct: ctProto, body: valid, appendErr: errors.New("detector stopped"),
			code: http.StatusServiceUnavailable, rpcCode: 14, respCT: ctProto,
			msg: "append: detector stopped",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startReceiver(t, otlp.Config{MaxRequestBytes: limit})
			rs.sink.err = tt.appendErr
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := rs.post(t, method, tt.ct, tt.encoding, tt.body)
			if r.code != tt.code {
				t.Fatalf("status %d, want %d; body %q", r.code, tt.code, r.body)
			}
			if r.ct != tt.respCT {
				t.Errorf("Content-Type %q, want %q", r.ct, tt.respCT)
			}
			st := rpcStatus(t, r)
			if st.GetCode() != tt.rpcCode {
				t.Errorf("rpc code %d, want %d", st.GetCode(), tt.rpcCode)
			}
			if prefix, ok := strings.CutSuffix(tt.msg, "…"); ok {
				if !strings.HasPrefix(st.GetMessage(), prefix) || len(st.GetMessage()) <= len(prefix) {
					t.Errorf("message %q, want %q followed by the decoder's reason", st.GetMessage(), prefix)
				}
			} else if st.GetMessage() != tt.msg {
				t.Errorf("message %q, want %q", st.GetMessage(), tt.msg)
			}
			if got := rs.sink.take(); len(got) != 0 {
				t.Errorf("refused request appended %d samples", len(got))
			}
			want := map[string]float64{fmt.Sprintf(`code="%d"`, tt.code): 1}
			if got := counters(t, rs.reg, "rollguard_otlp_requests_total"); !reflect.DeepEqual(got, want) {
				t.Errorf("rollguard_otlp_requests_total = %v, want %v", got, want)
			}
		})
	}
}

// counters gathers the counter family name from reg as a map from its
// labels (name="value",...) to its value.
func counters(t testing.TB, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out[strings.Join(ls, ",")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// randomBytes returns incompressible bytes from a fixed xorshift sequence.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// TestReceiverBodyAtLimit: a body of exactly MaxRequestBytes, compressed or
// decompressed, is accepted.
func TestReceiverBodyAtLimit(t *testing.T) {
	m := newMetrics("v1").gauge("cpu", httpT0, 1)
	// A compressible attribute, so that the gzip body is smaller than the
	// decompressed one, which is exactly at the limit.
	m.scope.At(0).Gauge().DataPoints().At(0).Attributes().PutStr("note", strings.Repeat("a", 200))
	body := m.proto(t)
	if z := gzipped(t, body); len(z) >= len(body) {
		t.Fatalf("gzip body %d bytes, want < %d", len(z), len(body))
	}
	rs := startReceiver(t, otlp.Config{MaxRequestBytes: int64(len(body))})
	exportOK(t, rs.post(t, http.MethodPost, ctProto, "", body), false)
	exportOK(t, rs.post(t, http.MethodPost, ctProto, "gzip", gzipped(t, body)), false)
	if got := len(rs.sink.take()); got != 2 {
		t.Errorf("%d samples, want 2", got)
	}
}

// TestReceiverFilter: metrics the Filter does not want never reach the Appender.
func TestReceiverFilter(t *testing.T) {
	var asked []string
	var mu sync.Mutex
	rs := startReceiver(t, otlp.Config{Filter: sources.FilterFunc(func(m string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, m)
		return m == reqDur
	})})
	body := newMetrics("v1").
		sum("other.requests", pmetric.AggregationTemporalityCumulative, true, httpStart, httpT0, 5).
		histogram(reqDur, pmetric.AggregationTemporalityDelta, 200, httpStart, httpT0, 1, 0.5, bounds, []uint64{0, 1, 0}).
		gauge("cpu", httpT0, 1).
		empty("unreadable")
	resp := exportOK(t, rs.post(t, http.MethodPost, ctProto, "", body.proto(t)), false)
	if n := resp.PartialSuccess().RejectedDataPoints(); n != 0 {
		t.Errorf("rejected %d points of unwanted metrics, want 0 (they are dropped before any check)", n)
	}
	checkSamples(t, rs.sink.take(), []sources.Sample{{Metric: reqDur, Labels: codeLabels("v1", "200"),
		Kind: sources.KindHistogram, TimeUnixNano: httpT0.UnixNano(), Count: 1, Sum: 0.5, Buckets: buckets(0, 1, 0)}})
	if want := []string{"other.requests", reqDur, "cpu", "unreadable"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("Filter asked about %v, want %v", asked, want)
	}
}

// TestReceiverPointAttributeWins: a point attribute overrides a resource
// attribute of the same name.
func TestReceiverPointAttributeWins(t *testing.T) {
	rs := startReceiver(t, otlp.Config{})
	m := newMetrics("v1").gauge("cpu", httpT0, 1)
	m.scope.At(0).Gauge().DataPoints().At(0).Attributes().PutStr("service.version", "v2")
	exportOK(t, rs.post(t, http.MethodPost, ctProto, "", m.proto(t)), false)
	checkSamples(t, rs.sink.take(), []sources.Sample{{Metric: "cpu", Labels: plainLabels("v2"),
		Kind: sources.KindGauge, TimeUnixNano: httpT0.UnixNano(), Value: 1}})
}

// TestReceiverKnownBugs documents defects found while writing these tests.
// Each case is skipped while the bug stands and fails once it is fixed, so
// the case is turned into an ordinary test with the fix.
func TestReceiverKnownBugs(t *testing.T) {
	t.Run("histogram gaining bucket counts under the same bounds", func(t *testing.T) {
		// OTLP allows a histogram point without bucket counts; the next point
		// of the series has them: a reset of the buckets, not a panic.
		m := newMetrics("v1").
			histogram(reqDur, pmetric.AggregationTemporalityCumulative, 200, httpStart, httpT0, 2, 1, bounds, nil).
			histogram(reqDur, pmetric.AggregationTemporalityCumulative, 200, httpStart, httpT0.Add(time.Second), 3, 1.5, bounds, []uint64{1, 1, 1})
		sink := &sampleSink{}
		h := otlp.NewReceiver(otlp.Config{Appender: sink}).Handler()
		code, panicked := serveRecovering(h, m.proto(t))
		if panicked != nil || code != http.StatusOK {
			t.Fatalf("status %d, panic %v", code, panicked)
		}
		got := sink.take()
		if len(got) != 2 || got[1].Count != 3 || len(got[1].Buckets) != 3 || got[1].Buckets[2].Count != 1 {
			t.Errorf("samples = %+v", got)
		}
	})
	t.Run("exponential histogram with bucket indexes past int32", func(t *testing.T) {
		m := newMetrics("v1").expHistogram(reqDur, httpStart, httpT0, math.MaxInt32, 2, 1)
		sink := &sampleSink{}
		h := otlp.NewReceiver(otlp.Config{Appender: sink}).Handler()
		code, panicked := serveRecovering(h, m.proto(t))
		if panicked != nil || code != http.StatusOK {
			t.Fatalf("status %d, panic %v", code, panicked)
		}
		if got := sink.take(); len(got) != 0 {
			t.Errorf("points past int32 were accepted: %+v", got)
		}
	})
	t.Run("an error echoing invalid UTF-8 still has a body", func(t *testing.T) {
		// Found by FuzzReceiver (testdata/fuzz/FuzzReceiver/f8a3e30030188aa9).
		rs := startReceiver(t, otlp.Config{})
		r := rs.post(t, http.MethodPost, ctJSON, "", []byte("\xbf"))
		if r.code != http.StatusBadRequest || len(r.body) == 0 {
			t.Fatalf("status %d, body %q", r.code, r.body)
		}
		if st := rpcStatus(t, r); !strings.HasPrefix(st.GetMessage(), "decode OTLP metrics: ReadObject: ") {
			t.Errorf("message %q, want the decoder's reason", st.GetMessage())
		}
	})
	t.Run("a retry after an Appender failure loses the increment", func(t *testing.T) {
		// The cumulative base moves before Append; when Append fails the
		// client retries the same points, which then look like no change.
		rs := startReceiver(t, otlp.Config{})
		t1 := httpT0.Add(10 * time.Second)
		exportOK(t, rs.post(t, http.MethodPost, ctProto, "", newMetrics("v1").
			sum("requests", pmetric.AggregationTemporalityCumulative, true, httpStart, httpT0, 10).proto(t)), false)
		rs.sink.take()
		second := newMetrics("v1").sum("requests", pmetric.AggregationTemporalityCumulative, true, httpStart, t1, 15).proto(t)
		rs.sink.err = errors.New("busy")
		if r := rs.post(t, http.MethodPost, ctProto, "", second); r.code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", r.code)
		}
		rs.sink.err = nil
		exportOK(t, rs.post(t, http.MethodPost, ctProto, "", second), false)
		want := []sources.Sample{{Metric: "requests", Labels: plainLabels("v1"), Kind: sources.KindCounter, TimeUnixNano: t1.UnixNano(), Value: 5}}
		got := rs.sink.take()
		if reflect.DeepEqual(got, want) {
			t.Fatal("known bug fixed: make this an ordinary test")
		}
		t.Skipf("known bug: the retried export yields %+v, want %+v", got, want)
	})
}

// serveRecovering serves one protobuf export on h, reporting a panic instead
// of crashing the test binary.
func serveRecovering(h http.Handler, body []byte) (code int, panicked any) {
	defer func() { panicked = recover() }()
	req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctProto)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, nil
}

// TestReceiverIncrementStart: every increment says when it began — a
// fresh cumulative series' first point at the series' start, later points
// at the previous point, a delta at its interval's start — so that the
// detector can leave out what began before its tests did.
func TestReceiverIncrementStart(t *testing.T) {
	t1, t2 := httpT0.Add(10*time.Second), httpT0.Add(20*time.Second)
	cum, delta := pmetric.AggregationTemporalityCumulative, pmetric.AggregationTemporalityDelta
	rs := startReceiver(t, otlp.Config{})
	for _, step := range []struct {
		m        *metricsBuilder
		at, from time.Time
	}{
		{newMetrics("v1").sum("requests", cum, true, httpStart, httpT0, 5), httpT0, httpStart},
		{newMetrics("v1").sum("requests", cum, true, httpStart, t1, 8), t1, httpT0},
		{newMetrics("v1").sum("requests", cum, true, httpStart, t2, 9), t2, t1},
		{newMetrics("v2").histogram(reqDur, delta, 200, t1, t2, 10, 2.5, bounds, []uint64{6, 3, 1}), t2, t1},
	} {
		exportOK(t, rs.post(t, http.MethodPost, ctProto, "", step.m.proto(t)), false)
		got := rs.sink.take()
		if len(got) != 1 || got[0].TimeUnixNano != step.at.UnixNano() || got[0].StartUnixNano != step.from.UnixNano() {
			t.Fatalf("samples %+v, want one at %v that began at %v", got, step.at, step.from)
		}
	}
}
