package main

// End-to-end regression tests of the rebuilt lifecycle (the playbook Model
// and the deployment tracker's rules), each with its twin: a real daemon,
// its embedded NATS with JetStream, services instrumented with the
// OpenTelemetry SDK, and NATS clients that count commands on the wire.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/detector"
)

// lcbOptions vary the lifecycle tests' configuration.
type lcbOptions struct {
	ack   string // playbook.ack_timeout
	flags bool   // the guard names new-checkout-flow
	extra string // more playbook lines, indented by two spaces
}

// lcbConfig is the playbook on a test's time scale, with a short or long
// ack_timeout, and a guard with or without a flag to kill (without one,
// rollback is the first and only rung).
func lcbConfig(o lcbOptions) string {
	flags := ""
	if o.flags {
		flags = "    flags: [new-checkout-flow]\n"
	}
	return `
global:
  evaluation_interval: 100ms
  no_data_timeout: 30s
  new_version_hold: 1s
nats:
  embedded:
    host: 127.0.0.1
    port: -1
otlp:
  http_listen_address: 127.0.0.1:0
  grpc_listen_address: ""
playbook:
  containment_timeout: 30s
  recovery_timeout: 30s
  healthy_hold: 2s
  ack_timeout: ` + o.ack + `
  status_interval: 1m
  close_after: 1h
` + o.extra + `guards:
  - name: checkout
    service: checkout
    alpha: 0.001
` + flags + `    signals:
      - name: errors
`
}

// lcbStart is startDaemon on a given configuration file.
func lcbStart(t *testing.T, file string) *testDaemon {
	t.Helper()
	return startDaemonFile(t, file)
}

// lcbRestart restarts the daemon on the same storage.
func lcbRestart(t *testing.T, td *testDaemon) *testDaemon {
	t.Helper()
	return restartDaemon(t, td)
}

// lcbReport publishes an actuator's result as actuators do: a CloudEvent
// with the result data on rollguard.result.<action>.checkout, its id as
// Nats-Msg-Id, into the stream.
func lcbReport(t *testing.T, td *testDaemon, commandID, action, status, detail, msgID string) {
	t.Helper()
	if err := lcbPublishResult(td.js, commandID, action, status, detail, msgID); err != nil {
		t.Fatalf("publish %s result for %s: %v", status, commandID, err)
	}
}

