package remotewrite_test

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

const (
	ctV1 = "application/x-protobuf"
	ctV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// recorder is an Appender that keeps what it is handed, formatted.
type recorder struct {
	mu      sync.Mutex
	samples []string
}

func (r *recorder) Append(samples []sources.Sample) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range samples {
		r.samples = append(r.samples, format(s))
	}
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.samples...)
}

// format writes a sample in one line that a test can compare exactly.
func format(s sources.Sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s @%d", s.Kind, s.Metric, s.Labels, s.TimeUnixNano/1e6)
	switch s.Kind {
	case sources.KindHistogram:
		fmt.Fprintf(&b, " count=%v sum=%v", s.Count, s.Sum)
		if len(s.Buckets) > 0 {
			b.WriteString(" buckets=[")
			for i, bk := range s.Buckets {
				if i > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%v:%v", bk.UpperBound, bk.Count)
			}
			b.WriteByte(']')
		}
		if s.LE != nil {
			fmt.Fprintf(&b, " le=%v:%v", s.LE.UpperBound, s.LE.Count)
		}
		if n := s.Native; n != nil {
			fmt.Fprintf(&b, " native=scale:%d zt:%v zc:%v pos:%d%v neg:%d%v",
				n.Scale, n.ZeroThreshold, n.ZeroCount, n.Positive.Offset, n.Positive.Counts, n.Negative.Offset, n.Negative.Counts)
		}
	default:
		fmt.Fprintf(&b, " = %v", s.Value)
	}
	return b.String()
}

type fixture struct {
	t   testing.TB
	rec *recorder
	reg *prometheus.Registry
	rw  *remotewrite.Receiver
	h   http.Handler
}

func newFixture(t testing.TB, cfg remotewrite.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, rec: &recorder{}, reg: prometheus.NewRegistry()}
	if cfg.Appender == nil {
		cfg.Appender = f.rec
	}
	cfg.Registerer = f.reg
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}})
	f.rw = remotewrite.NewReceiver(cfg)
	f.h = f.rw.Handler()
	return f
}

// testWriter sends the receiver's log through the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// response is what a sender sees.
type response struct {
	code    int
	body    string
	written [3]string // samples, histograms, exemplars headers
}

func (f *fixture) post(contentType, encoding string, body []byte) response {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	h := w.Result().Header
	return response{code: w.Code, body: strings.TrimSuffix(w.Body.String(), "\n"), written: [3]string{
		h.Get(remotewrite.HeaderSamplesWritten), h.Get(remotewrite.HeaderHistogramsWritten), h.Get(remotewrite.HeaderExemplarsWritten)}}
}

// send marshals a 1.0 (*prompb.WriteRequest) or 2.0 (*writev2.Request)
// request, snappy-encodes it and posts it.
func (f *fixture) send(msg any) response {
	f.t.Helper()
	return f.post(encode(f.t, msg))
}

// encode marshals a request as client_golang's remote API does and
// snappy-encodes it.
func encode(t testing.TB, msg any) (contentType, encoding string, body []byte) {
	t.Helper()
	ct := ctV1
	if _, ok := msg.(*writev2.Request); ok {
		ct = ctV2
	}
	return ct, "snappy", snappy.Encode(nil, marshal(t, msg))
}

// marshal encodes a request with its own generated code: vtproto for the
// 2.0 types, gogo for Prometheus' 1.0 types. Neither checks UTF-8, so a test
// can send strings that are not.
func marshal(t testing.TB, msg any) []byte {
	t.Helper()
	var b []byte
	var err error
	switch m := msg.(type) {
	case *writev2.Request:
		b, err = m.MarshalVT()
	case *prompb.WriteRequest:
		b, err = m.Marshal()
	default:
		t.Fatalf("cannot marshal %T", msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// counter is the value of a counter of the receiver's metrics, by labels.
func (f *fixture) counter(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// series describes one series independently of the protocol version.
type series struct {
	labels []string // name, value pairs, in any order
	// typ is the metadata type: "" (none), counter, gauge, histogram,
	// gaugehistogram or summary. For 1.0 it is sent as the metadata of the
	// metric family named family (default: the metric name).
	typ, family string
	created     int64 // 2.0 only
	samples     []pt
	hists       []*writev2.Histogram
	exemplars   int
}

type pt struct {
	t int64
	v float64
}

func lbls(kv ...string) []string { return kv }

var v1Types = map[string]prompb.MetricMetadata_MetricType{
	"counter": prompb.MetricMetadata_COUNTER, "gauge": prompb.MetricMetadata_GAUGE, "histogram": prompb.MetricMetadata_HISTOGRAM,
	"gaugehistogram": prompb.MetricMetadata_GAUGEHISTOGRAM, "summary": prompb.MetricMetadata_SUMMARY,
}

var v2Types = map[string]writev2.Metadata_MetricType{
	"counter": writev2.Metadata_METRIC_TYPE_COUNTER, "gauge": writev2.Metadata_METRIC_TYPE_GAUGE,
	"histogram": writev2.Metadata_METRIC_TYPE_HISTOGRAM, "gaugehistogram": writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM,
	"summary": writev2.Metadata_METRIC_TYPE_SUMMARY,
}

func (s series) name() string {
	for i := 0; i+1 < len(s.labels); i += 2 {
		if s.labels[i] == "__name__" {
			return s.labels[i+1]
		}
	}
	return ""
}

// v1Request builds a prometheus.WriteRequest with Prometheus' own types
// (prompb), metadata after the series (the receiver must not depend on the
// order).
func v1Request(ss ...series) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	seen := map[string]bool{}
	for _, s := range ss {
		ts := prompb.TimeSeries{}
		for i := 0; i+1 < len(s.labels); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: s.labels[i], Value: s.labels[i+1]})
		}
		for _, p := range s.samples {
			ts.Samples = append(ts.Samples, prompb.Sample{Value: p.v, Timestamp: p.t})
		}
		for _, h := range s.hists {
			ts.Histograms = append(ts.Histograms, v1Histogram(h))
		}
		for i := 0; i < s.exemplars; i++ {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: 1})
		}
		req.Timeseries = append(req.Timeseries, ts)
		family := s.family
		if family == "" {
			family = s.name()
		}
		if s.typ != "" && !seen[family] {
			seen[family] = true
			req.Metadata = append(req.Metadata, prompb.MetricMetadata{Type: v1Types[s.typ], MetricFamilyName: family, Help: "help"})
		}
	}
	return req
}

