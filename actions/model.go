package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// Model is the playbook's state and rules: a state machine over
// incidents, stepped by events (verdicts, results, ticks, approvals, human
// close and acknowledgement, deployment changes, restarts, reloads), each
// step deciding the incidents' next state and the effects to carry out
// (messages for the outbox, test restarts, deployment ends, saves). It
// does no I/O: the Playbook applies its effects, and replay and the demo
// run the very same Model.
type Model struct {
	incidents map[string]*Incident // by deployment id
	dirty     map[string]bool      // by deployment id: changed since the last save
	cfg       *configs.Config
	subjects  Subjects
	every     time.Duration // how often Tick is called
	log       hclog.Logger
	out       Effects
	// orphans are results for commands this model does not know (yet):
	// after a crash before the incident was saved, the restarted rollguard
	// issues the same command ids again, and a result that came first is
	// applied then. Oldest first, at most maxOrphans.
	orphans []ResultData
}

// maxOrphans bounds the results kept for commands not (yet) known.
const maxOrphans = 256

// Effects are what one step of the model asks the shell to do.
type Effects struct {
	// Messages go to the outbox in this order, in one append.
	Messages []Message
	// Commands are the ids of the commands among Messages: the shell signs
	// them, and if the append fails they are held for a retry.
	Commands []string
	// Restarts restart a deployment's tests on data from From on.
	Restarts []TestRestart
	// Resumes reopen deployments known from before a restart or handover.
	Resumes []TestRestart
	// Ends end a deployment (rolled back) or follow it by a new generation.
	Ends []DeploymentEnd
}

// and appends o's effects to e's, as one step's.
func (e Effects) and(o Effects) Effects {
	e.Messages = append(e.Messages, o.Messages...)
	e.Commands = append(e.Commands, o.Commands...)
	e.Restarts = append(e.Restarts, o.Restarts...)
	e.Resumes = append(e.Resumes, o.Resumes...)
	e.Ends = append(e.Ends, o.Ends...)
	return e
}

// TestRestart asks the detector to (re)start a deployment's tests at From.
type TestRestart struct {
	Deployment detector.Deployment
	From       time.Time
}

// DeploymentEnd ends the deployment with the given id: Reason
// rolled_back ends it, next_generation follows it by a new generation.
type DeploymentEnd struct {
	DeploymentID string
	Reason       string
}

// Deployment end reasons.
const (
	EndRolledBack     = "rolled_back"
	EndNextGeneration = "next_generation"
)

// NewModel is an empty model for cfg.
func NewModel(cfg *configs.Config, subjects Subjects, tick time.Duration, log hclog.Logger) *Model {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if tick == 0 {
		tick = time.Second
	}
	if cfg == nil {
		cfg = &configs.Config{PlaybookDefaults: configs.DefaultPlaybook}
	}
	return &Model{incidents: map[string]*Incident{}, dirty: map[string]bool{}, cfg: cfg,
		subjects: subjects, every: tick, log: log}
}

// take settles the step (results that came before their commands) and
// returns its effects, starting the next one.
func (m *Model) take(now time.Time) Effects {
	if len(m.orphans) > 0 {
		m.adoptOrphans(now)
	}
	out := m.out
	m.out = Effects{}
	return out
}

// emit queues a message for the outbox.
func (m *Model) emit(msg Message) { m.out.Messages = append(m.out.Messages, msg) }

func (m *Model) settings(guard string) configs.PlaybookConfig { return m.cfg.Playbook(guard) }

// Reload takes new settings; open incidents use them from now on.
func (m *Model) Reload(cfg *configs.Config) { m.cfg = cfg }

// Restore takes the incidents of an earlier run (from the store) for which
// want is true, with the messages still in the outbox: commands in the
// outbox that the saved incident does not know are added, commands no
// longer in it are published, verification restarts on data from now, and
// the open incidents' deployments are resumed. An incident already held is
// kept as it is.
//
// The ack clock is absolute: a command known to be published keeps its
// deadline (its AckFrom plus ack_timeout), so that a restart or a handover
// does not add its own duration to ack_timeout. Only a command whose
// publish nobody recorded (it left the outbox after the last save) starts
// its clock now; one still in the outbox has none until it is published.
// Results that waited in the stream are fed before the clock is looked at
// (the shell re-reads them with the incidents).
func (m *Model) Restore(incs []Incident, msgs []Message, want func(guard string) bool, now time.Time) Effects {
	pending := map[string]bool{}
	for _, msg := range msgs {
		pending[msg.ID] = true
	}
	for i := range incs {
		inc := incs[i].Clone()
		if !want(inc.Guard) || m.incidents[inc.Deployment.ID] != nil {
			continue
		}
		m.reconcile(&inc, msgs, now)
		for j := range inc.Commands {
			c := &inc.Commands[j]
			switch {
			case c.Status == CommandQueued && !pending[c.ID]:
				// Handed to the outbox and no longer in it: JetStream has
				// it, since when nobody recorded.
				c.Status, c.Published, c.AckFrom = CommandPublished, &now, &now
			case c.Status == CommandPublished && c.AckFrom == nil:
				// Saved before AckFrom was: its clock ran from the publish.
				c.AckFrom = c.Published
				if c.AckFrom == nil {
					c.AckFrom = &now
				}
			}
		}
		m.incidents[inc.Deployment.ID] = &inc
		if !inc.Open() {
			continue
		}
		m.log.Info("incident restored", "incident", inc.ID, "state", inc.State)
		if inc.Deployment.EndedAt == nil {
			m.out.Resumes = append(m.out.Resumes, TestRestart{Deployment: inc.Deployment, From: now})
		}
		if inc.VerifyFrom != nil {
			t := now
			inc.VerifyFrom, inc.HealthySince = &t, nil
		}
	}
	return m.take(now)
}

