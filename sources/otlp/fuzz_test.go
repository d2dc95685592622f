package otlp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rollguard/rollguard/sources/otlp"
)

// fuzzMaxPoints is FuzzReceiver's points-per-request limit, low enough for
// a seed under its body limit to pass it.
const fuzzMaxPoints = 1000

// FuzzReceiver posts arbitrary bodies as protobuf or JSON, plain or gzip.
// The receiver must never panic, never answer 5xx (the Appender never
// fails here), and every answer must decode: an ExportResponse on 200, a
// google.rpc.Status otherwise. Each input is posted twice to a fresh
// receiver, so the second post runs the cumulative path against the state
// the first one left.
func FuzzReceiver(f *testing.F) {
	cum, delta := pmetric.AggregationTemporalityCumulative, pmetric.AggregationTemporalityDelta
	valid := newMetrics("v1").
		histogram(reqDur, cum, 200, httpStart, httpT0, 10, 2, bounds, []uint64{5, 3, 2}).
		histogram(reqDur, delta, 500, httpStart, httpT0, 1, 0.5, bounds, []uint64{0, 1, 0}).
		sum("requests", cum, true, httpStart, httpT0, 7).
		sum("in_flight", cum, false, httpStart, httpT0, 3).
		gauge("cpu", httpT0, 0.5).
		summary("rpc.duration", httpStart, httpT0, 4, 1).
		expHistogram("rpc.latency", httpStart, httpT0, -3, 3, 2, 2).
		empty("nothing")
	for _, asJSON := range []bool{false, true} {
		enc := valid.proto
		if asJSON {
			enc = valid.json
		}
		f.Add(enc(f), asJSON, false)
		f.Add(gzipped(f, enc(f)), asJSON, true)
	}
	f.Add([]byte{}, false, false)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, false, false)
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3","explicitBounds":[1,2]}]}}]}]}]}`), true, false)
	f.Add([]byte(`{"resourceMetrics":[`), true, false)
	f.Add([]byte("\x1f\x8b\x08\x00junk"), false, true)
	// Hostile inputs of issue 13, scaled to the fuzz body limit: brackets
	// nested past MaxJSONDepth (plain, gzip'd, and inside a valid export),
	// a histogram point with more bounds than MaxBuckets, and an export with
	// more points than MaxPoints.
	deep := []byte(strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000))
	f.Add(deep, true, false)
	f.Add(gzipped(f, deep), true, true)
	f.Add(deepJSON(30), true, false)
	wide := make([]float64, 3000)
	for i := range wide {
		wide[i] = float64(i)
	}
	f.Add(newMetrics("v1").histogram(reqDur, cum, 200, httpStart, httpT0, 1, 1, wide, make([]uint64, len(wide)+1)).proto(f), false, false)
	f.Add(manyGauges(fuzzMaxPoints+1).proto(f), false, false)

	f.Fuzz(func(t *testing.T, body []byte, asJSON, gz bool) {
		h := otlp.NewReceiver(otlp.Config{Appender: &sampleSink{}, MaxRequestBytes: 1 << 16, MaxPoints: fuzzMaxPoints}).Handler()
		ct := ctProto
		if asJSON {
			ct = ctJSON
		}
		for i := 0; i < 2; i++ {
			req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			if gz {
				req.Header.Set("Content-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch code := rec.Code; {
			case code == http.StatusOK:
				resp := pmetricotlp.NewExportResponse()
				var err error
				if asJSON {
					err = resp.UnmarshalJSON(rec.Body.Bytes())
				} else {
					err = resp.UnmarshalProto(rec.Body.Bytes())
				}
				if err != nil {
					t.Fatalf("200 with an undecodable ExportResponse %q: %v", rec.Body.Bytes(), err)
				}
			case code >= 500:
				t.Fatalf("status %d: %q", code, rec.Body.Bytes())
			default:
				st := &spb.Status{}
				var err error
				if asJSON {
					err = protojson.Unmarshal(rec.Body.Bytes(), st)
				} else {
					err = proto.Unmarshal(rec.Body.Bytes(), st)
				}
				if err != nil || st.GetMessage() == "" {
					t.Fatalf("status %d with body %q: want a google.rpc.Status with a message (decode error %v)", code, rec.Body.Bytes(), err)
				}
			}
		}
	})
}
