// Command recordings writes the recordings `rollguard replay` is tested
// with, deterministically (fixed seeds), under testdata/recordings/:
//
//	bad-canary.jsonl       stable v1 (1 % errors); from 00:10 a canary v2 takes
//	                       10 % of the traffic with 6 % errors and its slowest
//	                       5 % of requests 2.5 times slower (p99 shifted, p50 not)
//	healthy-canary.jsonl   the same canary, as good as the stable version
//	bad-all-at-once.jsonl  v1 for 30 minutes, then v2 replaces it entirely
//	                       with 5 % errors (no cohort to compare with)
//
// Run it from the repository root: go run ./tools/recordings
//
// # Format
//
// A recording is JSON lines. Each line is one OTLP/JSON
// ExportMetricsServiceRequest (the encoding of the pdata JSON marshaller,
// which OTLP/HTTP receivers accept with Content-Type: application/json)
// holding one export of one service instance, and the lines are in time
// order. Like the OpenTelemetry SDKs by default:
//
//   - one export per instance every 10 s, at the instance's own phase, plus a
//     last one when the process shuts down;
//   - cumulative temporality: counts since the process started, with the
//     process start as every point's start time. The stable instance has
//     been running for two hours when a recording begins, so its first
//     export only sets the base of rollguard's cumulative-to-increment
//     normalisation, as it would for a rollguard started next to a running
//     service;
//   - the HTTP server semantic conventions: a histogram
//     http.server.request.duration in seconds with the advised bucket bounds,
//     one point per http.request.method, http.route and
//     http.response.status_code (int), a point appearing once its status was
//     first served; min and max are recorded;
//   - resource attributes service.name, service.version and
//     service.instance.id.
//
// The traffic is 40 requests per second in all, Poisson, split between the
// instances by the scenario's shares; latency is log-normal (median 60 ms,
// σ = 0.55). Changing anything here changes the golden outputs in
// testdata/recordings/*.golden: regenerate them with
// go test ./cmd/rollguard -run Replay -update.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// recordingStart is the wall-clock time of every recording's first instant.
var recordingStart = time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)

const (
	service       = "checkout"
	route         = "/checkout"
	exportPeriod  = 10 * time.Second
	totalRate     = 40.0 // requests per second, all instances together
	latencyMedian = 0.060
	latencySigma  = 0.55
	// tailZ is the standard normal's 0.95 quantile: a tail shift slows the
	// requests that would have been among the slowest 5 %.
	tailZ = 1.6448536269514722
)

// bounds are the bucket bounds the HTTP semantic conventions advise for
// http.server.request.duration.
var bounds = []float64{0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// statuses are the response codes served, in the order points are written.
var statuses = []int64{200, 500}

// instance is one process of the service.
type instance struct {
	version string
	id      string
	// start and stop bound the process's life, relative to the recording's
	// start; stop 0 means it outlives the recording.
	start, stop time.Duration
	errProb     float64
	// tailShift multiplies the latency of the requests beyond the 95th
	// percentile; 1 leaves them alone.
	tailShift float64
	// share is the instance's share of all traffic at a time.
	share func(at time.Duration) float64
}

// scenario is one recording.
type scenario struct {
	file      string
	seed      uint64
	duration  time.Duration
	instances []instance
}

func canary(file string, seed uint64, errProb, tailShift float64) scenario {
	const canaryStart, canaryShare = 10 * time.Minute, 0.10
	return scenario{file: file, seed: seed, duration: time.Hour, instances: []instance{
		{version: "v1", id: "checkout-v1-7d9f8", start: -2 * time.Hour, errProb: 0.01, tailShift: 1,
			share: func(at time.Duration) float64 {
				if at >= canaryStart {
					return 1 - canaryShare
				}
				return 1
			}},
		{version: "v2", id: "checkout-v2-c41a2", start: canaryStart + 2*time.Second, errProb: errProb, tailShift: tailShift,
			share: func(time.Duration) float64 { return canaryShare }},
	}}
}

var scenarios = []scenario{
	canary("bad-canary.jsonl", 1, 0.06, 2.5),
	canary("healthy-canary.jsonl", 2, 0.01, 1),
	{file: "bad-all-at-once.jsonl", seed: 3, duration: time.Hour, instances: []instance{
		{version: "v1", id: "checkout-v1-7d9f8", start: -2 * time.Hour, stop: 30 * time.Minute, errProb: 0.01, tailShift: 1,
			share: func(time.Duration) float64 { return 1 }},
		{version: "v2", id: "checkout-v2-5b7e0", start: 30*time.Minute + 5*time.Second, errProb: 0.05, tailShift: 1,
			share: func(time.Duration) float64 { return 1 }},
	}},
}

func main() {
	out := flag.String("out", filepath.Join("testdata", "recordings"), "Directory to write the recordings to.")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "recordings:", err)
		os.Exit(1)
	}
	for _, s := range scenarios {
		path := filepath.Join(*out, s.file)
		n, err := write(path, s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "recordings:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d exports\n", path, n)
	}
}

