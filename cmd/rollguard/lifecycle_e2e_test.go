package main

// End-to-end regression tests of the deployment lifecycle around incidents
// (detector/tracker.go's rules, actions/model.go's closes and follow-ups):
// re-deploying after a closed incident, after an escalated one across a
// restart, announcing with an id of one's own, and promotion held back while
// an incident is open. Each has a healthy twin that must not fire. They run
// a real daemon with its embedded NATS, an OpenTelemetry-SDK fleet and the
// reference actuators, and count commands on the wire (a core NATS
// subscriber) and in the stream.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
)

// lcaConfig is the playbook test configuration (pbConfig, embedded NATS)
// with settings replaced: pairs of old, new lines. A pair that does not
// match fails the test, so a changed base configuration cannot silently
// drop a setting.
func lcaConfig(t *testing.T, otlp string, pairs ...string) string {
	t.Helper()
	c := pbConfig(embeddedNATS, otlp, "")
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(c, pairs[i]) {
			t.Fatalf("test configuration has no %q to replace", pairs[i])
		}
		c = strings.Replace(c, pairs[i], pairs[i+1], 1)
	}
	return c
}

const (
	lcaCloseAfter1h = "  close_after: 1h\n"
	lcaAckTimeout4s = "  ack_timeout: 4s\n"
	lcaNoDataLine   = "  no_data_timeout: 30s\n"
	lcaFlag         = "new-checkout-flow"
	// lcaHealthyRequests is how many canary requests a healthy twin's new
	// deployment must have had evaluated before the test concludes that
	// nothing fires: several times what the bad canary (6 % against 1 %)
	// needs to be detected (a few rounds of 500).
	lcaHealthyRequests = 10000
)

// lcaRestart restarts the daemon on the same storage.
func lcaRestart(t *testing.T, old *testDaemon) *testDaemon {
	t.Helper()
	return restartDaemon(t, old)
}

// lcaIncident returns an incident from GET /api/v1/incidents/{id}, or nil
// when there is none.
func lcaIncident(t *testing.T, td *testDaemon, id string) *actions.Incident {
	t.Helper()
	code, b := td.get("/api/v1/incidents/" + id)
	if code == http.StatusNotFound {
		return nil
	}
	if code != 200 {
		t.Fatalf("GET incident %s: %d %s", id, code, b)
	}
	var inc actions.Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		t.Fatalf("decode incident %s: %v", id, err)
	}
	return &inc
}

// lcaIncidents returns every incident the API lists.
func lcaIncidents(t *testing.T, td *testDaemon) []actions.Incident {
	t.Helper()
	code, b := td.get("/api/v1/incidents")
	if code != 200 {
		t.Fatalf("GET incidents: %d %s", code, b)
	}
	var body struct{ Incidents []actions.Incident }
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("decode incidents: %v", err)
	}
	return body.Incidents
}

// lcaDeployments returns GET /api/v1/deployments: the active ones first.
func lcaDeployments(t *testing.T, td *testDaemon) []detector.Deployment {
	t.Helper()
	code, b := td.get("/api/v1/deployments")
	if code != 200 {
		t.Fatalf("GET deployments: %d %s", code, b)
	}
	var body struct{ Deployments []detector.Deployment }
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("decode deployments: %v", err)
	}
	return body.Deployments
}

// lcaActive is checkout's deployment under way, or nil.
func lcaActive(t *testing.T, td *testDaemon) *detector.Deployment {
	t.Helper()
	for _, d := range lcaDeployments(t, td) {
		if d.Service == "checkout" && d.EndedAt == nil {
			return &d
		}
	}
	return nil
}

// lcaWaitActive waits until checkout's deployment under way is id.
func lcaWaitActive(t *testing.T, td *testDaemon, id string) detector.Deployment {
	t.Helper()
	var d *detector.Deployment
	checkFor(t, 30*time.Second, func() error {
		if d = lcaActive(t, td); d == nil || d.ID != id {
			return fmt.Errorf("deployment under way %+v, want %s", d, id)
		}
		return nil
	})
	return *d
}

// lcaAnnounceAPI posts an announcement and returns the status, the deployment
// (on success) and the error message (on refusal).
func lcaAnnounceAPI(t *testing.T, td *testDaemon, body string) (int, detector.Deployment, string) {
	t.Helper()
	code, b := td.post("/api/v1/deployments", body)
	var d detector.Deployment
	var e struct{ Status, Error string }
	if code == http.StatusCreated {
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("decode announced deployment: %v\n%s", err, b)
		}
	} else {
		_ = json.Unmarshal(b, &e)
	}
	return code, d, e.Error
}