func lcbPublishResult(js jetstream.JetStream, commandID, action, status, detail, msgID string) error {
	now := time.Now().UTC()
	r := wire.ResultData{CommandID: commandID, IncidentID: wire.IncidentID(strings.SplitN(commandID, "/", 2)[0]),
		Action: action, Service: "checkout", Status: status, Detail: detail, Actuator: "lcb-deployer", At: now}
	ev, err := wire.NewEvent(msgID, wire.ResultType(action), "checkout", now, r)
	if err != nil {
		return err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.JetStreamPublisher{JS: js}.Publish(ctx, wire.Message{
		Subject: wire.Subjects{Prefix: "rollguard"}.Result(action, "checkout"), ID: msgID, Data: b})
}

// lcbProgress is an actuator busy with a long action: as soon as a command
// of action is on the wire, it reports in_progress, then every `every`,
// until stop is called.
func lcbProgress(t *testing.T, td *testDaemon, action string, every time.Duration) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	sub, err := td.client.Subscribe("rollguard.cmd."+action+".checkout", func(m *nats.Msg) {
		id := eventID(m.Data)
		once.Do(func() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := time.NewTicker(every)
				defer tk.Stop()
				for n := 1; ; n++ {
					if err := lcbPublishResult(td.js, id, action, actions.ResultInProgress, "redeploying",
						fmt.Sprintf("%s/progress/lcb-deployer/%d", id, n)); err != nil {
						t.Errorf("in_progress %d: %v", n, err)
					}
					select {
					case <-quit:
						return
					case <-tk.C:
					}
				}
			}()
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := td.client.Flush(); err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stop = func() {
		stopOnce.Do(func() {
			_ = sub.Unsubscribe()
			close(quit)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// lcbDeployments returns the deployments under way and those ended.
func lcbDeployments(t *testing.T, td *testDaemon) (underWay, ended []detector.Deployment) {
	t.Helper()
	code, b := td.get("/api/v1/deployments")
	if code != 200 {
		t.Fatalf("GET /api/v1/deployments: %d %s", code, b)
	}
	var body struct{ Deployments []detector.Deployment }
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("decode deployments: %v\n%s", err, b)
	}
	for _, d := range body.Deployments {
		if d.EndedAt == nil {
			underWay = append(underWay, d)
		} else {
			ended = append(ended, d)
		}
	}
	return underWay, ended
}

// lcbMetric reads one sample of the daemon's /metrics (0 when absent).
func lcbMetric(t *testing.T, td *testDaemon, series string) float64 {
	t.Helper()
	code, b := td.get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// lcbAnnounce announces a deployment through the API.
func lcbAnnounce(t *testing.T, td *testDaemon, body string) detector.Deployment {
	t.Helper()
	code, b := td.post("/api/v1/deployments", body)
	if code != 201 {
		t.Fatalf("announce %s: %d %s", body, code, b)
	}
	var d detector.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decode deployment: %v\n%s", err, b)
	}
	return d
}

// lcbTimeline finds the timeline entry whose reason contains s.
func lcbTimeline(inc actions.Incident, s string) *actions.TimelineEntry {
	for i := range inc.Timeline {
		if strings.Contains(inc.Timeline[i].Reason, s) {
			return &inc.Timeline[i]
		}
	}
	return nil
}

func lcbTimelineText(inc actions.Incident) string {
	var b strings.Builder
	for _, e := range inc.Timeline {
		fmt.Fprintf(&b, "  %s %s %s->%s %s\n", e.At.Format("15:04:05.000"), e.Kind, e.From, e.To, e.Reason)
	}
	return b.String()
}

// lcbUnderWay finds the deployment of prev -> version among ds.
func lcbUnderWay(ds []detector.Deployment, prev, version string) *detector.Deployment {
	for i := range ds {
		if ds[i].PreviousVersion == prev && ds[i].Version == version {
			return &ds[i]
		}
	}
	return nil
}

// lcbOneCommand checks that exactly one command went out, on the wire and
// in the stream, and that it is the one expected.
func lcbOneCommand(t *testing.T, td *testDaemon, w *commandWire, suffix string) string {
	t.Helper()
	var ids []string
	checkFor(t, 10*time.Second, func() error {
		if ids = w.all(); len(ids) != 1 {
			return fmt.Errorf("commands on the wire: %v", ids)
		}
		return nil
	})
	if !strings.HasSuffix(ids[0], suffix) {
		t.Fatalf("command on the wire %q, want one ending in %q", ids[0], suffix)
	}
	if stream := exactlyOnce(t, td.stream); len(stream) != 1 || stream[0] != ids[0] {
		t.Fatalf("commands in the stream %v, on the wire %v", stream, ids)
	}
	return ids[0]
}

// --- 1. A restart does not resurrect a superseded deployment ---------------

// lcbContaining runs a bad canary v2 against v1 until its incident is
// containing (the flag kill published, no actuator answering within the
// long ack_timeout).
func lcbContaining(t *testing.T, td *testDaemon) (*fleet, actions.Incident) {
	t.Helper()
	f := newFleet(t, td.otlp)
	f.badAlways = true
	inc := untilState(t, f, td.get, actions.StateContaining, 90*time.Second)
	if inc.Deployment.PreviousVersion != "v1" || inc.Deployment.Version != "v2" {
		t.Fatalf("incident on %+v, want v1 -> v2", inc.Deployment)
	}
	return f, inc
}

// TestLifecycleBRestartDoesNotResurrectSuperseded: an incident on v1->v2
// is in hand (containing) when v2->v3 is announced; the incident records
// that its deployment was superseded and goes to people. A restart on the
// same storage then restores the incident but not its deployment: no
// v1->v2 is under way, v2->v3 comes back only from traffic, and no command
// is sent again.
func TestLifecycleBRestartDoesNotResurrectSuperseded(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)
	_, inc := lcbContaining(t, td)
	old := inc.Deployment
	kill := lcbOneCommand(t, td, w, "/flag_kill/new-checkout-flow")

	next := lcbAnnounce(t, td, `{"service":"checkout","version":"v3","previous_version":"v2"}`)
	if next.PreviousVersion != "v2" || next.Version != "v3" || next.ID == old.ID {
		t.Fatalf("announced %+v", next)
	}
	checkFor(t, 20*time.Second, func() error {
		i := incidentOf(t, td.get)
		if i == nil || i.Deployment.SupersededBy != next.ID || i.State != actions.StateEscalated {
			return fmt.Errorf("incident %+v", i)
		}
		inc = *i
		return nil
	})
	if inc.Deployment.EndedAt == nil || inc.Deployment.EndReason != "superseded" ||
		!strings.Contains(inc.Reason, "superseded by "+next.ID+" before recovery was verified") ||
		lcbTimeline(inc, "deployment "+old.ID+" superseded by "+next.ID) == nil {
		t.Fatalf("incident does not record the supersession: reason %q, deployment %+v\n%s", inc.Reason, inc.Deployment, lcbTimelineText(inc))
	}
	under, _ := lcbDeployments(t, td)
	if len(under) != 1 || under[0].ID != next.ID {
		t.Fatalf("under way before the restart: %+v, want only %s", under, next.ID)
	}

	td = lcbRestart(t, td)
	w = watchCommands(t, td)
	// Restore runs before the daemon is ready: what it resumed is there now.
	restored := incidentOf(t, td.get)
	if restored == nil || restored.ID != inc.ID || restored.State != actions.StateEscalated ||
		restored.Deployment.SupersededBy != next.ID || restored.Deployment.EndedAt == nil {
		t.Fatalf("restored incident %+v", restored)
	}
	under, _ = lcbDeployments(t, td)
	if d := lcbUnderWay(under, "v1", "v2"); d != nil {
		t.Fatalf("the superseded deployment %s (v1 -> v2) is under way again after the restart: %+v", old.ID, under)
	}
	if len(under) != 0 {
		t.Fatalf("deployments under way after a restart without traffic or announcement: %+v", under)
	}

	// v2 -> v3 comes back from traffic: v2 is seen first (stable), then v3.
	stable := newService(t, td.otlp, "checkout", "v2", 0.01, 11)
	canary := newService(t, td.otlp, "checkout", "v3", 0.01, 12)
	stable.serve(t, 500)
	checkFor(t, 30*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		under, _ = lcbDeployments(t, td)
		if lcbUnderWay(under, "v1", "v2") != nil {
			t.Fatalf("v1 -> v2 under way after the restart: %+v", under)
		}
		if d := lcbUnderWay(under, "v2", "v3"); d == nil || d.Source != detector.SourceImplicit {
			return fmt.Errorf("no v2 -> v3 from traffic yet: %+v", under)
		}
		return nil
	})
	for i := 0; i < 5; i++ {
		stable.serve(t, 500)
		canary.serve(t, 500)
		td.nextEvaluation(t, "checkout")
	}
	under, _ = lcbDeployments(t, td)
	if len(under) != 1 || under[0].PreviousVersion != "v2" || under[0].Version != "v3" {
		t.Fatalf("under way: %+v, want v2 -> v3 only", under)
	}
	if i := incidentOf(t, td.get); i == nil || i.State != actions.StateEscalated || i.Deployment.EndedAt == nil {
		t.Fatalf("incident after traffic: %+v", i)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire after the restart: %v", ids)
	}
	if ids := exactlyOnce(t, td.stream); len(ids) != 1 || ids[0] != kill {
		t.Fatalf("commands in the stream: %v, want the one flag kill", ids)
	}
}

// TestLifecycleBRestartResumesOpenIncident is the twin: an open incident
// whose deployment was not superseded is resumed by a restart — the same
// deployment under way, the incident in the same state, verdicts on it,
// and no command again.
func TestLifecycleBRestartResumesOpenIncident(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)
	_, inc := lcbContaining(t, td)
	kill := lcbOneCommand(t, td, w, "/flag_kill/new-checkout-flow")

	td = lcbRestart(t, td)
	w = watchCommands(t, td)
	restored := incidentOf(t, td.get)
	if restored == nil || restored.ID != inc.ID || restored.State != actions.StateContaining || restored.Deployment.EndedAt != nil {
		t.Fatalf("restored incident %+v", restored)
	}
	under, _ := lcbDeployments(t, td)
	if len(under) != 1 || under[0].ID != inc.Deployment.ID {
		t.Fatalf("under way after the restart: %+v, want the incident's %s", under, inc.Deployment.ID)
	}

	// The bad canary goes on: verdicts speak of the resumed deployment,
	// and the incident goes on without a second command.
	stable := newService(t, td.otlp, "checkout", "v1", 0.01, 21)
	canary := newService(t, td.otlp, "checkout", "v2", 0.06, 22)
	checkFor(t, 30*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		v := td.verdict("checkout")
		if v == nil || v.Deployment.ID != inc.Deployment.ID || len(v.Signals) == 0 || v.Signals[0].Candidate.Total == 0 {
			return fmt.Errorf("no verdict on the resumed deployment's new data yet: %+v", v)
		}
		return nil
	})
	if i := incidentOf(t, td.get); i == nil || i.ID != inc.ID || i.State != actions.StateContaining {
		t.Fatalf("incident after the restart: %+v", i)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire after the restart: %v", ids)
	}
	if ids := exactlyOnce(t, td.stream); len(ids) != 1 || ids[0] != kill {
		t.Fatalf("commands in the stream: %v, want the one flag kill", ids)
	}
}

// TestLifecycleBStopRightAfterSupersession: the same story, with the
// daemon stopped (gracefully) as soon as the announcement of v2 -> v3 has
// been answered: the supersession was accepted, so the restarted daemon
// must not resume v1 -> v2 either. The window is a few milliseconds, so
// the test tries up to 20 times.
func TestLifecycleBStopRightAfterSupersession(t *testing.T) {
	for i := 0; i < 20; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
			_, inc := lcbContaining(t, td)
			next := lcbAnnounce(t, td, `{"service":"checkout","version":"v3","previous_version":"v2"}`)
			td = lcbRestart(t, td)
			under, _ := lcbDeployments(t, td)
			if d := lcbUnderWay(under, "v1", "v2"); d != nil {
				t.Fatalf("the superseded deployment %s (v1 -> v2) is under way again after the restart: %+v", inc.Deployment.ID, under)
			}
			restored := incidentOf(t, td.get)
			if restored == nil || restored.Deployment.SupersededBy != next.ID || restored.State != actions.StateEscalated {
				t.Fatalf("restored incident does not record the supersession by %s: %+v", next.ID, restored)
			}
		})
		if t.Failed() {
			return
		}
	}
}

