package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/poll"
)

// testConfig is the configuration of the end-to-end tests: fast ticks, a
// random NATS port and loopback listeners.
const testConfig = `
global:
  evaluation_interval: 100ms
  no_data_timeout: 30s
nats:
  embedded:
    host: 127.0.0.1
    port: -1
otlp:
  http_listen_address: 127.0.0.1:0
  grpc_listen_address: 127.0.0.1:0
guards:
  - name: checkout
    service: checkout
    alpha: 0.001
    flags: [new-checkout-flow]
    signals:
      - name: errors
`

type testDaemon struct {
	*daemon
	t      *testing.T
	file   string
	web    string
	otlp   string
	client *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	done   chan error
	cancel context.CancelFunc
}

func startDaemon(t *testing.T, config string) *testDaemon {
	t.Helper()
	return startDaemonFile(t, writeConfig(t, config))
}

// restartDaemon stops td and starts a daemon on the same configuration
// file and storage (the embedded JetStream store, the outbox, the signing
// key), as an operator restarting rollguard would.
func restartDaemon(t *testing.T, td *testDaemon) *testDaemon {
	t.Helper()
	td.stop()
	if td.client != nil {
		td.client.Close()
	}
	return startDaemonFile(t, td.file)
}

// startDaemonFile starts a daemon on a configuration file, with its
// storage under the file's folder.
func startDaemonFile(t *testing.T, file string) *testDaemon {
	t.Helper()
	d, err := newDaemon(testDaemonOptions(t, file))
	if err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	return runDaemon(t, file, d)
}

// testDaemonOptions are a test daemon's options: its storage under the
// configuration file's folder, loopback listeners, logs through t.
func testDaemonOptions(t *testing.T, file string) daemonOptions {
	return daemonOptions{
		ConfigFile: file, StoragePath: filepath.Join(filepath.Dir(file), "data"), WebListenAddress: "127.0.0.1:0",
		Logger: hclog.New(&hclog.LoggerOptions{Name: "rollguard", Output: testWriter{t}, Level: hclog.Info}),
	}
}

// runDaemon runs a daemon built on file until the test ends, connects a
// client to its NATS and waits until it is ready.
func runDaemon(t *testing.T, file string, d *daemon) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	td := &testDaemon{daemon: d, t: t, file: file, web: "http://" + d.webLn.Addr().String(),
		otlp: "http://" + d.otlpLn.Addr().String() + "/v1/metrics", done: make(chan error, 1), cancel: cancel}
	go func() { td.done <- d.Run(ctx) }()
	t.Cleanup(td.stop)

	url := d.Config().NATS.URL
	if d.ns != nil {
		url = d.ns.ClientURL()
	}
	nc, err := connectNATS(url, d.Config().NATS, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	td.client = nc
	td.js, _ = jetstream.New(nc)
	if td.stream, err = td.js.Stream(context.Background(), "ROLLGUARD"); err != nil {
		t.Fatalf("stream: %v", err)
	}
	checkFor(t, 10*time.Second, func() error {
		if code, _ := td.get("/-/ready"); code != 200 {
			return fmt.Errorf("ready: %d", code)
		}
		return nil
	})
	return td
}

func writeConfig(t *testing.T, config string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "rollguard.yml")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func (td *testDaemon) stop() {
	td.cancel()
	select {
	case err := <-td.done:
		if err != nil {
			td.t.Errorf("daemon stopped with error: %v", err)
		}
		td.done <- nil // a second stop returns at once
	case <-time.After(20 * time.Second):
		td.t.Error("daemon did not stop within 20s")
	}
}

