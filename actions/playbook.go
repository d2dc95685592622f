// Package actions owns what rollguard does about a verdict: the ROLL-BACK
// playbook (incidents, their state machine, the action ladder,
// verification, status updates), the command envelope and its signature,
// the durable outbox and the NATS JetStream publisher, the actuator SDK and
// the post-mortem. It knows nothing of how verdicts are reached.
package actions

import (
	"context"
	"errors"
	"fmt"
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
	// Degraded says why the queue cannot store messages now, or nil.
	Degraded() error
}

// Detector is the deployment tracker and its tests, as the playbook's
// effects need them; the detector's Engine is one.
type Detector interface {
	// Verify restarts a deployment's tests on data from from on, so that
	// its verdicts speak of the data since a mitigation.
	Verify(deploymentID string, from time.Time) bool
	// Resume reopens a deployment known from before a restart.
	Resume(d detector.Deployment, from time.Time)
	// EndDeployment ends a deployment that was rolled back.
	EndDeployment(id, reason string) bool
	// NextGeneration follows a deployment whose incident closed by a new
	// generation of it.
	NextGeneration(id string) (detector.Deployment, bool)
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
	// ResultKeys are the actuators' public keys whose results are
	// believed (SetResultKeys changes them); nil believes every result,
	// signed or not, and counts it as unverified.
	ResultKeys *Verifier
	// Stored reads again the results kept in the stream for the incidents
	// restored or adopted (CheckResult decides which to believe); nil
	// reads none.
	Stored ResultReader
	// Detector is told when to restart a deployment's tests.
	Detector Detector
	// Config gives each guard's playbook settings and signal types.
	Config *configs.Config
	// Owns reports whether this replica owns a guard (its lease); verdicts
	// of other guards are ignored, and it fences every step, publish and
	// save (see fence.go). Nil: every guard is this rollguard's.
	Owns func(guard string) bool
	// Lease names the lease a guard's messages go out under (replica and
	// revision), sent as the Rollguard-Lease header; nil or "" sends none.
	Lease func(guard string) string
	// Connected reports whether NATS is reachable; while it is not, the
	// outbox and the store are not tried, so the playbook keeps its pace.
	Connected func() bool
	// Tick is how often timeouts, the status cadence and retries are checked.
	Tick       time.Duration
	Logger     hclog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Playbook is the shell around the Model: it feeds it verdicts, results,
// deployment changes, ticks and people's decisions, one step at a time,
// and carries out each step's effects — the step's messages signed and
// appended to the outbox in one write outside the state lock, tests
// restarted, deployments ended — then publishes the outbox and saves
// what changed. Exactly one incident per deployment generation and one
// command per (generation, action, target), whatever is retried,
// restarted or redelivered.
type Playbook struct {
	o        PlaybookOptions
	verdicts chan detector.GuardVerdict
	results  chan ResultData
	wake     chan struct{}

	mu     sync.Mutex // the model
	model  *Model
	phases atomic.Pointer[map[string]detector.Phase]

	appendMu sync.Mutex // keeps the outbox in the order of the steps

	resultKeys atomic.Pointer[Verifier] // nil: results are not verified

	// adopted are the guards Adopt took over, in a cluster; adoptedAll
	// says Restore took every guard over (a single rollguard). See acts;
	// under mu.
	adopted    map[string]bool
	adoptedAll bool

	memMu  sync.Mutex
	memory []Message // the outbox when there is no durable one
	// onWire are messages an earlier owner of an adopted guard published
	// (event id -> the event's time), not to be published again (onwire.go).
	wireMu  sync.Mutex
	onWire  map[string]time.Time
	metrics *playbookMetrics

	persistMu sync.Mutex // one save at a time: each compare-and-set on the revision the last one left
}

type playbookMetrics struct {
	published *prometheus.CounterVec
	failures  prometheus.Counter
	pending   prometheus.GaugeFunc
	dropped   prometheus.Counter
	open      prometheus.GaugeFunc
	results   *prometheus.CounterVec
	preempted *prometheus.CounterVec
	onWire    *prometheus.CounterVec // not published again: an earlier owner did
	// rejected counts results ignored for their signature, by reason;
	// unverified those believed with no key configured to check them.
	rejected   *prometheus.CounterVec
	unverified prometheus.Counter
	degraded   prometheus.GaugeFunc // the outbox cannot write
	// fenced counts messages dropped unpublished for a guard no longer
	// owned, by kind; writesFenced saves that lost their compare-and-set.
	fenced       *prometheus.CounterVec
	writesFenced prometheus.Counter
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
		wake: make(chan struct{}, 1), model: NewModel(o.Config, o.Subjects, o.Tick, o.Logger)}
	p.phases.Store(&map[string]detector.Phase{})
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
			n := 0
			for _, ph := range *p.phases.Load() {
				if ph == detector.PhaseActing || ph == detector.PhaseEscalated {
					n++
				}
			}
			return float64(n)
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_command_results_total",
			Help: "Actuator results received, by action and status.",
		}, []string{"action", "status"}),
		preempted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_messages_preempted_total",
			Help: "Messages JetStream dropped as duplicates of a different message published first under their id, by kind (cmd: the incident is escalated).",
		}, []string{"kind"}),
		onWire: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_messages_already_published_total",
			Help: "Messages not published because an earlier owner of their guard had published them before it could save the incident (found in the stream on adoption), by kind.",
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_results_rejected_total",
			Help: "Actuator results ignored because they were unsigned, wrongly signed or signed by an untrusted key (result_keys), by reason.",
		}, []string{"reason"}),
		degraded: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rollguard_outbox_degraded",
			Help: "1 while the outbox cannot write (a full or failing disk); it reopens itself once a second, and /-/ready answers 503 meanwhile.",
		}, func() float64 {
			if p.Degraded() != nil {
				return 1
			}
			return 0
		}),
		unverified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_results_unverified_total",
			Help: "Actuator results believed without a signature check, because no result key is configured.",
		}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_messages_fenced_total",
			Help: "Messages dropped from the outbox unpublished because this replica no longer owns their guard, by kind.",
		}, []string{"kind"}),
		writesFenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_incident_writes_fenced_total",
			Help: "Incident saves refused because another rollguard wrote the incident since it was read here (compare-and-set); the incident is reloaded if its guard is still owned.",
		}),
	}
	for _, r := range []string{ResultRejectUnsigned, ResultRejectBadSignature, ResultRejectUntrustedKey} {
		p.metrics.rejected.WithLabelValues(r)
	}
	p.resultKeys.Store(o.ResultKeys)
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.metrics.published, p.metrics.failures, p.metrics.pending,
			p.metrics.dropped, p.metrics.open, p.metrics.results, p.metrics.preempted,
			p.metrics.rejected, p.metrics.unverified, p.metrics.degraded, p.metrics.fenced, p.metrics.writesFenced, p.metrics.onWire)
	}
	return p
}

