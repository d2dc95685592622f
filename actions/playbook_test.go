package actions

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

// startJetStream runs a real NATS server with JetStream in the test's
// temporary directory and returns a JetStream context on it.
func startJetStream(t testing.TB) (jetstream.JetStream, *server.Server) {
	t.Helper()
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	if _, err := EnsureStream(context.Background(), js, "ROLLGUARD", Subjects{Prefix: "rollguard"}); err != nil {
		t.Fatal(err)
	}
	return js, ns
}

// restarts records what the playbook asked of the detector.
type restarts struct {
	verified []time.Time
	resumed  []string
	ended    []DeploymentEnd
}

func (r *restarts) EndDeployment(id, reason string) bool {
	r.ended = append(r.ended, DeploymentEnd{DeploymentID: id, Reason: reason})
	return true
}

func (r *restarts) NextGeneration(id string) (detector.Deployment, bool) {
	r.ended = append(r.ended, DeploymentEnd{DeploymentID: id, Reason: EndNextGeneration})
	return detector.Deployment{}, true
}

func (r *restarts) Verify(_ string, from time.Time) bool {
	r.verified = append(r.verified, from)
	return true
}
func (r *restarts) Resume(d detector.Deployment, _ time.Time) { r.resumed = append(r.resumed, d.ID) }

// harness drives a playbook step by step on a virtual clock.
type harness struct {
	t     testing.TB
	p     *Playbook
	js    jetstream.JetStream
	now   time.Time
	dep   detector.Deployment
	det   *restarts
	store Store
	// signer signs the commands and keys the message ids.
	signer *Signer
}

const testPlaybook = `
playbook:
  containment_timeout: 5m
  recovery_timeout: 10m
  healthy_hold: 2m
  ack_timeout: 1m
  status_interval: 15m
  close_after: 30m
  %s
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
      - name: writes
        type: data_integrity
        metric: db_failed_writes_total
        total_metric: db_writes_total
`

func newHarness(t *testing.T, extra string, dep detector.Deployment) *harness {
	t.Helper()
	js, _ := startJetStream(t)
	return newHarnessOn(t, js, extra, dep, nil)
}

func newHarnessOn(t testing.TB, js jetstream.JetStream, extra string, dep detector.Deployment, store Store) *harness {
	t.Helper()
	doc := testPlaybook
	if strings.Contains(extra, "status_interval") {
		doc = strings.Replace(doc, "  status_interval: 15m\n", "", 1)
	}
	cfg, err := configs.Parse([]byte(strings.Replace(doc, "%s", extra, 1)))
	if err != nil {
		t.Fatal(err)
	}
	signer := testSigner(t)
	h := &harness{t: t, js: js, now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), det: &restarts{}, store: store, signer: signer}
	if dep.ID == "" {
		dep = detector.Deployment{ID: "d-0123456789ab", Service: "checkout", Version: "v2", PreviousVersion: "v1",
			Commit: "b2", PreviousCommit: "a1", Flags: []string{"new-flow"}, Migration: detector.MigrationNone}
	}
	dep.StartedAt = h.now.Add(-5 * time.Minute)
	h.dep = dep
	h.p = NewPlaybook(PlaybookOptions{Publisher: JetStreamPublisher{JS: js, Signer: signer}, Subjects: Subjects{Prefix: "rollguard"},
		Signer: signer, Detector: h.det, Config: cfg, Store: store, Now: func() time.Time { return h.now }})
	return h
}

// testSigner is the signing key of every harness, as a restarted
// rollguard (or a replica sharing the seed) has the same key.
func testSigner(t testing.TB) *Signer {
	t.Helper()
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, []byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func evidence(state detector.State, cand, base float64) []detector.Evidence {
	return []detector.Evidence{{Signal: "errors", Kind: "sequential", State: state, Theta0: 1.1,
		Baseline:  detector.CohortCounts{Version: "v1", Total: 1000, Bad: 1000 * base, Ratio: base},
		Candidate: detector.CohortCounts{Version: "v2", Total: 1000, Bad: 1000 * cand, Ratio: cand},
		Estimate:  detector.Float(cand / base), EValue: 500, Threshold: 200}}
}

// verdict hands the playbook a verdict on data since the last restart of the tests.
func (h *harness) verdict(state detector.State, evs []detector.Evidence) {
	since := h.dep.StartedAt
	if n := len(h.det.verified); n > 0 {
		since = h.det.verified[n-1]
	}
	h.p.step(func(m *Model) Effects {
		return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: h.dep, State: state, At: h.now, Since: since, Signals: evs}, h.now)
	})
	h.flush()
}

