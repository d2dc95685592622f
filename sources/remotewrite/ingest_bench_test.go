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
// Requests move on a second a post (see benchBodies); after benchRounds
// posts a fresh receiver starts again (untimed).
func benchmarkIngest(b *testing.B, msg func(ts int64) any) {
	cfg, err := configs.Parse([]byte(ingestConfig))
	if err != nil {
		b.Fatal(err)
	}
	e := detector.NewEngine(cfg, detector.EngineOptions{})
	if _, err := e.Announce(detector.Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"}); err != nil {
		b.Fatal(err)
	}
	ct, enc, bodies := benchBodies(b, msg)
	var h http.Handler
	w := &discardWriter{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodPost, "/api/v1/write", nil)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", enc)
	rd := bytes.NewReader(nil)
	post := func(body []byte) {
		rd.Reset(body)
		req.Body = readCloser{rd}
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	fresh := func() {
		h = remotewrite.NewReceiver(remotewrite.Config{Appender: e, Filter: e, VersionLabels: []string{"job", "version"}}).Handler()
		post(bodies[0])
	}
	fresh()
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i, r := 0, 1; i < b.N; i, r = i+1, r+1 {
		if r == benchRounds {
			b.StopTimer()
			fresh()
			r = 1
			b.StartTimer()
		}
		post(bodies[r])
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkIngestV1(b *testing.B) {
	benchmarkIngest(b, func(ts int64) any { return v1Request(benchSeries(ts)...) })
}

func BenchmarkIngestV2(b *testing.B) {
	benchmarkIngest(b, func(ts int64) any { return v2Request(benchSeries(ts)...) })
}