// export is one line of a recording.
type export struct {
	at   time.Duration
	line []byte
}

func write(path string, s scenario) (int, error) {
	var all []export
	for i, in := range s.instances {
		rng := rand.New(rand.NewPCG(s.seed, uint64(i)))
		exps, err := run(in, s.duration, rng)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, exps...)
	}
	// Time order; at equal times, the instances' order.
	sort.SliceStable(all, func(i, j int) bool { return all[i].at < all[j].at })
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	for _, e := range all {
		_, _ = w.Write(e.line)
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return 0, err
	}
	return len(all), f.Close()
}

// series is the cumulative state of one histogram point of an instance.
type series struct {
	count    uint64
	sum      float64
	min, max float64
	buckets  []uint64
}

// run simulates one instance from its start and returns its exports that
// fall within the recording.
func run(in instance, duration time.Duration, rng *rand.Rand) ([]export, error) {
	hist := make([]*series, len(statuses))
	var out []export
	prev := in.start
	for at := in.start + exportPeriod; at <= duration; at += exportPeriod {
		last := in.stop > 0 && at >= in.stop
		if last {
			at = in.stop // the SDK's last export, on shutdown
		}
		serve(in, hist, prev, at, rng)
		prev = at
		if at >= 0 {
			line, err := encode(in, hist, at)
			if err != nil {
				return nil, err
			}
			out = append(out, export{at: at, line: line})
		}
		if last {
			break
		}
	}
	return out, nil
}

// serve records the requests the instance served in (from, to].
func serve(in instance, hist []*series, from, to time.Duration, rng *rand.Rand) {
	lambda := totalRate * in.share(from) * (to - from).Seconds()
	for n := poisson(rng, lambda); n > 0; n-- {
		status := 0
		if rng.Float64() < in.errProb {
			status = 1
		}
		z := rng.NormFloat64()
		latency := latencyMedian * math.Exp(latencySigma*z)
		if z > tailZ {
			latency *= in.tailShift
		}
		s := hist[status]
		if s == nil {
			s = &series{buckets: make([]uint64, len(bounds)+1), min: latency, max: latency}
			hist[status] = s
		}
		s.count++
		s.sum += latency
		s.min, s.max = math.Min(s.min, latency), math.Max(s.max, latency)
		s.buckets[sort.SearchFloat64s(bounds, latency)]++ // buckets are (lower, upper]
	}
}

// poisson draws from Poisson(lambda) by counting unit-rate arrivals.
func poisson(rng *rand.Rand, lambda float64) int {
	n := 0
	for t := rng.ExpFloat64(); t < lambda; t += rng.ExpFloat64() {
		n++
	}
	return n
}

func encode(in instance, hist []*series, at time.Duration) ([]byte, error) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	res := rm.Resource().Attributes()
	res.PutStr("service.name", service)
	res.PutStr("service.version", in.version)
	res.PutStr("service.instance.id", in.id)
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
	m := sm.Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	m.SetUnit("s")
	m.SetDescription("Duration of HTTP server requests.")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	start := pcommon.NewTimestampFromTime(recordingStart.Add(in.start))
	now := pcommon.NewTimestampFromTime(recordingStart.Add(at))
	for i, s := range hist {
		if s == nil {
			continue // no request with this status yet: the SDK has no point for it
		}
		dp := h.DataPoints().AppendEmpty()
		dp.Attributes().PutStr("http.request.method", "POST")
		dp.Attributes().PutStr("http.route", route)
		dp.Attributes().PutInt("http.response.status_code", statuses[i])
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(now)
		dp.SetCount(s.count)
		dp.SetSum(round(s.sum))
		dp.SetMin(round(s.min))
		dp.SetMax(round(s.max))
		dp.ExplicitBounds().FromRaw(bounds)
		dp.BucketCounts().FromRaw(s.buckets)
	}
	return (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
}

// round keeps microseconds: the files stay small and readable, and no
// count changes.
func round(seconds float64) float64 { return math.Round(seconds*1e6) / 1e6 }