func (h *harness) result(id, status string) {
	h.p.step(func(m *Model) Effects {
		return m.Result(ResultData{CommandID: id, Status: status, Actuator: "test", Detail: "done"}, h.now)
	})
	h.flush()
}

// advance moves the clock in steps of the playbook tick.
func (h *harness) advance(d time.Duration) {
	for end := h.now.Add(d); h.now.Before(end); {
		h.now = h.now.Add(10 * time.Second)
		h.p.step(func(m *Model) Effects { return m.Tick(h.now) })
		h.flush()
	}
}

func (h *harness) flush() {
	h.p.flush(context.Background())
	h.p.persist(context.Background())
}

func (h *harness) incident() Incident {
	inc, ok := h.p.Incident(IncidentID(h.dep.ID))
	if !ok {
		h.t.Fatal("no incident")
	}
	return inc
}

// messages returns the stream's messages on subjects under prefix.
func (h *harness) messages(prefix string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, "ROLLGUARD")
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err == nil && strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// commandIDs returns the envelope ids of the commands in the stream, each
// checked to be stored under its keyed Nats-Msg-Id.
func (h *harness) commandIDs() []string {
	h.t.Helper()
	var ids []string
	for _, m := range h.messages("rollguard.cmd.") {
		var ev Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			h.t.Fatal(err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), h.signer.MsgID(ev.ID); got != want {
			h.t.Errorf("command %s stored under Nats-Msg-Id %q, want %q", ev.ID, got, want)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

func (h *harness) wantState(want string) Incident {
	h.t.Helper()
	inc := h.incident()
	if inc.State != want {
		h.t.Fatalf("state %s (%s), want %s; timeline:\n%s", inc.State, inc.Reason, want, timelineText(inc))
	}
	return inc
}

func timelineText(inc Incident) string {
	var b strings.Builder
	for _, e := range inc.Timeline {
		b.WriteString(e.At.Format("15:04:05") + " " + e.Kind + " " + e.To + " " + e.Reason + "\n")
	}
	return b.String()
}

func TestPlaybookFlagKillRecovers(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.wantState(StateContaining)
	kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")
	if ids := h.commandIDs(); len(ids) != 1 || ids[0] != kill {
		t.Fatalf("commands %v, want [%s]", ids, kill)
	}
	// The command is signed over its exact bytes and names what to do.
	m := h.messages("rollguard.cmd.flag_kill.checkout")[0]
	v, _ := NewVerifier(h.p.o.Signer.PublicKey())
	if err := v.Verify(m.Data, m.Header.Get); err != nil {
		t.Fatalf("command signature: %v", err)
	}
	var ev Event
	var data CommandData
	if err := json.Unmarshal(m.Data, &ev); err != nil || json.Unmarshal(ev.Data, &data) != nil {
		t.Fatalf("command does not decode: %s", m.Data)
	}
	if ev.Type != "io.rollguard.command.flag_kill.v1" || data.Target.Flag != "new-flow" || *data.Target.Percent != 0 ||
		data.DryRun || !data.ExpiresAt.After(h.now) || data.IncidentID != IncidentID(h.dep.ID) {
		t.Fatalf("command %+v %+v", ev, data)
	}

	h.result(kill, ResultOK)
	h.wantState(StateVerifying)
	if len(h.det.verified) != 1 {
		t.Fatalf("tests restarted %d times, want once", len(h.det.verified))
	}
	// A stale verdict on data from before the kill does not count.
	h.p.step(func(m *Model) Effects {
		return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: h.dep, State: detector.StateRegressed, At: h.now, Since: h.dep.StartedAt, Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, h.now)
	})
	h.wantState(StateVerifying)

	for i := 0; i < 13; i++ { // 130 s of healthy verdicts: past the 2m hold
		h.advance(10 * time.Second)
		h.verdict(detector.StateInconclusive, evidence(detector.StateInconclusive, 0.0101, 0.01))
	}
	inc := h.wantState(StateStabilized)
	if inc.MitigatedAt == nil || inc.RecoveredAt == nil || inc.RecoveredAt.Sub(*inc.MitigatedAt) < 2*time.Minute {
		t.Fatalf("mitigated %v recovered %v", inc.MitigatedAt, inc.RecoveredAt)
	}
	h.advance(30 * time.Minute)
	h.wantState(StateClosed)
	if ids := h.commandIDs(); len(ids) != 1 {
		t.Fatalf("commands %v, want only the flag kill (no data_audit: no integrity signal moved)", ids)
	}
	// Every state change went out as an incident event and a status update.
	events := h.messages("rollguard.incident.checkout")
	if len(events) != 5 { // opened, containing, verifying, stabilized, closed
		t.Fatalf("%d incident events, want 5", len(events))
	}
	var last StatusData
	statuses := h.messages("rollguard.status.checkout")
	json.Unmarshal(statuses[len(statuses)-1].Data, &ev)
	json.Unmarshal(ev.Data, &last)
	if last.State != StateClosed || !strings.Contains(last.Customer, "resolved") || !strings.Contains(last.Internal, "flag_kill new-flow: ok") {
		t.Fatalf("last status %+v", last)
	}
}

func TestPlaybookHealthyDeploymentOpensNothing(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{})
	for i := 0; i < 30; i++ {
		h.advance(10 * time.Second)
		h.verdict(detector.StateInconclusive, evidence(detector.StateInconclusive, 0.012, 0.01))
		h.verdict(detector.StateHealthy, evidence(detector.StateHealthy, 0.01, 0.01))
	}
	if len(h.p.Incidents()) != 0 || len(h.messages("rollguard.")) != 0 {
		t.Fatalf("a healthy deployment opened %d incidents and sent %d messages", len(h.p.Incidents()), len(h.messages("rollguard.")))
	}
}

func TestPlaybookRollbackAfterFlagKillFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(h *harness, kill string)
	}{
		{"no recovery within containment_timeout", func(h *harness, kill string) {
			h.result(kill, ResultOK)
			for i := 0; i < 31; i++ { // still bad, but not yet significant on the new data
				h.advance(10 * time.Second)
				h.verdict(detector.StateInconclusive, evidence(detector.StateInconclusive, 0.03, 0.01))
			}
		}},
		{"regressed again after the kill", func(h *harness, kill string) {
			h.result(kill, ResultOK)
			h.advance(30 * time.Second)
			h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
		}},
		{"actuator failed", func(h *harness, kill string) { h.result(kill, ResultFailed) }},
		{"actuator rejected", func(h *harness, kill string) { h.result(kill, ResultRejected) }},
		{"no result within ack_timeout", func(h *harness, kill string) { h.advance(70 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "", detector.Deployment{})
			h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
			kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")
			tc.after(h, kill)
			h.wantState(StateRollingBack)
			rb := CommandID(h.dep.ID, ActionRollback, "v1")
			if ids := h.commandIDs(); len(ids) != 2 || ids[1] != rb {
				t.Fatalf("commands %v, want the kill then %s", ids, rb)
			}
			var ev Event
			var data CommandData
			json.Unmarshal(h.messages("rollguard.cmd.rollback.checkout")[0].Data, &ev)
			json.Unmarshal(ev.Data, &data)
			if data.Target.Version != "v1" || data.Target.Commit != "a1" || data.Target.Strategy != StrategyRedeploy {
				t.Fatalf("rollback target %+v", data.Target)
			}
			h.result(rb, ResultOK)
			h.wantState(StateVerifying)
			// After the rollback the candidate serves nothing; the baseline does.
			gone := evidence(detector.StateNoData, 0, 0.01)
			gone[0].Candidate = detector.CohortCounts{Version: "v2"}
			gone[0].CandidateSeen = h.now
			for i := 0; i < 13; i++ {
				h.advance(10 * time.Second)
				gone[0].BaselineSeen = h.now
				h.verdict(detector.StateNoData, gone)
			}
			h.wantState(StateStabilized)
		})
	}
}