// --- 2. Old-version traffic does not supersede an announced deployment -----

// lcbAnnounceV2V3 announces v1 -> v2, then v2 -> v3.
func lcbAnnounceV2V3(t *testing.T, td *testDaemon) (first, second detector.Deployment) {
	t.Helper()
	first = lcbAnnounce(t, td, `{"service":"checkout","version":"v2","previous_version":"v1"}`)
	second = lcbAnnounce(t, td, `{"service":"checkout","version":"v3","previous_version":"v2"}`)
	if second.ID == first.ID || second.PreviousVersion != "v2" || second.Version != "v3" {
		t.Fatalf("announced %+v then %+v", first, second)
	}
	return first, second
}

// TestLifecycleBRetiredTrafficDoesNotSupersede: v1 was stable before v2,
// which v3 now replaces; v1 traffic over many evaluations is dropped as
// other_version and neither opens nor supersedes a deployment: v2 -> v3
// stays under way, with only v2 as its baseline.
func TestLifecycleBRetiredTrafficDoesNotSupersede(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)
	first, second := lcbAnnounceV2V3(t, td)

	old := newService(t, td.otlp, "checkout", "v1", 0.01, 31)
	stable := newService(t, td.otlp, "checkout", "v2", 0.01, 32)
	canary := newService(t, td.otlp, "checkout", "v3", 0.01, 33)
	const rounds = 10
	for i := 0; i < rounds; i++ {
		old.serve(t, 500)
		stable.serve(t, 500)
		old.serve(t, 500)
		canary.serve(t, 500)
		td.nextEvaluation(t, "checkout")
		under, ended := lcbDeployments(t, td)
		if len(under) != 1 || under[0].ID != second.ID || under[0].Source != detector.SourceAPI {
			t.Fatalf("round %d: under way %+v, want only %s (v2 -> v3)", i, under, second.ID)
		}
		if len(ended) != 1 || ended[0].ID != first.ID || ended[0].SupersededBy != second.ID {
			t.Fatalf("round %d: ended %+v, want only %s superseded by %s", i, ended, first.ID, second.ID)
		}
	}
	stable.serve(t, 500) // pairs the canary's last batch
	checkFor(t, 20*time.Second, func() error {
		v := td.verdict("checkout")
		if v == nil || v.Deployment.ID != second.ID || len(v.Signals) == 0 || v.Signals[0].Candidate.Total != rounds*500 {
			return fmt.Errorf("not all of v3's requests evaluated yet: %+v", v)
		}
		return nil
	})
	e := td.verdict("checkout").Signals[0]
	if e.Baseline.Version != "v2" || e.Candidate.Version != "v3" || e.Baseline.Total > (rounds+1)*500 {
		t.Fatalf("evidence baseline %+v candidate %+v: v1's requests must not count", e.Baseline, e.Candidate)
	}
	if n := lcbMetric(t, td, `rollguard_detector_samples_dropped_total{reason="other_version"}`); n == 0 {
		t.Fatal("v1's samples were not counted as dropped other_version")
	}
	if n := lcbMetric(t, td, `rollguard_deployments_opened_total{source="implicit"}`); n != 0 {
		t.Fatalf("%v implicit deployments opened by retired traffic", n)
	}
	if n := lcbMetric(t, td, `rollguard_deployments_opened_total{source="api"}`); n != 2 {
		t.Fatalf("%v announced deployments opened, want 2", n)
	}
	if inc := incidentOf(t, td.get); inc != nil {
		t.Fatalf("incident %+v", inc)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire: %v", ids)
	}
}