// ApplyConfig takes new settings; open incidents use them from now on.
func (p *Playbook) ApplyConfig(cfg *configs.Config) {
	p.step(func(m *Model) Effects { m.Reload(cfg); return Effects{} })
}

// Phase tells the deployment tracker where a deployment's incident
// stands. It never blocks: it reads the snapshot of the last step.
func (p *Playbook) Phase(deploymentID string) detector.Phase {
	return (*p.phases.Load())[deploymentID]
}

// HandleDeployment records a deployment change from the tracker in the
// deployment's incident at once, so that nothing the tracker decided is
// lost to a stop that follows. The engine calls it with no lock held.
func (p *Playbook) HandleDeployment(d detector.Deployment) {
	p.step(func(m *Model) Effects { return m.Deployment(d, p.o.Now()) })
	p.poke()
}

// step runs one step of the model under the state lock and carries out
// its effects: the messages go to the outbox in one append (in the order
// of the steps, outside the state lock), then the detector is told.
func (p *Playbook) step(f func(m *Model) Effects) {
	p.mu.Lock()
	p.evictUnowned()
	eff := f(p.model)
	phases := p.model.Phases()
	p.phases.Store(&phases)
	p.appendMu.Lock()
	p.mu.Unlock()
	p.apply(eff)
}