func TestPlaybookNoFlagRollsBackFirst(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{ID: "d-00000000000b", Service: "checkout", Version: "v2", PreviousVersion: "v1", Strategy: "blue_green"})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.wantState(StateRollingBack)
	ids := h.commandIDs()
	if len(ids) != 1 || !strings.Contains(ids[0], "/rollback/") {
		t.Fatalf("commands %v, want one rollback", ids)
	}
	h.result(ids[0], ResultFailed)
	inc := h.wantState(StateEscalated)
	if !strings.Contains(inc.Reason, "handing over to people") {
		t.Fatalf("reason %q", inc.Reason)
	}
}

func TestPlaybookIrreversibleMigrationNeverRollsBack(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{ID: "d-00000000000c", Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Flags: []string{"new-flow"}, Migration: detector.MigrationIrreversible})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.wantState(StateContaining)
	h.result(CommandID(h.dep.ID, ActionFlagKill, "new-flow"), ResultOK)
	h.advance(30 * time.Second)
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	inc := h.wantState(StateEscalated)
	if !strings.Contains(inc.Reason, "irreversible migration") || !strings.Contains(inc.Reason, "never sends rollback") {
		t.Fatalf("reason %q does not say why", inc.Reason)
	}
	h.advance(time.Hour)
	for _, id := range h.commandIDs() {
		if strings.Contains(id, "/rollback/") {
			t.Fatalf("rollback sent for an irreversible migration: %v", h.commandIDs())
		}
	}
	// Without a flag there is nothing to do but call people, at once.
	h2 := newHarness(t, "", detector.Deployment{ID: "d-00000000000d", Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Migration: detector.MigrationIrreversible})
	h2.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	inc = h2.wantState(StateEscalated)
	if len(h2.commandIDs()) != 0 || !strings.Contains(inc.Reason, "no feature flag") {
		t.Fatalf("commands %v reason %q", h2.commandIDs(), inc.Reason)
	}
}