// TestLifecycleBNewVersionOpensImplicit is the twin: traffic of v4, never
// seen, opens an implicit deployment v2 -> v4 that supersedes v2 -> v3.
func TestLifecycleBNewVersionOpensImplicit(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)
	_, second := lcbAnnounceV2V3(t, td)

	stable := newService(t, td.otlp, "checkout", "v2", 0.01, 41)
	fresh := newService(t, td.otlp, "checkout", "v4", 0.01, 42)
	var next *detector.Deployment
	checkFor(t, 20*time.Second, func() error {
		stable.serve(t, 500)
		fresh.serve(t, 500)
		under, _ := lcbDeployments(t, td)
		if next = lcbUnderWay(under, "v2", "v4"); next == nil {
			return fmt.Errorf("no implicit v2 -> v4 yet: %+v", under)
		}
		return nil
	})
	if next.Source != detector.SourceImplicit {
		t.Fatalf("v2 -> v4 is %+v, want an implicit deployment", next)
	}
	under, ended := lcbDeployments(t, td)
	if len(under) != 1 || under[0].ID != next.ID {
		t.Fatalf("under way %+v, want only v2 -> v4", under)
	}
	var superseded bool
	for _, d := range ended {
		superseded = superseded || (d.ID == second.ID && d.SupersededBy == next.ID)
	}
	if !superseded {
		t.Fatalf("v2 -> v3 not superseded by %s: %+v", next.ID, ended)
	}
	if n := lcbMetric(t, td, `rollguard_deployments_opened_total{source="implicit"}`); n != 1 {
		t.Fatalf("%v implicit deployments opened, want 1", n)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire: %v", ids)
	}
}