// v1Histogram converts a 2.0 histogram to the 1.0 message through the wire:
// the two messages are the same.
func v1Histogram(h *writev2.Histogram) prompb.Histogram {
	b, err := h.MarshalVT()
	if err != nil {
		panic(err)
	}
	var out prompb.Histogram
	if err := out.Unmarshal(b); err != nil {
		panic(err)
	}
	return out
}

// v2Request builds an io.prometheus.write.v2.Request with a symbol table.
func v2Request(ss ...series) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, s := range ss {
		ts := &writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(s.labels, nil), CreatedTimestamp: s.created}
		if s.typ != "" {
			ts.Metadata = &writev2.Metadata{Type: v2Types[s.typ], HelpRef: st.Symbolize("help"), UnitRef: st.Symbolize("")}
		}
		for _, p := range s.samples {
			ts.Samples = append(ts.Samples, &writev2.Sample{Value: p.v, Timestamp: p.t})
		}
		ts.Histograms = append(ts.Histograms, s.hists...)
		for i := 0; i < s.exemplars; i++ {
			ts.Exemplars = append(ts.Exemplars, &writev2.Exemplar{LabelsRefs: st.SymbolizeLabels([]string{"trace_id", "abc"}, nil), Value: 1, Timestamp: 1})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	return req
}

// withStartTimestamp sets the newer specification's per-sample start
// timestamp (Sample field 3), which the exp types carry as an unknown field.
func withStartTimestamp(s *writev2.Sample, ms int64) *writev2.Sample {
	raw := protowire.AppendTag(nil, 3, protowire.VarintType)
	raw = protowire.AppendVarint(raw, uint64(ms))
	s.ProtoReflect().SetUnknown(raw)
	return s
}

// intHistogram is a native histogram with integer counts, buckets as deltas.
func intHistogram(t int64, schema int32, count, zero uint64, sum float64, pos []*writev2.BucketSpan, posDeltas []int64, neg []*writev2.BucketSpan, negDeltas []int64) *writev2.Histogram {
	return &writev2.Histogram{
		Timestamp: t, Schema: schema, ZeroThreshold: 0.001, Sum: sum,
		Count:         &writev2.Histogram_CountInt{CountInt: count},
		ZeroCount:     &writev2.Histogram_ZeroCountInt{ZeroCountInt: zero},
		PositiveSpans: pos, PositiveDeltas: posDeltas, NegativeSpans: neg, NegativeDeltas: negDeltas,
	}
}

// floatHistogram is a native histogram with absolute float counts.
func floatHistogram(t int64, schema int32, count, zero, sum float64, pos []*writev2.BucketSpan, posCounts []float64) *writev2.Histogram {
	return &writev2.Histogram{
		Timestamp: t, Schema: schema, Sum: sum,
		Count:         &writev2.Histogram_CountFloat{CountFloat: count},
		ZeroCount:     &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: zero},
		PositiveSpans: pos, PositiveCounts: posCounts,
	}
}

func span(offset int32, length uint32) *writev2.BucketSpan {
	return &writev2.BucketSpan{Offset: offset, Length: length}
}

// staleNaN is Prometheus' stale marker.
var staleNaN = math.Float64frombits(0x7ff0000000000002)

// manyLabels returns the labels of a series with n labels in all (the name included).
func manyLabels(name string, n int) []string {
	kv := []string{"__name__", name}
	for i := 1; i < n; i++ {
		kv = append(kv, "l"+strconv.Itoa(i), "v")
	}
	return kv
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
