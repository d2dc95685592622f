package actions

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// modelOn is a Model for the harness's playbook settings plus extra.
func modelOn(t *testing.T, extra string) (*Model, detector.Deployment) {
	t.Helper()
	doc := strings.Replace(testPlaybook, "%s", extra, 1)
	cfg, err := configs.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	d := detector.Deployment{ID: "d-0123456789ab", Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Migration: detector.MigrationNone, StartedAt: propT0} // no flag: rollback first
	return NewModel(cfg, Subjects{Prefix: "rollguard"}, 10*time.Second, nil), d
}

func publishAll(m *Model, eff Effects, at time.Time) {
	for _, msg := range eff.Messages {
		m.Published(msg.ID, at)
	}
}

// A rollback whose ok arrives after ack_timeout moved the incident to
// escalated is acted on: the incident verifies; the twin with a late
// failure stays escalated. Both are recorded as late.
func TestModelLateResult(t *testing.T) {
	for _, status := range []string{ResultOK, ResultFailed} {
		m, d := modelOn(t, "")
		now := propT0
		publishAll(m, m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
			Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now), now)
		rb := CommandID(d.ID, ActionRollback, "v1")
		now = now.Add(61 * time.Second)
		m.Tick(now)
		if inc := m.incidents[d.ID]; inc.State != StateEscalated {
			t.Fatalf("after ack_timeout: %s, want escalated", inc.State)
		}
		now = now.Add(16 * time.Second)
		eff := m.Result(ResultData{CommandID: rb, Status: status, Actuator: "deploy"}, now)
		inc := m.incidents[d.ID]
		want := StateEscalated
		if status == ResultOK {
			want = StateVerifying
			if len(eff.Restarts) != 1 {
				t.Errorf("late ok: tests restarted %d times, want once", len(eff.Restarts))
			}
		}
		if inc.State != want || !strings.Contains(inc.Timeline[len(inc.Timeline)-1].Reason+inc.Timeline[len(inc.Timeline)-2].Reason, "late") {
			t.Errorf("late %s: state %s (want %s), timeline %+v", status, inc.State, want, inc.Timeline[len(inc.Timeline)-2:])
		}
	}
}

// in_progress restarts the ack clock up to max_action_time; past it the
// command times out as before.
func TestModelInProgress(t *testing.T) {
	m, d := modelOn(t, "max_action_time: {rollback: 3m}")
	now := propT0
	publishAll(m, m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now), now)
	rb := CommandID(d.ID, ActionRollback, "v1")
	for i := 0; i < 6; i++ { // every 50 s for 5 minutes
		now = now.Add(50 * time.Second)
		m.Result(ResultData{CommandID: rb, Status: ResultInProgress, Actuator: "deploy", Detail: "redeploying"}, now)
		m.Tick(now)
		if i < 3 && m.incidents[d.ID].State != StateRollingBack {
			t.Fatalf("after %d in_progress reports: %s, want rolling_back", i+1, m.incidents[d.ID].State)
		}
	}
	inc := m.incidents[d.ID]
	if inc.State != StateEscalated || inc.Commands[0].Status != CommandTimedOut {
		t.Errorf("past max_action_time: %s / %s, want escalated / timed_out", inc.State, inc.Commands[0].Status)
	}
	count := func(sub string) int {
		n := 0
		for _, e := range inc.Timeline {
			if strings.Contains(e.Reason, sub) {
				n++
			}
		}
		return n
	}
	if n := count("in progress by deploy (redeploying)"); n != 1 {
		t.Errorf("%d timeline entries for repeated in_progress reports, want 1", n)
	}
	if n := count("still in progress by deploy after max_action_time (3m)"); n != 1 {
		t.Errorf("%d notes that max_action_time was reached, want 1", n)
	}
}