// Reread applies results read again from the stream when incidents are
// restored or adopted: those stored while no one owned the guard (or
// before a restart) move the incidents on as if they had come now; a
// result for a command not known here, or already applied, changes
// nothing. An in_progress result extends the ack clock from when the
// stream stored it, and only forward, so that reading it again does not
// restart the clock.
func (m *Model) Reread(rs []StoredResult, now time.Time) Effects {
	for _, r := range rs {
		_, c := m.findCommand(r.CommandID)
		switch {
		case c == nil:
			continue // another deployment's: not kept as an orphan
		case r.Status != ResultInProgress:
			m.result(r.ResultData, now)
		case c.AckFrom == nil || r.Stored.After(*c.AckFrom):
			at := r.Stored
			if at.After(now) {
				at = now
			}
			m.result(r.ResultData, at)
		}
	}
	return m.take(now)
}

// Release forgets a guard's incidents (another replica owns it now).
func (m *Model) Release(guard string) {
	for id, inc := range m.incidents {
		if inc.Guard == guard {
			delete(m.incidents, id)
			delete(m.dirty, id)
		}
	}
}

// reconcile adds to a restored incident the commands that reached the
// outbox after it was last saved (the process died before the save), so
// that it knows them and never issues them again.
func (m *Model) reconcile(inc *Incident, msgs []Message, now time.Time) {
	for _, msg := range msgs {
		if !strings.HasPrefix(msg.Subject, m.subjects.Prefix+".cmd.") || m.hasCommand(inc, msg.ID) {
			continue
		}
		var ev Event
		var data CommandData
		if json.Unmarshal(msg.Data, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil || data.IncidentID != inc.ID {
			continue
		}
		issued := data.IssuedAt
		step := -1
		for i, a := range inc.Ladder {
			if a == data.Action {
				step = i
			}
		}
		inc.Commands = append(inc.Commands, CommandRecord{ID: msg.ID, Action: data.Action, Subject: msg.Subject, Target: data.Target,
			DryRun: data.DryRun, Status: CommandQueued, IssuedAt: issued, SentAt: &issued, Step: step})
		inc.Timeline = append(inc.Timeline, TimelineEntry{At: now, Kind: EntryCommand, CommandID: msg.ID,
			Reason: describeCommand(inc.Commands[len(inc.Commands)-1]) + " found in the outbox after a restart"})
		if step > inc.Rung {
			inc.Rung, inc.RungStartedAt, inc.VerifyFrom, inc.HealthySince = step, time.Time{}, nil, nil
			inc.State = rungState(data.Action)
		}
	}
}

// Verdict opens an incident on a deployment's first regressed verdict
// and, while one is being verified, judges recovery. A regressed verdict
// on a deployment whose incident has closed asks for a new generation of
// the deployment, whose own incident then acts.
func (m *Model) Verdict(v detector.GuardVerdict, now time.Time) Effects {
	m.verdict(v, now)
	return m.take(now)
}

func (m *Model) verdict(v detector.GuardVerdict, now time.Time) {
	inc := m.incidents[v.Deployment.ID]
	if inc == nil {
		if v.State == detector.StateRegressed {
			m.open(v, now)
		}
		return
	}
	if !inc.Open() {
		if v.State == detector.StateRegressed {
			m.follow(inc)
		}
		return
	}
	if v.Guard != inc.Guard {
		return
	}
	if inc.VerifyFrom != nil && v.Since.Before(*inc.VerifyFrom) {
		return // evidence from before the last mitigation
	}
	inc.Latest = v.Signals
	m.touch(inc, now)
	switch inc.State {
	case StateVerifying, StateStabilized, StateEscalated:
	default:
		return // waiting for an actuator: nothing to verify yet
	}
	if inc.VerifyFrom == nil {
		return
	}
	s := m.settings(inc.Guard)
	switch {
	case v.State == detector.StateRegressed:
		inc.HealthySince = nil
		if inc.State == StateEscalated {
			return
		}
		m.entry(inc, TimelineEntry{At: now, Kind: EntryEvidence, Reason: "regressed again after " + m.rungAction(inc) + ": " + summary(v.Signals), Evidence: v.Signals})
		m.escalate(inc, now, m.rungAction(inc)+" did not bring recovery: "+summary(v.Signals))
	case m.recovered(inc, v):
		if inc.HealthySince == nil {
			t := now
			inc.HealthySince = &t
			m.entry(inc, TimelineEntry{At: now, Kind: EntryEvidence, Reason: "signals back within tolerance of the baseline; holding for " + s.HealthyHold.String(), Evidence: v.Signals})
		}
		if inc.State != StateStabilized && now.Sub(*inc.HealthySince) >= time.Duration(s.HealthyHold) {
			t := now
			inc.RecoveredAt = &t
			m.transition(inc, StateStabilized, now, "every signal has stayed within tolerance of the baseline for "+s.HealthyHold.String())
		}
	default:
		inc.HealthySince = nil
	}
}

// recovered reports whether a verdict on post-mitigation data shows the
// candidate back at its baseline: no signal regressed, and each either
// within tolerance — by its point estimate, and for a signal that triggered
// the incident by its confidence sequence — or, after a rollback, with the
// candidate serving nothing while the baseline serves.
func (m *Model) recovered(inc *Incident, v detector.GuardVerdict) bool {
	if len(v.Signals) == 0 {
		return false
	}
	rolledBack := m.rungAction(inc) == ActionRollback
	hold := time.Duration(m.settings(inc.Guard).HealthyHold)
	for _, ev := range v.Signals {
		switch {
		case ev.State == detector.StateRegressed:
			return false
		case rolledBack && !ev.CandidateSeen.After(*inc.VerifyFrom) && ev.BaselineSeen.After(v.At.Add(-hold)):
			// the candidate is gone, as a rollback intends, and the stable
			// version serves
		case ev.State == detector.StateNoData:
			return false
		case ev.Candidate.Total == 0:
			return false
		case ev.Theta0 > 0 && !(float64(ev.Estimate) <= ev.Theta0): // NaN is not recovery
			return false
		case ev.Kind == "sequential" && triggered(inc, ev) && !(float64(ev.IntervalHigh) < recoveryEdge(inc, ev)):
			// Not on a point estimate: the confidence sequence must rule
			// out the regression that was detected.
			return false
		}
	}
	return true
}

// triggered reports whether the signal's regression opened the incident.
func triggered(inc *Incident, ev detector.Evidence) bool {
	for _, tr := range inc.Trigger {
		if tr.Signal == ev.Signal && tr.State == detector.StateRegressed {
			return true
		}
	}
	return false
}

// recoveryEdge is what the confidence sequence of a signal that triggered
// the incident must fall below for the candidate to count as recovered:
// the lower end of its interval then (the regression was at least that
// large) or the tolerance, whichever is larger. The other signals need only
// not regress and have a sound estimate.
func recoveryEdge(inc *Incident, ev detector.Evidence) float64 {
	edge := ev.Theta0
	for _, tr := range inc.Trigger {
		if tr.Signal == ev.Signal && tr.State == detector.StateRegressed {
			edge = math.Max(edge, float64(tr.IntervalLow))
		}
	}
	return edge
}

// open starts an incident and takes the first rung of its ladder.
func (m *Model) open(v detector.GuardVerdict, now time.Time) {
	d := v.Deployment
	s := m.settings(v.Guard)
	inc := &Incident{ID: IncidentID(d.ID), Guard: v.Guard, Service: d.Service, State: StateWatching,
		DryRun: s.DryRun, Deployment: d, Trigger: v.Signals, Latest: v.Signals, Rung: -1,
		OpenedAt: now, DetectedAt: v.At, UpdatedAt: now, NextStatusAt: now}
	if len(d.Flags) > 0 {
		inc.Ladder = append(inc.Ladder, ActionFlagKill)
	}
	if d.Migration == detector.MigrationIrreversible {
		inc.Forward = "the deployment declares an irreversible migration: rolling back would run old code on migrated data, so rollguard never sends rollback"
	} else {
		inc.Ladder = append(inc.Ladder, ActionRollback)
	}
	m.incidents[d.ID] = inc
	m.log.Warn("regression detected: opening incident", "incident", inc.ID, "guard", v.Guard,
		"service", d.Service, "version", d.Version, "previous_version", d.PreviousVersion, "dry_run", inc.DryRun)
	m.entry(inc, TimelineEntry{At: d.StartedAt, Kind: EntryState, To: "deployed",
		Reason: fmt.Sprintf("deployment %s of %s: %s -> %s", d.ID, d.Service, d.PreviousVersion, d.Version)})
	m.entry(inc, TimelineEntry{At: now, Kind: EntryState, To: StateWatching, Reason: "regression detected: " + summary(v.Signals), Evidence: v.Signals})
	m.event(inc, "opened", "", now)
	if inc.Forward != "" {
		m.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: "forward mitigation: " + inc.Forward})
	}
	if len(inc.Ladder) == 0 {
		m.handOver(inc, now, "no feature flag to kill and "+inc.Forward)
		m.audit(inc, now)
		return
	}
	m.takeRung(inc, 0, now, "regression detected: "+summary(v.Signals))
}

