package remotewrite_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

const ingestConfig = `
guards:
  - name: checkout
    service: checkout
    service_label: job
    version_label: version
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`

// benchmarkIngest is the ingest path end to end: decode, normalise, and
// route into the detector's per-cohort tick aggregates of a deployment
// under way (the real engine as Filter and Appender), without the network.
func benchmarkIngest(b *testing.B, msg any) {
	cfg, err := configs.Parse([]byte(ingestConfig))
	if err != nil {
		b.Fatal(err)
	}
	e := detector.NewEngine(cfg, detector.EngineOptions{})
	if _, err := e.Announce(detector.Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"}); err != nil {
		b.Fatal(err)
	}
	ct, enc, body := encode(b, msg)
	h := remotewrite.NewReceiver(remotewrite.Config{Appender: e, Filter: e}).Handler()
	w := &discardWriter{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodPost, "/api/v1/write", nil)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", enc)
	rd := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		rd.Reset(body)
		req.Body = readCloser{rd}
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkIngestV1(b *testing.B) { benchmarkIngest(b, v1Request(benchSeries()...)) }

func BenchmarkIngestV2(b *testing.B) { benchmarkIngest(b, v2Request(benchSeries()...)) }
