// Package notify delivers rollguard's incident status updates and incident
// events to where people read them (a webhook, Slack, PagerDuty,
// Alertmanager). It is a subscriber of the external contract only: a
// durable JetStream consumer of <prefix>.status.<service> and
// <prefix>.incident.<service>, so a notifier that was down catches up.
//
// It owns delivery: verifying that rollguard signed a message, handing it to
// a Driver in stream order, acking only once the endpoint accepted it, and
// not posting an event twice (a record per event id in JetStream KV,
// written after the endpoint accepted it; PagerDuty's dedup_key and
// Alertmanager's alert identity cover the gap between the two). It renders
// no status text and derives no state: the texts and states are the ones
// rollguard published.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/actions/wire"
)

// Kinds of notification.
const (
	KindStatus   = "status"
	KindIncident = "incident"
)

// Notification is one verified status update or incident event.
type Notification struct {
	// Subject is the NATS subject it arrived on.
	Subject string
	// Kind is KindStatus or KindIncident; exactly one of Status and
	// Incident is set accordingly.
	Kind     string
	Event    wire.Event
	Status   *wire.StatusData
	Incident *wire.IncidentData
	// Raw is the exact CloudEvent JSON rollguard signed.
	Raw []byte
}

// IncidentID is the incident the notification is about.
func (n Notification) IncidentID() string {
	if n.Status != nil {
		return n.Status.IncidentID
	}
	if n.Incident != nil {
		return n.Incident.IncidentID
	}
	return ""
}

// Driver delivers a notification to one kind of endpoint. Notify returns
// nil once the endpoint accepted it, or when the driver has nothing to send
// for it (Slack posts status updates only); an error leaves the message to
// be delivered again. An error wrapping ErrPermanent (a 4xx other than
// 429) can never succeed on a retry: that message is logged and skipped, so
// one bad message does not hold up every later one.
type Driver interface {
	Name() string
	Notify(ctx context.Context, n Notification) error
}

// ErrPermanent marks a delivery that no retry can make succeed.
var ErrPermanent = errors.New("notify: permanent failure")

// Defaults of Options.
const (
	DefaultStream  = "ROLLGUARD"
	DefaultPrefix  = "rollguard"
	DefaultBucket  = "ROLLGUARD_NOTIFY"
	DefaultAckWait = 2 * time.Minute
)

// Options are a notifier's dependencies and settings.
type Options struct {
	JS jetstream.JetStream
	// Stream holds the status updates and incident events (default ROLLGUARD).
	Stream string
	// Subjects gives the subject prefix (default rollguard).
	Subjects wire.Subjects
	// Durable names the JetStream consumer; required. Notifiers sharing it
	// share the work and the delivery records.
	Durable string
	// Services to notify about (default all).
	Services []string
	// DeliverNew makes a consumer created now start at the next message
	// instead of the stream's history. A consumer that exists keeps its place.
	DeliverNew bool
	// Verifier is required: only what rollguard signed is delivered.
	Verifier *wire.Verifier
	// Bucket is the KV bucket of delivery records (default ROLLGUARD_NOTIFY).
	Bucket string
	Logger hclog.Logger
	// Registerer takes the notifier's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 2m); a delivery in progress extends it.
	AckWait time.Duration
	// Timeout bounds one call of the driver, its retries included (default 1m).
	Timeout time.Duration
}

