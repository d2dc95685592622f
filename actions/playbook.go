// Package actions owns what rollguard does about a verdict: the ROLL-BACK
// playbook (incidents, their state machine, the action ladder,
// verification, status updates), the command envelope and its signature,
// the durable outbox and the NATS JetStream publisher, the actuator SDK and
// the post-mortem. It knows nothing of how verdicts are reached.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// Publisher delivers a message; an error means it was not stored and must be retried.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
}

// Queue is an ordered store of messages waiting to be published; the
// durable Outbox is one.
type Queue interface {
	Append(ms ...Message) error
	Pending() []Message
	Len() int
	Ack(n int) error
}

// Detector restarts a deployment's tests after a mitigation so that its
// verdicts speak of the data since; the detector's Engine is one.
type Detector interface {
	Verify(deploymentID string, from time.Time) bool
	Resume(d detector.Deployment, from time.Time)
}

// Store keeps incidents where a restarted (or another) rollguard finds them.
type Store interface {
	Put(ctx context.Context, inc *Incident) error
	Load(ctx context.Context) ([]Incident, error)
}

// PlaybookOptions are the playbook's dependencies and settings.
type PlaybookOptions struct {
	Publisher Publisher
	Subjects  Subjects
	// Outbox holds messages until JetStream has stored them; nil keeps
	// them in memory only (lost on a crash).
	Outbox Queue
	// Store persists incidents; nil keeps them in memory only.
	Store Store
	// Signer signs commands; nil sends them unsigned (actuators reject them).
	Signer *Signer
	// Detector is told when to restart a deployment's tests.
	Detector Detector
	// Config gives each guard's playbook settings and signal types.
	Config *configs.Config
	// Owns reports whether this replica owns a guard (its lease); verdicts
	// of other guards are ignored. Nil: every guard is this rollguard's.
	Owns func(guard string) bool
	// Connected reports whether NATS is reachable; while it is not, the
	// outbox and the store are not tried, so the playbook keeps its pace.
	Connected func() bool
	// Tick is how often timeouts, the status cadence and retries are checked.
	Tick       time.Duration
	Logger     hclog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Playbook turns regressed verdicts into incidents and runs each one
// through the ROLL-BACK ladder: exactly one incident per deployment and
// one command per (deployment, action, target), whatever is retried,
// restarted or redelivered.
type Playbook struct {
	o        PlaybookOptions
	cfg      atomic.Pointer[configs.Config]
	verdicts chan detector.GuardVerdict
	results  chan ResultData
	wake     chan struct{}

	mu        sync.Mutex
	incidents map[string]*Incident // by deployment id
	dirty     map[string]bool      // by deployment id: not yet in the store
	memory    []Message            // the outbox when there is no durable one
	metrics   *playbookMetrics
}

type playbookMetrics struct {
	published *prometheus.CounterVec
	failures  prometheus.Counter
	pending   prometheus.GaugeFunc
	dropped   prometheus.Counter
	open      prometheus.GaugeFunc
	results   *prometheus.CounterVec
}

// NewPlaybook builds a playbook.
func NewPlaybook(o PlaybookOptions) *Playbook {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick == 0 {
		o.Tick = time.Second
	}
	if o.Config == nil {
		o.Config = &configs.Config{PlaybookDefaults: configs.DefaultPlaybook}
	}
	p := &Playbook{o: o, verdicts: make(chan detector.GuardVerdict, 1024), results: make(chan ResultData, 256),
		wake: make(chan struct{}, 1), incidents: map[string]*Incident{}, dirty: map[string]bool{}}
	p.cfg.Store(o.Config)
	p.metrics = &playbookMetrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_messages_published_total",
			Help: "Messages stored in JetStream, by kind.",
		}, []string{"kind"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_publish_failures_total",
			Help: "Publish attempts that failed and will be retried.",
		}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollguard_messages_pending",
			Help: "Messages waiting in the outbox to be published.",
		}, func() float64 { return float64(p.pendingLen()) }),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_playbook_verdicts_dropped_total",
			Help: "Verdicts dropped because the playbook queue was full (the next evaluation repeats them).",
		}),
		open: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollguard_incidents_open",
			Help: "Incidents not yet closed.",
		}, func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			n := 0
			for _, inc := range p.incidents {
				if inc.Open() {
					n++
				}
			}
			return float64(n)
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_command_results_total",
			Help: "Actuator results received, by action and status.",
		}, []string{"action", "status"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.metrics.published, p.metrics.failures, p.metrics.pending,
			p.metrics.dropped, p.metrics.open, p.metrics.results)
	}
	return p
}

