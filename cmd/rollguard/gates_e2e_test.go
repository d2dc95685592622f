package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/gates/argotest"
)

// gatesConfig is testConfig with a short promotion hold, so that a healthy
// canary whose stable version stopped serving is promoted within the test,
// and a tolerance of 1 (twice the baseline's error rate), so that a healthy
// verdict takes thousands of requests rather than hundreds of thousands; the
// bad canary, five times worse, still regresses.
var gatesConfig = strings.NewReplacer("global:\n", "global:\n  promotion_hold: 3s\n",
	"      - name: errors\n", "      - name: errors\n        tolerance: 1\n").Replace(testConfig)

// argoTemplates reads the AnalysisTemplates of docs/integrations.md, so
// that the templates users copy are the ones tested: the step gate
// (rollguard) and the background analysis (rollguard-background).
func argoTemplates(t *testing.T) (gate, background argotest.Template) {
	t.Helper()
	b, err := os.ReadFile("../../docs/integrations.md")
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1) {
		if bytes.Contains(m[1], []byte("kind: AnalysisTemplate")) {
			stream = append(append(stream, "\n---\n"...), m[1]...)
		}
	}
	ts, err := argotest.ParseTemplates(stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range ts {
		switch tm.Name {
		case "rollguard":
			gate = tm
		case "rollguard-background":
			background = tm
		}
	}
	if gate.URL == "" || background.URL == "" || gate.SuccessCondition != background.SuccessCondition || gate.FailureCondition != background.FailureCondition {
		t.Fatalf("docs/integrations.md: want the templates rollguard and rollguard-background with the same conditions: %+v", ts)
	}
	return gate, background
}

// measure takes one Argo Rollouts measurement of the gate with template
// tm's metric for the service checkout (version v2 when version is set):
// the phase and the gate's state.
func (td *testDaemon) measure(t *testing.T, tm argotest.Template, version bool) (string, string) {
	t.Helper()
	args := map[string]string{"rollguard-url": td.web, "service": "checkout"}
	if version {
		args["version"] = "v2"
	}
	m, err := tm.Metric(args)
	if err != nil {
		t.Fatal(err)
	}
	phase, result, err := argotest.Measure(http.DefaultClient, m)
	if err != nil {
		t.Fatalf("measure %s: %s %v", m.URL, phase, err)
	}
	return phase, fmt.Sprint(result.(map[string]any)["state"])
}

// gateRun is an AnalysisRun of the step gate: its result.
func (td *testDaemon) gateRun(t *testing.T, gate argotest.Template) (string, string) {
	t.Helper()
	r := argotest.Run{T: gate}
	for r.Phase(false) == argotest.Pending || r.Phase(false) == argotest.Running {
		phase, state := td.measure(t, gate, true)
		r.Add(phase)
		if r.Phase(false) != argotest.Running {
			return r.Phase(false), state
		}
	}
	return r.Phase(false), ""
}

// flagger calls one of the Flagger webhooks with Flagger's payload.
func (td *testDaemon) flagger(t *testing.T, hook, phase, metadata string) (int, map[string]any) {
	t.Helper()
	body := fmt.Sprintf(`{"name":"checkout","namespace":"shop","phase":%q,"checksum":"7b9f6d5c4","canaryWeight":10,"metadata":{%s}}`, phase, metadata)
	code, b := td.post("/api/v1/gates/flagger/"+hook, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %d %s", hook, code, b)
	}
	return code, m
}

