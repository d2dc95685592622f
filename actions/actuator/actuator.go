// Package actuator is the SDK for writing actuators: programs that consume
// rollguard's signed commands from JetStream, act on them through a Driver
// (a flag service, a deploy tool, a pager) and report a result.
//
// It owns what every actuator must get right and no driver should repeat:
// verifying the signature over the exact bytes received, refusing expired
// and replayed commands, acting at most once per command id (claimed in
// JetStream KV), honouring dry runs, and publishing a result for every
// command it consumed — including the ones it refused. It knows nothing of
// detectors or incidents.
package actuator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/actions/wire"
)

// Command is a verified, decoded command as a driver receives it.
type Command struct {
	// Subject is the NATS subject it arrived on: <prefix>.cmd.<action>.<service>.
	Subject string
	Event   wire.Event
	Data    wire.CommandData
	// Raw is the exact CloudEvent JSON that was signed.
	Raw []byte
	// Seq is the message's sequence in the stream.
	Seq uint64
}

// Driver carries out a command. A non-nil error means the action failed; it
// is reported as failed with the error text as detail. Otherwise detail says
// what was done.
type Driver interface {
	Name() string
	Act(ctx context.Context, c Command) (detail string, err error)
}

// Defaults of Options.
const (
	DefaultStream     = "ROLLGUARD"
	DefaultPrefix     = "rollguard"
	DefaultBucket     = "ROLLGUARD_ACTUATOR"
	DefaultAckWait    = 30 * time.Second
	DefaultActTimeout = 5 * time.Minute
	// DefaultProgressEvery is the in_progress cadence of a long action.
	DefaultProgressEvery = 20 * time.Second
)

// Options are an actuator's dependencies and settings.
type Options struct {
	JS jetstream.JetStream
	// Stream holds the commands (default ROLLGUARD).
	Stream string
	// Subjects gives the subject prefix (default rollguard).
	Subjects wire.Subjects
	// Durable names the JetStream consumer; required. Actuators sharing it
	// share the work and the idempotency records.
	Durable string
	// Actions to consume (default flag_kill, rollback and data_audit).
	Actions []string
	// Services to consume (default all).
	Services []string
	// Verifier is required: an actuator never acts on an unverified command.
	Verifier *wire.Verifier
	// Signer signs the results and keys their Nats-Msg-Id, so rollguard
	// can trust them (playbook.signing.result_keys) and nobody can
	// pre-empt them. Nil: a key made for this process, logged at start,
	// which rollguard trusts only if it checks no result key.
	Signer *wire.Signer
	// Name is the actuator's name in results (default Durable).
	Name string
	// Bucket is the KV bucket of idempotency records (default ROLLGUARD_ACTUATOR).
	Bucket string
	Logger hclog.Logger
	// Registerer takes the actuator's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	Now        func() time.Time
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 30s); an action in progress extends it.
	AckWait time.Duration
	// ActTimeout bounds one call of the driver (default 5m).
	ActTimeout time.Duration
	// ProgressEvery is how often an in_progress result tells rollguard the
	// driver is still at work (default 20s, well within rollguard's default
	// 1m ack_timeout; a quick action sends none); negative sends none.
	ProgressEvery time.Duration
}