// ApplyConfig takes new settings; open incidents use them from now on.
func (p *Playbook) ApplyConfig(cfg *configs.Config) { p.cfg.Store(cfg) }

func (p *Playbook) settings(guard string) configs.PlaybookConfig { return p.cfg.Load().Playbook(guard) }

// HandleVerdict queues a verdict without blocking the detector. A verdict
// dropped on a full queue is repeated at the next evaluation.
func (p *Playbook) HandleVerdict(v detector.GuardVerdict) {
	select {
	case p.verdicts <- v:
	default:
		p.metrics.dropped.Inc()
	}
}

// HandleResult queues an actuator's result; it blocks until queued or ctx
// ends, so the caller acknowledges only what the playbook will see.
func (p *Playbook) HandleResult(ctx context.Context, r ResultData) error {
	select {
	case p.results <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restore loads the incidents of an earlier run from the store and the
// messages left in the outbox, and reopens the open incidents' deployments
// in the detector so verification continues. Call it before Run.
func (p *Playbook) Restore(ctx context.Context) error {
	return p.restore(ctx, func(string) bool { return true })
}

// Adopt takes over the incidents of a guard this replica now owns (its
// lease was taken): they continue from their state in the store, and their
// deployments reopen in the detector. Incidents already held are kept.
func (p *Playbook) Adopt(ctx context.Context, guard string) error {
	return p.restore(ctx, func(g string) bool { return g == guard })
}

// Release forgets a guard's incidents (another replica owns it now); what
// changed is saved first so the new owner continues from there.
func (p *Playbook) Release(ctx context.Context, guard string) {
	p.persist(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, inc := range p.incidents {
		if inc.Guard == guard {
			delete(p.incidents, id)
			delete(p.dirty, id)
		}
	}
}

func (p *Playbook) restore(ctx context.Context, want func(guard string) bool) error {
	if p.o.Store == nil {
		return nil
	}
	incs, err := p.o.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("restore incidents: %w", err)
	}
	msgs := p.pending()
	pending := map[string]bool{}
	for _, m := range msgs {
		pending[m.ID] = true
	}
	now := p.o.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range incs {
		inc := incs[i]
		if !want(inc.Guard) || p.incidents[inc.Deployment.ID] != nil {
			continue
		}
		p.reconcile(&inc, msgs, now)
		for j := range inc.Commands {
			c := &inc.Commands[j]
			// Handed to the outbox and no longer in it: JetStream has it.
			if c.Status == CommandQueued && !pending[c.ID] {
				c.Status, c.Published = CommandPublished, &now
			}
			if c.Status == CommandPublished {
				c.AckFrom = &now
			}
		}
		p.incidents[inc.Deployment.ID] = &inc
		if inc.Open() {
			p.o.Logger.Info("incident restored", "incident", inc.ID, "state", inc.State)
			if p.o.Detector != nil {
				p.o.Detector.Resume(inc.Deployment, now)
			}
			if inc.VerifyFrom != nil {
				t := now
				inc.VerifyFrom, inc.HealthySince = &t, nil
			}
		}
	}
	return nil
}

// reconcile adds to a restored incident the commands that reached the
// outbox after it was last saved (the process died before the save), so
// that it knows them and never issues them again.
func (p *Playbook) reconcile(inc *Incident, msgs []Message, now time.Time) {
	for _, m := range msgs {
		if !strings.HasPrefix(m.Subject, p.o.Subjects.Prefix+".cmd.") || p.hasCommand(inc, m.ID) {
			continue
		}
		var ev Event
		var data CommandData
		if json.Unmarshal(m.Data, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil || data.IncidentID != inc.ID {
			continue
		}
		issued := data.IssuedAt
		step := -1
		for i, a := range inc.Ladder {
			if a == data.Action {
				step = i
			}
		}
		inc.Commands = append(inc.Commands, CommandRecord{ID: m.ID, Action: data.Action, Subject: m.Subject, Target: data.Target,
			DryRun: data.DryRun, Status: CommandQueued, IssuedAt: issued, SentAt: &issued, Step: step})
		inc.Timeline = append(inc.Timeline, TimelineEntry{At: now, Kind: EntryCommand, CommandID: m.ID,
			Reason: describeCommand(inc.Commands[len(inc.Commands)-1]) + " found in the outbox after a restart"})
		if step > inc.Rung {
			inc.Rung, inc.RungStartedAt, inc.VerifyFrom, inc.HealthySince = step, time.Time{}, nil, nil
			inc.State = rungState(data.Action)
		}
	}
}

// Run acts on verdicts, results and timeouts, and publishes the outbox,
// until ctx ends.
func (p *Playbook) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.persist(context.Background())
			return nil
		case v := <-p.verdicts:
			p.mu.Lock()
			p.onVerdict(v)
			p.mu.Unlock()
		case r := <-p.results:
			p.mu.Lock()
			p.onResult(r)
			p.mu.Unlock()
		case <-p.wake:
		case <-t.C:
			p.mu.Lock()
			p.tick()
			p.mu.Unlock()
		}
		p.flush(ctx)
		p.persist(ctx)
	}
}