// lcaAnnounceCLI runs `rollguard deploy` against the test daemon.
func lcaAnnounceCLI(t *testing.T, td *testDaemon, args ...string) (int, detector.Deployment, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := rollguard(append([]string{"deploy", "--web.url=" + td.web}, args...), &out, &errb)
	var d detector.Deployment
	if code == 0 {
		if err := json.Unmarshal(out.Bytes(), &d); err != nil {
			t.Fatalf("rollguard deploy printed %q: %v", out.String(), err)
		}
	}
	return code, d, errb.String()
}

// lcaReEnableFlag turns the flag back on in the flagd file, as a person would
// after a fix: state enabled, the "on" variant served by default.
func lcaReEnableFlag(t *testing.T, file, flag string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("flag file: %v", err)
	}
	f, ok := doc["flags"].(map[string]any)[flag].(map[string]any)
	if !ok {
		t.Fatalf("flag file has no %s: %s", flag, b)
	}
	f["state"], f["defaultVariant"] = "ENABLED", "on"
	out, _ := json.MarshalIndent(doc, "", "  ")
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	if !flagOn(t, file, flag) {
		t.Fatalf("flag %s still off after re-enabling: %s", flag, out)
	}
}

// lcaServeUntil serves fleet rounds until cond holds.
func lcaServeUntil(t *testing.T, f *fleet, within time.Duration, cond func() error) {
	t.Helper()
	checkFor(t, within, func() error {
		f.round()
		return cond()
	})
}

// lcaMinTicks is how many batches a healthy twin's verdict must have
// tested, so that it has seen many rounds, not one large report.
const lcaMinTicks = 10

// lcaEvaluatedOn serves rounds until the guard's verdict is on deployment id
// and has tested at least n canary requests of it in lcaMinTicks batches.
func lcaEvaluatedOn(t *testing.T, td *testDaemon, f *fleet, id string, n float64) detector.GuardVerdict {
	t.Helper()
	var v *detector.GuardVerdict
	lcaServeUntil(t, f, 120*time.Second, func() error {
		v = td.verdict("checkout")
		switch {
		case v == nil:
			return fmt.Errorf("no verdict yet")
		case v.Deployment.ID != id:
			return fmt.Errorf("verdict on %s, want %s", v.Deployment.ID, id)
		case len(v.Signals) == 0 || v.Signals[0].Candidate.Total < n || v.Signals[0].Ticks < lcaMinTicks:
			return fmt.Errorf("verdict on %s has tested %+v", id, v.Signals)
		}
		return nil
	})
	return *v
}

// lcaHoldsFor checks the invariant on every poll until done holds; a broken
// invariant fails at once.
func lcaHoldsFor(t *testing.T, within time.Duration, invariant, done func() error) {
	t.Helper()
	checkFor(t, within, func() error {
		if err := invariant(); err != nil {
			t.Fatalf("invariant broken: %v", err)
		}
		return done()
	})
}

func lcaStreamCommands(t *testing.T, td *testDaemon) []string {
	t.Helper()
	return exactlyOnce(t, td.stream)
}

func lcaFlagKillID(dep string) string { return actions.CommandID(dep, actions.ActionFlagKill, lcaFlag) }
func lcaRollbackID(dep string) string { return actions.CommandID(dep, actions.ActionRollback, "v1") }

func lcaJoined(xs []string) string { return strings.Join(xs, ",") }