func TestPlaybookDataAudit(t *testing.T) {
	moved := append(evidence(detector.StateRegressed, 0.05, 0.01), detector.Evidence{Signal: "writes", State: detector.StateRegressed})
	for _, tc := range []struct {
		extra  string
		evs    []detector.Evidence
		audits int
	}{
		{"", moved, 1}, // an integrity signal moved
		{"", evidence(detector.StateRegressed, 0.05, 0.01), 0}, // its healthy twin
		{"data_audit: always", evidence(detector.StateRegressed, 0.05, 0.01), 1},
		{"data_audit: never", moved, 0},
	} {
		h := newHarness(t, tc.extra, detector.Deployment{})
		h.verdict(detector.StateRegressed, tc.evs)
		h.advance(20 * time.Second)
		h.result(CommandID(h.dep.ID, ActionFlagKill, "new-flow"), ResultOK)
		audits := h.messages("rollguard.cmd.data_audit.checkout")
		if len(audits) != tc.audits {
			t.Fatalf("%q: %d audits, want %d", tc.extra, len(audits), tc.audits)
		}
		if tc.audits == 0 {
			continue
		}
		var ev Event
		var data CommandData
		json.Unmarshal(audits[0].Data, &ev)
		json.Unmarshal(ev.Data, &data)
		if !data.Target.WindowStart.Equal(h.dep.StartedAt) || !data.Target.WindowEnd.Equal(h.now) {
			t.Fatalf("audit window %v..%v, want deployment start %v .. mitigation %v", data.Target.WindowStart, data.Target.WindowEnd, h.dep.StartedAt, h.now)
		}
	}
}

func TestPlaybookApproval(t *testing.T) {
	h := newHarness(t, "approval: [flag_kill]", detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	inc := h.wantState(StateWatching)
	if len(h.commandIDs()) != 0 || inc.Commands[0].Status != CommandHeld {
		t.Fatalf("a command needing approval was sent: %v", h.commandIDs())
	}
	if _, err := h.p.Approve("nope", "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approve unknown: %v", err)
	}
	ids, err := h.p.Approve(inc.ID, "alice")
	if err != nil || len(ids) != 1 {
		t.Fatalf("approve: %v %v", ids, err)
	}
	h.flush()
	inc = h.wantState(StateContaining)
	if inc.Commands[0].ApprovedBy != "alice" || len(h.commandIDs()) != 1 {
		t.Fatalf("after approval: %+v, sent %v", inc.Commands[0], h.commandIDs())
	}
	if _, err := h.p.Approve(inc.ID, "bob"); !errors.Is(err, ErrNothingToApprove) {
		t.Fatalf("second approval: %v", err)
	}
}

