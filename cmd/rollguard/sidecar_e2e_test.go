package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

// sidecarTopology is one NATS server, a central rollguard on it and two
// sidecars, each with its own OTLP listener and its own stable (v1) and
// canary (v2) services exporting through the OpenTelemetry SDK.
type sidecarTopology struct {
	central          *testDaemon
	sidecars         [2]*testDaemon
	stables, canarys [2]*service
}

func startSidecarTopology(t *testing.T, canaryErrRate float64) *sidecarTopology {
	t.Helper()
	ns := natstest.Start(t)
	url := ns.ClientURL()
	central := strings.Replace(testConfig, "nats:\n", "nats:\n  url: "+url+"\n", 1)
	top := &sidecarTopology{central: startDaemon(t, central)}
	for i := range top.sidecars {
		cfg := strings.Replace(testConfig, "nats:\n", fmt.Sprintf("mode: sidecar\nsidecar:\n  id: edge-%d\nnats:\n  url: %s\n", i+1, url), 1)
		cfg = strings.Replace(cfg, "grpc_listen_address: 127.0.0.1:0", `grpc_listen_address: ""`, 1)
		sc := startDaemon(t, cfg)
		if sc.engine != nil || sc.playbook != nil || sc.sidecar == nil {
			t.Fatal("a sidecar runs an engine or a playbook")
		}
		top.sidecars[i] = sc
		top.stables[i] = newService(t, sc.otlp, "checkout", "v1", 0.01, uint64(10+i))
		top.canarys[i] = newService(t, sc.otlp, "checkout", "v2", canaryErrRate, uint64(20+i))
	}
	// v1 reaches the central first, through both sidecars: it is the stable version.
	for _, s := range top.stables {
		s.serve(t, 500)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := metricValue(t, top.central, `rollguard_detector_aggregates_total{outcome="merged"}`); n != 2 {
			return fmt.Errorf("%v aggregates merged by the central, want 2", n)
		}
		return nil
	})
	return top
}

// round has each of the four services serve n requests.
func (top *sidecarTopology) round(t *testing.T, n int) {
	t.Helper()
	for i := range top.sidecars {
		top.stables[i].serve(t, n)
		top.canarys[i].serve(t, n)
	}
}

// metricValue reads one sample of a daemon's /metrics (0 when absent).
func metricValue(t *testing.T, td *testDaemon, series string) float64 {
	t.Helper()
	code, b := td.get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// TestSidecarsBadCanary: a bad canary whose traffic is spread over two
// sidecars is detected by the central from their aggregates alone, and
// exactly one flag_kill is published.
func TestSidecarsBadCanary(t *testing.T) {
	top := startSidecarTopology(t, 0.05)
	rounds := 0
	checkFor(t, 60*time.Second, func() error {
		top.round(t, 250)
		rounds++
		if n := len(top.central.commands()); n == 0 {
			return fmt.Errorf("no command yet after %d rounds", rounds)
		}
		return nil
	})
	detectedAt := time.Now()
	t.Logf("flag_kill published after %d rounds of 250 requests per service and sidecar", rounds)
	// The bad canary keeps running over more evaluations: still one command.
	checkFor(t, 20*time.Second, func() error {
		top.round(t, 250)
		if v := top.central.verdict("checkout"); v == nil || v.At.Before(detectedAt.Add(time.Second)) {
			return fmt.Errorf("waiting for evaluations after detection")
		}
		return nil
	})
	cmds := top.central.commands()
	if len(cmds) != 1 {
		t.Fatalf("want exactly 1 command, got %d", len(cmds))
	}
	if cmds[0].Subject != "rollguard.cmd.flag_kill.checkout" {
		t.Errorf("subject = %q", cmds[0].Subject)
	}
	var ev actions.Event
	var data actions.CommandData
	if err := json.Unmarshal(cmds[0].Data, &ev); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	d := data.Deployment
	if d.Version != "v2" || d.PreviousVersion != "v1" || d.Source != "implicit" || data.Target.Flag != "new-checkout-flow" {
		t.Errorf("command data = %+v", data)
	}
	if e := actions.DetectorEvidence(data.Evidence)[0]; e.State != detector.StateRegressed || e.Candidate.Ratio <= e.Baseline.Ratio {
		t.Errorf("evidence = %+v", e)
	}
	// Both sidecars published; neither sent a command of its own.
	for i, sc := range top.sidecars {
		if n := metricValue(t, sc, "rollguard_sidecar_messages_published_total"); n < 2 {
			t.Errorf("sidecar %d published %v messages", i+1, n)
		}
		if code, _ := sc.get("/api/v1/guards"); code != 404 {
			t.Errorf("sidecar %d serves the guards API: %d", i+1, code)
		}
	}
}

// TestSidecarsHealthyCanary is the healthy twin: the same topology with
// both versions at 1 % errors. Every request sent through either sidecar
// is counted once by the central, and no command is published.
func TestSidecarsHealthyCanary(t *testing.T) {
	top := startSidecarTopology(t, 0.01)
	const rounds = 40
	for i := 0; i < rounds; i++ {
		top.round(t, 250)
	}
	// A last baseline report pairs the canary's last batch.
	for _, s := range top.stables {
		s.serve(t, 250)
	}
	checkFor(t, 20*time.Second, func() error {
		v := top.central.verdict("checkout")
		if v == nil || len(v.Signals) == 0 {
			return fmt.Errorf("no verdict yet")
		}
		// In the tick v2 first appears, v1 may reach the before-window.
		if e := v.Signals[0]; e.Candidate.Total != rounds*250*2 || e.Baseline.Total < (rounds-1)*250*2 {
			return fmt.Errorf("evaluated %v candidate and %v baseline requests", e.Candidate.Total, e.Baseline.Total)
		}
		return nil
	})
	v := top.central.verdict("checkout")
	if v.State == detector.StateRegressed || v.Deployment.Version != "v2" || v.Deployment.PreviousVersion != "v1" {
		t.Errorf("verdict = %s on %+v", v.State, v.Deployment)
	}
	if n := len(top.central.commands()); n != 0 {
		t.Fatalf("healthy canary produced %d commands", n)
	}
}

// TestSidecarReload: a sidecar reloads its guards (the door filter follows)
// and keeps its configuration when the new file is invalid.
func TestSidecarReload(t *testing.T) {
	ns := natstest.Start(t)
	cfg := strings.Replace(testConfig, "nats:\n", "mode: sidecar\nnats:\n  url: "+ns.ClientURL()+"\n", 1)
	// startDaemon reads the commands stream, which a central creates.
	startDaemon(t, strings.Replace(testConfig, "nats:\n", "nats:\n  url: "+ns.ClientURL()+"\n", 1))
	sc := startDaemon(t, cfg)
	if sc.sidecar.aggregator.Wants("db.client.failed_writes") {
		t.Fatal("wants a metric no guard reads")
	}
	if err := os.WriteFile(sc.file, []byte(cfg+"        tolerance: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := sc.post("/-/reload", ""); code != 500 || !strings.Contains(string(b), "previous configuration kept") {
		t.Errorf("invalid reload: %d %s", code, b)
	}
	valid := cfg + "      - name: writes\n        type: data_integrity\n        metric: db.client.failed_writes\n        total_metric: http.server.request.duration\n"
	if err := os.WriteFile(sc.file, []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, b := sc.post("/-/reload", ""); code != 200 {
		t.Fatalf("valid reload: %d %s", code, b)
	}
	if !sc.sidecar.aggregator.Wants("db.client.failed_writes") {
		t.Error("the reloaded guard's metric is not wanted")
	}
}