// rungAction is the action of the rung in progress.
func (m *Model) rungAction(inc *Incident) string {
	if inc.Rung < 0 || inc.Rung >= len(inc.Ladder) {
		return "no action"
	}
	return inc.Ladder[inc.Rung]
}

// takeRung issues the commands of ladder step i.
func (m *Model) takeRung(inc *Incident, i int, now time.Time, why string) {
	inc.Rung, inc.VerifyFrom, inc.HealthySince = i, nil, nil
	inc.RungStartedAt = time.Time{}
	d := inc.Deployment
	var recs []CommandRecord
	switch inc.Ladder[i] {
	case ActionFlagKill:
		flags := append([]string(nil), d.Flags...)
		sort.Strings(flags)
		zero := 0
		for _, f := range flags {
			recs = append(recs, m.command(inc, ActionFlagKill, f, Target{Flag: f, Percent: &zero}, now))
		}
	case ActionRollback:
		strategy := StrategyRedeploy
		if d.Strategy == "blue_green" {
			strategy = StrategyBlueGreen
		}
		recs = append(recs, m.command(inc, ActionRollback, d.PreviousVersion,
			Target{Version: d.PreviousVersion, Commit: d.PreviousCommit, Strategy: strategy}, now))
	}
	state := StateContaining
	if inc.Ladder[i] == ActionRollback {
		state = StateRollingBack
	}
	held := m.issue(inc, recs, now)
	sent := false
	for _, c := range inc.Commands {
		sent = sent || (c.Step == i && c.Action == inc.Ladder[i] && c.Status != CommandHeld)
	}
	switch {
	case sent || held == "":
		m.transition(inc, state, now, why)
	case inc.State == StateWatching || inc.State == StateEscalated:
		// Nothing went out: the incident waits for a person.
		m.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: why + "; " + held})
		if inc.State == StateWatching {
			inc.Reason = held
			m.status(inc, now)
		}
	default:
		m.transition(inc, state, now, why+"; "+held)
	}
}

// command builds the record of one command of the incident.
func (m *Model) command(inc *Incident, action, target string, t Target, now time.Time) CommandRecord {
	return CommandRecord{ID: CommandID(inc.Deployment.ID, action, target), Action: action,
		Subject: m.subjects.Command(action, inc.Service), Target: t, DryRun: inc.DryRun,
		Status: CommandHeld, IssuedAt: now, Step: inc.Rung}
}