func TestPlaybookDryRun(t *testing.T) {
	h := newHarness(t, "dry_run: true", detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	var ev Event
	var data CommandData
	json.Unmarshal(h.messages("rollguard.cmd.flag_kill.checkout")[0].Data, &ev)
	json.Unmarshal(ev.Data, &data)
	if !data.DryRun || !h.incident().DryRun {
		t.Fatal("dry-run playbook sent a command not marked dry_run")
	}
}

func TestPlaybookBudgetAndCooldown(t *testing.T) {
	// A budget of one command: the second deployment's rollback is held for
	// a person and its incident escalated.
	js, _ := startJetStream(t)
	h := newHarnessOn(t, js, "budget: {max_commands: 1, window: 1h}", detector.Deployment{}, nil)
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	other := detector.Deployment{ID: "d-0000000000ff", Service: "payments", Version: "v9", PreviousVersion: "v8", StartedAt: h.now}
	h.p.step(func(m *Model) Effects {
		return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: other, State: detector.StateRegressed, At: h.now, Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, h.now)
	})
	h.flush()
	if ids := h.commandIDs(); len(ids) != 1 {
		t.Fatalf("commands %v, want 1 within the budget", ids)
	}
	inc, _ := h.p.Incident(IncidentID(other.ID))
	if inc.State != StateEscalated || !strings.Contains(inc.Commands[0].HoldReason, "budget") {
		t.Fatalf("over budget: state %s, command %+v", inc.State, inc.Commands[0])
	}
	if _, err := h.p.Approve(inc.Commands[0].ID, "alice"); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if ids := h.commandIDs(); len(ids) != 2 {
		t.Fatalf("approved over-budget command not sent: %v", ids)
	}

	// A 3m cooldown: the rollback after a failed kill waits for it, then goes.
	h = newHarness(t, "cooldown: 3m", detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.result(CommandID(h.dep.ID, ActionFlagKill, "new-flow"), ResultFailed)
	if n := len(h.commandIDs()); n != 1 {
		t.Fatalf("rollback sent during the cooldown (%d commands)", n)
	}
	h.advance(2 * time.Minute)
	if n := len(h.commandIDs()); n != 1 {
		t.Fatalf("rollback sent during the cooldown (%d commands)", n)
	}
	h.advance(70 * time.Second)
	if n := len(h.commandIDs()); n != 2 {
		t.Fatalf("rollback not sent after the cooldown (%d commands)", n)
	}
}

func TestPlaybookStatusCadence(t *testing.T) {
	h := newHarness(t, `status_interval: 1m
  templates:
    customer: "{{.Service}} is {{.State}}"`, detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	start := len(h.messages("rollguard.status.checkout")) // opened (watching) + containing
	h.advance(5*time.Minute + 5*time.Second)
	got := h.messages("rollguard.status.checkout")
	// No result: ack timeout after 1m escalates to rollback (one more
	// status), then status updates every minute.
	if n := len(got) - start; n < 5 || n > 7 {
		t.Fatalf("%d status updates in 5 minutes at a 1m interval (+1 state change)", n)
	}
	var ev Event
	var s StatusData
	json.Unmarshal(got[len(got)-1].Data, &ev)
	json.Unmarshal(ev.Data, &s)
	if s.Customer != "checkout is "+s.State || s.Seq != len(got) {
		t.Fatalf("status %+v", s)
	}
}

func TestPlaybookRestoreContinuesWithoutDuplicates(t *testing.T) {
	js, _ := startJetStream(t)
	store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, js, "", detector.Deployment{}, store)
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")

	// A new playbook (a restarted rollguard) on the same NATS.
	h2 := newHarnessOn(t, js, "", h.dep, store)
	h2.now = h.now.Add(time.Minute)
	h2.p.o.Signer = h.p.o.Signer
	if err := h2.p.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h2.det.resumed) != 1 {
		t.Fatalf("deployment not reopened in the detector: %v", h2.det.resumed)
	}
	h2.wantState(StateContaining)
	// The detector, restarted, sees the regression again: no second incident, no second command.
	h2.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h2.result(kill, ResultOK)
	h2.wantState(StateVerifying)
	if ids := h2.commandIDs(); len(ids) != 1 {
		t.Fatalf("commands after restart %v, want the one flag kill", ids)
	}
}