// --- 3. A late rollback result ---------------------------------------------

// lcbRollbackEscalated runs a bad canary against a guard with no flag, so
// that rollback is the only rung, and no actuator: the rollback times out
// and the incident is escalated.
func lcbRollbackEscalated(t *testing.T, td *testDaemon, w *commandWire) (*fleet, actions.Incident, string) {
	t.Helper()
	f := newFleet(t, td.otlp)
	f.badAlways = true
	inc := untilState(t, f, td.get, actions.StateEscalated, 90*time.Second)
	rb := lcbOneCommand(t, td, w, "/rollback/v1")
	if len(inc.Commands) != 1 || inc.Commands[0].ID != rb || inc.Commands[0].Status != actions.CommandTimedOut || inc.Commands[0].Result != nil {
		t.Fatalf("commands %+v, want the rollback timed out", inc.Commands)
	}
	if !strings.Contains(inc.Reason, "no result for rollback to v1 by redeploy within ack_timeout (2s)") {
		t.Fatalf("escalated for %q, want the rollback's ack timeout", inc.Reason)
	}
	return f, inc, rb
}

// TestLifecycleBLateRollbackResultIsActedOn: the rollback's "ok" comes
// after the ack timeout, when the incident is already with people; it is
// recorded as late and acted on, since the rollback is still the rung in
// progress: verifying, and with the stable version alone serving,
// stabilized.
func TestLifecycleBLateRollbackResultIsActedOn(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "2s"})))
	w := watchCommands(t, td)
	f, _, rb := lcbRollbackEscalated(t, td, w)

	// The deploy tool was slow: the rollback happens now, and says so.
	if err := os.WriteFile(f.marker, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lcbReport(t, td, rb, actions.ActionRollback, actions.ResultOK, "redeployed v1", rb+"/result/lcb-deployer")
	inc := untilState(t, f, td.get, actions.StateStabilized, 60*time.Second)
	if late := lcbTimeline(inc, "rollback to v1 by redeploy: ok by lcb-deployer (redeployed v1), late: after the ack timeout"); late == nil {
		t.Fatalf("the timeline does not record the late result:\n%s", lcbTimelineText(inc))
	}
	got := strings.Join(states(inc), ",")
	if want := "deployed,watching,rolling_back,escalated,verifying,stabilized"; got != want {
		t.Fatalf("states %s, want %s\n%s", got, want, lcbTimelineText(inc))
	}
	if c := inc.Commands[0]; c.Status != actions.CommandOK || c.Result == nil || c.Result.Actuator != "lcb-deployer" {
		t.Fatalf("rollback %+v", c)
	}
	if inc.MitigatedAt == nil || inc.RecoveredAt == nil {
		t.Fatalf("mitigated %v recovered %v", inc.MitigatedAt, inc.RecoveredAt)
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

const (
	lcbAck       = 3 * time.Second // ack_timeout of the in_progress tests
	lcbMaxAction = 8 * time.Second // their max_action_time for rollback
)

// lcbInProgressUntilEscalated runs a bad canary whose rollback an actuator
// reports in_progress from the start, every 300 ms, until the incident is
// escalated. It returns the incident, when the rollback was published, and
// whether the incident was seen rolling_back well past the ack timeout.
func lcbInProgressUntilEscalated(t *testing.T) (*testDaemon, *commandWire, actions.Incident, time.Time, bool) {
	t.Helper()
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: lcbAck.String(), extra: "  max_action_time: {rollback: " + lcbMaxAction.String() + "}\n"})))
	w := watchCommands(t, td)
	stop := lcbProgress(t, td, actions.ActionRollback, 300*time.Millisecond)
	f := newFleet(t, td.otlp)
	f.badAlways = true

	var published time.Time
	var heldPastAck bool // seen rolling_back well after ack_timeout
	var inc actions.Incident
	checkFor(t, 120*time.Second, func() error {
		f.round()
		i := incidentOf(t, td.get)
		if i == nil {
			return fmt.Errorf("no incident yet")
		}
		inc = *i
		if len(inc.Commands) > 0 && inc.Commands[0].Published != nil {
			published = *inc.Commands[0].Published
		}
		switch inc.State {
		case actions.StateEscalated:
			return nil
		case actions.StateRollingBack:
			if !published.IsZero() && time.Since(published) > lcbAck+2*time.Second {
				heldPastAck = true
			}
		}
		return fmt.Errorf("incident %s: %s", inc.State, inc.Reason)
	})
	stop()
	return td, w, inc, published, heldPastAck
}