func (o *Options) setDefaults() error {
	if o.JS == nil {
		return errors.New("actuator: no JetStream context")
	}
	if o.Durable == "" {
		return errors.New("actuator: a durable consumer name is required")
	}
	if strings.ContainsAny(o.Durable, ".*> \t\r\n") {
		return fmt.Errorf("actuator: durable name %q may not contain '.', '*', '>' or whitespace", o.Durable)
	}
	if o.Verifier == nil {
		return errors.New("actuator: a verifier is required: an actuator must verify commands")
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Subjects.Prefix == "" {
		o.Subjects.Prefix = DefaultPrefix
	}
	if len(o.Actions) == 0 {
		o.Actions = []string{wire.ActionFlagKill, wire.ActionRollback, wire.ActionDataAudit}
	}
	for _, a := range o.Actions {
		if !validToken(a) {
			return fmt.Errorf("actuator: action %q is not a subject token", a)
		}
	}
	for _, s := range o.Services {
		if !validService(s) {
			return fmt.Errorf("actuator: service %q is not a valid subject part", s)
		}
	}
	if o.Name == "" {
		o.Name = o.Durable
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.ActTimeout <= 0 {
		o.ActTimeout = DefaultActTimeout
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	if o.Signer == nil {
		s, err := wire.NewEphemeralSigner()
		if err != nil {
			return fmt.Errorf("actuator: %w", err)
		}
		o.Signer = s
		o.Logger.Warn("results are signed with a key made for this process: rollguard believes them only while it checks no result key; "+
			"give the actuator a seed (rollguard actuate --sign.seed-file) and rollguard its public key", "key", s.PublicKey())
	}
	return nil
}

// filterSubjects lists one subject per (action, service), deduplicated,
// because JetStream refuses overlapping filters.
func (o *Options) filterSubjects() []string {
	services := o.Services
	if len(services) == 0 {
		services = []string{"*"}
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range o.Actions {
		for _, s := range services {
			subj := o.Subjects.Command(a, s)
			if !seen[subj] {
				seen[subj] = true
				out = append(out, subj)
			}
		}
	}
	return out
}

// Run consumes commands with a durable pull consumer until ctx ends, one at
// a time, and returns nil then. An action in progress when ctx ends is
// finished (within ActTimeout) and reported before Run returns. A stream
// that does not exist yet is waited for, so actuators may start before
// rollguard.
func Run(ctx context.Context, o Options, d Driver) error {
	if d == nil {
		return errors.New("actuator: no driver")
	}
	if err := o.setDefaults(); err != nil {
		return err
	}
	r := &runner{o: o, d: d, log: o.Logger.With("actuator", o.Name, "driver", d.Name()),
		pub: wire.JetStreamPublisher{JS: o.JS, Signer: o.Signer}, rejected: rejectedCounter(o.Registerer)}
	wait := 100 * time.Millisecond
	for {
		err := r.attachAndConsume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !retryable(err) {
			return err
		}
		r.log.Warn("cannot consume; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryable errors are the ones a later attempt can get past: the stream
// is not created yet, the server is away, the consumer was deleted.
func retryable(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
		return false
	}
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrMsgIteratorClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}

type runner struct {
	o        Options
	d        Driver
	log      hclog.Logger
	pub      wire.JetStreamPublisher
	kv       jetstream.KeyValue
	rejected *prometheus.CounterVec
}

func (r *runner) attachAndConsume(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if r.kv == nil {
		kv, err := r.o.JS.CreateKeyValue(sctx, jetstream.KeyValueConfig{
			Bucket:      r.o.Bucket,
			Description: "rollguard actuators: which commands were handled, and their results",
			History:     1,
			// Longer than any command lives: past that, a replay is
			// refused as expired anyway.
			TTL:     30 * 24 * time.Hour,
			Storage: jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = r.o.JS.KeyValue(sctx, r.o.Bucket)
		}
		if err != nil {
			return fmt.Errorf("idempotency bucket %s: %w", r.o.Bucket, err)
		}
		r.kv = kv
	}
	cons, err := r.o.JS.CreateOrUpdateConsumer(sctx, r.o.Stream, jetstream.ConsumerConfig{
		Durable:        r.o.Durable,
		Description:    "rollguard actuator " + r.o.Name,
		FilterSubjects: r.o.filterSubjects(),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        r.o.AckWait,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", r.o.Durable, r.o.Stream, err)
	}
	// One message in hand at a time: a buffered one would sit out its
	// ack wait behind a slow action. Short pull requests (heartbeats every
	// half of it) notice a stalled pull in seconds, not after the default
	// 30 s; one was seen after the consumer was deleted and created again.
	it, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.o.Durable, err)
	}
	defer it.Stop()
	r.log.Info("consuming commands", "stream", r.o.Stream, "durable", r.o.Durable, "subjects", r.o.filterSubjects())
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("consume %s: %w", r.o.Durable, err)
		}
		r.handle(msg)
	}
}

// handle takes one message from delivery to ack. It does not take the run
// context: once a command is in hand it is seen through, so that shutting
// down never leaves an action done but unreported.
func (r *runner) handle(msg jetstream.Msg) {
	ctx := context.Background()
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	h := msg.Headers()
	get := func(k string) string { return h.Get(k) }
	action, service := r.subjectParts(msg.Subject())
	log := r.log.With("subject", msg.Subject(), "seq", seq)

	if err := r.o.Verifier.Verify(msg.Data(), get); err != nil {
		// Nothing in an unverified message can be believed, its ids least
		// of all: the refusal is reported under the stream sequence, never
		// as the result of the command whose id the message claims.
		log.Warn("unverified message refused", "claimed_id", fmt.Sprintf("%.80q", get(jetstream.MsgIDHeader)), "error", err)
		r.reject(ctx, log, msg, ref{id: fmt.Sprintf("unverified/%d", seq), action: action, service: service, seq: seq},
			verifyReason(err), verifyDetail(err, get))
		return
	}
	c, err := DecodeCommand(msg.Subject(), msg.Data())
	if err != nil {
		r.reject(ctx, log, msg, ref{id: signedID(msg.Data(), seq), action: action, service: service, seq: seq}, RejectMalformed, "malformed command: "+err.Error())
		return
	}
	c.Seq = seq
	cr := ref{id: c.Event.ID, incident: c.Data.IncidentID, action: c.Data.Action, service: c.Data.Service, seq: seq}
	log = log.With("command", c.Event.ID)
	r.claimAndAct(ctx, log, msg, c, cr)
}

// signedID is the envelope id of a signed message that is not a valid
// command, to report it under: the signature vouches for the id. Without
// a readable one it is malformed/<stream sequence>.
func signedID(data []byte, seq uint64) string {
	var ev struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &ev) == nil && ev.ID != "" && validID(ev.ID) {
		return ev.ID
	}
	return fmt.Sprintf("malformed/%d", seq)
}

// ref is what a result refers to.
type ref struct {
	id, incident, action, service string
	seq                           uint64
}

func (r *runner) subjectParts(subject string) (action, service string) {
	rest, ok := strings.CutPrefix(subject, r.o.Subjects.Prefix+".cmd.")
	if !ok {
		return "unknown", "unknown"
	}
	action, service, ok = strings.Cut(rest, ".")
	if !ok || action == "" || service == "" {
		return "unknown", "unknown"
	}
	return action, service
}

// Reasons a command is refused, as rollguard_actuator_commands_rejected_total
// labels them.
const (
	RejectUnsigned     = "unsigned"
	RejectBadSignature = "bad_signature"
	RejectUntrustedKey = "untrusted_key"
	RejectMalformed    = "malformed"
	RejectExpired      = "expired"
	RejectReplayed     = "replayed"
)

func verifyReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrUnsigned):
		return RejectUnsigned
	case errors.Is(err, wire.ErrUnknownKey):
		return RejectUntrustedKey
	}
	return RejectBadSignature
}