func (td *testDaemon) get(path string) (int, []byte) {
	td.t.Helper()
	resp, err := http.Get(td.web + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (td *testDaemon) post(path, body string) (int, []byte) {
	td.t.Helper()
	resp, err := http.Post(td.web+path, "application/json", strings.NewReader(body))
	if err != nil {
		td.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// commands returns the flag_kill commands stored in the stream.
func (td *testDaemon) commands() []*jetstream.RawStreamMsg {
	td.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := td.stream.Info(ctx, jetstream.WithSubjectFilter("rollguard.cmd.>"))
	if err != nil {
		td.t.Fatalf("stream info: %v", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := td.stream.GetMsg(ctx, seq)
		if err != nil || !strings.HasPrefix(m.Subject, "rollguard.cmd.") {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (td *testDaemon) verdict(guard string) *detector.GuardVerdict {
	code, b := td.get("/api/v1/guards")
	if code != 200 {
		td.t.Fatalf("GET /api/v1/guards: %d %s", code, b)
	}
	var body struct{ Guards []detector.GuardStatus }
	if err := json.Unmarshal(b, &body); err != nil {
		td.t.Fatalf("decode guards: %v", err)
	}
	for _, g := range body.Guards {
		if g.Name == guard {
			return g.Verdict
		}
	}
	return nil
}

// expectOutcome waits until guard has evaluated candidateTotal canary
// requests, then checks that exactly commands commands were published and
// that the verdict is regressed exactly when one was.
func (td *testDaemon) expectOutcome(t *testing.T, guard string, candidateTotal float64, commands int) {
	t.Helper()
	checkFor(t, 20*time.Second, func() error {
		v := td.verdict(guard)
		if v == nil || v.Signals[0].Candidate.Total != candidateTotal {
			return fmt.Errorf("not all requests evaluated yet: %+v", v)
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error {
		if n := len(td.commands()); n != commands {
			return fmt.Errorf("%d commands, want %d", n, commands)
		}
		return nil
	})
	if got := td.verdict(guard).State; (got == detector.StateRegressed) != (commands == 1) {
		t.Errorf("verdict %s", got)
	}
}

// nextEvaluation waits until the guard has been evaluated again.
func (td *testDaemon) nextEvaluation(t *testing.T, guard string) {
	t.Helper()
	var before time.Time
	if v := td.verdict(guard); v != nil {
		before = v.At
	}
	checkFor(t, 10*time.Second, func() error {
		if v := td.verdict(guard); v == nil || !v.At.After(before) {
			return fmt.Errorf("no evaluation of %s since %s", guard, before)
		}
		return nil
	})
}

// service is a simulated HTTP service of one version, instrumented with the
// OpenTelemetry SDK and exporting through otlpmetrichttp, as users do.
type service struct {
	mp      *sdkmetric.MeterProvider
	hist    metric.Float64Histogram
	ok, bad metric.MeasurementOption
	errRate float64
	rng     *rand.Rand
	// latency draws one request's duration in seconds; nil is 50-150 ms.
	latency func(r *rand.Rand) float64
}

func newService(t *testing.T, endpoint, name, version string, errRate float64, seed uint64) *service {
	t.Helper()
	exp, err := otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(endpoint))
	if err != nil {
		t.Fatal(err)
	}
	return newServiceWith(t, exp, name, version, errRate, seed)
}

func newServiceWith(t *testing.T, exp sdkmetric.Exporter, name, version string, errRate float64, seed uint64) *service {
	t.Helper()
	res := resource.NewSchemaless(attribute.String("service.name", name), attribute.String("service.version", version))
	// The reader's own interval is long: the test flushes explicitly so that
	// every batch of requests has arrived when ForceFlush returns.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	// The bucket boundaries OpenTelemetry's HTTP semantic conventions advise.
	hist, err := mp.Meter("checkout").Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		t.Fatal(err)
	}
	return &service{mp: mp, hist: hist, errRate: errRate, rng: rand.New(rand.NewPCG(seed, 1)),
		ok:  metric.WithAttributeSet(attribute.NewSet(attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200))),
		bad: metric.WithAttributeSet(attribute.NewSet(attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 503)))}
}

// serve records n requests and exports them.
func (s *service) serve(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		attrs := s.ok
		if s.rng.Float64() < s.errRate {
			attrs = s.bad
		}
		d := 0.05 + s.rng.Float64()*0.1
		if s.latency != nil {
			d = s.latency(s.rng)
		}
		s.hist.Record(ctx, d, attrs)
	}
	if err := s.mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export: %v", err)
	}
}

// TestRegressionPublishesOneFlagKill is the walking skeleton end to end: a
// bad canary reported through the OpenTelemetry SDK leads to exactly one
// flag_kill command in JetStream, with its evidence.
func TestRegressionPublishesOneFlagKill(t *testing.T) {
	td := startDaemon(t, testConfig)
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
	canary := newService(t, td.otlp, "checkout", "v2", 0.05, 2)
	stable.serve(t, 500) // v1 is seen first: it becomes the stable version

	rounds := 0
	checkFor(t, 60*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		rounds++
		if n := len(td.commands()); n == 0 {
			return fmt.Errorf("no command yet after %d rounds", rounds)
		}
		return nil
	})
	detectedAt := time.Now()
	t.Logf("flag_kill published after %d rounds of 500 requests per version", rounds)

	// Keep the bad canary running over several more evaluations: still one command.
	checkFor(t, 20*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		if v := td.verdict("checkout"); v == nil || v.At.Before(detectedAt.Add(time.Second)) {
			return fmt.Errorf("waiting for evaluations after detection")
		}
		return nil
	})
	cmds := td.commands()
	if len(cmds) != 1 {
		t.Fatalf("want exactly 1 command, got %d", len(cmds))
	}
	m := cmds[0]
	if m.Subject != "rollguard.cmd.flag_kill.checkout" {
		t.Errorf("subject = %q", m.Subject)
	}
	var ev actions.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("decode CloudEvent: %v\n%s", err, m.Data)
	}
	if ev.SpecVersion != "1.0" || ev.Type != "io.rollguard.command.flag_kill.v1" || ev.Source != "/rollguard" {
		t.Errorf("envelope = %+v", ev)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got == ev.ID || len(got) != 32 { // keyed by the signing seed
		t.Errorf("Nats-Msg-Id %q is not the keyed id of event %q", got, ev.ID)
	}
	var data actions.CommandData
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatalf("decode data: %v", err)
	}
	d := data.Deployment
	if data.Service != "checkout" || data.Action != "flag_kill" || d.Version != "v2" || d.PreviousVersion != "v1" || d.Source != "implicit" {
		t.Errorf("data = %+v", data)
	}
	if data.Target.Flag != "new-checkout-flow" || data.Target.Percent == nil || *data.Target.Percent != 0 {
		t.Errorf("target = %+v", data.Target)
	}
	if want := actions.CommandID(d.ID, "flag_kill", "new-checkout-flow"); ev.ID != want {
		t.Errorf("id = %q, want %q", ev.ID, want)
	}
	if len(data.Evidence) != 1 {
		t.Fatalf("evidence = %+v", data.Evidence)
	}
	e := actions.DetectorEvidence(data.Evidence)[0]
	if e.State != detector.StateRegressed || float64(e.EValue) < e.Threshold || e.Threshold != detectorThreshold(0.001) {
		t.Errorf("evidence state %s e-value %v threshold %v", e.State, e.EValue, e.Threshold)
	}
	if e.Candidate.Version != "v2" || e.Baseline.Version != "v1" || e.Candidate.Bad == 0 || e.Baseline.Total == 0 {
		t.Errorf("evidence cohorts = %+v / %+v", e.Candidate, e.Baseline)
	}
	if e.Candidate.Ratio <= e.Baseline.Ratio || float64(e.IntervalLow) <= 1 {
		t.Errorf("evidence says candidate %.4f vs baseline %.4f, interval low %v", e.Candidate.Ratio, e.Baseline.Ratio, e.IntervalLow)
	}
	// The chart history: one point per tested batch, the last regressed.
	var series struct {
		Series []detector.SignalSeries
	}
	code, b := td.get("/api/v1/guards/checkout/series")
	if err := json.Unmarshal(b, &series); code != 200 || err != nil || len(series.Series) != 1 || len(series.Series[0].Points) == 0 {
		t.Fatalf("series: %d %s", code, b)
	}
	pts := series.Series[0].Points
	if last := pts[len(pts)-1].Arms[0]; last.Signal != "errors" || last.State != detector.StateRegressed || last.Candidate.Bad == 0 {
		t.Errorf("last point = %+v", last)
	}
	if code, _ := td.get("/api/v1/guards/nope/series"); code != 404 {
		t.Errorf("unknown guard's series: %d, want 404", code)
	}
	// The incident is visible in the API.
	code, b = td.get("/api/v1/incidents")
	if code != 200 || !strings.Contains(string(b), `"id": "inc-`+d.ID+`"`) {
		t.Errorf("incidents: %d %s", code, b)
	}
}

// TestHealthyCanaryPublishesNothing is the healthy twin: the same flow with
// both versions at 1 % errors, over more traffic than detection needed.
func TestHealthyCanaryPublishesNothing(t *testing.T) {
	td := startDaemon(t, testConfig)
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
	canary := newService(t, td.otlp, "checkout", "v2", 0.01, 2)
	stable.serve(t, 500)
	const rounds = 40
	for i := 0; i < rounds; i++ {
		stable.serve(t, 500)
		canary.serve(t, 500)
	}
	// The detector pairs batches when both cohorts have reported; a last
	// baseline report pairs the canary's last batch.
	stable.serve(t, 500)
	// Wait until the detector has evaluated every request sent.
	checkFor(t, 20*time.Second, func() error {
		v := td.verdict("checkout")
		if v == nil || len(v.Signals) == 0 {
			return fmt.Errorf("no verdict yet")
		}
		// The first round's v1 requests arrive before v2 opens the deployment.
		if e := v.Signals[0]; e.Candidate.Total != rounds*500 || e.Baseline.Total < (rounds-1)*500 {
			return fmt.Errorf("evaluated %v candidate and %v baseline requests", e.Candidate.Total, e.Baseline.Total)
		}
		return nil
	})
	v := td.verdict("checkout")
	if v.State == detector.StateRegressed || v.Deployment.Version != "v2" || v.Deployment.PreviousVersion != "v1" {
		t.Errorf("verdict = %s on %+v", v.State, v.Deployment)
	}
	if n := len(td.commands()); n != 0 {
		t.Fatalf("healthy canary produced %d commands", n)
	}
}

// TestExplicitDeployment announces a deployment with two flags through the
// API: each flag gets its command; a malformed body gets a 400.
func TestExplicitDeployment(t *testing.T) {
	td := startDaemon(t, testConfig)
	for _, tc := range []struct{ body, want string }{
		{`{"service":"checkout","version":`, "decode deployment: unexpected EOF"},
		{`{"service":"checkout","version":"v2","previous_version":"v1","flags":"x"}`, "decode deployment: flags must be a list, not string"},
		{`{"service":"checkout","version":"v2","previous_version":"v1","colour":"red"}`, `decode deployment: unknown field "colour"`},
		{`{"service":"checkout","version":"v2"}`, `previous_version is required: no stable version of service "checkout" has been seen yet`},
		{`{"service":"payments","version":"v2","previous_version":"v1"}`, `no guard watches service "payments": add a guard for it to the configuration`},
		{`{"service":"checkout","version":"v2","previous_version":"v1","migration":"maybe"}`, `migration "maybe" must be one of none, reversible, irreversible`},
	} {
		code, b := td.post("/api/v1/deployments", tc.body)
		var e struct{ Status, Error string }
		_ = json.Unmarshal(b, &e)
		if code != http.StatusBadRequest || e.Status != "error" || e.Error != tc.want {
			t.Errorf("POST %s: %d %q, want 400 %q", tc.body, code, e.Error, tc.want)
		}
	}
	code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1",
		"commit":"abc123","previous_commit":"def456","flags":["flag-b","flag-a"],"migration":"reversible"}`)
	if code != http.StatusCreated {
		t.Fatalf("announce: %d %s", code, b)
	}
	var dep detector.Deployment
	if err := json.Unmarshal(b, &dep); err != nil || dep.Source != "api" || dep.Commit != "abc123" || !strings.HasPrefix(dep.ID, "d-") {
		t.Fatalf("announced %+v (%v)", dep, err)
	}
	if code, b := td.get("/api/v1/deployments"); code != 200 || !strings.Contains(string(b), dep.ID) {
		t.Errorf("GET deployments: %d %s", code, b)
	}

	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 3)
	canary := newService(t, td.otlp, "checkout", "v2", 0.08, 4)
	checkFor(t, 60*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		if n := len(td.commands()); n < 2 {
			return fmt.Errorf("%d commands", n)
		}
		return nil
	})
	cmds := td.commands()
	var flags []string
	for _, m := range cmds {
		var ev actions.Event
		var data actions.CommandData
		if json.Unmarshal(m.Data, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil {
			t.Fatalf("undecodable command %s", m.Data)
		}
		if data.Deployment.ID != dep.ID || data.Deployment.Commit != "abc123" || data.Deployment.PreviousCommit != "def456" {
			t.Errorf("command deployment = %+v", data.Deployment)
		}
		flags = append(flags, data.Target.Flag)
	}
	if strings.Join(flags, ",") != "flag-a,flag-b" {
		t.Errorf("flags killed = %v, want flag-a,flag-b", flags)
	}
}

// TestReload: an invalid file keeps the old configuration (HTTP and SIGHUP);
// a valid one is applied.
func TestReload(t *testing.T) {
	td := startDaemon(t, testConfig)
	if err := os.WriteFile(td.file, []byte(testConfig+"        tolerance: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, b := td.post("/-/reload", "")
	if code != http.StatusInternalServerError || !strings.Contains(string(b), "previous configuration kept") ||
		!strings.Contains(string(b), "guards[0].signals[0].tolerance: must be >= 0 (line 19)") {
		t.Errorf("invalid reload: %d %s", code, b)
	}
	if g := td.Config().Guards; len(g) != 1 || g[0].Signals[0].Tolerance != 0.1 {
		t.Errorf("configuration changed by an invalid reload: %+v", g)
	}

	valid := strings.Replace(testConfig, "name: checkout", "name: checkout-errors", 1)
	if err := os.WriteFile(td.file, []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := td.post("/-/reload", ""); code != 200 {
		t.Fatalf("valid reload: %d %s", code, b)
	}
	if code, b := td.get("/api/v1/guards"); code != 200 || !strings.Contains(string(b), `"name": "checkout-errors"`) {
		t.Errorf("guards after reload: %s", b)
	}

	// SIGHUP does the same.
	valid = strings.Replace(testConfig, "name: checkout", "name: checkout-hup", 1)
	if err := os.WriteFile(td.file, []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if g := td.Config().Guards; g[0].Name != "checkout-hup" {
			return fmt.Errorf("guard is %q", g[0].Name)
		}
		return nil
	})
}

// TestShutdown: the daemon stops on cancel, and its listeners close.
func TestShutdown(t *testing.T) {
	td := startDaemon(t, testConfig)
	td.stop()
	if _, err := http.Get(td.web + "/-/healthy"); err == nil {
		t.Error("web server still answers after stop")
	}
	if td.ns.Running() {
		t.Error("embedded NATS still running after stop")
	}
}

// TestCheckConfig runs `rollguard check config` on the good and bad files.
func TestCheckConfig(t *testing.T) {
	for _, dir := range []string{"good", "bad"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "configs", dir, "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no %s config files", dir)
		}
		for _, f := range files {
			var out, errb bytes.Buffer
			code := rollguard([]string{"check", "config", f}, &out, &errb)
			switch dir {
			case "good":
				if code != 0 || out.String() != f+": ok\n" {
					t.Errorf("%s: exit %d, out %q err %q", f, code, out.String(), errb.String())
				}
			case "bad":
				if code != 1 || !strings.HasPrefix(errb.String(), f+": ") || out.Len() != 0 {
					t.Errorf("%s: exit %d, out %q err %q", f, code, out.String(), errb.String())
				}
			}
		}
	}
	var out, errb bytes.Buffer
	if code := rollguard([]string{"check", "config", "../../configs/example.yaml"}, &out, &errb); code != 0 {
		t.Errorf("example config: %s", errb.String())
	}
}

// checkFor polls f until it returns nil or total has passed.
func checkFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, total, f)
}

// testWriter sends the daemon's logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestTourPayloads keeps the README's tour true: the OTLP/JSON files it posts
// with curl lead to one flag_kill for the bad canary and none for the good one.
func TestTourPayloads(t *testing.T) {
	for _, tc := range []struct {
		canary string
		want   int
	}{{"checkout-v2-bad.json", 1}, {"checkout-v2-good.json", 0}} {
		t.Run(tc.canary, func(t *testing.T) {
			td := startDaemon(t, testConfig)
			post := func(file string) {
				b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "otlp", file))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.Post(td.otlp, "application/json", bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("POST %s: %d", file, resp.StatusCode)
				}
			}
			// As the tour does, one round per evaluation, for longer than
			// the burst (6 evaluations): the payloads carry no pod label,
			// so the canary is one source that must outlast it.
			const rounds = 20
			for i := 0; i < rounds; i++ {
				post("checkout-v1.json")
				post(tc.canary)
				td.nextEvaluation(t, "checkout")
			}
			post("checkout-v1.json") // pairs the canary's last batch
			checkFor(t, 20*time.Second, func() error {
				v := td.verdict("checkout")
				if v == nil || v.Signals[0].Candidate.Total != rounds*1000 {
					return fmt.Errorf("not all requests evaluated yet")
				}
				return nil
			})
			checkFor(t, 10*time.Second, func() error {
				if n := len(td.commands()); n != tc.want {
					return fmt.Errorf("%d commands, want %d", n, tc.want)
				}
				return nil
			})
			if regressed := td.verdict("checkout").State == detector.StateRegressed; regressed != (tc.want == 1) {
				t.Errorf("verdict regressed = %v", regressed)
			}
		})
	}
}

// TestHelpRunsNothing: --help prints the usage and returns; it never starts
// the command (a daemon here would not return at all).
func TestHelpRunsNothing(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"version", "--help"}, {"help", "run"}} {
		done := make(chan int, 1)
		var out, errw bytes.Buffer
		go func() { done <- rollguard(args, &out, &errw) }()
		select {
		case code := <-done:
			if code != 0 || !strings.Contains(errw.String()+out.String(), "usage: rollguard") {
				t.Errorf("%v: exit %d, output %q", args, code, errw.String()+out.String())
			}
			if strings.Contains(out.String(), "rollguard dev") {
				t.Errorf("%v ran the command: %q", args, out.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v did not return: the command ran", args)
		}
	}
}

// commandWire records the ids of the commands a core NATS subscriber sees:
// what actuators would receive, every publish, before any deduplication by
// the stream.
type commandWire struct {
	mu  sync.Mutex
	ids []string
}

func watchCommands(t *testing.T, td *testDaemon) *commandWire {
	t.Helper()
	w := &commandWire{}
	sub, err := td.client.Subscribe("rollguard.cmd.>", func(m *nats.Msg) {
		w.mu.Lock()
		w.ids = append(w.ids, eventID(m.Data))
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := td.client.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// all is every command id seen, in order.
func (w *commandWire) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ids...)
}

// count is how often id was seen.
func (w *commandWire) count(id string) int {
	n := 0
	for _, x := range w.all() {
		if x == id {
			n++
		}
	}
	return n
}

// detectorThreshold is the e-value at which a count test at level alpha
// declares a regression: 1 over the e-value's share of α.
func detectorThreshold(alpha float64) float64 { return detector.NewCountTest(1, alpha).Threshold() }
