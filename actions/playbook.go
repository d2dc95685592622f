// Package actions owns what rollguard does about a verdict: the playbook
// (incidents and the commands they issue), the command envelope, and the
// NATS JetStream publisher. It knows nothing of how verdicts are reached.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/detector"
)

// Message is one event ready for the wire.
type Message struct {
	Subject string            `json:"subject"`
	ID      string            `json:"id"`
	Data    []byte            `json:"data"`
	Header  map[string]string `json:"header,omitempty"` // besides Nats-Msg-Id and Content-Type
}

// Publisher delivers a message; an error means it was not stored and must be retried.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
}

// PlaybookOptions are the playbook's dependencies and settings.
type PlaybookOptions struct {
	Publisher Publisher
	Subjects  Subjects
	// CommandTTL is how long after issue a command may still be acted on.
	CommandTTL time.Duration
	// RetryInterval is how often unpublished messages are retried.
	RetryInterval time.Duration
	Logger        hclog.Logger
	Registerer    prometheus.Registerer
	Now           func() time.Time
}

// Playbook turns regressed verdicts into incidents and commands: exactly one
// incident per deployment and one command per (deployment, step, target).
type Playbook struct {
	o         PlaybookOptions
	verdicts  chan detector.GuardVerdict
	mu        sync.Mutex
	incidents map[string]*Incident // by deployment id
	pending   []Message
	metrics   *playbookMetrics
}

type playbookMetrics struct {
	published *prometheus.CounterVec
	failures  prometheus.Counter
	pending   prometheus.GaugeFunc
	dropped   prometheus.Counter
}

// NewPlaybook builds a playbook.
func NewPlaybook(o PlaybookOptions) *Playbook {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CommandTTL == 0 {
		o.CommandTTL = 15 * time.Minute
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = time.Second
	}
	p := &Playbook{o: o, verdicts: make(chan detector.GuardVerdict, 1024), incidents: map[string]*Incident{}}
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
			Help: "Messages waiting to be published.",
		}, func() float64 { p.mu.Lock(); defer p.mu.Unlock(); return float64(len(p.pending)) }),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_playbook_verdicts_dropped_total",
			Help: "Verdicts dropped because the playbook queue was full (the next evaluation repeats them).",
		}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.metrics.published, p.metrics.failures, p.metrics.pending, p.metrics.dropped)
	}
	return p
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

// Run acts on verdicts and retries unpublished messages until ctx ends.
func (p *Playbook) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case v := <-p.verdicts:
			p.act(v)
			p.flush(ctx)
		case <-t.C:
			p.flush(ctx)
		}
	}
}

// act opens an incident for the first regressed verdict of a deployment and
// queues its containment commands.
func (p *Playbook) act(v detector.GuardVerdict) {
	if v.State != detector.StateRegressed {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, open := p.incidents[v.Deployment.ID]; open {
		return
	}
	now := p.o.Now()
	d := v.Deployment
	inc := &Incident{ID: IncidentID(d.ID), Guard: v.Guard, Service: d.Service, State: StateContaining,
		OpenedAt: now, Deployment: d}
	p.incidents[d.ID] = inc
	inc.Trigger = v.Signals
	log := p.o.Logger.With("incident", inc.ID, "deployment", d.ID, "service", d.Service)
	log.Warn("regression detected: opening incident", "guard", v.Guard,
		"version", d.Version, "previous_version", d.PreviousVersion)

	flags := append([]string(nil), d.Flags...)
	sort.Strings(flags)
	if len(flags) == 0 {
		log.Warn("deployment declares no feature flag: nothing to kill; rollback is not implemented yet, escalate to people")
	}
	zero := 0
	for _, flag := range flags {
		rec := CommandRecord{ID: CommandID(d.ID, ActionFlagKill, flag), Action: ActionFlagKill,
			Subject: p.o.Subjects.Command(ActionFlagKill, d.Service), Target: Target{Flag: flag, Percent: &zero}}
		data := CommandData{IncidentID: inc.ID, Action: ActionFlagKill, Service: d.Service, Guard: v.Guard,
			Deployment: d, Target: rec.Target, Evidence: v.Signals, ExpiresAt: now.Add(p.o.CommandTTL).UTC()}
		ev, err := newEvent(rec.ID, "io.rollguard.command."+ActionFlagKill+".v1", d.Service, now, data)
		if err != nil {
			log.Error("encode command", "command", rec.ID, "error", err)
			continue
		}
		inc.Commands = append(inc.Commands, rec)
		p.pending = append(p.pending, message(rec.Subject, ev))
		log.Info("command queued", "command", rec.ID, "subject", rec.Subject, "flag", flag)
	}
	ids := make([]string, 0, len(inc.Commands))
	for _, c := range inc.Commands {
		ids = append(ids, c.ID)
	}
	ev, err := newEvent(inc.ID+"/opened", "io.rollguard.incident.opened.v1", d.Service, now, IncidentData{
		IncidentID: inc.ID, Event: "opened", State: inc.State, Service: d.Service, Guard: v.Guard,
		Deployment: d, Evidence: v.Signals, Commands: ids})
	if err == nil {
		p.pending = append(p.pending, message(p.o.Subjects.Incident(d.Service), ev))
	}
}

func message(subject string, ev Event) Message {
	b, _ := json.Marshal(ev) // an Event of marshalled data always encodes
	return Message{Subject: subject, ID: ev.ID, Data: b}
}

// flush publishes pending messages in order, stopping at the first failure
// so the order is kept; the rest are retried on the next tick.
func (p *Playbook) flush(ctx context.Context) {
	p.mu.Lock()
	pending := append([]Message(nil), p.pending...)
	p.mu.Unlock()
	sent := 0
	for _, m := range pending {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.o.Publisher.Publish(pctx, m)
		cancel()
		if err != nil {
			p.metrics.failures.Inc()
			p.o.Logger.Warn("publish failed; will retry", "id", m.ID, "subject", m.Subject, "error", err)
			break
		}
		p.metrics.published.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
		p.o.Logger.Info("published", "id", m.ID, "subject", m.Subject)
		p.markPublished(m.ID)
		sent++
	}
	p.mu.Lock()
	p.pending = p.pending[sent:]
	p.mu.Unlock()
}

func (p *Playbook) markPublished(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inc := range p.incidents {
		for i := range inc.Commands {
			if inc.Commands[i].ID == id {
				t := p.o.Now()
				inc.Commands[i].Published = &t
			}
		}
	}
}

func kindOf(subject, prefix string) string {
	rest := subject[len(prefix)+1:]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			return rest[:i]
		}
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

// Approve releases held commands: id is a command id, or an incident id to
// release every command it holds. It returns the ids of the released commands.
func (p *Playbook) Approve(id, by string) ([]string, error) {
	return nil, ErrNotFound
}
