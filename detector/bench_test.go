package detector

import (
	"strconv"
	"testing"
	"time"

	"github.com/rollguard/rollguard/sample"
)

// BenchmarkEngineAppend routes a batch of 1,000 samples, 10 % of them of the
// guarded service (the rest are another service's, dropped at the guard match).
func BenchmarkEngineAppend(b *testing.B) {
	c := newClock()
	e := NewEngine(mustParseB(b, engineConfig), EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1), requests("checkout", "v2", 200, 1)})
	batch := make([]sample.Sample, 0, 1000)
	for i := 0; i < 1000; i++ {
		svc := "other-" + strconv.Itoa(i%7)
		if i%10 == 0 {
			svc = "checkout"
		}
		v := "v1"
		if i%20 == 0 {
			v = "v2"
		}
		batch = append(batch, requests(svc, v, 200+100*(i%4), 3))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = e.Append(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkEngineEvaluate is one evaluation tick of one guard with a deployment.
func BenchmarkEngineEvaluate(b *testing.B) {
	c := newClock()
	e := NewEngine(mustParseB(b, engineConfig), EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1), requests("checkout", "v2", 200, 1)})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 500, 10), requests("checkout", "v2", 500, 10)})
		c.advance(time.Second)
		e.Evaluate()
	}
}