// issue adds commands to the incident and sends those that need no
// approval, budget or cooldown; it returns why any were held.
func (m *Model) issue(inc *Incident, recs []CommandRecord, now time.Time) string {
	s := m.settings(inc.Guard)
	var held string
	for _, rec := range recs {
		if m.hasCommand(inc, rec.ID) {
			continue // issued before (a restart): never twice
		}
		switch {
		case contains(s.Approval, rec.Action):
			rec.HoldReason = "awaiting approval (rollguard approve " + rec.ID + ")"
		case m.overBudget(now):
			b := m.cfg.PlaybookDefaults.Budget
			rec.HoldReason = fmt.Sprintf("action budget exhausted (%d commands per %s): awaiting approval (rollguard approve %s)", b.MaxCommands, b.Window, rec.ID)
		case m.coolingUntil(inc, rec.Step).After(now):
			rec.HoldReason = "cooldown of " + inc.Service + " until " + m.coolingUntil(inc, rec.Step).UTC().Format(time.RFC3339)
		}
		inc.Commands = append(inc.Commands, rec)
		c := &inc.Commands[len(inc.Commands)-1]
		if c.HoldReason != "" {
			held = c.HoldReason
			m.entry(inc, TimelineEntry{At: now, Kind: EntryCommand, CommandID: c.ID, Reason: describeCommand(*c) + " held: " + c.HoldReason})
			m.log.Warn("command held", "incident", inc.ID, "command", c.ID, "reason", c.HoldReason)
			if strings.HasPrefix(c.HoldReason, "action budget") {
				m.handOver(inc, now, c.HoldReason)
			}
			continue
		}
		m.send(inc, c, now)
	}
	return held
}

func (m *Model) hasCommand(inc *Incident, id string) bool {
	for _, c := range inc.Commands {
		if c.ID == id {
			return true
		}
	}
	return false
}

// send puts a command in this step's messages (the shell signs it and
// appends the step's messages to the outbox in one write).
func (m *Model) send(inc *Incident, c *CommandRecord, now time.Time) {
	s := m.settings(inc.Guard)
	d := inc.Deployment
	data := CommandData{IncidentID: inc.ID, Action: c.Action, Service: inc.Service, Guard: inc.Guard,
		Deployment: WireDeployment(d), Target: c.Target, Evidence: WireEvidence(inc.Latest), DryRun: c.DryRun,
		IssuedAt: now.UTC(), ExpiresAt: now.Add(time.Duration(s.CommandTTL)).UTC()}
	ev, err := newEvent(c.ID, CommandType(c.Action), inc.Service, now, data)
	if err != nil {
		// Held in plain sight and retried each tick, never dropped.
		m.log.Error("encode command", "command", c.ID, "error", err)
		c.Status, c.HoldReason = CommandHeld, holdNotQueued+": encode: "+err.Error()+"; retrying"
		m.touch(inc, now)
		return
	}
	m.emit(message(c.Subject, ev))
	m.out.Commands = append(m.out.Commands, c.ID)
	t := now
	c.Status, c.HoldReason, c.SentAt = CommandQueued, "", &t
	m.entry(inc, TimelineEntry{At: now, Kind: EntryCommand, CommandID: c.ID, Reason: describeCommand(*c) + " sent" + dryRunNote(c.DryRun)})
	m.log.Info("command queued", "incident", inc.ID, "command", c.ID, "subject", c.Subject, "dry_run", c.DryRun)
}

// adoptOrphans applies the results that arrived before their commands were
// known here (the commands went out before a crash and are issued again),
// once the step that issued them is done.
func (m *Model) adoptOrphans(now time.Time) {
	for i := 0; i < len(m.orphans); {
		r := m.orphans[i]
		if _, c := m.findCommand(r.CommandID); c == nil || c.Status == CommandHeld {
			i++
			continue
		}
		m.orphans = append(m.orphans[:i:i], m.orphans[i+1:]...)
		m.log.Info("result that came before its command applied", "command", r.CommandID, "status", r.Status)
		m.result(r, now)
	}
}

func dryRunNote(dry bool) string {
	if dry {
		return " (dry run: actuators do not act)"
	}
	return ""
}

// describeCommand names a command for people.
func describeCommand(c CommandRecord) string {
	switch c.Action {
	case ActionFlagKill:
		return "flag_kill " + c.Target.Flag
	case ActionRollback:
		s := "rollback to " + c.Target.Version
		if c.Target.Commit != "" {
			s += " (" + c.Target.Commit + ")"
		}
		return s + " by " + c.Target.Strategy
	case ActionDataAudit:
		return "data_audit of " + strings.Join(c.Target.Signals, ", ")
	}
	return c.Action
}

// overBudget reports whether the global command budget is spent.
func (m *Model) overBudget(now time.Time) bool {
	b := m.cfg.PlaybookDefaults.Budget
	n := 0
	for _, inc := range m.incidents {
		for _, c := range inc.Commands {
			if c.SentAt != nil && now.Sub(*c.SentAt) < time.Duration(b.Window) {
				n++
			}
		}
	}
	return n >= b.MaxCommands
}

// coolingUntil is when the service's cooldown after its last action
// (another incident's, or an earlier step of this one) ends.
func (m *Model) coolingUntil(inc *Incident, step int) time.Time {
	cd := time.Duration(m.settings(inc.Guard).Cooldown)
	var last time.Time
	for _, o := range m.incidents {
		if o.Service != inc.Service {
			continue
		}
		for _, c := range o.Commands {
			if c.SentAt == nil || c.Action == ActionDataAudit || (o == inc && c.Step == step) {
				continue
			}
			if c.SentAt.After(last) {
				last = *c.SentAt
			}
		}
	}
	if last.IsZero() {
		return last
	}
	return last.Add(cd)
}

// Result records an actuator's report and moves the incident on. A
// result of in_progress extends the command's ack clock, up to the
// action's max_action_time; a result that comes after the ack timeout is
// recorded as late and, if its rung is still the one in progress, acted
// on as if it had come in time; a second final result is ignored.
func (m *Model) Result(r ResultData, now time.Time) Effects {
	m.result(r, now)
	return m.take(now)
}