func (p *Playbook) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// onVerdict opens an incident on a deployment's first regressed verdict
// and, while one is being verified, judges recovery.
func (p *Playbook) onVerdict(v detector.GuardVerdict) {
	if p.o.Owns != nil && !p.o.Owns(v.Guard) {
		return // another replica owns the guard: it alone acts
	}
	now := p.o.Now()
	inc := p.incidents[v.Deployment.ID]
	if inc == nil {
		if v.State == detector.StateRegressed {
			p.open(v, now)
		}
		return
	}
	if !inc.Open() || v.Guard != inc.Guard {
		return
	}
	if inc.VerifyFrom != nil && v.Since.Before(*inc.VerifyFrom) {
		return // evidence from before the last mitigation
	}
	inc.Latest = v.Signals
	p.touch(inc, now)
	switch inc.State {
	case StateVerifying, StateStabilized, StateEscalated:
	default:
		return // waiting for an actuator: nothing to verify yet
	}
	if inc.VerifyFrom == nil {
		return
	}
	s := p.settings(inc.Guard)
	switch {
	case v.State == detector.StateRegressed:
		inc.HealthySince = nil
		if inc.State == StateEscalated {
			return
		}
		p.entry(inc, TimelineEntry{At: now, Kind: EntryEvidence, Reason: "regressed again after " + p.rungAction(inc) + ": " + summary(v.Signals), Evidence: v.Signals})
		p.escalate(inc, now, p.rungAction(inc)+" did not bring recovery: "+summary(v.Signals))
	case p.recovered(inc, v):
		if inc.HealthySince == nil {
			t := now
			inc.HealthySince = &t
			p.entry(inc, TimelineEntry{At: now, Kind: EntryEvidence, Reason: "signals back within tolerance of the baseline; holding for " + s.HealthyHold.String(), Evidence: v.Signals})
		}
		if inc.State != StateStabilized && now.Sub(*inc.HealthySince) >= time.Duration(s.HealthyHold) {
			t := now
			inc.RecoveredAt = &t
			p.transition(inc, StateStabilized, now, "every signal has stayed within tolerance of the baseline for "+s.HealthyHold.String())
		}
	default:
		inc.HealthySince = nil
	}
}

// recovered reports whether a verdict on post-mitigation data shows the
// candidate back at its baseline: no signal regressed, and each either
// within tolerance by its point estimate or, after a rollback, with the
// candidate serving nothing while the baseline serves.
func (p *Playbook) recovered(inc *Incident, v detector.GuardVerdict) bool {
	if len(v.Signals) == 0 {
		return false
	}
	rolledBack := p.rungAction(inc) == ActionRollback
	hold := time.Duration(p.settings(inc.Guard).HealthyHold)
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
		case float64(ev.Estimate) > ev.Theta0 && ev.Theta0 > 0:
			return false
		}
	}
	return true
}

