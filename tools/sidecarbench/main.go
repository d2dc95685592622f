// Command sidecarbench measures a rollguard sidecar's footprint: it serves
// a /metrics endpoint of -series series of a guarded service (a counter of
// requests by version, code and route, and a latency histogram by version
// and route, all read by the guard) through client_golang, runs
// `rollguard run` in sidecar mode as a child process scraping it every
// -interval and publishing to an in-process NATS server, and after a
// warm-up reports, over -duration, the child's resident memory (VmRSS from
// /proc, sampled every second, and its peak VmHWM) and its CPU time
// (utime+stime from /proc/<pid>/stat) as a percentage of one core, with
// the aggregate messages seen on NATS and their size.
//
// Run it from the repository root: go run ./tools/sidecarbench
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/cluster/agg"
)

type options struct {
	series   int
	interval time.Duration
	warmup   time.Duration
	duration time.Duration
	bin      string
}

func main() {
	var o options
	flag.IntVar(&o.series, "series", 5000, "series exposed (half counter, half histogram), all of the guarded service")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "scrape and evaluation interval of the sidecar")
	flag.DurationVar(&o.warmup, "warmup", 25*time.Second, "time before the measurement starts")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "measurement window")
	flag.StringVar(&o.bin, "bin", "", "rollguard binary (default: go build ./cmd/rollguard into a temporary directory)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "sidecarbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "sidecarbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.bin == "" {
		o.bin = filepath.Join(dir, "rollguard")
		build := exec.Command("go", "build", "-o", o.bin, "./cmd/rollguard")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build rollguard (run from the repository root): %w", err)
		}
	}

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats not ready")
	}
	defer ns.Shutdown()

	tg := newTarget(o.series)
	exposed := tg.series()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, promhttp.HandlerFor(tg.reg, promhttp.HandlerOpts{})) }()

	webAddr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(dir, "sidecar.yml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(config, o.interval, ns.ClientURL(), o.interval, ln.Addr())), 0o644); err != nil {
		return err
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	var mu sync.Mutex
	var counting bool
	var msgs, bytesSeen, wireSeen int
	var requests float64
	first := make(chan struct{})
	var once sync.Once
	if _, err := nc.Subscribe(agg.Subjects("rollguard"), func(m *nats.Msg) {
		once.Do(func() { close(first) })
		_, _, aggs, err := agg.Decode(m.Data)
		mu.Lock()
		defer mu.Unlock()
		if !counting || err != nil {
			return
		}
		msgs++
		bytesSeen += len(m.Data)
		wireSeen += len(m.Data) + len(m.Subject) + headerBytes(m.Header)
		for _, a := range aggs {
			if a.Signal == "errors" {
				requests += a.Total
			}
		}
	}); err != nil {
		return err
	}

	logFile := filepath.Join(dir, "rollguard.log")
	lf, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(o.bin, "run", "--config.file="+cfgFile, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+webAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	pid := cmd.Process.Pid

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tg.traffic(ctx)

	fmt.Printf("sidecar pid %d scraping %d series every %s; warm-up %s\n", pid, exposed, o.interval, o.warmup)
	select {
	case <-first:
	case <-time.After(3*o.interval + 30*time.Second):
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("no aggregate message from the sidecar; its log:\n%s", log)
	}
	time.Sleep(o.warmup)

	cpu0, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	mu.Lock()
	counting = true
	mu.Unlock()
	var rssMax, rssSum, samples int
	for time.Since(start) < o.duration {
		time.Sleep(time.Second)
		rss, err := statusKB(pid, "VmRSS")
		if err != nil {
			return err
		}
		rssMax = max(rssMax, rss)
		rssSum += rss
		samples++
	}
	cpu1, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	window := time.Since(start)
	mu.Lock()
	counting = false
	m, b, w, r := msgs, bytesSeen, wireSeen, requests
	mu.Unlock()
	hwm, _ := statusKB(pid, "VmHWM")
	anon, _ := statusKB(pid, "RssAnon")
	file, _ := statusKB(pid, "RssFile")
	goMem := goMemstats(webAddr)
	hz := clockTicks()
	cpuPct := float64(cpu1-cpu0) / hz / window.Seconds() * 100

	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d cores, %s %s/%s\n", host, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("window: %s after %s of warm-up; %d series scraped every %s\n", window.Round(time.Second), o.warmup, exposed, o.interval)
	fmt.Printf("RSS: mean %.1f MiB, max %.1f MiB (VmHWM %.1f MiB)\n", float64(rssSum)/float64(samples)/1024, float64(rssMax)/1024, float64(hwm)/1024)
	fmt.Printf("RSS at the end: %.1f MiB anonymous (Go heap in use %.1f MiB, stacks %.1f MiB, runtime total %.1f MiB), %.1f MiB file-backed (the binary's pages)\n",
		float64(anon)/1024, goMem["go_memstats_heap_inuse_bytes"]/(1<<20), goMem["go_memstats_stack_inuse_bytes"]/(1<<20),
		goMem["go_memstats_sys_bytes"]/(1<<20), float64(file)/1024)
	fmt.Printf("CPU: %.2f %% of one core (%d ticks of 1/%g s)\n", cpuPct, cpu1-cpu0, hz)
	if m > 0 {
		fmt.Printf("aggregates: %d messages, %.0f B/msg on average (%.0f B with subject and headers), %.0f requests aggregated\n",
			m, float64(b)/float64(m), float64(w)/float64(m), r)
	}
	return nil
}

const config = `mode: sidecar
sidecar:
  id: sidecarbench
global:
  evaluation_interval: %s
nats:
  url: %s
otlp:
  http_listen_address: 127.0.0.1:0
  grpc_listen_address: ""
scrape_configs:
  - job_name: shop
    scrape_interval: %s
    static_configs:
      - targets: [%s]
guards:
  - name: shop
    service: shop
    service_label: job
    version_label: version
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
      - name: latency
        type: latency
        metric: http_request_duration_seconds
`

var (
	codes   = []string{"200", "201", "404", "500", "503"}
	buckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1} // with +Inf, _sum, _count: 10 series a histogram
)