// apply carries out a step's effects; it is called with appendMu held and
// releases it once the messages are in the outbox.
func (p *Playbook) apply(eff Effects) {
	if len(eff.Messages) > 0 {
		err := p.sign(eff)
		if err == nil {
			err = p.enqueue(eff.Messages)
		}
		if err != nil {
			p.o.Logger.Error("messages not queued; commands are retried", "messages", len(eff.Messages), "error", err)
			p.mu.Lock()
			p.model.Unqueued(eff.Commands, err, p.o.Now())
			p.mu.Unlock()
		}
	}
	p.appendMu.Unlock()
	if p.o.Detector == nil {
		return
	}
	for _, r := range eff.Resumes {
		p.o.Detector.Resume(r.Deployment, r.From)
	}
	for _, r := range eff.Restarts {
		if !p.o.Detector.Verify(r.Deployment.ID, r.From) {
			p.o.Logger.Warn("deployment no longer active in the detector: recovery cannot be verified", "deployment", r.Deployment.ID)
		}
	}
	for _, e := range eff.Ends {
		switch e.Reason {
		case EndRolledBack:
			p.o.Detector.EndDeployment(e.DeploymentID, e.Reason)
		default:
			if d, ok := p.o.Detector.NextGeneration(e.DeploymentID); ok {
				p.o.Logger.Info("deployment goes on as a new generation", "deployment", e.DeploymentID, "next", d.ID)
			}
		}
	}
}

// sign signs the step's commands.
func (p *Playbook) sign(eff Effects) error {
	if p.o.Signer == nil || len(eff.Commands) == 0 {
		return nil
	}
	cmds := map[string]bool{}
	for _, id := range eff.Commands {
		cmds[id] = true
	}
	for i := range eff.Messages {
		if cmds[eff.Messages[i].ID] {
			if err := p.o.Signer.Sign(&eff.Messages[i]); err != nil {
				return fmt.Errorf("sign command %s: %w", eff.Messages[i].ID, err)
			}
		}
	}
	return nil
}

// Reasons a result is rejected, as rollguard_results_rejected_total labels them.
const (
	ResultRejectUnsigned     = "unsigned"
	ResultRejectBadSignature = "bad_signature"
	ResultRejectUntrustedKey = "untrusted_key"
)

// SetResultKeys changes the actuators' keys whose results are believed;
// nil believes every result. It takes effect for the next result.
func (p *Playbook) SetResultKeys(v *Verifier) { p.resultKeys.Store(v) }

// ResultKeys returns the verifier of results in use; nil when none.
func (p *Playbook) ResultKeys() *Verifier { return p.resultKeys.Load() }

// CheckResult decides whether a result message (its exact data, and its
// headers through header) may be believed: with result keys set, only
// when signed by one of them; without, always, counted as unverified. A
// refused result is counted by reason; the error says why, for the log.
func (p *Playbook) CheckResult(data []byte, header func(string) string) error {
	v := p.resultKeys.Load()
	if v == nil {
		p.metrics.unverified.Inc()
		return nil
	}
	err := v.Verify(data, header)
	if err == nil {
		return nil
	}
	reason, why := ResultRejectBadSignature, "its signature does not match its content"
	switch {
	case errors.Is(err, ErrUnsigned):
		reason, why = ResultRejectUnsigned, "it is not signed"
	case errors.Is(err, ErrUnknownKey):
		reason, why = ResultRejectUntrustedKey, fmt.Sprintf("it is signed by %.60q, not a key in playbook.signing.result_keys", header(HeaderKey))
	}
	p.metrics.rejected.WithLabelValues(reason).Inc()
	return fmt.Errorf("result not believed: %s", why)
}

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
	err := p.restore(ctx, func(string) bool { return true })
	p.mu.Lock()
	p.adoptedAll = true // a single rollguard: every guard is its own from here on (see acts)
	p.mu.Unlock()
	return err
}

// Adopt takes over the incidents of a guard this replica now owns (its
// lease was taken): they continue from their state in the store, and their
// deployments reopen in the detector. Incidents already held are kept.
func (p *Playbook) Adopt(ctx context.Context, guard string) error {
	err := p.restore(ctx, func(g string) bool { return g == guard })
	p.mu.Lock()
	if p.adopted == nil {
		p.adopted = map[string]bool{}
	}
	p.adopted[guard] = true // verdicts count from now on (see acts)
	p.mu.Unlock()
	return err
}

// acts reports whether this replica decides for guard now: it owns the
// guard and has adopted it — restored its incidents from the store and
// learnt what was published. A verdict that comes between the lease and
// the adoption (or after ownership lapsed for a moment and before the
// guard is adopted again) must not open an incident the store already
// holds.
func (p *Playbook) acts(guard string) bool {
	if p.o.Owns == nil {
		return true
	}
	if !p.o.Owns(guard) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.adoptedAll || p.adopted[guard]
}