// TestGatesBadCanary: from a bad canary reported through the OpenTelemetry
// SDK to the rollout controllers' answers, with the AnalysisTemplates of
// docs/integrations.md — no traffic is never a success (the step gate's run
// is Inconclusive: the rollout pauses), then the background analysis fails
// at the first regressed verdict and the step gate's run fails, with the
// detector's evidence; Flagger's rollback hook says roll back and its
// promotion gate stays shut.
func TestGatesBadCanary(t *testing.T) {
	td := startDaemon(t, gatesConfig)
	gate, background := argoTemplates(t)
	if phase, state := td.gateRun(t, gate); phase != argotest.Inconclusive || state != "no_data" {
		t.Errorf("no traffic: the gate's run is %s (%s), want Inconclusive (no_data)", phase, state)
	}
	if code, m := td.flagger(t, "confirm-promotion", "Promoting", ""); code != 403 || m["state"] != "no_data" {
		t.Errorf("confirm-promotion with no traffic: %d %v", code, m)
	}
	if code, _ := td.flagger(t, "rollback", "Progressing", ""); code != 403 {
		t.Errorf("rollback with no traffic: %d", code)
	}
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
	canary := newService(t, td.otlp, "checkout", "v2", 0.05, 2)
	stable.serve(t, 500)
	rounds := 0
	bg := argotest.Run{T: background}
	checkFor(t, 60*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		rounds++
		phase, state := td.measure(t, background, true)
		if phase == argotest.Successful {
			t.Fatalf("the bad canary passed a measurement: %s", state)
		}
		bg.Add(phase)
		if p := bg.Phase(false); p != argotest.Failed {
			return fmt.Errorf("background analysis %s (last measurement %s, %s) after %d rounds", p, phase, state, rounds)
		}
		return nil
	})
	t.Logf("the background analysis failed after %d rounds of 500 requests per version: %v", rounds, bg.Measurements)
	if phase, state := td.gateRun(t, gate); phase != argotest.Failed || state != "regressed" {
		t.Errorf("the gate's run: %s (%s), want Failed (regressed)", phase, state)
	}
	code, b := td.get("/api/v1/gates/argo?service=checkout")
	var g struct {
		State, Outcome, Reason string
		Deployment             struct {
			ID, Version     string
			PreviousVersion string `json:"previous_version"`
		}
		Evidence []struct{ Guard, Signal, State, Summary string }
	}
	if err := json.Unmarshal(b, &g); code != 200 || err != nil {
		t.Fatalf("gate: %d %s", code, b)
	}
	t.Logf("the gate's answer: %s", b)
	v := td.verdict("checkout")
	if g.State != "regressed" || g.Outcome != "failure" || g.Deployment.ID != v.Deployment.ID || g.Deployment.Version != "v2" || g.Deployment.PreviousVersion != "v1" {
		t.Errorf("gate %+v", g)
	}
	if len(g.Evidence) != 1 || g.Evidence[0].Guard != "checkout" || g.Evidence[0].Signal != "errors" || g.Evidence[0].State != "regressed" ||
		!strings.Contains(g.Evidence[0].Summary, "candidate") || !strings.Contains(g.Reason, "e-value") {
		t.Errorf("evidence %+v, reason %q", g.Evidence, g.Reason)
	}
	if code, m := td.flagger(t, "rollback", "Progressing", `"version":"v2"`); code != 200 || m["state"] != "regressed" {
		t.Errorf("rollback: %d %v", code, m)
	}
	if code, m := td.flagger(t, "confirm-promotion", "Promoting", ""); code != 403 || m["state"] != "regressed" {
		t.Errorf("confirm-promotion: %d %v", code, m)
	}
}

