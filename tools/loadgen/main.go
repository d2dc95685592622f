// Command loadgen drives an ingest endpoint over loopback with pre-encoded
// payloads — Prometheus remote write 1.0 and 2.0 or OTLP/HTTP protobuf —
// and prints accepted samples per second, request latency and the target's
// resident memory. `make bench` runs it against rollguard and against
// Prometheus' own remote-write receiver on the same machine.
//
// The load: -series counter series of 8 labels each, -batch per request, a
// -guarded share of them of the guarded service (job="checkout"), each
// sent -rounds times with timestamps 15 s apart. Encoding (and snappy) is
// done before the clock starts; per-series order is kept by giving every
// worker a fixed set of batches.
//
// The target's CPU time and resident memory come from /proc/<pid> when -pid
// is given (every target the same way: Prometheus, rollguard and the
// OpenTelemetry Collector name their process metrics differently), else from
// its /metrics (process_cpu_seconds_total, process_resident_memory_bytes).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

type options struct {
	url, format, metricsURL, name  string
	series, batch, rounds, workers int
	guarded                        float64
	pid, clockTicks                int
}

type result struct {
	Name          string  `json:"name"`
	Format        string  `json:"format"`
	Requests      int     `json:"requests"`
	Failed        int     `json:"failed"`
	FirstError    string  `json:"first_error,omitempty"`
	Samples       int     `json:"samples_accepted"`
	Seconds       float64 `json:"seconds"`
	SamplesPerSec float64 `json:"samples_per_second"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	RSSBytes      float64 `json:"rss_bytes"`
	// CPUSeconds is the target's CPU time (user and system) over the run.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerMillion is the target's CPU time per million accepted samples.
	CPUPerMillion float64 `json:"cpu_seconds_per_million_samples"`
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:9469/api/v1/write", "endpoint to send to")
	flag.StringVar(&o.format, "format", "rw1", "rw1, rw2 or otlp")
	flag.StringVar(&o.metricsURL, "metrics-url", "", "the target's /metrics, to read process_cpu_seconds_total and process_resident_memory_bytes (when -pid is not given)")
	flag.IntVar(&o.pid, "pid", 0, "the target's process id, to read its CPU time and RSS from /proc (Linux)")
	flag.IntVar(&o.clockTicks, "clock-ticks", 100, "clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK)")
	flag.StringVar(&o.name, "name", "", "name of the run in the output")
	flag.IntVar(&o.series, "series", 20000, "series")
	flag.IntVar(&o.batch, "batch", 2000, "series per request")
	flag.IntVar(&o.rounds, "rounds", 30, "samples per series (one per round)")
	flag.IntVar(&o.workers, "workers", 4, "concurrent senders")
	flag.Float64Var(&o.guarded, "guarded", 0.1, "share of series of the guarded service")
	flag.Parse()
	if o.name == "" {
		o.name = o.format
	}
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

type series struct {
	labels [][2]string // sorted, __name__ first
	value  float64
}

func makeSeries(o options) []series {
	out := make([]series, o.series)
	guardedEvery := int(1 / o.guarded)
	for i := range out {
		job, version := "svc-"+strconv.Itoa(i%97), "v"+strconv.Itoa(i%3)
		if i%guardedEvery == 0 {
			job, version = "checkout", "v"+strconv.Itoa(1+i%2)
		}
		code := "200"
		if i%50 == 0 {
			code = "500"
		}
		out[i].labels = [][2]string{
			{"__name__", "http_requests_total"}, {"code", code}, {"instance", "10.0." + strconv.Itoa(i/250%256) + "." + strconv.Itoa(i%250) + ":8080"},
			{"job", job}, {"method", "GET"}, {"region", "eu-west-1"}, {"route", "/api/v1/r" + strconv.Itoa(i%40)}, {"version", version},
		}
	}
	return out
}

type payload struct {
	body      []byte
	samples   int
	batchIdx  int
	roundIdx  int
	encodeErr error
}

func encode(o options, ss []series, batchIdx, round int, ts int64) payload {
	lo, hi := batchIdx*o.batch, min((batchIdx+1)*o.batch, len(ss))
	part := ss[lo:hi]
	for i := range part {
		part[i].value += float64(1 + i%7)
	}
	var raw []byte
	switch o.format {
	case "rw1":
		for _, s := range part {
			var ts1 []byte
			for _, l := range s.labels {
				var lb []byte
				lb = protowire.AppendTag(lb, 1, protowire.BytesType)
				lb = protowire.AppendString(lb, l[0])
				lb = protowire.AppendTag(lb, 2, protowire.BytesType)
				lb = protowire.AppendString(lb, l[1])
				ts1 = protowire.AppendTag(ts1, 1, protowire.BytesType)
				ts1 = protowire.AppendBytes(ts1, lb)
			}
			var sb []byte
			sb = protowire.AppendTag(sb, 1, protowire.Fixed64Type)
			sb = protowire.AppendFixed64(sb, mathFloat64bits(s.value))
			sb = protowire.AppendTag(sb, 2, protowire.VarintType)
			sb = protowire.AppendVarint(sb, uint64(ts))
			ts1 = protowire.AppendTag(ts1, 2, protowire.BytesType)
			ts1 = protowire.AppendBytes(ts1, sb)
			raw = protowire.AppendTag(raw, 1, protowire.BytesType)
			raw = protowire.AppendBytes(raw, ts1)
		}
		return payload{body: snappy.Encode(nil, raw), samples: len(part), batchIdx: batchIdx, roundIdx: round}
	case "rw2":
		st := writev2.NewSymbolTable()
		req := &writev2.Request{}
		flat := make([]string, 0, 16)
		for _, s := range part {
			flat = flat[:0]
			for _, l := range s.labels {
				flat = append(flat, l[0], l[1])
			}
			req.Timeseries = append(req.Timeseries, &writev2.TimeSeries{
				LabelsRefs: st.SymbolizeLabels(flat, nil),
				Samples:    []*writev2.Sample{{Value: s.value, Timestamp: ts}},
				Metadata:   &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER},
			})
		}
		req.Symbols = st.Symbols()
		b, err := proto.Marshal(req)
		return payload{body: snappy.Encode(nil, b), samples: len(part), batchIdx: batchIdx, roundIdx: round, encodeErr: err}
	default: // otlp
		md := pmetric.NewMetrics()
		byRes := map[string]pmetric.NumberDataPointSlice{}
		for _, s := range part {
			key := s.labels[3][1] + "/" + s.labels[7][1]
			dps, ok := byRes[key]
			if !ok {
				rm := md.ResourceMetrics().AppendEmpty()
				rm.Resource().Attributes().PutStr("job", s.labels[3][1])
				rm.Resource().Attributes().PutStr("version", s.labels[7][1])
				m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
				m.SetName("http_requests_total")
				sum := m.SetEmptySum()
				sum.SetIsMonotonic(true)
				sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				dps = sum.DataPoints()
				byRes[key] = dps
			}
			dp := dps.AppendEmpty()
			for _, l := range s.labels[1:] {
				if l[0] != "job" && l[0] != "version" {
					dp.Attributes().PutStr(l[0], l[1])
				}
			}
			dp.SetStartTimestamp(pcommon.Timestamp(1))
			dp.SetTimestamp(pcommon.Timestamp(ts * 1e6))
			dp.SetDoubleValue(s.value)
		}
		b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		return payload{body: b, samples: len(part), batchIdx: batchIdx, roundIdx: round, encodeErr: err}
	}
}

func run(o options) (result, error) {
	ss := makeSeries(o)
	batches := (o.series + o.batch - 1) / o.batch
	start := time.Now().Add(-time.Duration(o.rounds) * 15 * time.Second).UnixMilli()
	payloads := make([][]payload, batches) // per batch, in round order
	for r := 0; r < o.rounds; r++ {
		for b := 0; b < batches; b++ {
			p := encode(o, ss, b, r, start+int64(r)*15_000)
			if p.encodeErr != nil {
				return result{}, p.encodeErr
			}
			payloads[b] = append(payloads[b], p)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.workers}}
	var mu sync.Mutex
	res := result{Name: o.name, Format: o.format}
	var latencies []time.Duration
	var wg sync.WaitGroup
	target := targetProcess{pid: o.pid, clockTicks: o.clockTicks, metricsURL: o.metricsURL}
	cpu0, err := target.cpuSeconds()
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < o.rounds; r++ {
				for b := w; b < batches; b += o.workers {
					p := payloads[b][r]
					lat, accepted, err := send(client, o, p)
					mu.Lock()
					res.Requests++
					latencies = append(latencies, lat)
					if err != nil {
						res.Failed++
						if res.FirstError == "" {
							res.FirstError = err.Error()
							if len(res.FirstError) > 300 {
								res.FirstError = res.FirstError[:300] + "…"
							}
						}
					} else {
						res.Samples += accepted
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	res.SamplesPerSec = float64(res.Samples) / res.Seconds
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if n := len(latencies); n > 0 {
		res.P50ms = float64(latencies[n/2].Microseconds()) / 1000
		res.P99ms = float64(latencies[min(n-1, n*99/100)].Microseconds()) / 1000
	}
	cpu1, err := target.cpuSeconds()
	if err != nil {
		return result{}, err
	}
	if res.RSSBytes, err = target.rssBytes(); err != nil {
		return result{}, err
	}
	res.CPUSeconds = cpu1 - cpu0
	if res.Samples > 0 {
		res.CPUPerMillion = res.CPUSeconds / float64(res.Samples) * 1e6
	}
	return res, nil
}

func send(c *http.Client, o options, p payload) (time.Duration, int, error) {
	req, _ := http.NewRequest(http.MethodPost, o.url, bytes.NewReader(p.body))
	switch o.format {
	case "rw1":
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	case "rw2":
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	default:
		req.Header.Set("Content-Type", "application/x-protobuf")
	}
	t := time.Now()
	resp, err := c.Do(req)
	lat := time.Since(t)
	if err != nil {
		return lat, 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return lat, 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	accepted := p.samples
	if h := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); h != "" && o.format == "rw2" {
		accepted, _ = strconv.Atoi(h)
	}
	return lat, accepted, nil
}

// targetProcess reads the CPU time and RSS of the process under load: from
// /proc/<pid> when pid is set, else from its /metrics, else zero.
type targetProcess struct {
	pid, clockTicks int
	metricsURL      string
}

func (t targetProcess) cpuSeconds() (float64, error) {
	if t.pid == 0 {
		return readMetric(t.metricsURL, "process_cpu_seconds_total"), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(t.pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read the target's CPU time: %w", err)
	}
	return parseStatCPU(string(b), t.clockTicks)
}

func (t targetProcess) rssBytes() (float64, error) {
	if t.pid == 0 {
		return readMetric(t.metricsURL, "process_resident_memory_bytes"), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(t.pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read the target's RSS: %w", err)
	}
	return parseStatusRSS(string(b))
}

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line in seconds.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string, clockTicks int) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || clockTicks <= 0 {
		return 0, fmt.Errorf("parse /proc/<pid>/stat: no command name in %.60q", stat)
	}
	// After ")": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/<pid>/stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/<pid>/stat: utime %q, stime %q", f[11], f[12])
	}
	return float64(utime+stime) / float64(clockTicks), nil
}

// parseStatusRSS returns VmRSS of /proc/<pid>/status in bytes.
func parseStatusRSS(status string) (float64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("parse /proc/<pid>/status: VmRSS %q, want \"N kB\"", strings.TrimSpace(rest))
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/<pid>/status: VmRSS: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("parse /proc/<pid>/status: no VmRSS line")
}

func readMetric(url, name string) float64 {
	if url == "" {
		return 0
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
			return v
		}
	}
	return 0
}

func mathFloat64bits(f float64) uint64 { return math.Float64bits(f) }