// Release forgets a guard's incidents (another replica owns it now); what
// changed is saved first if the lease is still this replica's (a clean
// handover) — a deposed replica saves nothing (see fence.go).
func (p *Playbook) Release(ctx context.Context, guard string) {
	p.persist(ctx)
	p.step(func(m *Model) Effects { m.Release(guard); return Effects{} })
}

func (p *Playbook) restore(ctx context.Context, want func(guard string) bool) error {
	if p.o.Store == nil {
		return nil
	}
	incs, err := p.load(ctx, want)
	if err != nil {
		return fmt.Errorf("restore incidents: %w", err)
	}
	msgs := p.pending()
	p.learnOnWire(ctx, want)
	stored, err := p.reread(ctx, incs, want)
	if err != nil {
		p.o.Logger.Warn("results stored for restored incidents not all read; the results consumer may still bring them", "error", err)
	}
	now := p.o.Now()
	// One step: no tick comes between the restore and the results, so an
	// ack deadline that passed meanwhile sees the result that came in time.
	p.step(func(m *Model) Effects { return m.Restore(incs, msgs, want, now).and(m.Reread(stored, now)) })
	return nil
}

// reread reads from the stream the results stored for the open incidents
// for which want is true, from the first one's opening on (less a minute,
// for the clocks of the replicas and the servers).
func (p *Playbook) reread(ctx context.Context, incs []Incident, want func(guard string) bool) ([]StoredResult, error) {
	if p.o.Stored == nil {
		return nil, nil
	}
	var services []string
	var since time.Time
	for _, inc := range incs {
		if !inc.Open() || !want(inc.Guard) || len(inc.Commands) == 0 {
			continue
		}
		if !contains(services, inc.Service) {
			services = append(services, inc.Service)
		}
		if since.IsZero() || inc.OpenedAt.Before(since) {
			since = inc.OpenedAt
		}
	}
	if len(services) == 0 {
		return nil, nil
	}
	rs, err := p.o.Stored.Results(ctx, services, since.Add(-time.Minute), p.CheckResult)
	if err != nil {
		return rs, err
	}
	return rs, nil
}

// Run acts on verdicts, results, deployment changes and timeouts, and
// publishes the outbox, until ctx ends.
func (p *Playbook) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.persist(context.Background())
			return nil
		case v := <-p.verdicts:
			if p.acts(v.Guard) { // else another replica owns the guard (it alone acts), or it is not adopted yet
				p.step(func(m *Model) Effects { return m.Verdict(v, p.o.Now()) })
			}
		case r := <-p.results:
			p.metrics.results.WithLabelValues(r.Action, r.Status).Inc()
			p.step(func(m *Model) Effects { return m.Result(r, p.o.Now()) })
		case <-p.wake:
		case <-t.C:
			p.step(func(m *Model) Effects { return m.Tick(p.o.Now()) })
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

// Approve releases held commands: id is a command id, or an incident id to
// release every command it holds. It returns the ids of the released commands.
func (p *Playbook) Approve(id, by string) ([]string, error) {
	var ids []string
	var err error
	p.step(func(m *Model) Effects {
		var eff Effects
		ids, eff, err = m.Approve(id, by, p.o.Now())
		return eff
	})
	if len(ids) > 0 {
		p.poke()
	}
	return ids, err
}

// Close closes an open incident by a person's decision.
func (p *Playbook) Close(id, by, reason string) (Incident, error) {
	return p.decide(func(m *Model, now time.Time) (Incident, Effects, error) { return m.Close(id, by, reason, now) })
}

// Ack records that a person has taken the incident in hand.
func (p *Playbook) Ack(id, by, reason string) (Incident, error) {
	return p.decide(func(m *Model, now time.Time) (Incident, Effects, error) { return m.Ack(id, by, reason, now) })
}

// decide steps a person's decision on an incident.
func (p *Playbook) decide(f func(m *Model, now time.Time) (Incident, Effects, error)) (Incident, error) {
	var inc Incident
	var err error
	p.step(func(m *Model) Effects {
		var eff Effects
		inc, eff, err = f(m, p.o.Now())
		return eff
	})
	p.poke()
	return inc, err
}