// TestLifecycleBInProgressHoldsUntilMaxActionTime is a twin: the actuator
// reports in_progress from the start, so the ack timeout does not escalate
// the incident — until max_action_time, after which the clock is no longer
// extended and the rollback times out.
func TestLifecycleBInProgressHoldsUntilMaxActionTime(t *testing.T) {
	td, w, inc, published, heldPastAck := lcbInProgressUntilEscalated(t)
	if !heldPastAck {
		t.Fatalf("never saw the incident rolling_back more than %s after the rollback's publish at %s:\n%s", lcbAck+2*time.Second, published, lcbTimelineText(inc))
	}
	if inc.EscalatedAt == nil || inc.EscalatedAt.Sub(published) < lcbMaxAction {
		t.Fatalf("escalated at %v, %v after the publish, before max_action_time %s:\n%s", inc.EscalatedAt, inc.EscalatedAt.Sub(published), lcbMaxAction, lcbTimelineText(inc))
	}
	c := inc.Commands[0]
	if c.Status != actions.CommandTimedOut || c.Progress == nil || c.Progress.Status != actions.ResultInProgress {
		t.Fatalf("rollback %+v progress %+v", c, c.Progress)
	}
	for _, s := range []string{
		"rollback to v1 by redeploy in progress by lcb-deployer (redeploying)",
		"no result for rollback to v1 by redeploy within ack_timeout (3s)",
	} {
		if lcbTimeline(inc, s) == nil {
			t.Errorf("the timeline lacks %q:\n%s", s, lcbTimelineText(inc))
		}
	}
	if got, want := strings.Join(states(inc), ","), "deployed,watching,rolling_back,escalated"; got != want {
		t.Fatalf("states %s, want %s", got, want)
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

// TestLifecycleBMaxActionTimeIsInTimeline: when in_progress reports stop
// extending the ack clock because max_action_time has passed, the timeline
// says so, so that people reading "no result within ack_timeout" on a
// rollback that was reported in progress all along know why.
func TestLifecycleBMaxActionTimeIsInTimeline(t *testing.T) {
	_, _, inc, _, _ := lcbInProgressUntilEscalated(t)
	const s = "rollback to v1 by redeploy still in progress by lcb-deployer after max_action_time (8s): the clock is not extended"
	if lcbTimeline(inc, s) == nil {
		t.Fatalf("the timeline lacks %q:\n%s", s, lcbTimelineText(inc))
	}
}

// TestLifecycleBLateProgressThenOKIsLate: an actuator that was down when
// the rollback went out catches up after the ack timeout: in_progress,
// then ok. Both come after the ack timeout; the ok is acted on and
// recorded as late.
func TestLifecycleBLateProgressThenOKIsLate(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "2s"})))
	w := watchCommands(t, td)
	f, _, rb := lcbRollbackEscalated(t, td, w)

	lcbReport(t, td, rb, actions.ActionRollback, actions.ResultInProgress, "redeploying", rb+"/progress/lcb-deployer/1")
	checkFor(t, 20*time.Second, func() error {
		f.round()
		if inc := incidentOf(t, td.get); lcbTimeline(*inc, "in progress by lcb-deployer") == nil {
			return fmt.Errorf("the late in_progress is not recorded yet")
		}
		return nil
	})
	if err := os.WriteFile(f.marker, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lcbReport(t, td, rb, actions.ActionRollback, actions.ResultOK, "redeployed v1", rb+"/result/lcb-deployer")
	inc := untilState(t, f, td.get, actions.StateStabilized, 60*time.Second)
	if lcbTimeline(inc, "rollback to v1 by redeploy: ok by lcb-deployer (redeployed v1), late: after the ack timeout") == nil {
		t.Fatalf("the ok that came after the ack timeout (and after the incident was escalated) is not recorded as late:\n%s", lcbTimelineText(inc))
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

// TestLifecycleBLateFailedResultStaysEscalated is a twin: a "failed"
// result after the ack timeout is recorded as late and leaves the incident
// with people.
func TestLifecycleBLateFailedResultStaysEscalated(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "2s"})))
	w := watchCommands(t, td)
	f, _, rb := lcbRollbackEscalated(t, td, w)

	lcbReport(t, td, rb, actions.ActionRollback, actions.ResultFailed, "image pull failed", rb+"/result/lcb-deployer")
	const late = "rollback to v1 by redeploy: failed by lcb-deployer (image pull failed), late: after the ack timeout"
	var inc actions.Incident
	checkFor(t, 20*time.Second, func() error {
		f.round()
		inc = *incidentOf(t, td.get)
		if lcbTimeline(inc, late) == nil {
			return fmt.Errorf("the late result is not recorded yet")
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		f.round()
		td.nextEvaluation(t, "checkout")
		if inc = *incidentOf(t, td.get); inc.State != actions.StateEscalated {
			t.Fatalf("a late failed rollback moved the incident to %s (%s):\n%s", inc.State, inc.Reason, lcbTimelineText(inc))
		}
	}
	if c := inc.Commands[0]; c.Status != actions.CommandFailed || c.Result == nil {
		t.Fatalf("rollback %+v", c)
	}
	if got, want := strings.Join(states(inc), ","), "deployed,watching,rolling_back,escalated"; got != want {
		t.Fatalf("states %s, want %s", got, want)
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

// --- 4. People close and acknowledge by the CLI ----------------------------

// TestLifecycleBCLICloseEscalated: a person closes an escalated incident
// with `rollguard incident close`; it is closed with who and why, the
// open-incidents gauge drops to 0, the post-mortem names them, and nothing
// is published but the incident's own events.
func TestLifecycleBCLICloseEscalated(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "2s"})))
	w := watchCommands(t, td)
	_, inc, _ := lcbRollbackEscalated(t, td, w)
	if n := lcbMetric(t, td, "rollguard_incidents_open"); n != 1 {
		t.Fatalf("rollguard_incidents_open %v while escalated, want 1", n)
	}

	const reason = "rolled forward to v3 by hand"
	var out, errb bytes.Buffer
	code := rollguard([]string{"incident", "close", inc.ID, "--reason=" + reason, "--by=alice", "--web.url=" + td.web}, &out, &errb)
	if code != 0 || out.String() != inc.ID+" closed\n" {
		t.Fatalf("rollguard incident close: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	got := incidentOf(t, td.get)
	if got == nil || got.State != actions.StateClosed || got.ClosedBy != "alice" || got.CloseReason != reason || got.ClosedAt == nil {
		t.Fatalf("incident after close: %+v", got)
	}
	if lcbTimeline(*got, "closed by alice: "+reason) == nil {
		t.Fatalf("the timeline lacks the close:\n%s", lcbTimelineText(*got))
	}
	checkFor(t, 10*time.Second, func() error {
		if n := lcbMetric(t, td, "rollguard_incidents_open"); n != 0 {
			return fmt.Errorf("rollguard_incidents_open %v after the close", n)
		}
		return nil
	})
	code2, md := td.get("/api/v1/incidents/" + inc.ID + "/postmortem")
	if code2 != 200 || !strings.Contains(string(md), "alice") || !strings.Contains(string(md), reason) {
		t.Fatalf("post-mortem (%d) does not name alice and %q:\n%s", code2, reason, md)
	}
	checkFor(t, 10*time.Second, func() error {
		for _, m := range streamMsgs(t, td.stream, "rollguard.incident.checkout") {
			var ev actions.Event
			var data actions.IncidentData
			if json.Unmarshal(m.Data, &ev) == nil && json.Unmarshal(ev.Data, &data) == nil && data.Event == "closed" && data.IncidentID == inc.ID {
				return nil
			}
		}
		return fmt.Errorf("no incident.closed event in the stream")
	})
	under, _ := lcbDeployments(t, td)
	if d := lcbUnderWay(under, "v1", "v2"); d != nil && d.ID == inc.Deployment.ID {
		t.Fatalf("the closed incident's deployment %s is still under way: %+v", inc.Deployment.ID, under)
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

// TestLifecycleBCLIAckKeepsOpen is the twin: `rollguard incident ack`
// records who has it and leaves the incident open and escalated.
func TestLifecycleBCLIAckKeepsOpen(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "2s"})))
	w := watchCommands(t, td)
	_, inc, _ := lcbRollbackEscalated(t, td, w)

	var out, errb bytes.Buffer
	code := rollguard([]string{"incident", "ack", inc.ID, "--reason=looking at the deploy tool", "--by=bob", "--web.url=" + td.web}, &out, &errb)
	if code != 0 || out.String() != inc.ID+" escalated\n" {
		t.Fatalf("rollguard incident ack: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	got := incidentOf(t, td.get)
	if got == nil || got.State != actions.StateEscalated || got.AckedBy != "bob" || got.AckedAt == nil || got.ClosedAt != nil || got.ClosedBy != "" {
		t.Fatalf("incident after ack: %+v", got)
	}
	if lcbTimeline(*got, "acknowledged by bob: looking at the deploy tool") == nil {
		t.Fatalf("the timeline lacks the acknowledgement:\n%s", lcbTimelineText(*got))
	}
	if n := lcbMetric(t, td, "rollguard_incidents_open"); n != 1 {
		t.Fatalf("rollguard_incidents_open %v after an ack, want 1", n)
	}
	if code, md := td.get("/api/v1/incidents/" + inc.ID + "/postmortem"); code != 200 || !strings.Contains(string(md), "bob acknowledged") {
		t.Fatalf("post-mortem (%d) does not say bob acknowledged:\n%s", code, md)
	}
	under, _ := lcbDeployments(t, td)
	if d := lcbUnderWay(under, "v1", "v2"); d == nil || d.ID != inc.Deployment.ID {
		t.Fatalf("the acknowledged incident's deployment is no longer under way: %+v", under)
	}
	lcbOneCommand(t, td, w, "/rollback/v1")
}

// --- 5. The README's step 7 -------------------------------------------------

// lcbNATSAnnounce sends an announcement as a NATS request and returns the reply.
func lcbNATSAnnounce(t *testing.T, td *testDaemon, body string) detector.Deployment {
	t.Helper()
	m, err := td.client.Request("rollguard.deploy.checkout", []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request rollguard.deploy.checkout: %v", err)
	}
	var reply struct {
		Status     string
		Error      string
		Deployment detector.Deployment
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Status != "ok" {
		t.Fatalf("reply %s (%v)", m.Data, err)
	}
	return reply.Deployment
}

// lcbCLIDeploy runs `rollguard deploy` against the daemon.
func lcbCLIDeploy(t *testing.T, td *testDaemon, args ...string) detector.Deployment {
	t.Helper()
	var out, errb bytes.Buffer
	if code := rollguard(append([]string{"deploy", "--web.url=" + td.web}, args...), &out, &errb); code != 0 {
		t.Fatalf("rollguard deploy %v: exit %d: %s", args, code, errb.String())
	}
	var d detector.Deployment
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("rollguard deploy printed %q: %v", out.String(), err)
	}
	return d
}

// TestLifecycleBReadmeStep7: the README's three announcements of v2 -> v3,
// in order — the CLI with commits and a flag, then the API and NATS bodies
// without them — are one deployment that keeps its commits and flag, and
// says it came last by NATS.
func TestLifecycleBReadmeStep7(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)

	cli := lcbCLIDeploy(t, td, "--service=checkout", "--version=v3", "--previous-version=v2",
		"--commit=9f2c1e", "--previous-commit=41ab07", "--flag=new-checkout-flow")
	if cli.Source != detector.SourceAPI || cli.Commit != "9f2c1e" || cli.PreviousCommit != "41ab07" ||
		strings.Join(cli.Flags, ",") != "new-checkout-flow" || cli.PreviousVersion != "v2" || cli.Version != "v3" {
		t.Fatalf("rollguard deploy: %+v", cli)
	}
	keeps := func(step string, d detector.Deployment, source string) {
		t.Helper()
		if d.ID != cli.ID || d.Commit != "9f2c1e" || d.PreviousCommit != "41ab07" || strings.Join(d.Flags, ",") != "new-checkout-flow" ||
			d.Source != source || !d.StartedAt.Equal(cli.StartedAt) || d.EndedAt != nil {
			t.Fatalf("after %s: %+v, want %s kept with its commits, flag and start, source %s", step, d, cli.ID, source)
		}
	}
	keeps("the API", lcbAnnounce(t, td, `{"service":"checkout","version":"v3","previous_version":"v2"}`), detector.SourceAPI)
	keeps("the NATS request", lcbNATSAnnounce(t, td, `{"version":"v3","previous_version":"v2"}`), detector.SourceNATS)

	under, ended := lcbDeployments(t, td)
	if len(under) != 1 || len(ended) != 0 {
		t.Fatalf("deployments under way %+v, ended %+v: want the one", under, ended)
	}
	keeps("GET /api/v1/deployments", under[0], detector.SourceNATS)
	if n := lcbMetric(t, td, `rollguard_deployments_opened_total{source="api"}`); n != 1 {
		t.Fatalf("%v deployments opened by announcements, want 1", n)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire: %v", ids)
	}
}