// TestGatesHealthyTwin: Flagger's event announces the deployment, a healthy
// canary passes the step gate's run and opens Flagger's promotion gate (and
// the background analysis never fails, nor does Flagger's rollback hook
// fire, on the way); once the stable version stops serving, the deployment
// is promoted and the gate says so.
func TestGatesHealthyTwin(t *testing.T) {
	td := startDaemon(t, gatesConfig)
	gate, background := argoTemplates(t)
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
	canary := newService(t, td.otlp, "checkout", "v2", 0.01, 2)
	stable.serve(t, 500)
	checkFor(t, 10*time.Second, func() error { // v1 becomes the stable version
		if code, m := td.flagger(t, "event", "Progressing", `"eventMessage":"Starting canary analysis for checkout.shop","eventType":"Normal","timestamp":"1700000000000","version":"v2","previous_version":"v1"`); code != 202 || m["status"] != "announced" {
			return fmt.Errorf("event: %d %v", code, m)
		}
		return nil
	})
	if phase, state := td.gateRun(t, gate); phase != argotest.Inconclusive {
		t.Errorf("announced, no canary traffic yet: the gate's run is %s (%s)", phase, state)
	}
	rounds := 0
	bg := argotest.Run{T: background}
	checkFor(t, 120*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		rounds++
		phase, state := td.measure(t, background, true)
		if bg.Add(phase); bg.Phase(false) == argotest.Failed {
			t.Fatalf("the healthy canary failed the background analysis after %d rounds: %s", rounds, state)
		}
		if code, m := td.flagger(t, "rollback", "Progressing", `"version":"v2"`); code != 403 {
			t.Fatalf("rollback hook said %d for the healthy canary: %v", code, m)
		}
		// promoted, not healthy, only if the machine stalled for the
		// promotion hold between two rounds: a success as well.
		if phase != argotest.Successful || state != "healthy" && state != "promoted" {
			return fmt.Errorf("measurement %s (%s) after %d rounds", phase, state, rounds)
		}
		return nil
	})
	t.Logf("Argo's measurement succeeded after %d rounds of 500 requests per version: %v", rounds, bg.Measurements)
	if phase, state := td.gateRun(t, gate); phase != argotest.Successful {
		t.Errorf("the gate's run: %s (%s), want Successful", phase, state)
	}
	if p := bg.Phase(true); p != argotest.Successful {
		t.Errorf("the background analysis, ended with the rollout: %s", p)
	}
	if code, m := td.flagger(t, "confirm-promotion", "Promoting", `"version":"v2"`); code != 200 || m["state"] != "healthy" && m["state"] != "promoted" {
		t.Errorf("confirm-promotion: %d %v", code, m)
	}
	if d := td.verdict("checkout").Deployment; d.Source != "api" || d.Strategy != "canary" {
		t.Errorf("the deployment was not Flagger's announcement: %+v", d)
	}
	// v1 stops serving: after the promotion hold, v2 is the stable version.
	checkFor(t, 30*time.Second, func() error {
		canary.serve(t, 100)
		if phase, state := td.gateRun(t, gate); phase != argotest.Successful || state != "promoted" {
			return fmt.Errorf("the gate's run: %s (%s)", phase, state)
		}
		return nil
	})
	if code, m := td.flagger(t, "confirm-promotion", "Promoting", `"version":"v2"`); code != 200 || m["state"] != "promoted" {
		t.Errorf("confirm-promotion after promotion: %d %v", code, m)
	}
}

// TestGatesBehindAuth: the gates sit behind the web listener's credentials,
// which Argo's web provider sends as a header.
func TestGatesBehindAuth(t *testing.T) {
	td := startDaemon(t, strings.Replace(testConfig, "guards:\n", "web:\n  authorization:\n    credentials: s3cret\nguards:\n", 1))
	gate, _ := argoTemplates(t)
	argo, err := gate.Metric(map[string]string{"rollguard-url": td.web, "service": "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if phase, _, err := argotest.Measure(http.DefaultClient, argo); phase != argotest.Error || !strings.Contains(fmt.Sprint(err), "401") {
		t.Errorf("without credentials: %s %v", phase, err)
	}
	argo.Headers = map[string]string{"Authorization": "Bearer s3cret"}
	if phase, result, err := argotest.Measure(http.DefaultClient, argo); phase != argotest.Inconclusive || err != nil {
		t.Errorf("with credentials: %s %v %v", phase, result, err)
	}
	if code, _ := td.post("/api/v1/gates/flagger/confirm-promotion", `{"name":"checkout","namespace":"shop","phase":"Promoting"}`); code != 401 {
		t.Errorf("Flagger without credentials: %d", code)
	}
}