// target is the scraped service: about n series, half of them counters
// (2 versions × 5 codes × routes) and half histograms (2 versions × routes
// × 10 series).
type target struct {
	reg                       *prometheus.Registry
	reqs                      *prometheus.CounterVec
	dur                       *prometheus.HistogramVec
	counterRoutes, histRoutes int
}

func newTarget(n int) *target {
	t := &target{reg: prometheus.NewRegistry(),
		reqs:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."}, []string{"version", "code", "route"}),
		dur:           prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "Latency.", Buckets: buckets}, []string{"version", "route"}),
		counterRoutes: max(1, n/2/(2*len(codes))),
		histRoutes:    max(1, n/2/(2*(len(buckets)+3))),
	}
	t.reg.MustRegister(t.reqs, t.dur)
	for _, v := range versions {
		for r := 0; r < t.counterRoutes; r++ {
			for _, c := range codes {
				t.reqs.WithLabelValues(v, c, route(r)).Add(0)
			}
		}
		for r := 0; r < t.histRoutes; r++ {
			t.dur.WithLabelValues(v, route(r)).Observe(0.05)
		}
	}
	return t
}

var versions = []string{"v1", "v2"}

func route(r int) string { return "/r" + strconv.Itoa(r) }

// series is how many series the target exposes.
func (t *target) series() int {
	return len(versions) * (t.counterRoutes*len(codes) + t.histRoutes*(len(buckets)+3))
}

// traffic adds requests to every series once a second, as a busy service
// would between scrapes.
func (t *target) traffic(ctx context.Context) {
	rng := rand.New(rand.NewPCG(1, 2))
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		for _, v := range versions {
			for r := 0; r < t.counterRoutes; r++ {
				for i, c := range codes {
					t.reqs.WithLabelValues(v, c, route(r)).Add(float64(rng.IntN(1 + 20>>(2*i))))
				}
			}
			for r := 0; r < t.histRoutes; r++ {
				h := t.dur.WithLabelValues(v, route(r))
				for k := 0; k < 5; k++ {
					h.Observe(rng.ExpFloat64() * 0.08)
				}
			}
		}
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cpuTicks is the process's user plus system time in clock ticks, from
// fields 14 and 15 of /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return u + s, nil
}

// statusKB reads a "kB" field of /proc/<pid>/status, like VmRSS.
func statusKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// clockTicks is the kernel's USER_HZ (getconf CLK_TCK), 100 on Linux.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	hz, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || hz <= 0 {
		return 100
	}
	return hz
}

// goMemstats reads the sidecar's go_memstats gauges from its /metrics.
func goMemstats(webAddr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + webAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "go_memstats_") {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[name] = f
			}
		}
	}
	return out
}

// headerBytes is the size of a message's headers as NATS sends them.
func headerBytes(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}