// rejectedCounter is the counter of refused commands, registered on reg
// (or the one already there, for a second Run on one registry).
func rejectedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rollguard_actuator_commands_rejected_total",
		Help: "Messages on the command subjects an actuator refused, by reason: unsigned, bad_signature, untrusted_key, malformed, expired, replayed.",
	}, []string{"reason"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

func verifyDetail(err error, get func(string) string) string {
	switch {
	case errors.Is(err, wire.ErrUnsigned):
		return "unsigned: the command carries no " + wire.HeaderSignature + "/" + wire.HeaderKey + " headers"
	case errors.Is(err, wire.ErrUnknownKey):
		return fmt.Sprintf("signed by untrusted key %.80s", get(wire.HeaderKey))
	case errors.Is(err, wire.ErrBadSignature):
		return fmt.Sprintf("bad signature: the command's content does not match its signature by %.80s", get(wire.HeaderKey))
	}
	return "signature check failed: " + err.Error()
}

// record is the idempotency record of a command in KV.
type record struct {
	CommandID string    `json:"command_id"`
	Actuator  string    `json:"actuator"`
	StreamSeq uint64    `json:"stream_seq"`
	ClaimedAt time.Time `json:"claimed_at"`
	// ResultID and Result are set once the outcome is known.
	ResultID string           `json:"result_id,omitempty"`
	Result   *wire.ResultData `json:"result,omitempty"`
}

// recordKey is a valid KV key for any command id (ids hold '/' and any
// flag characters); the id itself is kept in the record. The durable name
// is part of it so that two different actuators both act on one command.
func (r *runner) recordKey(commandID string) string {
	sum := sha256.Sum256([]byte(r.o.Durable + "\x00" + commandID))
	return hex.EncodeToString(sum[:])
}

func (r *runner) claimAndAct(ctx context.Context, log hclog.Logger, msg jetstream.Msg, c Command, cr ref) {
	key := r.recordKey(cr.id)
	now := r.o.Now()
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	// A command handled before is never acted on again, expired or not.
	if e, err := r.kv.Get(kctx, key); err == nil {
		r.handled(ctx, log, msg, cr, e)
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		r.retryLater(log, msg, fmt.Errorf("read idempotency record: %w", err))
		return
	}
	if c.Data.ExpiresAt.Before(now) {
		r.reject(ctx, log, msg, cr, RejectExpired, "expired at "+c.Data.ExpiresAt.UTC().Format(time.RFC3339))
		return
	}
	rec := record{CommandID: cr.id, Actuator: r.o.Name, StreamSeq: cr.seq, ClaimedAt: now.UTC()}
	b, _ := json.Marshal(rec) // plain data always encodes
	rev, err := r.kv.Create(kctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another message with this command id claimed it first.
		if e, gerr := r.kv.Get(kctx, key); gerr == nil {
			r.handled(ctx, log, msg, cr, e)
			return
		}
	}
	if err != nil {
		r.retryLater(log, msg, fmt.Errorf("claim command: %w", err))
		return
	}

	var res wire.ResultData
	if c.Data.DryRun {
		res = r.newResult(cr, wire.ResultOK, "dry run: not acted")
		res.DryRun = true
	} else {
		status, detail := r.act(ctx, log, msg, c, cr)
		res = r.newResult(cr, status, detail)
	}
	rec.ResultID, rec.Result = resultID(cr.id, r.o.Name), &res
	b, _ = json.Marshal(rec)
	uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
	defer ucancel()
	if _, err := r.kv.Update(uctx, key, b, rev); err != nil {
		// The result still goes out; a redelivery would then find the
		// claim without a result and report the outcome as unknown.
		log.Error("store result", "error", err)
	}
	r.finish(ctx, log, msg, rec.ResultID, res)
}

// act calls the driver with a timeout, telling JetStream the message is in
// progress so it is not redelivered meanwhile, and rollguard every
// ProgressEvery that the action is under way (in_progress results), so that
// a long action (a redeploy) does not run into its ack_timeout.
func (r *runner) act(pctx context.Context, log hclog.Logger, msg jetstream.Msg, c Command, cr ref) (status, detail string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.ActTimeout)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(max(r.o.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	if r.o.ProgressEvery > 0 {
		wg.Go(func() {
			t := time.NewTicker(r.o.ProgressEvery)
			defer t.Stop()
			for n := 1; ; n++ {
				select {
				case <-done:
					return
				case <-t.C:
				}
				res := r.newResult(cr, wire.ResultInProgress, "acting")
				id := fmt.Sprintf("%s/progress/%s/%d", cr.id, r.o.Name, n)
				if err := r.publish(pctx, id, res); err != nil {
					log.Warn("progress not reported", "error", err)
				}
			}
		})
	}
	detail, err := r.d.Act(ctx, c)
	close(done)
	wg.Wait()
	if err != nil {
		return wire.ResultFailed, err.Error()
	}
	return wire.ResultOK, detail
}

// handled deals with a command whose id has a record: the same stream
// message again is a redelivery (report the stored outcome), another
// message is a replay (refuse it).
func (r *runner) handled(ctx context.Context, log hclog.Logger, msg jetstream.Msg, cr ref, e jetstream.KeyValueEntry) {
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.CommandID != cr.id {
		r.retryLater(log, msg, fmt.Errorf("idempotency record of %s is unreadable", cr.id))
		return
	}
	if rec.StreamSeq != cr.seq {
		at := rec.ClaimedAt
		if rec.Result != nil {
			at = rec.Result.At
		}
		r.reject(ctx, log, msg, cr, RejectReplayed, fmt.Sprintf("replayed: command %s was already handled at %s", cr.id, at.UTC().Format(time.RFC3339)))
		return
	}
	if rec.Result != nil {
		log.Info("redelivered command: reporting the stored result again", "status", rec.Result.Status)
		r.finish(ctx, log, msg, rec.ResultID, *rec.Result)
		return
	}
	// Claimed, no outcome: an actuator is still acting on it, or stopped
	// while it did. Only once it cannot be acting any more is the outcome
	// declared unknown; acting again could do the action twice.
	if r.o.Now().Before(rec.ClaimedAt.Add(r.o.ActTimeout + r.o.AckWait)) {
		log.Info("command is being acted on; checking again later")
		_ = msg.NakWithDelay(r.o.AckWait)
		return
	}
	res := r.newResult(cr, wire.ResultFailed, fmt.Sprintf(
		"outcome unknown: the actuator stopped while acting on it (claimed at %s); check by hand",
		rec.ClaimedAt.UTC().Format(time.RFC3339)))
	rec.ResultID, rec.Result = resultID(cr.id, r.o.Name), &res
	b, _ := json.Marshal(rec)
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.kv.Update(uctx, e.Key(), b, e.Revision()); err != nil {
		r.retryLater(log, msg, fmt.Errorf("store result: %w", err))
		return
	}
	r.finish(ctx, log, msg, rec.ResultID, res)
}

func (r *runner) newResult(cr ref, status, detail string) wire.ResultData {
	return wire.ResultData{CommandID: cr.id, IncidentID: cr.incident, Action: cr.action, Service: cr.service,
		Status: status, Detail: detail, Actuator: r.o.Name, At: r.o.Now().UTC()}
}

// resultID is the id (and Nats-Msg-Id) of the result of a command.
func resultID(commandID, actuator string) string { return commandID + "/result/" + actuator }

// reject reports a refused command. Its result id names the stream message:
// a refused replay must not be deduplicated against the result of the
// command it copies, and a refused forgery must not take the id the
// genuine command's result will need.
func (r *runner) reject(ctx context.Context, log hclog.Logger, msg jetstream.Msg, cr ref, reason, detail string) {
	r.rejected.WithLabelValues(reason).Inc()
	res := r.newResult(cr, wire.ResultRejected, detail)
	r.finish(ctx, log, msg, fmt.Sprintf("%s/rejected/%d", resultID(cr.id, r.o.Name), cr.seq), res)
}

// finish publishes the result and acks the message; a result that cannot
// be published leaves the message to be redelivered.
func (r *runner) finish(ctx context.Context, log hclog.Logger, msg jetstream.Msg, id string, res wire.ResultData) {
	log = log.With("status", res.Status, "detail", res.Detail)
	if err := r.publish(ctx, id, res); errors.Is(err, wire.ErrPreempted) {
		// Someone holding this actuator's seed (or its leaked result id)
		// published first; another try would meet the same message.
		log.Error("result pre-empted: the stream holds another message under its id; rollguard will not see this one", "error", err)
	} else if err != nil {
		r.retryLater(log, msg, err)
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack", "error", err)
	}
	switch res.Status {
	case wire.ResultOK:
		log.Info("command handled")
	case wire.ResultFailed:
		log.Error("command failed")
	default:
		log.Warn("command rejected")
	}
}

func (r *runner) retryLater(log hclog.Logger, msg jetstream.Msg, err error) {
	log.Error("command left for redelivery", "error", err)
	_ = msg.NakWithDelay(time.Second)
}

// publish sends a result, retrying briefly: results are deduplicated by
// id, so a retry that reaches the stream twice stores it once.
func (r *runner) publish(ctx context.Context, id string, res wire.ResultData) error {
	ev, err := wire.NewEvent(id, wire.ResultType(res.Action), res.Service, res.At, res)
	if err != nil {
		return fmt.Errorf("encode result %s: %w", id, err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode result %s: %w", id, err)
	}
	m := wire.Message{Subject: r.o.Subjects.Result(res.Action, res.Service), ID: id, Data: b}
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = r.pub.Publish(pctx, m)
		cancel()
		if err == nil || attempt == 5 || errors.Is(err, wire.ErrPreempted) {
			break
		}
		time.Sleep(wait)
		wait *= 2
	}
	if err != nil {
		return fmt.Errorf("publish result %s: %w", id, err)
	}
	return nil
}