// open starts an incident and takes the first rung of its ladder.
func (p *Playbook) open(v detector.GuardVerdict, now time.Time) {
	d := v.Deployment
	s := p.settings(v.Guard)
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
	p.incidents[d.ID] = inc
	p.o.Logger.Warn("regression detected: opening incident", "incident", inc.ID, "guard", v.Guard,
		"service", d.Service, "version", d.Version, "previous_version", d.PreviousVersion, "dry_run", inc.DryRun)
	p.entry(inc, TimelineEntry{At: d.StartedAt, Kind: EntryState, To: "deployed",
		Reason: fmt.Sprintf("deployment %s of %s: %s -> %s", d.ID, d.Service, d.PreviousVersion, d.Version)})
	p.entry(inc, TimelineEntry{At: now, Kind: EntryState, To: StateWatching, Reason: "regression detected: " + summary(v.Signals), Evidence: v.Signals})
	p.event(inc, "opened", "", now)
	if inc.Forward != "" {
		p.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: "forward mitigation: " + inc.Forward})
	}
	if len(inc.Ladder) == 0 {
		p.handOver(inc, now, "no feature flag to kill and "+inc.Forward)
		p.audit(inc, now)
		return
	}
	p.takeRung(inc, 0, now, "regression detected: "+summary(v.Signals))
}

// rungAction is the action of the rung in progress.
func (p *Playbook) rungAction(inc *Incident) string {
	if inc.Rung < 0 || inc.Rung >= len(inc.Ladder) {
		return "no action"
	}
	return inc.Ladder[inc.Rung]
}

// takeRung issues the commands of ladder step i.
func (p *Playbook) takeRung(inc *Incident, i int, now time.Time, why string) {
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
			recs = append(recs, p.command(inc, ActionFlagKill, f, Target{Flag: f, Percent: &zero}, now))
		}
	case ActionRollback:
		strategy := StrategyRedeploy
		if d.Strategy == "blue_green" {
			strategy = StrategyBlueGreen
		}
		recs = append(recs, p.command(inc, ActionRollback, d.PreviousVersion,
			Target{Version: d.PreviousVersion, Commit: d.PreviousCommit, Strategy: strategy}, now))
	}
	state := StateContaining
	if inc.Ladder[i] == ActionRollback {
		state = StateRollingBack
	}
	held := p.issue(inc, recs, now)
	sent := false
	for _, c := range inc.Commands {
		sent = sent || (c.Step == i && c.Action == inc.Ladder[i] && c.Status != CommandHeld)
	}
	switch {
	case sent || held == "":
		p.transition(inc, state, now, why)
	case inc.State == StateWatching || inc.State == StateEscalated:
		// Nothing went out: the incident waits for a person.
		p.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: why + "; " + held})
		if inc.State == StateWatching {
			inc.Reason = held
			p.status(inc, now)
		}
	default:
		p.transition(inc, state, now, why+"; "+held)
	}
}

// command builds the record of one command of the incident.
func (p *Playbook) command(inc *Incident, action, target string, t Target, now time.Time) CommandRecord {
	return CommandRecord{ID: CommandID(inc.Deployment.ID, action, target), Action: action,
		Subject: p.o.Subjects.Command(action, inc.Service), Target: t, DryRun: inc.DryRun,
		Status: CommandHeld, IssuedAt: now, Step: inc.Rung}
}

// issue adds commands to the incident and sends those that need no
// approval, budget or cooldown; it returns why any were held.
func (p *Playbook) issue(inc *Incident, recs []CommandRecord, now time.Time) string {
	s := p.settings(inc.Guard)
	var held string
	for _, rec := range recs {
		if p.hasCommand(inc, rec.ID) {
			continue // issued before (a restart): never twice
		}
		switch {
		case contains(s.Approval, rec.Action):
			rec.HoldReason = "awaiting approval (rollguard approve " + rec.ID + ")"
		case p.overBudget(now):
			b := p.cfg.Load().PlaybookDefaults.Budget
			rec.HoldReason = fmt.Sprintf("action budget exhausted (%d commands per %s): awaiting approval (rollguard approve %s)", b.MaxCommands, b.Window, rec.ID)
		case p.coolingUntil(inc, rec.Step).After(now):
			rec.HoldReason = "cooldown of " + inc.Service + " until " + p.coolingUntil(inc, rec.Step).UTC().Format(time.RFC3339)
		}
		inc.Commands = append(inc.Commands, rec)
		c := &inc.Commands[len(inc.Commands)-1]
		if c.HoldReason != "" {
			held = c.HoldReason
			p.entry(inc, TimelineEntry{At: now, Kind: EntryCommand, CommandID: c.ID, Reason: describeCommand(*c) + " held: " + c.HoldReason})
			p.o.Logger.Warn("command held", "incident", inc.ID, "command", c.ID, "reason", c.HoldReason)
			if strings.HasPrefix(c.HoldReason, "action budget") {
				p.handOver(inc, now, c.HoldReason)
			}
			continue
		}
		p.send(inc, c, now)
	}
	return held
}

