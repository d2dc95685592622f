package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// The property tests drive the Model with random sequences of the events
// the daemon feeds it — verdicts, results of every kind, ticks, approvals,
// human close and acknowledgement, deployment ends, reloads, outbox
// failures, publishes and restarts from persisted state — and check the
// playbook's invariants after every step.

const propConfig = `
playbook:
  containment_timeout: 5m
  recovery_timeout: 10m
  healthy_hold: 1m
  ack_timeout: 1m
  status_interval: 5m
  close_after: 3m
  cooldown: %s
  budget: {max_commands: %d, window: 1h}
  approval: [%s]
  dry_run: %v
guards:
  - name: checkout
    service: checkout
    signals: [{name: errors}]
  - name: payments
    service: payments
    signals: [{name: errors}]
`

func propCfg(t *rapid.T) *configs.Config {
	approval := rapid.SampledFrom([]string{"", "rollback", "flag_kill"}).Draw(t, "approval")
	cooldown := rapid.SampledFrom([]string{"0s", "2m"}).Draw(t, "cooldown")
	budget := rapid.SampledFrom([]int{2, 20}).Draw(t, "budget")
	dry := rapid.Bool().Draw(t, "dry_run")
	cfg, err := configs.Parse([]byte(fmt.Sprintf(propConfig, cooldown, budget, approval, dry)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

var propT0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// propDeployments are the deployments the events speak of: with flags, without, and one whose migration is irreversible.
func propDeployments() []detector.Deployment {
	return []detector.Deployment{
		{ID: "d-aaaaaaaaaaaa", Service: "checkout", Version: "v2", PreviousVersion: "v1", Flags: []string{"f1", "f2"}, Migration: detector.MigrationNone, StartedAt: propT0},
		{ID: "d-bbbbbbbbbbbb", Service: "checkout", Version: "v3", PreviousVersion: "v2", Migration: detector.MigrationNone, StartedAt: propT0},
		{ID: "d-cccccccccccc", Service: "payments", Version: "v9", PreviousVersion: "v8", Flags: []string{"p"}, Migration: detector.MigrationIrreversible, StartedAt: propT0},
	}
}

// propEvent is one recorded event: what it was and when.
type propEvent struct {
	Kind    string
	At      time.Time
	Verdict detector.GuardVerdict
	Result  ResultData
	ID, By  string
	Reason  string
	Deploy  detector.Deployment
	Config  *configs.Config
	IDs     []string
	Outbox  []Message // a restart's outbox
}

// propRun is the live side of a property run: the model, its recorded
// events and the checks' bookkeeping.
type propRun struct {
	t        *rapid.T
	m        *Model
	now      time.Time
	deps     []detector.Deployment
	log      []propEvent
	effects  []Effects
	sent     map[string]bool // command ids emitted (once each, unless the outbox refused them)
	outbox   []Message       // emitted, not yet published
	lastCmds []string        // the commands of the last step
}

func (r *propRun) step(ev propEvent) Effects {
	r.log = append(r.log, ev)
	eff := applyEvent(r.m, ev)
	r.effects = append(r.effects, eff)
	r.outbox = append(r.outbox, eff.Messages...)
	r.lastCmds = eff.Commands
	for _, id := range eff.Commands {
		if r.sent[id] {
			r.t.Fatalf("command %s sent twice (event %s at %s)", id, ev.Kind, ev.At)
		}
		r.sent[id] = true
	}
	for _, msg := range eff.Messages {
		if strings.Contains(msg.Subject, ".cmd.") && !contains(eff.Commands, msg.ID) {
			r.t.Fatalf("command message %s not listed among the step's commands", msg.ID)
		}
	}
	return eff
}

// applyEvent runs one recorded event on m.
func applyEvent(m *Model, ev propEvent) Effects {
	switch ev.Kind {
	case "verdict":
		return m.Verdict(ev.Verdict, ev.At)
	case "result":
		return m.Result(ev.Result, ev.At)
	case "tick":
		return m.Tick(ev.At)
	case "approve":
		_, eff, _ := m.Approve(ev.ID, ev.By, ev.At)
		return eff
	case "close":
		_, eff, _ := m.Close(ev.ID, ev.By, ev.Reason, ev.At)
		return eff
	case "ack":
		_, eff, _ := m.Ack(ev.ID, ev.By, ev.Reason, ev.At)
		return eff
	case "deployment":
		return m.Deployment(ev.Deploy, ev.At)
	case "reload":
		m.Reload(ev.Config)
	case "unqueued":
		m.Unqueued(ev.IDs, errors.New("disk full"), ev.At)
	case "published":
		for _, id := range ev.IDs {
			m.Published(id, ev.At)
		}
	}
	return Effects{}
}

func (r *propRun) check(ev propEvent, eff Effects) {
	t := r.t
	ids := map[string]bool{}
	for _, inc := range r.m.Incidents() {
		// Never two commands for one (generation, action, target).
		for _, c := range inc.Commands {
			if ids[c.ID] {
				t.Fatalf("incident %s holds command %s twice", inc.ID, c.ID)
			}
			ids[c.ID] = true
		}
		// Closed only from stabilized, or by a person.
		for _, e := range inc.Timeline {
			if e.To == StateClosed && e.From != StateStabilized && inc.ClosedBy == "" {
				t.Fatalf("incident %s closed from %s without a person: %s", inc.ID, e.From, e.Reason)
			}
		}
		if inc.Open() != (inc.ClosedAt == nil) {
			t.Fatalf("incident %s: state %s but closed_at %v", inc.ID, inc.State, inc.ClosedAt)
		}
		// No command of a closed incident waits to be sent.
		if !inc.Open() {
			for _, c := range inc.Commands {
				if c.Status == CommandHeld {
					t.Fatalf("closed incident %s still holds %s", inc.ID, c.ID)
				}
			}
		}
		// The persisted form round-trips.
		b1, err := json.Marshal(inc)
		if err != nil {
			t.Fatalf("encode incident: %v", err)
		}
		var back Incident
		if err := json.Unmarshal(b1, &back); err != nil {
			t.Fatalf("decode incident: %v", err)
		}
		if b2, _ := json.Marshal(back); string(b1) != string(b2) {
			t.Fatalf("incident %s does not round-trip:\n%s\n%s", inc.ID, b1, b2)
		}
	}
	// A regressed verdict on a deployment under way has, after its step, an
	// open incident acting or holding an action — or, when the incident
	// had closed, the deployment is followed by a new generation.
	if ev.Kind == "verdict" && ev.Verdict.State == detector.StateRegressed && ev.Verdict.Deployment.EndedAt == nil {
		d := ev.Verdict.Deployment
		inc := r.m.incidents[d.ID]
		switch {
		case inc == nil:
			t.Fatalf("regressed verdict on %s: no incident", d.ID)
		case !inc.Open():
			found := false
			for _, e := range eff.Ends {
				found = found || e.DeploymentID == d.ID
			}
			if !found && inc.Deployment.EndedAt == nil {
				t.Fatalf("regressed verdict on %s whose incident is closed: no new generation asked for", d.ID)
			}
		case !acting(inc):
			b, _ := json.MarshalIndent(inc, "", " ")
			t.Fatalf("regressed verdict on %s: incident %s in %s neither acts nor holds an action:\n%s", d.ID, inc.ID, inc.State, b)
		}
	}
}

// acting: the incident has sent an action, holds one, or is in people's hands.
func acting(inc *Incident) bool {
	if inc.State != StateWatching {
		return true
	}
	for _, c := range inc.Commands {
		if c.Status == CommandHeld && c.Step == inc.Rung {
			return true
		}
	}
	return false
}

func (r *propRun) draw() propEvent {
	t := r.t
	kind := rapid.SampledFrom([]string{"verdict", "verdict", "verdict", "result", "result", "tick", "tick", "tick",
		"approve", "close", "ack", "deployment", "reload", "unqueued", "published", "published", "restart"}).Draw(t, "kind")
	r.now = r.now.Add(time.Duration(rapid.IntRange(0, 90).Draw(t, "seconds")) * time.Second)
	ev := propEvent{Kind: kind, At: r.now}
	pickDep := func() detector.Deployment { return r.deps[rapid.IntRange(0, len(r.deps)-1).Draw(t, "dep")] }
	pickID := func() string {
		var ids []string
		for _, inc := range r.m.Incidents() {
			ids = append(ids, inc.ID, inc.Deployment.ID)
			for _, c := range inc.Commands {
				ids = append(ids, c.ID)
			}
		}
		ids = append(ids, "inc-unknown")
		return rapid.SampledFrom(ids).Draw(t, "id")
	}
	switch kind {
	case "verdict":
		d := pickDep()
		state := rapid.SampledFrom([]detector.State{detector.StateRegressed, detector.StateHealthy, detector.StateInconclusive, detector.StateNoData}).Draw(t, "state")
		cand := 0.01
		if state == detector.StateRegressed {
			cand = 0.05
		}
		since := d.StartedAt
		if inc := r.m.incidents[d.ID]; inc != nil && inc.VerifyFrom != nil && rapid.Bool().Draw(t, "fresh") {
			since = *inc.VerifyFrom
		}
		ev.Verdict = detector.GuardVerdict{Guard: d.Service, Deployment: d, State: state, At: r.now, Since: since,
			Signals: []detector.Evidence{{Signal: "errors", State: state, Theta0: 1.1, Estimate: detector.Float(cand / 0.01),
				Baseline:  detector.CohortCounts{Version: d.PreviousVersion, Total: 1000, Bad: 10, Ratio: 0.01},
				Candidate: detector.CohortCounts{Version: d.Version, Total: 1000, Bad: 1000 * cand, Ratio: cand}}}}
	case "result":
		ev.Result = ResultData{CommandID: pickID(), Actuator: "prop",
			Status: rapid.SampledFrom([]string{ResultOK, ResultOK, ResultFailed, ResultRejected, ResultInProgress, "bogus"}).Draw(t, "status")}
	case "approve", "close", "ack":
		ev.ID, ev.By = pickID(), rapid.SampledFrom([]string{"alice", ""}).Draw(t, "by")
		ev.Reason = rapid.SampledFrom([]string{"fixed by hand", ""}).Draw(t, "reason")
	case "deployment":
		i := rapid.IntRange(0, len(r.deps)-1).Draw(t, "dep")
		if r.deps[i].EndedAt == nil {
			d := r.deps[i]
			at := r.now
			d.EndedAt = &at
			d.EndReason = rapid.SampledFrom([]string{"superseded", "promoted", "rolled_back"}).Draw(t, "reason")
			if d.EndReason == "superseded" {
				d.SupersededBy = "d-next"
			}
			r.deps[i] = d
		}
		ev.Deploy = r.deps[i]
	case "reload":
		ev.Config = propCfg(t)
	case "unqueued":
		ev.IDs = append([]string(nil), r.lastCmds...)
	case "published":
		n := rapid.IntRange(0, len(r.outbox)).Draw(t, "n")
		for _, m := range r.outbox[:n] {
			ev.IDs = append(ev.IDs, m.ID)
		}
	}
	return ev
}

// TestModelProperties checks the playbook's invariants after every step
// of random event sequences, across restarts from persisted state, and
// that replaying the recorded events gives exactly the live effects.
func TestModelProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := propCfg(t)
		r := &propRun{t: t, m: NewModel(cfg, Subjects{Prefix: "rollguard"}, 10*time.Second, nil), now: propT0,
			deps: propDeployments(), sent: map[string]bool{}}
		start := cfg
		n := rapid.IntRange(1, 120).Draw(t, "events")
		for i := 0; i < n; i++ {
			ev := r.draw()
			switch ev.Kind {
			case "restart":
				ev.Outbox = append([]Message(nil), r.outbox...)
				r.log = append(r.log, ev)
				r.effects = append(r.effects, r.restart(ev))
				continue
			case "unqueued":
				for _, id := range ev.IDs {
					delete(r.sent, id) // refused by the outbox: it will be sent again
				}
			case "published":
				r.outbox = r.outbox[len(ev.IDs):]
			}
			eff := r.step(ev)
			r.check(ev, eff)
		}
		// Replay of the recorded events, through the same restarts, gives
		// exactly the live effects and the same incidents.
		m := NewModel(start, Subjects{Prefix: "rollguard"}, 10*time.Second, nil)
		for i, ev := range r.log {
			var got Effects
			if ev.Kind == "restart" {
				m, got = restarted(t, m, ev)
			} else {
				got = applyEvent(m, ev)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(r.effects[i])
			if string(a) != string(b) {
				t.Fatalf("replay of event %d (%s) differs:\nlive   %s\nreplay %s", i, ev.Kind, b, a)
			}
		}
		a, _ := json.Marshal(m.Incidents())
		b, _ := json.Marshal(r.m.Incidents())
		if string(a) != string(b) {
			t.Fatalf("replayed incidents differ from the live ones")
		}
	})
}

// restarted is the model a restarted daemon builds from m's persisted
// incidents and the outbox.
func restarted(t *rapid.T, m *Model, ev propEvent) (*Model, Effects) {
	var incs []Incident
	for _, inc := range m.Incidents() {
		b, _ := json.Marshal(inc)
		var back Incident
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		incs = append(incs, back)
	}
	next := NewModel(m.cfg, Subjects{Prefix: "rollguard"}, 10*time.Second, nil)
	eff := next.Restore(incs, ev.Outbox, func(string) bool { return true }, ev.At)
	return next, eff
}

// restart rebuilds the model from the persisted incidents and the outbox,
// as a restarted daemon does: nothing is lost, nothing is issued twice, and
// a restart on its own decides nothing new.
func (r *propRun) restart(ev propEvent) Effects {
	m, eff := restarted(r.t, r.m, ev)
	if len(eff.Messages) != 0 || len(eff.Commands) != 0 || len(eff.Ends) != 0 {
		r.t.Fatalf("a restart decided something: %+v", eff)
	}
	if got, want := len(m.Incidents()), len(r.m.Incidents()); got != want {
		r.t.Fatalf("restart restored %d incidents of %d", got, want)
	}
	for _, inc := range m.Incidents() {
		old := r.m.incidents[inc.Deployment.ID]
		if inc.State != old.State || len(inc.Commands) != len(old.Commands) || inc.Rung != old.Rung {
			r.t.Fatalf("restart changed incident %s: %s/%d commands -> %s/%d", inc.ID, old.State, len(old.Commands), inc.State, len(inc.Commands))
		}
		// The ack deadline is absolute: a restart never moves the clock
		// of a command whose publish was recorded.
		for i, c := range inc.Commands {
			was := old.Commands[i]
			if was.Status == CommandPublished && was.AckFrom != nil && (c.AckFrom == nil || !c.AckFrom.Equal(*was.AckFrom)) {
				r.t.Fatalf("restart moved the ack clock of %s from %v to %v", c.ID, *was.AckFrom, c.AckFrom)
			}
		}
	}
	for _, rs := range eff.Resumes {
		if rs.Deployment.EndedAt != nil {
			r.t.Fatalf("restart resumed ended deployment %s", rs.Deployment.ID)
		}
	}
	r.m = m
	return eff
}