// A person closes an escalated incident: held commands are cancelled, the
// deployment goes on as a new generation, and the post-mortem names them;
// an acknowledgement leaves the incident open.
func TestModelHumanCloseAndAck(t *testing.T) {
	m, d := modelOn(t, "approval: [rollback]")
	now := propT0
	m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now)
	if _, _, err := m.Close(IncidentID(d.ID), "alice", "", now); err != ErrNoReason {
		t.Errorf("close without a reason: %v", err)
	}
	inc, eff, err := m.Ack(IncidentID(d.ID), "bob", "looking", now)
	if err != nil || inc.AckedBy != "bob" || !inc.Open() || len(eff.Messages) == 0 {
		t.Fatalf("ack: %+v %v", inc, err)
	}
	now = now.Add(time.Minute)
	inc, eff, err = m.Close(d.ID, "alice", "rolled forward by hand", now)
	if err != nil || inc.State != StateClosed || inc.ClosedBy != "alice" {
		t.Fatalf("close: %+v %v", inc, err)
	}
	if inc.Commands[0].Status != CommandCancelled {
		t.Errorf("held rollback: %s, want cancelled", inc.Commands[0].Status)
	}
	if len(eff.Ends) != 1 || eff.Ends[0].Reason != EndNextGeneration {
		t.Errorf("ends %+v, want the deployment to go on as a new generation", eff.Ends)
	}
	if _, _, err := m.Close(d.ID, "alice", "again", now); err != ErrNotOpen {
		t.Errorf("second close: %v", err)
	}
	if _, _, err := m.Approve(inc.Commands[0].ID, "carol", now); err != ErrNotFound {
		t.Errorf("approving a closed incident's command: %v", err)
	}
	var b bytes.Buffer
	if err := RenderPostmortem(&b, inc, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"by alice (rolled forward by hand)", "bob acknowledged"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("post-mortem lacks %q:\n%s", want, b.String())
		}
	}
}

// A superseded deployment's incident: closed when it had stabilized,
// escalated when still acting; a restart does not resume the deployment.
func TestModelSupersededDeployment(t *testing.T) {
	m, d := modelOn(t, "")
	now := propT0
	m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now)
	ended := d
	ended.EndedAt, ended.EndReason, ended.SupersededBy = &now, "superseded", "d-next"
	m.Deployment(ended, now)
	inc := m.incidents[d.ID]
	if inc.State != StateEscalated || inc.Deployment.SupersededBy != "d-next" {
		t.Fatalf("acting incident after supersession: %s %+v", inc.State, inc.Deployment)
	}
	eff := NewModel(m.cfg, m.subjects, m.every, nil).Restore(m.Incidents(), nil, func(string) bool { return true }, now)
	if len(eff.Resumes) != 0 {
		t.Errorf("restart resumed the superseded deployment: %+v", eff.Resumes)
	}
}

// A result that comes before its command is known (rollguard crashed after
// sending the command and before saving the incident; the restarted one
// issues the same command id again) is applied when the command is issued.
func TestModelResultBeforeCommand(t *testing.T) {
	m, d := modelOn(t, "")
	now := propT0
	rb := CommandID(d.ID, ActionRollback, "v1")
	m.Result(ResultData{CommandID: rb, Status: ResultOK, Actuator: "deploy"}, now)
	if len(m.Incidents()) != 0 {
		t.Fatal("a result opened an incident")
	}
	eff := m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now)
	inc := m.incidents[d.ID]
	if inc.State != StateVerifying || inc.Commands[0].Status != CommandOK || len(eff.Restarts) != 1 {
		t.Fatalf("incident %s, command %s, restarts %d: want verifying, ok, 1", inc.State, inc.Commands[0].Status, len(eff.Restarts))
	}
	// The twin: a result for another command stays aside.
	m2, _ := modelOn(t, "")
	m2.Result(ResultData{CommandID: "d-other/rollback/v1", Status: ResultOK, Actuator: "deploy"}, now)
	m2.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now)
	if inc := m2.incidents[d.ID]; inc.State != StateRollingBack {
		t.Errorf("unrelated early result moved the incident to %s", inc.State)
	}
}

// Recovery is never declared on a NaN estimate; the twin with an estimate
// within tolerance starts the healthy hold.
func TestModelNoRecoveryOnNaN(t *testing.T) {
	for _, tc := range []struct {
		estimate float64
		healthy  bool
	}{{math.NaN(), false}, {1.0, true}} {
		m, d := modelOn(t, "")
		d.Flags = []string{"f"}
		now := propT0
		publishAll(m, m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
			Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now), now)
		now = now.Add(time.Second)
		m.Result(ResultData{CommandID: CommandID(d.ID, ActionFlagKill, "f"), Status: ResultOK, Actuator: "flagd"}, now)
		ev := evidence(detector.StateInconclusive, 0.01, 0.01)
		ev[0].Estimate = detector.Float(tc.estimate)
		now = now.Add(10 * time.Second)
		m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateInconclusive, At: now, Since: now, Signals: ev}, now)
		if got := m.incidents[d.ID].HealthySince != nil; got != tc.healthy {
			t.Errorf("estimate %v: healthy hold started %v, want %v", tc.estimate, got, tc.healthy)
		}
	}
}