func (m *Model) result(r ResultData, now time.Time) {
	inc, c := m.findCommand(r.CommandID)
	if c == nil {
		m.log.Debug("result for an unknown command: kept in case the command is issued again", "command", r.CommandID, "status", r.Status)
		if r.Status != ResultInProgress {
			m.orphans = append(m.orphans, r)
			if len(m.orphans) > maxOrphans {
				m.orphans = m.orphans[len(m.orphans)-maxOrphans:]
			}
		}
		return
	}
	if c.Result != nil {
		m.log.Debug("duplicate result ignored", "command", c.ID, "status", r.Status)
		return
	}
	if c.Status == CommandHeld || c.Status == CommandCancelled {
		// Never sent: no actuator can have acted on it.
		m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID,
			Reason: fmt.Sprintf("%s by %s ignored: %s was never sent", r.Status, r.Actuator, describeCommand(*c))})
		m.log.Warn("result for a command that was never sent", "incident", inc.ID, "command", c.ID, "status", r.Status, "actuator", r.Actuator)
		return
	}
	if c.Published == nil {
		t := now
		c.Published = &t
	}
	if r.Status == ResultInProgress {
		m.progress(inc, c, r, now)
		return
	}
	late := c.Status == CommandTimedOut
	rr, t := r, now
	c.Result, c.ResultAt = &rr, &t
	switch r.Status {
	case ResultOK, ResultFailed, ResultRejected:
		c.Status = r.Status
	default:
		c.Status = ResultFailed
		rr.Detail = fmt.Sprintf("unknown result status %q: %s", r.Status, r.Detail)
	}
	reason := fmt.Sprintf("%s: %s by %s", describeCommand(*c), c.Status, r.Actuator)
	if r.Detail != "" {
		reason += " (" + r.Detail + ")"
	}
	if late {
		reason += ", late: after the ack timeout"
	}
	m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
	m.log.Info("command result", "incident", inc.ID, "command", c.ID, "status", c.Status, "actuator", r.Actuator, "detail", r.Detail, "late", late)
	if !inc.Open() || c.Action == ActionDataAudit || c.Step != inc.Rung {
		return // recorded; it does not move the incident
	}
	if c.Status != ResultOK {
		m.escalate(inc, now, reason)
		return
	}
	m.maybeEffective(inc, now)
}

// progress records an actuator's in_progress report: the ack clock starts
// again, but never runs past the action's max_action_time from publish.
func (m *Model) progress(inc *Incident, c *CommandRecord, r ResultData, now time.Time) {
	if c.Status != CommandPublished && c.Status != CommandQueued && c.Status != CommandTimedOut {
		return
	}
	limit := m.settings(inc.Guard).MaxActionTime[c.Action]
	first := c.Progress == nil || c.Progress.Detail != r.Detail
	rr := r
	c.Progress = &rr
	m.touch(inc, now)
	note := func(reason string) {
		// Once per kind of note: a heartbeat every few seconds must not
		// flood the timeline.
		for i := len(inc.Timeline) - 1; i >= 0 && i >= len(inc.Timeline)-50; i-- {
			if e := inc.Timeline[i]; e.CommandID == c.ID && e.Reason == reason {
				return
			}
		}
		m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
	}
	switch {
	case c.Status == CommandTimedOut:
		// Too late to hold the ladder back; the final result will still
		// be recorded, and acted on if its rung is current.
		note(fmt.Sprintf("%s in progress by %s, late: after the ack timeout", describeCommand(*c), r.Actuator))
	case limit > 0 && now.Sub(*c.Published) >= time.Duration(limit):
		note(fmt.Sprintf("%s still in progress by %s after max_action_time (%s): the clock is not extended", describeCommand(*c), r.Actuator, limit))
	default:
		t := now
		c.AckFrom = &t
		if first {
			reason := fmt.Sprintf("%s in progress by %s", describeCommand(*c), r.Actuator)
			if r.Detail != "" {
				reason += " (" + r.Detail + ")"
			}
			m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
		}
	}
}

func (m *Model) findCommand(id string) (*Incident, *CommandRecord) {
	for _, inc := range m.incidents {
		for i := range inc.Commands {
			if inc.Commands[i].ID == id {
				return inc, &inc.Commands[i]
			}
		}
	}
	return nil, nil
}

// maybeEffective starts verification once every command of the rung in
// progress has been carried out.
func (m *Model) maybeEffective(inc *Incident, now time.Time) {
	if inc.State != StateContaining && inc.State != StateRollingBack && inc.State != StateEscalated {
		return
	}
	action := m.rungAction(inc)
	var actors []string
	for _, c := range inc.Commands {
		if c.Step != inc.Rung || c.Action != action {
			continue
		}
		if c.Status != CommandOK {
			return
		}
		actors = append(actors, c.Result.Actuator)
	}
	t := now
	inc.RungStartedAt, inc.VerifyFrom, inc.HealthySince = now, &t, nil
	if inc.MitigatedAt == nil {
		inc.MitigatedAt = &t
	}
	m.out.Restarts = append(m.out.Restarts, TestRestart{Deployment: inc.Deployment, From: now})
	m.audit(inc, now)
	m.transition(inc, StateVerifying, now, action+" carried out by "+strings.Join(uniq(actors), ", ")+"; comparing against the baseline again")
}

// audit asks for a data audit of the suspect window when configured, or
// when a data-integrity signal moved; once per incident.
func (m *Model) audit(inc *Incident, now time.Time) {
	s := m.settings(inc.Guard)
	var moved, integrity []string
	types := m.signalTypes(inc.Guard)
	seen := map[string]bool{}
	for _, ev := range append(append([]detector.Evidence(nil), inc.Trigger...), inc.Latest...) {
		if ev.State != detector.StateRegressed || seen[ev.Signal] {
			continue
		}
		seen[ev.Signal] = true
		moved = append(moved, ev.Signal)
		if types[ev.Signal] == configs.SignalDataIntegrity {
			integrity = append(integrity, ev.Signal)
		}
	}
	switch {
	case s.DataAudit == configs.DataAuditNever:
		return
	case s.DataAudit == configs.DataAuditOnIntegrity && len(integrity) == 0:
		return
	}
	start, end := inc.Deployment.StartedAt.UTC(), now.UTC()
	rec := m.command(inc, ActionDataAudit, "window", Target{WindowStart: &start, WindowEnd: &end, Signals: moved}, now)
	rec.Step = -1
	m.issue(inc, []CommandRecord{rec}, now)
}