// lcaCommandData decodes the stream's command with id.
func lcaCommandData(t *testing.T, td *testDaemon, id string) actions.CommandData {
	t.Helper()
	for _, m := range streamMsgs(t, td.stream, "rollguard.cmd.") {
		if eventID(m.Data) != id {
			continue
		}
		var ev actions.Event
		var data actions.CommandData
		if json.Unmarshal(m.Data, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil {
			t.Fatalf("undecodable command %s", m.Data)
		}
		return data
	}
	t.Fatalf("command %s not in the stream", id)
	return actions.CommandData{}
}

// --- 1. Re-deploy after a closed incident -------------------------------

// lcaClosedAfterFlagKill runs an announced deployment (with a commit) whose
// canary is bad while the flag is on through flag kill, recovery,
// stabilized and closed (close_after 5s), and returns once the deployment
// goes on as its second generation.
func lcaClosedAfterFlagKill(t *testing.T) (*testDaemon, *fleet, *commandWire, actions.Incident, string) {
	t.Helper()
	td := startDaemon(t, lcaConfig(t, "127.0.0.1:0", lcaCloseAfter1h, "  close_after: 5s\n"))
	wire := watchCommands(t, td)
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	flagdActuator(t, natsURL(td), pubKey(td), f)
	code, dep, msg := lcaAnnounceAPI(t, td, `{"service":"checkout","version":"v2","previous_version":"v1","commit":"abc123","previous_commit":"def456","flags":["`+lcaFlag+`"]}`)
	if code != http.StatusCreated || dep.Generation() != 1 {
		t.Fatalf("announce: %d %+v %s", code, dep, msg)
	}
	first := untilState(t, f, td.get, actions.StateClosed, 150*time.Second)
	if first.ID != actions.IncidentID(dep.ID) || first.Deployment.ID != dep.ID {
		t.Fatalf("incident %s on %s, want inc-%s", first.ID, first.Deployment.ID, dep.ID)
	}
	if got, want := lcaJoined(states(first)), "deployed,watching,containing,verifying,stabilized,closed"; got != want {
		t.Fatalf("first incident went %s, want %s", got, want)
	}
	if flagOn(t, f.flags, lcaFlag) {
		t.Fatal("the flag kill did not turn the flag off")
	}
	gen2 := dep.ID + "-2"
	next := lcaWaitActive(t, td, gen2)
	if next.Commit != "abc123" || next.Generation() != 2 || !next.StartedAt.After(dep.StartedAt) {
		t.Fatalf("second generation %+v", next)
	}
	if ids := lcaStreamCommands(t, td); lcaJoined(ids) != lcaFlagKillID(dep.ID) {
		t.Fatalf("commands %v before the re-deploy, want the one flag kill", ids)
	}
	if n := wire.count(lcaFlagKillID(dep.ID)); n != 1 {
		t.Fatalf("the flag kill went out %d times on the wire", n)
	}
	return td, f, wire, first, gen2
}

// TestLifecycleARedeployAfterClosedIncident: after the incident closed,
// the flag is turned back on and the same versions are announced again
// (by the CLI, without the commit): the announcement updates the second
// generation in place (commit kept), the still-bad canary opens a new
// incident on it, and exactly one new flag kill, with the generation's
// id, goes out.
func TestLifecycleARedeployAfterClosedIncident(t *testing.T) {
	td, f, wire, first, gen2 := lcaClosedAfterFlagKill(t)
	lcaReEnableFlag(t, f.flags, lcaFlag)
	code, dep, stderr := lcaAnnounceCLI(t, td, "--service=checkout", "--version=v2", "--previous-version=v1")
	if code != 0 || dep.ID != gen2 || dep.Commit != "abc123" || dep.PreviousCommit != "def456" || !slices.Equal(dep.Flags, []string{lcaFlag}) {
		t.Fatalf("re-announcement: exit %d, %+v, %s", code, dep, stderr)
	}

	incID, cmd := actions.IncidentID(gen2), lcaFlagKillID(gen2)
	lcaServeUntil(t, f, 120*time.Second, func() error {
		inc := lcaIncident(t, td, incID)
		if inc == nil {
			return fmt.Errorf("no incident %s yet", incID)
		}
		if wire.count(cmd) == 0 {
			return fmt.Errorf("incident %s %s; %s not on the wire yet", incID, inc.State, cmd)
		}
		return nil
	})
	// The flagd actuator kills the flag again: let the new incident run to
	// stabilized, so that many evaluations follow the command.
	var second *actions.Incident
	lcaServeUntil(t, f, 120*time.Second, func() error {
		second = lcaIncident(t, td, incID)
		if second.State != actions.StateStabilized && second.State != actions.StateClosed {
			return fmt.Errorf("incident %s: %s (%s)", incID, second.State, second.Reason)
		}
		return nil
	})
	if got := wire.all(); lcaJoined(got) != lcaJoined([]string{lcaFlagKillID(first.Deployment.ID), cmd}) {
		t.Fatalf("on the wire: %v, want the first flag kill and %s once each", got, cmd)
	}
	if ids := lcaStreamCommands(t, td); lcaJoined(ids) != lcaJoined([]string{lcaFlagKillID(first.Deployment.ID), cmd}) {
		t.Fatalf("in the stream: %v", ids)
	}
	if second.Deployment.ID != gen2 || len(second.Commands) != 1 || second.Commands[0].ID != cmd || second.Commands[0].Status != actions.CommandOK {
		t.Fatalf("second incident %s on %s, commands %+v", second.ID, second.Deployment.ID, second.Commands)
	}
	if data := lcaCommandData(t, td, cmd); data.IncidentID != incID || data.Deployment.ID != gen2 || data.Deployment.Commit != "abc123" || data.Target.Flag != lcaFlag {
		t.Fatalf("command data %+v", data)
	}
	if inc := lcaIncident(t, td, first.ID); inc.State != actions.StateClosed || len(inc.Commands) != 1 {
		t.Fatalf("first incident now %s with %d commands", inc.State, len(inc.Commands))
	}
}

// TestLifecycleARedeployAfterClosedIncidentHealthyTwin: the same, but the
// canary is healthy once the flag is back on (the bug was fixed): no new
// incident and no new command.
func TestLifecycleARedeployAfterClosedIncidentHealthyTwin(t *testing.T) {
	td, f, wire, first, gen2 := lcaClosedAfterFlagKill(t)
	f.badWithFlag = false
	lcaReEnableFlag(t, f.flags, lcaFlag)
	code, dep, stderr := lcaAnnounceCLI(t, td, "--service=checkout", "--version=v2", "--previous-version=v1")
	if code != 0 || dep.ID != gen2 || dep.Commit != "abc123" {
		t.Fatalf("re-announcement: exit %d, %+v, %s", code, dep, stderr)
	}
	v := lcaEvaluatedOn(t, td, f, gen2, lcaHealthyRequests)
	if incs := lcaIncidents(t, td); len(incs) != 1 || incs[0].ID != first.ID || incs[0].State != actions.StateClosed {
		t.Errorf("incidents after a healthy re-deploy: %+v", incs)
	}
	if got := wire.all(); lcaJoined(got) != lcaFlagKillID(first.Deployment.ID) {
		t.Errorf("on the wire: %v, want only the first flag kill", got)
	}
	if ids := lcaStreamCommands(t, td); len(ids) != 1 {
		t.Errorf("in the stream: %v", ids)
	}
	if !flagOn(t, f.flags, lcaFlag) {
		t.Error("the re-enabled flag was killed")
	}
	if v.State == detector.StateRegressed {
		t.Errorf("healthy canary regressed: %+v", v.Signals)
	}
}

// --- 2. Behind an escalated incident, after a restart ------------------

// lcaEscalatedThenRestarted runs a canary bad whatever the flag, with no
// actuator answering (ack_timeout 3s), until its incident is escalated
// after flag kill and rollback, then restarts rollguard on the same
// storage. The OTLP port is fixed so that the fleet reports to the
// restarted daemon. With settle, the fleet (canary still bad) reports
// again until the restored deployment has tested traffic sent after the
// restart: the SDK's cumulative series then have their base in the
// restarted rollguard (see TestLifecycleARedeployRightAfterRestartHealthyTwin
// for what happens without).
func lcaEscalatedThenRestarted(t *testing.T, settle bool) (*testDaemon, *fleet, *commandWire, *commandWire, actions.Incident) {
	t.Helper()
	otlp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	td := startDaemon(t, lcaConfig(t, otlp, lcaAckTimeout4s, "  ack_timeout: 3s\n"))
	before := watchCommands(t, td)
	f := newFleet(t, "http://"+otlp+"/v1/metrics")
	f.badAlways = true
	first := untilState(t, f, td.get, actions.StateEscalated, 150*time.Second)
	dep := first.Deployment.ID
	if got, want := lcaJoined(states(first)), "deployed,watching,containing,rolling_back,escalated"; got != want {
		t.Fatalf("first incident went %s, want %s", got, want)
	}
	want := lcaJoined([]string{lcaFlagKillID(dep), lcaRollbackID(dep)})
	checkFor(t, 20*time.Second, func() error {
		if got := lcaJoined(before.all()); got != want {
			return fmt.Errorf("on the wire %s, want %s", got, want)
		}
		return nil
	})

	td = lcaRestart(t, td)
	restarted := time.Now()
	after := watchCommands(t, td)
	if inc := lcaIncident(t, td, first.ID); inc == nil || inc.State != actions.StateEscalated || len(inc.Commands) != 2 {
		t.Fatalf("incident after the restart: %+v", inc)
	}
	lcaWaitActive(t, td, dep) // resumed with its escalated incident
	if settle {
		lcaServeUntil(t, f, 60*time.Second, func() error {
			v := td.verdict("checkout")
			if v == nil || v.Deployment.ID != dep || len(v.Signals) == 0 || !v.Signals[0].CandidateSeen.After(restarted) {
				return fmt.Errorf("no verdict on %s with traffic since the restart: %+v", dep, v)
			}
			return nil
		})
		if inc := lcaIncident(t, td, first.ID); inc.State != actions.StateEscalated || len(after.all()) != 0 {
			t.Fatalf("the escalated incident %s acted again after the restart: %v", inc.State, after.all())
		}
	}
	if ids := lcaStreamCommands(t, td); lcaJoined(ids) != want {
		t.Fatalf("stream after the restart: %v, want %s", ids, want)
	}
	return td, f, before, after, first
}

// TestLifecycleARedeployBehindEscalatedAfterRestart: behind an escalated
// incident restored after a restart, announcing the same versions opens a
// new generation whose own incident acts on the still-bad canary: its
// flag kill first, then its rollback, each once; the escalated incident
// sends nothing more.
func TestLifecycleARedeployBehindEscalatedAfterRestart(t *testing.T) {
	td, f, before, after, first := lcaEscalatedThenRestarted(t, true)
	dep := first.Deployment.ID
	gen2 := dep + "-2"
	code, d, msg := lcaAnnounceAPI(t, td, `{"service":"checkout","version":"v2","previous_version":"v1"}`)
	if code != http.StatusCreated || d.ID != gen2 || !slices.Equal(d.Flags, []string{lcaFlag}) {
		t.Fatalf("re-announcement: %d %+v %s", code, d, msg)
	}
	incID := actions.IncidentID(gen2)
	lcaServeUntil(t, f, 120*time.Second, func() error {
		if got := after.all(); len(got) == 0 {
			return fmt.Errorf("no command on the wire since the restart")
		}
		return nil
	})
	if got := after.all(); got[0] != lcaFlagKillID(gen2) {
		t.Fatalf("first command after the re-announcement %s, want %s", got[0], lcaFlagKillID(gen2))
	}
	// No actuator: the new incident climbs its own ladder to people.
	var second *actions.Incident
	lcaServeUntil(t, f, 120*time.Second, func() error {
		if second = lcaIncident(t, td, incID); second == nil || second.State != actions.StateEscalated {
			return fmt.Errorf("incident %s: %+v", incID, second)
		}
		return nil
	})
	if got, want := lcaJoined(after.all()), lcaJoined([]string{lcaFlagKillID(gen2), lcaRollbackID(gen2)}); got != want {
		t.Fatalf("on the wire since the restart: %s, want %s", got, want)
	}
	if got := before.all(); len(got) != 2 {
		t.Fatalf("on the wire before the restart: %v", got)
	}
	if ids, want := lcaStreamCommands(t, td), []string{lcaFlagKillID(dep), lcaRollbackID(dep), lcaFlagKillID(gen2), lcaRollbackID(gen2)}; lcaJoined(ids) != lcaJoined(want) {
		t.Fatalf("stream: %v, want %v", ids, want)
	}
	if second.Deployment.ID != gen2 || second.Commands[0].ID != lcaFlagKillID(gen2) {
		t.Fatalf("second incident on %s, commands %+v", second.Deployment.ID, second.Commands)
	}
	if inc := lcaIncident(t, td, first.ID); inc.State != actions.StateEscalated || len(inc.Commands) != 2 {
		t.Fatalf("first incident now %s with %d commands", inc.State, len(inc.Commands))
	}
}

// TestLifecycleARedeployBehindEscalatedAfterRestartHealthyTwin: the same,
// with a healthy canary after the re-announcement: nothing new.
func TestLifecycleARedeployBehindEscalatedAfterRestartHealthyTwin(t *testing.T) {
	lcaHealthyAfterRestart(t, true)
}

// TestLifecycleARedeployRightAfterRestartHealthyTwin: the healthy twin
// with the re-announcement right after the restart, before the fleet has
// reported to the restarted rollguard.
func TestLifecycleARedeployRightAfterRestartHealthyTwin(t *testing.T) {
	lcaHealthyAfterRestart(t, false)
}

func lcaHealthyAfterRestart(t *testing.T, settle bool) {
	td, f, _, after, first := lcaEscalatedThenRestarted(t, settle)
	gen2 := first.Deployment.ID + "-2"
	f.badAlways = false
	code, d, msg := lcaAnnounceAPI(t, td, `{"service":"checkout","version":"v2","previous_version":"v1"}`)
	if code != http.StatusCreated || d.ID != gen2 {
		t.Fatalf("re-announcement: %d %+v %s", code, d, msg)
	}
	v := lcaEvaluatedOn(t, td, f, gen2, lcaHealthyRequests)
	if incs := lcaIncidents(t, td); len(incs) != 1 || incs[0].ID != first.ID {
		t.Errorf("incidents after a healthy re-deploy: %+v", incs)
	}
	if got := after.all(); len(got) != 0 {
		t.Errorf("commands on the wire after a healthy re-deploy: %v", got)
	}
	if ids := lcaStreamCommands(t, td); len(ids) != 2 {
		t.Errorf("stream: %v", ids)
	}
	if v.State == detector.StateRegressed {
		t.Errorf("healthy canary regressed: %+v", v.Signals)
	}
}

// --- 3. Announcing with an id of one's own ------------------------------

// lcaClosedByPerson runs a canary bad while the flag is on to a flag kill and
// recovery, then has a person close the incident with `rollguard incident
// close`; it returns once the deployment goes on as its second generation.
func lcaClosedByPerson(t *testing.T) (*testDaemon, *fleet, *commandWire, actions.Incident, detector.Deployment) {
	t.Helper()
	td := startDaemon(t, lcaConfig(t, "127.0.0.1:0")) // close_after 1h: only a person closes
	wire := watchCommands(t, td)
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	flagdActuator(t, natsURL(td), pubKey(td), f)
	first := untilState(t, f, td.get, actions.StateStabilized, 150*time.Second)
	var out, errb bytes.Buffer
	if code := rollguard([]string{"incident", "close", first.ID, "--reason=flag killed, recovered", "--by=alice", "--web.url=" + td.web}, &out, &errb); code != 0 ||
		out.String() != first.ID+" closed\n" {
		t.Fatalf("rollguard incident close: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	if inc := lcaIncident(t, td, first.ID); inc.State != actions.StateClosed || inc.ClosedBy != "alice" {
		t.Fatalf("closed incident %s by %q", inc.State, inc.ClosedBy)
	}
	gen2 := lcaWaitActive(t, td, first.Deployment.ID+"-2")
	return td, f, wire, first, gen2
}

// lcaAnnounceRetry announces the same versions with id d-retry1 (CLI) and
// checks that the ids in use are refused (API and CLI).
func lcaAnnounceRetry(t *testing.T, td *testDaemon, first actions.Incident, gen2 detector.Deployment) detector.Deployment {
	t.Helper()
	code, d, stderr := lcaAnnounceCLI(t, td, "--service=checkout", "--version=v2", "--previous-version=v1", "--id=d-retry1")
	if code != 0 || d.ID != "d-retry1" || !d.StartedAt.After(gen2.StartedAt) || !d.StartedAt.After(first.Deployment.StartedAt) || !slices.Equal(d.Flags, []string{lcaFlag}) {
		t.Fatalf("announce with --id: exit %d, %+v (second generation started %v), %s", code, d, gen2.StartedAt, stderr)
	}
	lcaWaitActive(t, td, "d-retry1")
	for _, used := range []string{first.Deployment.ID, gen2.ID} {
		code, got, msg := lcaAnnounceAPI(t, td, `{"service":"checkout","version":"v2","previous_version":"v1","id":"`+used+`"}`)
		if code != http.StatusBadRequest || !strings.Contains(msg, `"`+used+`"`) {
			t.Errorf("announce with the used id %s: %d %+v %q, want 400 naming the id", used, code, got, msg)
		}
	}
	if code, _, stderr := lcaAnnounceCLI(t, td, "--service=checkout", "--version=v2", "--previous-version=v1", "--id="+first.Deployment.ID); code != 1 ||
		!strings.Contains(stderr, `"`+first.Deployment.ID+`"`) || !strings.Contains(stderr, "HTTP 400") {
		t.Errorf("rollguard deploy --id=%s: exit %d, %q", first.Deployment.ID, code, stderr)
	}
	if a := lcaActive(t, td); a == nil || a.ID != "d-retry1" || !a.StartedAt.Equal(d.StartedAt) {
		t.Fatalf("refused announcements changed the deployment under way: %+v", a)
	}
	return d
}

// TestLifecycleAExplicitID: after the incident ended, announcing the same
// versions with --id=d-retry1 opens d-retry1 with a new start; the ids of
// the ended deployments are refused with 400 naming them. With the flag
// back on, the canary regresses on d-retry1: incident inc-d-retry1 and
// exactly one flag kill d-retry1/flag_kill/….
func TestLifecycleAExplicitID(t *testing.T) {
	td, f, wire, first, gen2 := lcaClosedByPerson(t)
	retry := lcaAnnounceRetry(t, td, first, gen2)
	lcaReEnableFlag(t, f.flags, lcaFlag)
	incID, cmd := actions.IncidentID(retry.ID), lcaFlagKillID(retry.ID)
	var inc *actions.Incident
	lcaServeUntil(t, f, 150*time.Second, func() error {
		if inc = lcaIncident(t, td, incID); inc == nil || wire.count(cmd) == 0 {
			return fmt.Errorf("incident %s: %+v; %s on the wire %d times", incID, inc, cmd, wire.count(cmd))
		}
		if inc.State != actions.StateStabilized {
			return fmt.Errorf("incident %s: %s (%s)", incID, inc.State, inc.Reason)
		}
		return nil
	})
	if got, want := lcaJoined(wire.all()), lcaJoined([]string{lcaFlagKillID(first.Deployment.ID), cmd}); got != want {
		t.Fatalf("on the wire: %s, want %s", got, want)
	}
	if ids := lcaStreamCommands(t, td); len(ids) != 2 || ids[1] != cmd {
		t.Fatalf("stream: %v", ids)
	}
	if inc.Deployment.ID != "d-retry1" || len(inc.Commands) != 1 || inc.Commands[0].ID != cmd {
		t.Fatalf("incident on %s, commands %+v", inc.Deployment.ID, inc.Commands)
	}
	if data := lcaCommandData(t, td, cmd); data.IncidentID != incID || data.Deployment.ID != "d-retry1" {
		t.Fatalf("command data %+v", data)
	}
}

// TestLifecycleAExplicitIDHealthyTwin: the same announcements, with the
// flag left off (the canary healthy): nothing new on d-retry1.
func TestLifecycleAExplicitIDHealthyTwin(t *testing.T) {
	td, f, wire, first, gen2 := lcaClosedByPerson(t)
	retry := lcaAnnounceRetry(t, td, first, gen2)
	v := lcaEvaluatedOn(t, td, f, retry.ID, lcaHealthyRequests)
	if incs := lcaIncidents(t, td); len(incs) != 1 || incs[0].ID != first.ID {
		t.Errorf("incidents: %+v", incs)
	}
	if got := wire.all(); lcaJoined(got) != lcaFlagKillID(first.Deployment.ID) {
		t.Errorf("on the wire: %v", got)
	}
	if ids := lcaStreamCommands(t, td); len(ids) != 1 {
		t.Errorf("stream: %v", ids)
	}
	if v.State == detector.StateRegressed {
		t.Errorf("healthy canary regressed: %+v", v.Signals)
	}
}

// --- 4. No promotion while an incident is open ---------------------------

const lcaPromotionHold = 2 * time.Second

func lcaPromotionConfig(t *testing.T, otlp string) string {
	return lcaConfig(t, otlp, lcaNoDataLine, lcaNoDataLine+"  promotion_hold: 2s\n", lcaAckTimeout4s, "  ack_timeout: 3s\n")
}

// lcaPromoted reads rollguard_deployments_promoted_total from /metrics.
func lcaPromoted(t *testing.T, td *testDaemon) string {
	t.Helper()
	code, b := td.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rollguard_deployments_promoted_total "); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no rollguard_deployments_promoted_total")
	return ""
}

// TestLifecycleANoPromotionWhileEscalated: an incident escalated (no
// actuator answers), rollguard restarted on the same storage. With no
// traffic at all for several promotion holds, then with the canary alone
// reporting (the previous version silent) for several more, the
// deployment stays under way and its incident open.
func TestLifecycleANoPromotionWhileEscalated(t *testing.T) {
	otlp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	td := startDaemon(t, lcaPromotionConfig(t, otlp))
	f := newFleet(t, "http://"+otlp+"/v1/metrics")
	f.badAlways = true
	first := untilState(t, f, td.get, actions.StateEscalated, 150*time.Second)
	dep := first.Deployment.ID

	td = lcaRestart(t, td)
	restarted := time.Now()
	underWay := func() error {
		if a := lcaActive(t, td); a == nil || a.ID != dep {
			return fmt.Errorf("deployment under way %+v, want %s (ended: %+v)", a, dep, lcaDeployments(t, td))
		}
		if inc := lcaIncident(t, td, first.ID); inc == nil || !inc.Open() {
			return fmt.Errorf("incident %+v", inc)
		}
		return nil
	}
	// No traffic at all.
	lcaHoldsFor(t, 60*time.Second, underWay, func() error {
		if v := td.verdict("checkout"); v == nil || !v.At.After(restarted.Add(4*lcaPromotionHold)) {
			return fmt.Errorf("no evaluation %s after the restart yet: %+v", 4*lcaPromotionHold, v)
		}
		return nil
	})
	// The canary alone: the previous version has gone silent.
	var canaryFrom time.Time
	lcaHoldsFor(t, 90*time.Second, underWay, func() error {
		f.canary.serve(t, 500)
		v := td.verdict("checkout")
		if v == nil || len(v.Signals) == 0 || !v.Signals[0].CandidateSeen.After(restarted) {
			return fmt.Errorf("the canary's traffic is not seen yet: %+v", v)
		}
		if canaryFrom.IsZero() {
			canaryFrom = v.Signals[0].CandidateSeen
		}
		if !v.At.After(canaryFrom.Add(4 * lcaPromotionHold)) {
			return fmt.Errorf("canary alone since %v; last evaluation %v", canaryFrom, v.At)
		}
		return nil
	})
	if err := underWay(); err != nil {
		t.Fatal(err)
	}
	if n := lcaPromoted(t, td); n != "0" {
		t.Fatalf("rollguard_deployments_promoted_total %s", n)
	}
	if ids, want := lcaStreamCommands(t, td), []string{lcaFlagKillID(dep), lcaRollbackID(dep)}; lcaJoined(ids) != lcaJoined(want) {
		t.Fatalf("commands %v, want %v", ids, want)
	}
}

// TestLifecycleANoPromotionWhileEscalatedHealthyTwin: without an incident,
// a deployment whose previous version went silent while the canary kept
// serving is promoted after the hold. (No restart here: without an open
// incident a deployment is not persisted, so a restart forgets it.)
func TestLifecycleANoPromotionWhileEscalatedHealthyTwin(t *testing.T) {
	td := startDaemon(t, lcaPromotionConfig(t, "127.0.0.1:0"))
	wire := watchCommands(t, td)
	f := newFleet(t, td.otlp)
	checkFor(t, 30*time.Second, func() error {
		f.round()
		if lcaActive(t, td) == nil {
			return fmt.Errorf("no deployment yet")
		}
		return nil
	})
	dep := lcaActive(t, td).ID
	lcaEvaluatedOn(t, td, f, dep, 5000)
	silentFrom := time.Now()
	var ended *detector.Deployment
	checkFor(t, 90*time.Second, func() error {
		f.canary.serve(t, 500) // the previous version has gone silent
		for _, d := range lcaDeployments(t, td) {
			if d.ID == dep && d.EndedAt != nil {
				ended = &d
				return nil
			}
		}
		return fmt.Errorf("deployment %s still under way", dep)
	})
	if ended.EndReason != "promoted" || lcaActive(t, td) != nil {
		t.Fatalf("deployment ended %q; under way now: %+v", ended.EndReason, lcaActive(t, td))
	}
	// The stable version last reported just before silentFrom.
	if held := ended.EndedAt.Sub(silentFrom); held < lcaPromotionHold-500*time.Millisecond {
		t.Fatalf("promoted %v after the previous version went silent, before the hold (%v)", held, lcaPromotionHold)
	}
	if n := lcaPromoted(t, td); n != "1" {
		t.Fatalf("rollguard_deployments_promoted_total %s", n)
	}
	if incs := lcaIncidents(t, td); len(incs) != 0 {
		t.Fatalf("incidents: %+v", incs)
	}
	if got := wire.all(); len(got) != 0 || len(lcaStreamCommands(t, td)) != 0 {
		t.Fatalf("commands: %v", got)
	}
}
