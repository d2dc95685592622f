package actions

import (
	"context"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/detector"
)

// TestPlaybookAdoptRereadsResults: the flag kill's owner is gone, and the
// actuator's ok is stored while no replica owns the guard (no replica's
// results consumer holds it for the incident). The replica that adopts
// the guard two minutes later — past the ack deadline — reads it from the
// stream with the incident: the incident verifies, and no rollback is
// sent. The twin: the actuator's failed is stored between owners, after a
// forged ok signed by a key not trusted; the new owner believes only the
// failure and rolls back at once.
func TestPlaybookAdoptRereadsResults(t *testing.T) {
	actuatorKey, err := wire.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := wire.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []string{ResultOK, ResultFailed} {
		t.Run(status, func(t *testing.T) {
			js, _ := startJetStream(t)
			store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
			if err != nil {
				t.Fatal(err)
			}
			h := newHarnessOn(t, js, "", detector.Deployment{}, store)
			h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
			h.wantState(StateContaining)
			kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")

			// Between owners: the results reach the stream only.
			r := ResultData{CommandID: kill, Action: ActionFlagKill, Service: "checkout", Status: status,
				Detail: "flag set to 0%", Actuator: "flagd", At: h.now}
			if status == ResultFailed {
				forged := r
				forged.Status, forged.Actuator = ResultOK, "forger"
				publishResult(t, h, stranger, forged, nil)
			}
			publishResult(t, h, actuatorKey, r, nil)

			next := newHarnessOn(t, js, "", h.dep, store)
			next.now = h.now.Add(2 * time.Minute)
			next.p.o.Stored = StreamResults{JS: js, Stream: "ROLLGUARD", Subjects: Subjects{Prefix: "rollguard"}}
			v, err := NewVerifier(actuatorKey.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			next.p.SetResultKeys(v)
			if err := next.p.Adopt(context.Background(), "checkout"); err != nil {
				t.Fatal(err)
			}
			next.flush()
			next.advance(30 * time.Second)
			rollback := CommandID(h.dep.ID, ActionRollback, "v1")
			ids := next.commandIDs()
			if status == ResultOK {
				inc := next.wantState(StateVerifying)
				if c := inc.Commands[0]; c.Status != CommandOK || c.Result.Actuator != "flagd" {
					t.Fatalf("flag kill %+v, want flagd's ok", c)
				}
				if len(ids) != 1 {
					t.Fatalf("commands %v, want the flag kill only", ids)
				}
				return
			}
			inc := next.wantState(StateRollingBack)
			if c := inc.Commands[0]; c.Status != CommandFailed || c.Result.Actuator != "flagd" {
				t.Fatalf("flag kill %+v, want flagd's failure (the forged ok refused)", c)
			}
			if len(ids) != 2 || ids[1] != rollback {
				t.Fatalf("commands %v, want the flag kill and %s", ids, rollback)
			}
		})
	}
}

// A result re-read on a takeover applies once: an in_progress extends
// the ack clock from when the stream stored it, never back, and reading
// it again moves nothing; a final result already applied is a duplicate;
// a result for a command not known here is not kept as an orphan.
func TestModelReread(t *testing.T) {
	m, d := modelOn(t, "")
	now := propT0
	publishAll(m, m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: now, Since: now,
		Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, now), now)
	rb := CommandID(d.ID, ActionRollback, "v1")
	prog := StoredResult{ResultData: ResultData{CommandID: rb, Status: ResultInProgress, Actuator: "deploy"}, Stored: now.Add(30 * time.Second)}
	m.Reread([]StoredResult{prog}, now.Add(5*time.Minute))
	if c := c0(m, d); c.AckFrom == nil || !c.AckFrom.Equal(prog.Stored) {
		t.Fatalf("ack clock from %v, want from the stored in_progress %v", c.AckFrom, prog.Stored)
	}
	older := prog
	older.Stored = now.Add(10 * time.Second)
	m.Reread([]StoredResult{older, {ResultData: ResultData{CommandID: "d-other/rollback/v1", Status: ResultOK}, Stored: now}}, now.Add(5*time.Minute))
	if c := c0(m, d); !c.AckFrom.Equal(prog.Stored) || len(m.orphans) != 0 {
		t.Fatalf("ack clock from %v (want %v), orphans %v", c.AckFrom, prog.Stored, m.orphans)
	}
	ok := StoredResult{ResultData: ResultData{CommandID: rb, Status: ResultOK, Actuator: "deploy"}, Stored: now.Add(40 * time.Second)}
	m.Reread([]StoredResult{ok, ok}, now.Add(5*time.Minute))
	if inc := m.incidents[d.ID]; inc.State != StateVerifying || len(inc.Timeline) == 0 {
		t.Fatalf("after the re-read ok: %s", inc.State)
	}
}