// signalTypes maps the guard's signal names (and latency arms) to types.
func (m *Model) signalTypes(guard string) map[string]string {
	out := map[string]string{}
	for _, g := range m.cfg.Guards {
		if g.Name != guard {
			continue
		}
		for _, s := range g.Signals {
			out[s.Name] = s.Type
		}
	}
	return out
}

// escalate takes the next rung of the ladder, or hands the incident over
// to people when none is left.
func (m *Model) escalate(inc *Incident, now time.Time, reason string) {
	if inc.State == StateEscalated {
		m.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: reason})
		return
	}
	if next := inc.Rung + 1; next < len(inc.Ladder) {
		m.takeRung(inc, next, now, reason+"; taking the next step: "+inc.Ladder[next])
		return
	}
	why := reason
	if inc.Forward != "" && !contains(inc.Ladder, ActionRollback) {
		why += "; " + inc.Forward
	}
	m.handOver(inc, now, why)
	m.audit(inc, now)
}

// handOver escalates to people.
func (m *Model) handOver(inc *Incident, now time.Time, why string) {
	if inc.State == StateEscalated {
		return
	}
	t := now
	inc.EscalatedAt = &t
	m.transition(inc, StateEscalated, now, why+"; handing over to people")
}

// Tick checks timeouts, releases cooled-down commands, retries commands
// the outbox did not take, closes incidents stable for close_after and
// keeps the status cadence.
func (m *Model) Tick(now time.Time) Effects {
	m.tickAt(now)
	return m.take(now)
}

func (m *Model) tickAt(now time.Time) {
	for _, inc := range m.sorted() {
		if !inc.Open() {
			continue
		}
		s := m.settings(inc.Guard)
		for i := range inc.Commands {
			c := &inc.Commands[i]
			switch {
			case c.Status == CommandHeld && strings.HasPrefix(c.HoldReason, "cooldown") && !m.coolingUntil(inc, c.Step).After(now):
				m.send(inc, c, now)
				if inc.State == StateWatching && c.Step == inc.Rung {
					m.transition(inc, rungState(m.rungAction(inc)), now, "cooldown over: "+describeCommand(*c)+" sent")
				}
			case c.Status == CommandHeld && strings.HasPrefix(c.HoldReason, holdNotQueued):
				m.send(inc, c, now)
			case c.Status == CommandPublished && c.AckFrom != nil && now.Sub(*c.AckFrom) >= time.Duration(s.AckTimeout):
				c.Status = CommandTimedOut
				reason := fmt.Sprintf("no result for %s within ack_timeout (%s)", describeCommand(*c), s.AckTimeout)
				m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
				if c.Step == inc.Rung && c.Action != ActionDataAudit {
					m.escalate(inc, now, reason)
				}
			}
		}
		if inc.State == StateVerifying && inc.HealthySince == nil && !inc.RungStartedAt.IsZero() {
			limit := time.Duration(s.ContainmentTimeout)
			if m.rungAction(inc) == ActionRollback {
				limit = time.Duration(s.RecoveryTimeout)
			}
			if now.Sub(inc.RungStartedAt) >= limit {
				m.escalate(inc, now, fmt.Sprintf("%s did not bring recovery within %s", m.rungAction(inc), configs.Duration(limit)))
			}
		}
		if inc.State == StateStabilized && inc.RecoveredAt != nil && now.Sub(*inc.RecoveredAt) >= time.Duration(s.CloseAfter) {
			m.close(inc, now, "stable for "+s.CloseAfter.String()+" after recovery")
			continue
		}
		// Due within half a tick counts as due, so the cadence does not slip
		// by a whole tick when the schedule falls just after one.
		if inc.Open() && !now.Add(m.every/2).Before(inc.NextStatusAt) {
			m.status(inc, now)
		}
	}
}

func rungState(action string) string {
	if action == ActionRollback {
		return StateRollingBack
	}
	return StateContaining
}

// holdNotQueued begins the hold reason of a command the outbox did not
// take; the next tick sends it again.
const holdNotQueued = "not queued"

// Unqueued holds again the commands of a step whose messages the outbox
// refused, so that the next tick retries them.
func (m *Model) Unqueued(ids []string, why error, now time.Time) {
	for _, id := range ids {
		inc, c := m.findCommand(id)
		if c == nil || c.Status != CommandQueued {
			continue
		}
		c.Status, c.SentAt = CommandHeld, nil
		c.HoldReason = holdNotQueued + ": " + why.Error() + "; retrying"
		m.touch(inc, now)
	}
}

// Published records that JetStream has stored the message with id.
func (m *Model) Published(id string, now time.Time) {
	if inc, c := m.findCommand(id); c != nil && c.Status == CommandQueued {
		t := now
		c.Status, c.Published, c.AckFrom = CommandPublished, &t, &t
		m.touch(inc, now)
	}
}

// PublishedEarlier records that a queued command is in the stream already,
// published at sent by an earlier owner of its guard that stopped before it
// saved the incident: the record describes that message (sent and
// published then, the ack clock running from then), and it is not
// published again.
func (m *Model) PublishedEarlier(id string, sent time.Time) {
	if inc, c := m.findCommand(id); c != nil && c.Status == CommandQueued {
		t := sent
		c.Status, c.SentAt, c.Published, c.AckFrom = CommandPublished, &t, &t, &t
		m.touch(inc, sent)
	}
}