// TestLifecycleBFirstAnnouncementHasNoCommit is the twin: a first
// announcement of other versions, without commits, has none — not those
// of the deployment it supersedes.
func TestLifecycleBFirstAnnouncementHasNoCommit(t *testing.T) {
	td := lcbStart(t, writeConfig(t, lcbConfig(lcbOptions{ack: "1m", flags: true})))
	w := watchCommands(t, td)

	first := lcbCLIDeploy(t, td, "--service=checkout", "--version=v2", "--previous-version=v1",
		"--commit=41ab07", "--previous-commit=0c0ffe", "--flag=new-checkout-flow")
	if first.Commit != "41ab07" {
		t.Fatalf("rollguard deploy: %+v", first)
	}
	api := lcbAnnounce(t, td, `{"service":"checkout","version":"v3","previous_version":"v2"}`)
	if api.ID == first.ID || api.Commit != "" || api.PreviousCommit != "" || api.Source != detector.SourceAPI {
		t.Fatalf("first announcement of v2 -> v3: %+v, want a new deployment without commits", api)
	}
	viaNATS := lcbNATSAnnounce(t, td, `{"version":"v3","previous_version":"v2"}`)
	if viaNATS.ID != api.ID || viaNATS.Commit != "" || viaNATS.PreviousCommit != "" || viaNATS.Source != detector.SourceNATS {
		t.Fatalf("re-announcement by NATS: %+v", viaNATS)
	}
	under, ended := lcbDeployments(t, td)
	if len(under) != 1 || under[0].ID != api.ID || under[0].Commit != "" || under[0].PreviousCommit != "" {
		t.Fatalf("under way %+v", under)
	}
	if len(ended) != 1 || ended[0].ID != first.ID || ended[0].SupersededBy != api.ID || ended[0].Commit != "41ab07" {
		t.Fatalf("ended %+v", ended)
	}
	if ids := w.all(); len(ids) != 0 {
		t.Fatalf("commands on the wire: %v", ids)
	}
}