func (p *Playbook) hasCommand(inc *Incident, id string) bool {
	for _, c := range inc.Commands {
		if c.ID == id {
			return true
		}
	}
	return false
}

// send signs a command and puts it in the outbox.
func (p *Playbook) send(inc *Incident, c *CommandRecord, now time.Time) {
	s := p.settings(inc.Guard)
	d := inc.Deployment
	data := CommandData{IncidentID: inc.ID, Action: c.Action, Service: inc.Service, Guard: inc.Guard,
		Deployment: WireDeployment(d), Target: c.Target, Evidence: WireEvidence(inc.Latest), DryRun: c.DryRun,
		IssuedAt: now.UTC(), ExpiresAt: now.Add(time.Duration(s.CommandTTL)).UTC()}
	ev, err := newEvent(c.ID, CommandType(c.Action), inc.Service, now, data)
	if err != nil {
		p.o.Logger.Error("encode command", "command", c.ID, "error", err)
		return
	}
	m := message(c.Subject, ev)
	if p.o.Signer != nil {
		if err := p.o.Signer.Sign(&m); err != nil {
			p.o.Logger.Error("sign command", "command", c.ID, "error", err)
			return
		}
	}
	if err := p.enqueue(m); err != nil {
		p.o.Logger.Error("command not queued; will retry", "command", c.ID, "error", err)
		return
	}
	t := now
	c.Status, c.HoldReason, c.SentAt = CommandQueued, "", &t
	p.entry(inc, TimelineEntry{At: now, Kind: EntryCommand, CommandID: c.ID, Reason: describeCommand(*c) + " sent" + dryRunNote(c.DryRun)})
	p.o.Logger.Info("command queued", "incident", inc.ID, "command", c.ID, "subject", c.Subject, "dry_run", c.DryRun)
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
func (p *Playbook) overBudget(now time.Time) bool {
	b := p.cfg.Load().PlaybookDefaults.Budget
	n := 0
	for _, inc := range p.incidents {
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
func (p *Playbook) coolingUntil(inc *Incident, step int) time.Time {
	cd := time.Duration(p.settings(inc.Guard).Cooldown)
	var last time.Time
	for _, o := range p.incidents {
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

// onResult records an actuator's report and moves the incident on.
func (p *Playbook) onResult(r ResultData) {
	now := p.o.Now()
	p.metrics.results.WithLabelValues(r.Action, r.Status).Inc()
	for _, inc := range p.incidents {
		for i := range inc.Commands {
			c := &inc.Commands[i]
			if c.ID != r.CommandID {
				continue
			}
			if c.Result != nil {
				p.o.Logger.Debug("duplicate result ignored", "command", c.ID, "status", r.Status)
				return
			}
			rr, t := r, now
			c.Result, c.ResultAt = &rr, &t
			if c.Published == nil {
				c.Published = &t
			}
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
			p.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
			p.touch(inc, now)
			p.o.Logger.Info("command result", "incident", inc.ID, "command", c.ID, "status", c.Status, "actuator", r.Actuator, "detail", r.Detail)
			if !inc.Open() || c.Action == ActionDataAudit || c.Step != inc.Rung {
				return // recorded; it does not move the incident
			}
			if c.Status != ResultOK {
				p.escalate(inc, now, reason)
				return
			}
			p.maybeEffective(inc, now)
			return
		}
	}
	p.o.Logger.Debug("result for an unknown command", "command", r.CommandID, "status", r.Status)
}

// maybeEffective starts verification once every command of the rung in
// progress has been carried out.
func (p *Playbook) maybeEffective(inc *Incident, now time.Time) {
	if inc.State != StateContaining && inc.State != StateRollingBack {
		return
	}
	action := p.rungAction(inc)
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
	if p.o.Detector != nil && !p.o.Detector.Verify(inc.Deployment.ID, now) {
		p.o.Logger.Warn("deployment no longer active in the detector: recovery cannot be verified", "incident", inc.ID)
	}
	p.audit(inc, now)
	p.transition(inc, StateVerifying, now, action+" carried out by "+strings.Join(uniq(actors), ", ")+"; comparing against the baseline again")
}

// audit asks for a data audit of the suspect window when configured, or
// when a data-integrity signal moved; once per incident.
func (p *Playbook) audit(inc *Incident, now time.Time) {
	s := p.settings(inc.Guard)
	var moved, integrity []string
	types := p.signalTypes(inc.Guard)
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
	rec := p.command(inc, ActionDataAudit, "window", Target{WindowStart: &start, WindowEnd: &end, Signals: moved}, now)
	rec.Step = -1
	p.issue(inc, []CommandRecord{rec}, now)
}

// signalTypes maps the guard's signal names (and latency arms) to types.
func (p *Playbook) signalTypes(guard string) map[string]string {
	out := map[string]string{}
	for _, g := range p.cfg.Load().Guards {
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
func (p *Playbook) escalate(inc *Incident, now time.Time, reason string) {
	if inc.State == StateEscalated {
		p.entry(inc, TimelineEntry{At: now, Kind: EntryState, Reason: reason})
		return
	}
	if next := inc.Rung + 1; next < len(inc.Ladder) {
		p.takeRung(inc, next, now, reason+"; taking the next step: "+inc.Ladder[next])
		return
	}
	why := reason
	if inc.Forward != "" && !contains(inc.Ladder, ActionRollback) {
		why += "; " + inc.Forward
	}
	p.handOver(inc, now, why)
	p.audit(inc, now)
}

// handOver escalates to people.
func (p *Playbook) handOver(inc *Incident, now time.Time, why string) {
	if inc.State == StateEscalated {
		return
	}
	t := now
	inc.EscalatedAt = &t
	p.transition(inc, StateEscalated, now, why+"; handing over to people")
}

// tick checks timeouts, releases cooled-down commands and keeps the
// status cadence.
func (p *Playbook) tick() {
	now := p.o.Now()
	ids := make([]string, 0, len(p.incidents))
	for id := range p.incidents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		inc := p.incidents[id]
		if !inc.Open() {
			continue
		}
		s := p.settings(inc.Guard)
		for i := range inc.Commands {
			c := &inc.Commands[i]
			switch {
			case c.Status == CommandHeld && strings.HasPrefix(c.HoldReason, "cooldown") && !p.coolingUntil(inc, c.Step).After(now):
				p.send(inc, c, now)
				if inc.State == StateWatching && c.Step == inc.Rung {
					p.transition(inc, rungState(p.rungAction(inc)), now, "cooldown over: "+describeCommand(*c)+" sent")
				}
			case c.Status == CommandPublished && c.AckFrom != nil && now.Sub(*c.AckFrom) >= time.Duration(s.AckTimeout):
				c.Status = CommandTimedOut
				reason := fmt.Sprintf("no result for %s within ack_timeout (%s)", describeCommand(*c), s.AckTimeout)
				p.entry(inc, TimelineEntry{At: now, Kind: EntryResult, CommandID: c.ID, Reason: reason})
				if c.Step == inc.Rung && c.Action != ActionDataAudit {
					p.escalate(inc, now, reason)
				}
			}
		}
		if inc.State == StateVerifying && inc.HealthySince == nil && !inc.RungStartedAt.IsZero() {
			limit := time.Duration(s.ContainmentTimeout)
			if p.rungAction(inc) == ActionRollback {
				limit = time.Duration(s.RecoveryTimeout)
			}
			if now.Sub(inc.RungStartedAt) >= limit {
				p.escalate(inc, now, fmt.Sprintf("%s did not bring recovery within %s", p.rungAction(inc), configs.Duration(limit)))
			}
		}
		if inc.State == StateStabilized && inc.RecoveredAt != nil && now.Sub(*inc.RecoveredAt) >= time.Duration(s.CloseAfter) {
			t := now
			inc.ClosedAt = &t
			p.transition(inc, StateClosed, now, "stable for "+s.CloseAfter.String()+" after recovery")
			continue
		}
		// Due within half a tick counts as due, so the cadence does not slip
		// by a whole tick when the schedule falls just after one.
		if inc.Open() && !now.Add(p.o.Tick/2).Before(inc.NextStatusAt) {
			p.status(inc, now)
		}
	}
}

func rungState(action string) string {
	if action == ActionRollback {
		return StateRollingBack
	}
	return StateContaining
}

// Approve releases held commands: id is a command id, or an incident id to
// release every command it holds. It returns the ids of the released commands.
func (p *Playbook) Approve(id, by string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Now()
	found := false
	var out []string
	for _, inc := range p.incidents {
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
			p.entry(inc, TimelineEntry{At: now, Kind: EntryApproval, CommandID: c.ID, Reason: describeCommand(*c) + " approved by " + by})
			p.send(inc, c, now)
			out = append(out, c.ID)
			if c.Step == inc.Rung && (inc.State == StateWatching || inc.State == StateEscalated) {
				p.transition(inc, rungState(p.rungAction(inc)), now, describeCommand(*c)+" approved by "+by)
			}
		}
		if inc.ID == id {
			found = true
		}
	}
	if len(out) > 0 {
		p.poke()
		return out, nil
	}
	if found {
		return nil, ErrNothingToApprove
	}
	return nil, ErrNotFound
}

// transition moves the incident to state, recording why, and tells NATS.
func (p *Playbook) transition(inc *Incident, state string, now time.Time, why string) {
	from := inc.State
	inc.State, inc.Reason = state, why
	p.entry(inc, TimelineEntry{At: now, Kind: EntryState, From: from, To: state, Reason: why})
	p.o.Logger.Info("incident state changed", "incident", inc.ID, "from", from, "to", state, "reason", why)
	ev := "state_changed"
	if state == StateClosed {
		ev = "closed"
	}
	p.event(inc, ev, from, now)
	p.status(inc, now)
}

// event publishes an incident lifecycle event.
func (p *Playbook) event(inc *Incident, kind, from string, now time.Time) {
	inc.EventSeq++
	ids := make([]string, 0, len(inc.Commands))
	for _, c := range inc.Commands {
		ids = append(ids, c.ID)
	}
	ev, err := newEvent(fmt.Sprintf("%s/event/%d", inc.ID, inc.EventSeq), IncidentType(kind), inc.Service, now, IncidentData{
		IncidentID: inc.ID, Event: kind, Seq: inc.EventSeq, State: inc.State, From: from, Reason: inc.Reason,
		Service: inc.Service, Guard: inc.Guard, Deployment: WireDeployment(inc.Deployment), Evidence: WireEvidence(inc.Latest), Commands: ids})
	if err == nil {
		if err := p.enqueue(message(p.o.Subjects.Incident(inc.Service), ev)); err != nil {
			p.o.Logger.Error("incident event not queued", "incident", inc.ID, "error", err)
		}
	}
	p.touch(inc, now)
}

// status sends a status update now and schedules the next one.
func (p *Playbook) status(inc *Incident, now time.Time) {
	s := p.settings(inc.Guard)
	inc.StatusSeq++
	next := now.Add(time.Duration(s.StatusInterval))
	if !inc.Open() {
		next = time.Time{}
	}
	internal, customer := renderStatus(s.Templates, inc, s.StatusInterval, p.o.Logger)
	data := StatusData{IncidentID: inc.ID, Seq: inc.StatusSeq, Service: inc.Service, Guard: inc.Guard, State: inc.State,
		Reason: inc.Reason, Internal: internal, Customer: customer, NextUpdate: next.UTC()}
	ev, err := newEvent(fmt.Sprintf("%s/status/%d", inc.ID, inc.StatusSeq), TypeStatus, inc.Service, now, data)
	if err != nil {
		return
	}
	if err := p.enqueue(message(p.o.Subjects.Status(inc.Service), ev)); err != nil {
		p.o.Logger.Error("status update not queued", "incident", inc.ID, "error", err)
		return
	}
	inc.NextStatusAt = next
	inc.Statuses = append(inc.Statuses, StatusRecord{Seq: inc.StatusSeq, At: now, State: inc.State, Internal: internal, Customer: customer})
	if len(inc.Statuses) > 200 {
		inc.Statuses = inc.Statuses[len(inc.Statuses)-200:]
	}
	p.touch(inc, now)
}

// entry appends to the timeline.
func (p *Playbook) entry(inc *Incident, e TimelineEntry) {
	inc.Timeline = append(inc.Timeline, e)
	p.touch(inc, e.At)
}

func (p *Playbook) touch(inc *Incident, now time.Time) {
	if now.After(inc.UpdatedAt) {
		inc.UpdatedAt = now
	}
	p.dirty[inc.Deployment.ID] = true
}

// summary names the regressed signals with their numbers.
func summary(evs []detector.Evidence) string {
	var parts []string
	for _, ev := range evs {
		if ev.State != detector.StateRegressed {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.3g%% vs %.3g%% baseline (ratio %.3g, e-value %.3g >= %.3g)",
			ev.Signal, 100*ev.Candidate.Ratio, 100*ev.Baseline.Ratio, float64(ev.Estimate), float64(ev.EValue), ev.Threshold))
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

// enqueue puts a message in the outbox (durably, when there is one).
func (p *Playbook) enqueue(m Message) error {
	if p.o.Outbox != nil {
		return p.o.Outbox.Append(m)
	}
	p.memory = append(p.memory, m)
	return nil
}

func (p *Playbook) pending() []Message {
	if p.o.Outbox != nil {
		return p.o.Outbox.Pending()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.memory...)
}

func (p *Playbook) pendingLen() int {
	if p.o.Outbox != nil {
		return p.o.Outbox.Len()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.memory)
}

// flush publishes the outbox in order, stopping at the first failure so
// the order is kept; the rest wait for the next tick.
func (p *Playbook) flush(ctx context.Context) {
	if p.o.Connected != nil && !p.o.Connected() {
		return
	}
	pending := p.pending()
	sent := 0
	for _, m := range pending {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.o.Publisher.Publish(pctx, m)
		cancel()
		if err != nil {
			p.metrics.failures.Inc()
			p.o.Logger.Warn("publish failed; kept in the outbox", "id", m.ID, "subject", m.Subject, "error", err)
			break
		}
		p.metrics.published.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
		p.o.Logger.Debug("published", "id", m.ID, "subject", m.Subject)
		sent++
		p.markPublished(m.ID)
	}
	if sent == 0 {
		return
	}
	if p.o.Outbox != nil {
		if err := p.o.Outbox.Ack(sent); err != nil {
			p.o.Logger.Error("outbox ack", "error", err)
		}
		return
	}
	p.mu.Lock()
	p.memory = p.memory[sent:]
	p.mu.Unlock()
}

func (p *Playbook) markPublished(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Now()
	for _, inc := range p.incidents {
		for i := range inc.Commands {
			c := &inc.Commands[i]
			if c.ID == id && c.Status == CommandQueued {
				c.Status, c.Published, c.AckFrom = CommandPublished, &now, &now
				p.touch(inc, now)
			}
		}
	}
}

// persist writes changed incidents to the store; a failure keeps them
// marked for the next round.
func (p *Playbook) persist(ctx context.Context) {
	if p.o.Store == nil || (p.o.Connected != nil && !p.o.Connected()) {
		return
	}
	p.mu.Lock()
	var todo []Incident
	for id := range p.dirty {
		if inc := p.incidents[id]; inc != nil {
			todo = append(todo, inc.Clone())
		}
	}
	p.dirty = map[string]bool{}
	p.mu.Unlock()
	for i := range todo {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.o.Store.Put(pctx, &todo[i])
		cancel()
		if err != nil {
			p.o.Logger.Warn("incident not saved; will retry", "incident", todo[i].ID, "error", err)
			p.mu.Lock()
			p.dirty[todo[i].Deployment.ID] = true
			p.mu.Unlock()
		}
	}
}

func kindOf(subject, prefix string) string {
	rest := subject[len(prefix)+1:]
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		return rest[:i]
	}
	return rest
}

// Incidents returns a copy of every incident, newest first.
func (p *Playbook) Incidents() []Incident {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Incident, 0, len(p.incidents))
	for _, inc := range p.incidents {
		out = append(out, inc.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OpenedAt.After(out[j].OpenedAt) })
	return out
}

// Errors of Approve and Incident lookups.
var (
	ErrNotFound         = errors.New("no such incident or command")
	ErrNothingToApprove = errors.New("nothing is waiting for approval")
)

// Incident returns a copy of the incident with the given id.
func (p *Playbook) Incident(id string) (Incident, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inc := range p.incidents {
		if inc.ID == id {
			return inc.Clone(), true
		}
	}
	return Incident{}, false
}