// Preempted records that the message with id can never be published:
// JetStream holds a different message under its id, published first by
// someone else. A command among them fails, with why, without ever
// being published, and its incident escalates as on a failed result; any
// other message (a status update, an incident event) is only logged by
// the shell.
func (m *Model) Preempted(id, why string, now time.Time) Effects {
	inc, c := m.findCommand(id)
	if c == nil || (c.Status != CommandQueued && c.Status != CommandHeld) {
		return m.take(now)
	}
	t := now
	c.Status, c.HoldReason, c.ResultAt = CommandFailed, "", &t
	c.Result = &ResultData{CommandID: c.ID, IncidentID: inc.ID, Action: c.Action, Service: inc.Service,
		Status: ResultFailed, Detail: "not published: " + why, Actuator: "rollguard", At: now.UTC()}
	reason := fmt.Sprintf("%s pre-empted: not published (%s)", describeCommand(*c), why)
	m.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
	if inc.Open() && c.Action != ActionDataAudit && c.Step == inc.Rung {
		m.escalate(inc, now, reason)
	}
	return m.take(now)
}

// Approve releases held commands: id is a command id, or an incident id to
// release every command it holds. It returns the ids of the released commands.
func (m *Model) Approve(id, by string, now time.Time) ([]string, Effects, error) {
	found := false
	var out []string
	for _, inc := range m.sorted() {
		if !inc.Open() {
			continue
		}
		for i := range inc.Commands {
			c := &inc.Commands[i]
			if inc.ID != id && c.ID != id {
				continue
			}
			found = true
			if c.Status != CommandHeld {
				continue
			}
			c.ApprovedBy = by
			m.entry(inc, TimelineEntry{At: now, Kind: EntryApproval, CommandID: c.ID, Reason: describeCommand(*c) + " approved by " + by})
			m.send(inc, c, now)
			out = append(out, c.ID)
			if c.Step == inc.Rung && (inc.State == StateWatching || inc.State == StateEscalated) {
				m.transition(inc, rungState(m.rungAction(inc)), now, describeCommand(*c)+" approved by "+by)
			}
		}
		if inc.ID == id {
			found = true
		}
	}
	switch {
	case len(out) > 0:
		return out, m.take(now), nil
	case found:
		return nil, m.take(now), ErrNothingToApprove
	}
	return nil, m.take(now), ErrNotFound
}

// Close closes an open incident by a person's decision (id is the
// incident's or its deployment's), with their reason. Held commands are
// cancelled; the deployment goes on as a new generation (or ends, if it
// was rolled back), so that a later regression opens a new incident.
func (m *Model) Close(id, by, reason string, now time.Time) (Incident, Effects, error) {
	inc, err := m.decided(id, by, reason, true)
	if err != nil {
		return Incident{}, m.take(now), err
	}
	inc.ClosedBy, inc.CloseReason = by, reason
	m.close(inc, now, "closed by "+by+": "+reason)
	return inc.Clone(), m.take(now), nil
}

// Ack records that a person has taken the incident in hand; rollguard
// goes on as before (an acknowledged incident is still followed), and the
// status updates and the post-mortem say who and when.
func (m *Model) Ack(id, by, reason string, now time.Time) (Incident, Effects, error) {
	inc, err := m.decided(id, by, reason, false)
	if err != nil {
		return Incident{}, m.take(now), err
	}
	t := now
	inc.AckedBy, inc.AckedAt = by, &t
	why := "acknowledged by " + by
	if reason != "" {
		why += ": " + reason
	}
	m.entry(inc, TimelineEntry{At: now, Kind: EntryHuman, Reason: why})
	m.event(inc, "acknowledged", inc.State, now)
	m.status(inc, now)
	return inc.Clone(), m.take(now), nil
}

// sorted is the incidents in the order of their deployment ids, so that
// a step's effects do not depend on map order.
func (m *Model) sorted() []*Incident {
	ids := make([]string, 0, len(m.incidents))
	for id := range m.incidents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*Incident, len(ids))
	for i, id := range ids {
		out[i] = m.incidents[id]
	}
	return out
}

// decided is the open incident a person's decision is about, if the
// decision says who made it (and, when reasonRequired, why).
func (m *Model) decided(id, by, reason string, reasonRequired bool) (*Incident, error) {
	inc := m.lookup(id)
	switch {
	case inc == nil:
		return nil, ErrNotFound
	case !inc.Open():
		return nil, ErrNotOpen
	case strings.TrimSpace(by) == "" || (reasonRequired && strings.TrimSpace(reason) == ""):
		return nil, ErrNoReason
	}
	return inc, nil
}

func (m *Model) lookup(id string) *Incident {
	if inc := m.incidents[id]; inc != nil {
		return inc
	}
	for _, inc := range m.incidents {
		if inc.ID == id {
			return inc
		}
	}
	return nil
}

// close ends an incident: held commands are cancelled and the deployment
// is followed (see follow).
func (m *Model) close(inc *Incident, now time.Time, why string) {
	t := now
	inc.ClosedAt = &t
	for i := range inc.Commands {
		if c := &inc.Commands[i]; c.Status == CommandHeld {
			c.Status = CommandCancelled
			m.entry(inc, TimelineEntry{At: now, Kind: EntryCommand, CommandID: c.ID, Reason: describeCommand(*c) + " cancelled: the incident closed"})
		}
	}
	m.transition(inc, StateClosed, now, why)
	m.follow(inc)
}

// follow asks what becomes of a closed incident's deployment, if it is
// still under way: a rollback that worked ends it; otherwise (a flag
// kill, a person's close) it goes on as a new generation.
func (m *Model) follow(inc *Incident) {
	if inc.Deployment.EndedAt != nil {
		return
	}
	reason := EndNextGeneration
	for _, c := range inc.Commands {
		if c.Action == ActionRollback && c.Status == CommandOK && !c.DryRun {
			reason = EndRolledBack
		}
	}
	m.out.Ends = append(m.out.Ends, DeploymentEnd{DeploymentID: inc.Deployment.ID, Reason: reason})
}