func (o *Options) setDefaults() error {
	if o.JS == nil {
		return errors.New("notify: no JetStream context")
	}
	if o.Durable == "" {
		return errors.New("notify: a durable consumer name is required")
	}
	if strings.ContainsAny(o.Durable, ".*> \t\r\n") {
		return fmt.Errorf("notify: durable name %q may not contain '.', '*', '>' or whitespace", o.Durable)
	}
	if o.Verifier == nil {
		return errors.New("notify: a verifier is required: only what rollguard signed is delivered")
	}
	for _, s := range o.Services {
		if s == "" || strings.ContainsAny(s, ".*> \t\r\n") {
			return fmt.Errorf("notify: service %q is not a valid subject token", s)
		}
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Subjects.Prefix == "" {
		o.Subjects.Prefix = DefaultPrefix
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	return nil
}

// FilterSubjects are the subjects consumed: status and incident, per service.
func (o *Options) FilterSubjects() []string {
	services := o.Services
	if len(services) == 0 {
		services = []string{"*"}
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range services {
		for _, subj := range []string{o.Subjects.Status(s), o.Subjects.Incident(s)} {
			if !seen[subj] {
				seen[subj] = true
				out = append(out, subj)
			}
		}
	}
	return out
}

// Runner is a driver that has work of its own besides answering
// notifications (Alertmanager's re-sends); Run is started with the notifier
// and must return when ctx ends.
type Runner interface {
	Run(ctx context.Context)
}

// Run consumes status updates and incident events until ctx ends and
// returns nil then. Messages are handed to the driver one at a time in
// stream order (a trigger before its resolve), including redeliveries. A
// stream that does not exist yet is waited for.
func Run(ctx context.Context, o Options, d Driver) error {
	if d == nil {
		return errors.New("notify: no driver")
	}
	if err := o.setDefaults(); err != nil {
		return err
	}
	n := &notifier{o: o, d: d, log: o.Logger.With("durable", o.Durable, "driver", d.Name()), m: newMetrics(o.Registerer)}
	if r, ok := d.(Runner); ok {
		done := make(chan struct{})
		rctx, cancel := context.WithCancel(ctx)
		go func() { defer close(done); r.Run(rctx) }()
		defer func() { cancel(); <-done }()
	}
	wait := 100 * time.Millisecond
	for {
		err := n.attachAndConsume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
			return err
		}
		n.log.Warn("cannot consume; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

type notifier struct {
	o   Options
	d   Driver
	log hclog.Logger
	kv  jetstream.KeyValue
	m   *metrics
}

// Reasons an event is not posted, as rollguard_notify_skipped_total labels them.
const (
	SkipUnsigned         = "unsigned"
	SkipUntrustedKey     = "untrusted_key"
	SkipBadSignature     = "bad_signature"
	SkipMalformed        = "malformed"
	SkipRefused          = "refused"
	SkipAlreadyDelivered = "already_delivered"
)

// metrics are the notifier's counters.
type metrics struct {
	delivered prometheus.Counter
	skipped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_notify_delivered_total",
			Help: "Status updates and incident events done with: accepted by the endpoint, or nothing for this driver to post.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_notify_skipped_total",
			Help: "Status updates and incident events not posted, by reason: unsigned, untrusted_key, bad_signature, malformed, refused (a 4xx), already_delivered.",
		}, []string{"reason"}),
	}
	if reg != nil {
		m.delivered = register(reg, m.delivered)
		m.skipped = register(reg, m.skipped)
	}
	return m
}

// register registers c, or returns the collector already there (a second
// Run on one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func verifyReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrUnsigned):
		return SkipUnsigned
	case errors.Is(err, wire.ErrUnknownKey):
		return SkipUntrustedKey
	}
	return SkipBadSignature
}

func (n *notifier) attachAndConsume(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n.kv == nil {
		kv, err := n.o.JS.CreateKeyValue(sctx, jetstream.KeyValueConfig{
			Bucket:      n.o.Bucket,
			Description: "rollguard notifiers: which status updates and incident events were delivered",
			History:     1,
			// As long as the stream keeps the events (30 days).
			TTL:     30 * 24 * time.Hour,
			Storage: jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = n.o.JS.KeyValue(sctx, n.o.Bucket)
		}
		if err != nil {
			return fmt.Errorf("delivery records bucket %s: %w", n.o.Bucket, err)
		}
		n.kv = kv
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        n.o.Durable,
		Description:    "rollguard notifier " + n.o.Durable + " (" + n.d.Name() + ")",
		FilterSubjects: n.o.FilterSubjects(),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        n.o.AckWait,
		// One message out at a time keeps the order: a redelivered trigger
		// is never overtaken by its resolve.
		MaxAckPending: 1,
	}
	if n.o.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	// A consumer that exists keeps its deliver policy (JetStream refuses to
	// change it): --deliver=new only applies to a new one.
	if c, err := n.o.JS.Consumer(sctx, n.o.Stream, n.o.Durable); err == nil {
		cfg.DeliverPolicy = c.CachedInfo().Config.DeliverPolicy
	}
	cons, err := n.o.JS.CreateOrUpdateConsumer(sctx, n.o.Stream, cfg)
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", n.o.Durable, n.o.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("consume %s: %w", n.o.Durable, err)
	}
	defer it.Stop()
	n.log.Info("consuming status updates and incident events", "stream", n.o.Stream, "subjects", cfg.FilterSubjects)
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("consume %s: %w", n.o.Durable, err)
		}
		n.handle(msg)
	}
}