// TestModelRecoveryNeedsTheConfidenceSequence: after a flag kill, a point
// estimate back within tolerance is not recovery while the signal's
// confidence sequence still reaches the regression that was detected (the
// trigger's interval started at 3); once its upper end is below that, the
// healthy hold starts. A signal that never triggered (its interval still
// unbounded) does not hold recovery back.
func TestModelRecoveryNeedsTheConfidenceSequence(t *testing.T) {
	for _, tc := range []struct {
		high    float64
		healthy bool
	}{{4, false}, {math.Inf(1), false}, {2.5, true}} {
		m, d := modelOn(t, "")
		d.Flags = []string{"f"}
		now := propT0
		trigger := evidence(detector.StateRegressed, 0.05, 0.01)
		trigger[0].IntervalLow, trigger[0].IntervalHigh = 3, 8
		publishAll(m, m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
			Signals: trigger}, now), now)
		now = now.Add(time.Second)
		m.Result(ResultData{CommandID: CommandID(d.ID, ActionFlagKill, "f"), Status: ResultOK, Actuator: "flagd"}, now)
		ev := evidence(detector.StateInconclusive, 0.0105, 0.01) // estimate 1.05 <= 1.1
		ev[0].IntervalLow, ev[0].IntervalHigh = 0.5, detector.Float(tc.high)
		other := evidence(detector.StateInconclusive, 0.01, 0.01)[0]
		other.Signal, other.IntervalHigh = "latency:p99", detector.Float(math.Inf(1))
		ev = append(ev, other)
		now = now.Add(10 * time.Second)
		m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateInconclusive, At: now, Since: now, Signals: ev}, now)
		if got := m.incidents[d.ID].HealthySince != nil; got != tc.healthy {
			t.Errorf("upper end %v: healthy hold started %v, want %v", tc.high, got, tc.healthy)
		}
	}
}

// The ack deadline survives a restart or a handover: a command published
// before it keeps publish + ack_timeout, so the rollback's clock does not
// start again when another model restores the incident. The twins: a
// command still in the outbox has no deadline until it is published, and
// one that left the outbox after the last save (its publish unrecorded)
// starts its clock at the restore.
func TestModelAckDeadlineSurvivesRestore(t *testing.T) {
	verdict := func(m *Model, d detector.Deployment, now time.Time) Effects {
		return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
			Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now)
	}
	all := func(string) bool { return true }
	published := propT0

	// Published at t0, restored 40 s later: timed out at t0 + 1m.
	m, d := modelOn(t, "")
	publishAll(m, verdict(m, d, published), published)
	next := NewModel(m.cfg, m.subjects, m.every, nil)
	next.Restore(m.Incidents(), nil, all, published.Add(40*time.Second))
	next.Tick(published.Add(59 * time.Second))
	if c := next.incidents[d.ID].Commands[0]; c.Status != CommandPublished {
		t.Fatalf("before the deadline: %s, want published", c.Status)
	}
	next.Tick(published.Add(61 * time.Second))
	if inc := next.incidents[d.ID]; inc.Commands[0].Status != CommandTimedOut || inc.State != StateEscalated {
		t.Fatalf("1m after the publish, 21 s after the restore: command %s, incident %s; want timed_out, escalated",
			inc.Commands[0].Status, inc.State)
	}

	// Still in the outbox at the restore: no deadline until published.
	m, d = modelOn(t, "")
	eff := verdict(m, d, published)
	next = NewModel(m.cfg, m.subjects, m.every, nil)
	next.Restore(m.Incidents(), eff.Messages, all, published.Add(40*time.Second))
	next.Tick(published.Add(5 * time.Minute))
	if c := next.incidents[d.ID].Commands[0]; c.Status != CommandQueued {
		t.Fatalf("never published, 5m on: %s, want queued", c.Status)
	}
	next.Published(c0(next, d).ID, published.Add(6*time.Minute))
	next.Tick(published.Add(6*time.Minute + 59*time.Second))
	if c := c0(next, d); c.Status != CommandPublished {
		t.Fatalf("59 s after its publish: %s, want published", c.Status)
	}

	// Left the outbox after the last save: the clock starts at the restore.
	m, d = modelOn(t, "")
	verdict(m, d, published)
	restored := published.Add(40 * time.Second)
	next = NewModel(m.cfg, m.subjects, m.every, nil)
	next.Restore(m.Incidents(), nil, all, restored)
	next.Tick(restored.Add(59 * time.Second))
	if c := c0(next, d); c.Status != CommandPublished {
		t.Fatalf("publish unrecorded, 59 s after the restore: %s, want published", c.Status)
	}
	next.Tick(restored.Add(61 * time.Second))
	if c := c0(next, d); c.Status != CommandTimedOut {
		t.Fatalf("publish unrecorded, 61 s after the restore: %s, want timed_out", c.Status)
	}
}

func c0(m *Model, d detector.Deployment) CommandRecord { return m.incidents[d.ID].Commands[0] }