// Deployment takes a change of a deployment from the tracker: the
// incident's record of it follows (details, end), and an open incident
// whose deployment was superseded is closed when it had stabilized, or
// handed to people otherwise, since recovery can no longer be verified.
func (m *Model) Deployment(d detector.Deployment, now time.Time) Effects {
	inc := m.incidents[d.ID]
	if inc == nil {
		return m.take(now)
	}
	wasEnded := inc.Deployment.EndedAt != nil
	inc.Deployment = d
	m.touch(inc, now)
	if d.EndedAt == nil || wasEnded {
		return m.take(now)
	}
	why := "deployment " + d.ID + " ended: " + d.EndReason
	if d.SupersededBy != "" {
		why = "deployment " + d.ID + " superseded by " + d.SupersededBy
	}
	m.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: why})
	if !inc.Open() || d.EndReason != "superseded" {
		return m.take(now)
	}
	switch inc.State {
	case StateStabilized:
		m.close(inc, now, why+" after recovery")
	case StateEscalated:
	default:
		m.handOver(inc, now, why+" before recovery was verified")
	}
	return m.take(now)
}

// takeDirty returns copies of the incidents changed since the last call.
func (m *Model) takeDirty() []Incident {
	var out []Incident
	for id := range m.dirty {
		if inc := m.incidents[id]; inc != nil {
			out = append(out, inc.Clone())
		}
	}
	m.dirty = map[string]bool{}
	return out
}

// Phases tells the tracker where each deployment's incident stands.
func (m *Model) Phases() map[string]detector.Phase {
	out := make(map[string]detector.Phase, len(m.incidents))
	for id, inc := range m.incidents {
		switch {
		case !inc.Open():
			out[id] = detector.PhaseClosed
		case inc.State == StateEscalated:
			out[id] = detector.PhaseEscalated
		default:
			out[id] = detector.PhaseActing
		}
	}
	return out
}

// Incidents returns a copy of every incident, newest first.
func (m *Model) Incidents() []Incident {
	out := make([]Incident, 0, len(m.incidents))
	for _, inc := range m.incidents {
		out = append(out, inc.Clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].OpenedAt.Equal(out[j].OpenedAt) {
			return out[i].OpenedAt.After(out[j].OpenedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Errors of Approve, Close, Ack and incident lookups.
var (
	ErrNotFound         = errors.New("no such incident or command")
	ErrNothingToApprove = errors.New("nothing is waiting for approval")
	ErrNotOpen          = errors.New("the incident is closed")
	ErrNoReason         = errors.New("say who you are (by) and why (reason)")
)

// transition moves the incident to state, recording why, and tells NATS.
func (m *Model) transition(inc *Incident, state string, now time.Time, why string) {
	from := inc.State
	inc.State, inc.Reason = state, why
	m.entry(inc, TimelineEntry{At: now, Kind: EntryState, From: from, To: state, Reason: why})
	m.log.Info("incident state changed", "incident", inc.ID, "from", from, "to", state, "reason", why)
	ev := "state_changed"
	if state == StateClosed {
		ev = "closed"
	}
	m.event(inc, ev, from, now)
	m.status(inc, now)
}

// event publishes an incident lifecycle event.
func (m *Model) event(inc *Incident, kind, from string, now time.Time) {
	inc.EventSeq++
	ids := make([]string, 0, len(inc.Commands))
	for _, c := range inc.Commands {
		ids = append(ids, c.ID)
	}
	ev, err := newEvent(fmt.Sprintf("%s/event/%d", inc.ID, inc.EventSeq), IncidentType(kind), inc.Service, now, IncidentData{
		IncidentID: inc.ID, Event: kind, Seq: inc.EventSeq, State: inc.State, From: from, Reason: inc.Reason,
		Service: inc.Service, Guard: inc.Guard, Deployment: WireDeployment(inc.Deployment), Evidence: WireEvidence(inc.Latest), Commands: ids})
	if err == nil {
		m.emit(message(m.subjects.Incident(inc.Service), ev))
	}
	m.touch(inc, now)
}

// status sends a status update now and schedules the next one.
func (m *Model) status(inc *Incident, now time.Time) {
	s := m.settings(inc.Guard)
	inc.StatusSeq++
	next := now.Add(time.Duration(s.StatusInterval))
	if !inc.Open() {
		next = time.Time{}
	}
	internal, customer := renderStatus(s.Templates, inc, s.StatusInterval, m.log)
	data := StatusData{IncidentID: inc.ID, Seq: inc.StatusSeq, Service: inc.Service, Guard: inc.Guard, State: inc.State,
		Reason: inc.Reason, Internal: internal, Customer: customer, NextUpdate: next.UTC()}
	ev, err := newEvent(fmt.Sprintf("%s/status/%d", inc.ID, inc.StatusSeq), TypeStatus, inc.Service, now, data)
	if err != nil {
		return
	}
	m.emit(message(m.subjects.Status(inc.Service), ev))
	inc.NextStatusAt = next
	inc.Statuses = append(inc.Statuses, StatusRecord{Seq: inc.StatusSeq, At: now, State: inc.State, Internal: internal, Customer: customer})
	if len(inc.Statuses) > 200 {
		inc.Statuses = inc.Statuses[len(inc.Statuses)-200:]
	}
	m.touch(inc, now)
}

// entry appends to the timeline.
func (m *Model) entry(inc *Incident, e TimelineEntry) {
	inc.Timeline = append(inc.Timeline, e)
	m.touch(inc, e.At)
}

func (m *Model) touch(inc *Incident, now time.Time) {
	if now.After(inc.UpdatedAt) {
		inc.UpdatedAt = now
	}
	m.dirty[inc.Deployment.ID] = true
}

// summary names the regressed signals with their evidence, in the
// detector's one wording.
func summary(evs []detector.Evidence) string {
	var parts []string
	for _, ev := range evs {
		if ev.State == detector.StateRegressed {
			parts = append(parts, detector.Describe(ev))
		}
	}
	if len(parts) == 0 {
		return "no signal regressed"
	}
	return strings.Join(parts, "; ")
}

func uniq(xs []string) []string {
	sort.Strings(xs)
	out := xs[:0]
	for i, x := range xs {
		if i == 0 || x != xs[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func message(subject string, ev Event) Message {
	b, _ := json.Marshal(ev) // an Event of marshalled data always encodes
	return Message{Subject: subject, ID: ev.ID, Data: b}
}