// handle takes one message from delivery to ack. Once in hand a message is
// seen through, whatever the run context does.
func (n *notifier) handle(msg jetstream.Msg) {
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	log := n.log.With("subject", msg.Subject(), "seq", seq)
	h := msg.Headers()
	if err := n.o.Verifier.Verify(msg.Data(), h.Get); err != nil {
		// Never delivered: a notification is only as good as its sender.
		log.Warn("unverified message skipped", "error", err)
		n.m.skipped.WithLabelValues(verifyReason(err)).Inc()
		_ = msg.Term()
		return
	}
	nt, err := n.decode(msg.Subject(), msg.Data())
	if err != nil {
		log.Warn("malformed message skipped", "error", err)
		n.m.skipped.WithLabelValues(SkipMalformed).Inc()
		_ = msg.Term()
		return
	}
	log = log.With("event", nt.Event.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := n.recordKey(nt.Event.ID)
	if _, err := n.kv.Get(ctx, key); err == nil {
		log.Info("already delivered; not posting again")
		n.m.skipped.WithLabelValues(SkipAlreadyDelivered).Inc()
		_ = msg.Ack()
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		log.Error("read delivery record; left for redelivery", "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := n.deliver(msg, nt); err != nil {
		if errors.Is(err, ErrPermanent) {
			log.Error("endpoint refused the notification; skipped", "error", err)
			n.m.skipped.WithLabelValues(SkipRefused).Inc()
			_ = msg.Term()
			return
		}
		log.Error("not delivered; left for redelivery", "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	n.m.delivered.Inc()
	rec, _ := json.Marshal(struct {
		Event       string    `json:"event"`
		DeliveredAt time.Time `json:"delivered_at"`
	}{nt.Event.ID, time.Now().UTC()})
	if _, err := n.kv.Put(ctx, key, rec); err != nil {
		log.Warn("delivery not recorded: a redelivery would post again", "error", err)
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack", "error", err)
	}
	log.Debug("delivered")
}

// deliver calls the driver, telling JetStream the message is in progress
// meanwhile so that it is not redelivered to another notifier.
func (n *notifier) deliver(msg jetstream.Msg, nt Notification) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.o.Timeout)
	defer cancel()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(max(n.o.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	err := n.d.Notify(ctx, nt)
	close(done)
	<-stopped
	return err
}

func (n *notifier) decode(subject string, data []byte) (Notification, error) {
	nt := Notification{Subject: subject, Raw: data}
	if err := json.Unmarshal(data, &nt.Event); err != nil {
		return nt, fmt.Errorf("decode event: %w", err)
	}
	if nt.Event.ID == "" {
		return nt, errors.New("event has no id")
	}
	switch {
	case strings.HasPrefix(subject, n.o.Subjects.Prefix+".status."):
		nt.Kind = KindStatus
		nt.Status = new(wire.StatusData)
		if err := json.Unmarshal(nt.Event.Data, nt.Status); err != nil {
			return nt, fmt.Errorf("decode status update: %w", err)
		}
	case strings.HasPrefix(subject, n.o.Subjects.Prefix+".incident."):
		nt.Kind = KindIncident
		nt.Incident = new(wire.IncidentData)
		if err := json.Unmarshal(nt.Event.Data, nt.Incident); err != nil {
			return nt, fmt.Errorf("decode incident event: %w", err)
		}
	default:
		return nt, fmt.Errorf("subject %s is neither a status update nor an incident event", subject)
	}
	if nt.IncidentID() == "" {
		return nt, errors.New("no incident_id")
	}
	return nt, nil
}

// recordKey is a valid KV key for any event id; the durable name is part
// of it so that two notifiers (Slack and PagerDuty) each deliver an event.
func (n *notifier) recordKey(eventID string) string {
	sum := sha256.Sum256([]byte(n.o.Durable + "\x00" + eventID))
	return hex.EncodeToString(sum[:])
}
