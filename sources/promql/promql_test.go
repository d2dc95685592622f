package promql

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	remote "github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// prometheusBinary finds a Prometheus server (`make prometheus` installs it).
// CI must have it; elsewhere the test is skipped with a reason.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("ROLLGUARD_PROMETHEUS")}
	if p, err := exec.LookPath("prometheus"); err == nil {
		candidates = append(candidates, p)
	}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		candidates = append(candidates, filepath.Join(strings.TrimSpace(string(gp)), "bin", "prometheus"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("prometheus is not installed: .ci/run must run `make prometheus`")
	}
	t.Skip("prometheus is not installed: run `make prometheus` to run the PromQL tests against a real server")
	return ""
}

// startPrometheus runs a real Prometheus with its remote-write receiver, so
// the poller is tested against the real HTTP API and PromQL engine.
func startPrometheus(t *testing.T) string {
	t.Helper()
	bin := prometheusBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver",
		"--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// push writes per-second cumulative counters for two versions over the
// span, through remote write 2.0 with client_golang's sender.
func push(t *testing.T, url string, from time.Time, seconds int, badPerSec map[string]float64) {
	t.Helper()
	api, err := remote.NewAPI(url, remote.WithAPIPath("/api/v1/write"))
	if err != nil {
		t.Fatal(err)
	}
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, v := range []string{"v1", "v2"} {
		for _, code := range []string{"200", "500"} {
			ts := &writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels([]string{
				"__name__", "http_requests_total", "code", code, "job", "checkout", "version", v}, nil),
				Metadata: &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER}}
			total := 0.0
			for s := 0; s <= seconds; s++ {
				per := 100 - badPerSec[v]
				if code == "500" {
					per = badPerSec[v]
				}
				total += per
				ts.Samples = append(ts.Samples, &writev2.Sample{Value: total, Timestamp: from.Add(time.Duration(s) * time.Second).UnixMilli()})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
	}
	req.Symbols = st.Symbols()
	if _, err := api.Write(context.Background(), remote.WriteV2MessageType, req); err != nil {
		t.Fatalf("remote write: %v", err)
	}
}

const pollConfig = `
global:
  evaluation_interval: 10s
  no_data_timeout: 30s
promql:
  url: %s
guards:
  - name: checkout
    service: checkout
    service_label: job
    version_label: version
    alpha: 0.01
    signals:
      - name: errors
        query:
          total: sum(increase(http_requests_total{job="{{.Service}}",version="{{.Version}}"}[{{.Window}}]))
          bad: sum(increase(http_requests_total{job="{{.Service}}",version="{{.Version}}",code=~"5.."}[{{.Window}}]))
`

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// run polls and evaluates every 10 s of the pushed span and returns the last verdict.
func run(t *testing.T, url, config string, from time.Time, ticks int) detector.GuardVerdict {
	t.Helper()
	cfg, err := configs.Parse([]byte(fmt.Sprintf(config, url)))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: from.Add(5 * time.Second)}
	var last detector.GuardVerdict
	e := detector.NewEngine(cfg, detector.EngineOptions{Now: c.now, Handler: detector.VerdictFunc(func(v detector.GuardVerdict) { last = v })})
	if _, err := e.Announce(detector.Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	p := New(Config{Appender: e, Cohorts: e, Now: c.now})
	if err := p.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ticks; i++ {
		c.t = c.t.Add(10 * time.Second)
		p.Poll(context.Background())
		e.Evaluate()
		if last.State == detector.StateRegressed {
			break
		}
	}
	return last
}

// TestPollerAgainstPrometheus: a bad canary visible only in Prometheus is
// detected through PromQL; its healthy twin is not; failing and empty
// queries give no_data, never a pass.
func TestPollerAgainstPrometheus(t *testing.T) {
	url := startPrometheus(t)
	from := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	push(t, url, from, 9*60, map[string]float64{"v1": 1, "v2": 10})

	v := run(t, url, pollConfig, from, 50)
	if v.State != detector.StateRegressed {
		t.Fatalf("bad canary in Prometheus: verdict %s, evidence %+v", v.State, v.Signals)
	}
	ev := v.Signals[0]
	if ev.Candidate.Version != "v2" || ev.Candidate.Bad <= ev.Baseline.Bad || ev.Candidate.Total < 1000 {
		t.Errorf("evidence = %+v", ev)
	}

	// The healthy twin: job "checkout" pushed again under other versions.
	url2 := startPrometheus(t)
	push(t, url2, from, 9*60, map[string]float64{"v1": 1, "v2": 1})
	if v := run(t, url2, pollConfig, from, 50); v.State == detector.StateRegressed {
		t.Errorf("healthy canary regressed: %+v", v.Signals)
	}

	// A query that selects nothing, and one Prometheus refuses: no_data.
	for name, cfg := range map[string]string{
		"empty":   strings.ReplaceAll(pollConfig, `job="{{.Service}}"`, `job="nosuchjob"`),
		"refused": strings.ReplaceAll(pollConfig, `[{{.Window}}]`, `[{{.Window}}`),
	} {
		if v := run(t, url, cfg, from, 6); v.State != detector.StateNoData {
			t.Errorf("%s query: verdict %s, want no_data", name, v.State)
		}
	}
}
