package remotewrite_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

// benchSeries is a request of 2,000 series of 8 labels, one sample each;
// every tenth is the guarded service's request counter, the rest are 50
// other metrics of other jobs.
func benchSeries() []series {
	ss := make([]series, 2000)
	for i := range ss {
		name, job, typ := "node_metric_"+strconv.Itoa(i%50), "node", "gauge"
		if i%10 == 0 {
			name, job, typ = "http_requests_total", "checkout", "counter"
		}
		ss[i] = series{
			labels: lbls("__name__", name, "job", job, "instance", "10.0.0."+strconv.Itoa(i%250)+":9100",
				"version", "v"+strconv.Itoa(i%2+1), "code", strconv.Itoa(200+i%5*100), "method", "GET",
				"path", "/api/v"+strconv.Itoa(i%7), "zone", "eu-west-"+strconv.Itoa(i%3)),
			typ: typ, samples: []pt{{1_700_000_000_000, float64(i)}},
		}
	}
	return ss
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

type countingAppender struct{ n int }

func (c *countingAppender) Append(s []sources.Sample) error { c.n += len(s); return nil }

// benchmarkWrite posts the same pre-encoded request b.N times, through the
// handler but without a network. Its timestamps do not move: after a first
// post that sets the counters' bases, every post hands on 200 increments of
// 0, which costs the converter the same as real ones; no detector is behind
// the Appender. samples/s counts the samples posted, wanted or not.
func benchmarkWrite(b *testing.B, msg any) {
	ct, enc, body := encode(b, msg)
	app := &countingAppender{}
	rw := remotewrite.NewReceiver(remotewrite.Config{
		Appender: app,
		Filter:   sources.FilterFunc(func(m string) bool { return m == "http_requests_total" }),
	})
	h := rw.Handler()
	w := &discardWriter{h: http.Header{}}
	req, err := http.NewRequest(http.MethodPost, "/api/v1/write", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", enc)
	req.ContentLength = int64(len(body))
	rd := bytes.NewReader(body)
	post := func() {
		rd.Reset(body)
		req.Body = readCloser{rd}
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	post() // the first post sets the counters' bases
	app.n = 0
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		post()
	}
	b.StopTimer()
	if app.n != 200*b.N {
		b.Fatalf("handed on %d samples in %d posts, want 200 a post", app.n, b.N)
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func BenchmarkRemoteWriteV1(b *testing.B) { benchmarkWrite(b, v1Request(benchSeries()...)) }

func BenchmarkRemoteWriteV2(b *testing.B) { benchmarkWrite(b, v2Request(benchSeries()...)) }
