package detector

import (
	"strconv"
	"sync/atomic"
	"syscall"
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

// parallelGuards is how many guards (one per service) the parallel
// benchmarks spread their traffic over.
const parallelGuards = 16

// parallelEngine is an engine with parallelGuards guards, each with a
// deployment under way (v1 → v2) whose runs already exist, on a fixed clock.
func parallelEngine(b *testing.B) *Engine {
	b.Helper()
	cfg := "global:\n  evaluation_interval: 10s\n  no_data_timeout: 1m\nguards:\n"
	for i := 0; i < parallelGuards; i++ {
		cfg += "  - name: svc-" + strconv.Itoa(i) + "\n    service: svc-" + strconv.Itoa(i) +
			"\n    alpha: 0.01\n    signals:\n      - name: errors\n"
	}
	at := newClock().t
	e := NewEngine(mustParseB(b, cfg), EngineOptions{Now: func() time.Time { return at }})
	for i := 0; i < parallelGuards; i++ {
		svc := "svc-" + strconv.Itoa(i)
		_ = e.Append([]sample.Sample{requests(svc, "v1", 200, 1)})
		if _, err := e.Announce(Deployment{Service: svc, Version: "v2", PreviousVersion: "v1"}); err != nil {
			b.Fatal(err)
		}
		_ = e.Append([]sample.Sample{requests(svc, "v1", 200, 1), requests(svc, "v2", 200, 1)})
	}
	return e
}

// parallelBatch is a request of 1,000 samples, 10 % of them of the guarded
// services of guards (the rest are unguarded services', dropped at the
// guard match), like BenchmarkEngineAppend's.
func parallelBatch(guards []int) []sample.Sample {
	batch := make([]sample.Sample, 0, 1000)
	for i := 0; i < 1000; i++ {
		svc := "other-" + strconv.Itoa(i%7)
		if i%10 == 0 {
			svc = "svc-" + strconv.Itoa(guards[(i/10)%len(guards)])
		}
		v := "v1"
		if i%20 == 0 {
			v = "v2"
		}
		batch = append(batch, requests(svc, v, 200+100*(i%4), 3))
	}
	return batch
}

// BenchmarkEngineAppendParallel routes requests from GOMAXPROCS goroutines
// at once, as the receivers' handlers do. In "own-guard" each goroutine
// sends the traffic of one service of its own (no two goroutines fold into
// the same guard while there are no more goroutines than guards); in
// "shared-guards" every request carries every guarded service, so all
// goroutines fold into the same guards. Run with -cpu 1,2,4,8 and
// -mutexprofile to see whether Append scales with cores.
func BenchmarkEngineAppendParallel(b *testing.B) {
	all := make([]int, parallelGuards)
	for i := range all {
		all[i] = i
	}
	for _, bc := range []struct {
		name  string
		batch func(worker int) []sample.Sample
	}{
		{"own-guard", func(w int) []sample.Sample { return parallelBatch([]int{w % parallelGuards}) }},
		{"shared-guards", func(int) []sample.Sample { return parallelBatch(all) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := parallelEngine(b)
			var workers atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				batch := bc.batch(int(workers.Add(1) - 1))
				for pb.Next() {
					_ = e.Append(batch)
				}
			})
			cpu = processCPU(b) - cpu
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "samples/s")
			// CPU time is the figure a busy machine does not skew as it
			// does the clock: lock handoffs and spinning show in it.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*1000), "cpu-ns/sample")
		})
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