// TestPlaybookOutboxAcrossCrash: NATS is down when the rollback is decided
// and rollguard dies before it can save the incident; the next process finds
// the rollback in the outbox, adds it to the restored incident, delivers it,
// and no command reaches the stream twice.
func TestPlaybookOutboxAcrossCrash(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	ns.ReadyForConnections(10 * time.Second)
	opts.Port = ns.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := EnsureStream(context.Background(), js, "ROLLGUARD", Subjects{Prefix: "rollguard"}); err != nil {
		t.Fatal(err)
	}
	store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "outbox")
	ob, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessOn(t, js, "", detector.Deployment{}, store)
	h.p.o.Outbox = ob
	h.p.o.Connected = nc.IsConnected
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.wantState(StateContaining)

	ns.Shutdown()
	ns.WaitForShutdown()
	h.advance(70 * time.Second) // no result: the rollback is decided while NATS is down
	h.wantState(StateRollingBack)
	if ob.Len() == 0 {
		t.Fatal("nothing waits in the outbox while NATS is down")
	}
	ob.Close() // the process dies

	ns, err = server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	checkReconnect := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(checkReconnect) {
		time.Sleep(20 * time.Millisecond)
	}
	ob2, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ob2.Close()
	h2 := newHarnessOn(t, js, "", h.dep, store)
	h2.now = h.now
	h2.p.o.Outbox = ob2
	h2.p.o.Connected = nc.IsConnected
	if err := h2.p.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	inc := h2.wantState(StateRollingBack)
	if len(inc.Commands) != 2 || inc.Commands[1].Action != ActionRollback {
		t.Fatalf("restored commands %+v, want the kill and the rollback from the outbox", inc.Commands)
	}
	h2.flush()
	if ob2.Len() != 0 {
		t.Fatalf("%d messages still in the outbox", ob2.Len())
	}
	ids := h2.commandIDs()
	if len(ids) != 2 || ids[0] != CommandID(h.dep.ID, ActionFlagKill, "new-flow") || ids[1] != CommandID(h.dep.ID, ActionRollback, "v1") {
		t.Fatalf("stream commands %v", ids)
	}
	// Deciding again (a late ack timeout) cannot publish a second rollback.
	h2.advance(2 * time.Minute)
	if n := len(h2.commandIDs()); n != 2 {
		t.Fatalf("%d commands after more time, want 2", n)
	}
}

// TestPlaybookHandover: the replica that owned a guard releases it; the new
// owner adopts its incident from the store and carries on without sending
// the command again.
func TestPlaybookHandover(t *testing.T) {
	js, _ := startJetStream(t)
	store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	a := newHarnessOn(t, js, "", detector.Deployment{}, store)
	a.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	a.p.Release(context.Background(), "checkout")
	if n := len(a.p.Incidents()); n != 0 {
		t.Fatalf("the old owner still holds %d incidents", n)
	}
	b := newHarnessOn(t, js, "", a.dep, store)
	b.now = a.now.Add(3 * time.Second)
	if err := b.p.Adopt(context.Background(), "payments"); err != nil || len(b.p.Incidents()) != 0 {
		t.Fatalf("adopting another guard took %d incidents (%v)", len(b.p.Incidents()), err)
	}
	if err := b.p.Adopt(context.Background(), "checkout"); err != nil {
		t.Fatal(err)
	}
	b.wantState(StateContaining)
	if len(b.det.resumed) != 1 {
		t.Fatalf("deployment not reopened by the new owner: %v", b.det.resumed)
	}
	b.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	b.result(CommandID(a.dep.ID, ActionFlagKill, "new-flow"), ResultOK)
	b.wantState(StateVerifying)
	if ids := b.commandIDs(); len(ids) != 1 {
		t.Fatalf("commands %v, want the one flag kill", ids)
	}
}