// enqueue appends a step's messages to the outbox in one write (durably,
// when there is one).
func (p *Playbook) enqueue(ms []Message) error {
	if p.o.Outbox != nil {
		return p.o.Outbox.Append(ms...)
	}
	p.memMu.Lock()
	p.memory = append(p.memory, ms...)
	p.memMu.Unlock()
	return nil
}

func (p *Playbook) pending() []Message {
	if p.o.Outbox != nil {
		return p.o.Outbox.Pending()
	}
	p.memMu.Lock()
	defer p.memMu.Unlock()
	return append([]Message(nil), p.memory...)
}

// Degraded says why the playbook cannot queue commands durably now (its
// outbox failed to write and has not recovered), or nil. The daemon's
// readiness answers with it.
func (p *Playbook) Degraded() error {
	if p.o.Outbox == nil {
		return nil
	}
	return p.o.Outbox.Degraded()
}

func (p *Playbook) pendingLen() int {
	if p.o.Outbox != nil {
		return p.o.Outbox.Len()
	}
	p.memMu.Lock()
	defer p.memMu.Unlock()
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
		m, ok := p.fence(m)
		if !ok {
			sent++ // out of the outbox, never published
			continue
		}
		if at, ok := p.alreadyOnWire(m.ID); ok {
			// The guard's previous owner published it before it could
			// save the incident: it is on the wire already, since at.
			p.metrics.onWire.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
			p.o.Logger.Info("not published again: an earlier owner of the guard published it", "id", m.ID, "subject", m.Subject, "at", at)
			sent++
			p.mu.Lock()
			p.model.PublishedEarlier(m.ID, at)
			p.mu.Unlock()
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.o.Publisher.Publish(pctx, m)
		cancel()
		if errors.Is(err, ErrPreempted) {
			// Never stored under its id, and never will be: out of the
			// outbox, and its incident escalated if it was a command.
			p.metrics.preempted.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
			p.o.Logger.Error("message pre-empted: JetStream holds another message under its id; it is not sent",
				"id", m.ID, "subject", m.Subject, "error", err)
			sent++
			p.step(func(md *Model) Effects { return md.Preempted(m.ID, err.Error(), p.o.Now()) })
			p.poke() // what the escalation queued goes out next round, not next tick
			continue
		}
		if err != nil {
			p.metrics.failures.Inc()
			p.o.Logger.Warn("publish failed; kept in the outbox", "id", m.ID, "subject", m.Subject, "error", err)
			break
		}
		p.metrics.published.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
		p.o.Logger.Debug("published", "id", m.ID, "subject", m.Subject)
		sent++
		p.mu.Lock()
		p.model.Published(m.ID, p.o.Now())
		p.mu.Unlock()
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
	p.memMu.Lock()
	p.memory = p.memory[sent:]
	p.memMu.Unlock()
}

// persist writes changed incidents of the guards this replica owns to the
// store; a failure keeps them marked for the next round, except a fenced
// one (see fence.go).
func (p *Playbook) persist(ctx context.Context) {
	if p.o.Store == nil || (p.o.Connected != nil && !p.o.Connected()) {
		return
	}
	p.persistMu.Lock()
	defer p.persistMu.Unlock()
	p.mu.Lock()
	todo := p.model.takeDirty()
	p.mu.Unlock()
	fenced := map[string]bool{}
	for i := range todo {
		if fenced[todo[i].Guard] || !p.owns(todo[i].Guard) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.o.Store.Put(pctx, &todo[i])
		cancel()
		if isFenced(err) {
			p.metrics.writesFenced.Inc()
			p.o.Logger.Warn("incident not saved: another rollguard wrote it since; not retried", "incident", todo[i].ID, "guard", todo[i].Guard, "error", err)
			fenced[todo[i].Guard] = true
			continue
		}
		if err != nil {
			p.o.Logger.Warn("incident not saved; will retry", "incident", todo[i].ID, "error", err)
			p.mu.Lock()
			p.model.dirty[todo[i].Deployment.ID] = true
			p.mu.Unlock()
		}
	}
	p.writeFenced(ctx, fenced)
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
	return p.model.Incidents()
}

// Incident returns a copy of the incident with the given id.
func (p *Playbook) Incident(id string) (Incident, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inc := range p.model.incidents {
		if inc.ID == id {
			return inc.Clone(), true
		}
	}
	return Incident{}, false
}
