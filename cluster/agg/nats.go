package agg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/detector"
)

// MaxAge is how long the stream keeps an aggregate: a central that was away
// longer has lost the ticks in between, which its no_data handling covers.
const MaxAge = 10 * time.Minute

// Subject is <prefix>.agg.<guard>.
func Subject(prefix, guard string) string { return prefix + ".agg." + guard }

// Subjects matches every guard's aggregates.
func Subjects(prefix string) string { return prefix + ".agg.>" }

// EnsureStream creates or updates the stream of aggregates: file storage,
// kept MaxAge, and deduplicated by message id over the same span; replicas
// (optional, default 1) is how many servers keep it (3 on a three-node cluster).
func EnsureStream(ctx context.Context, js jetstream.JetStream, name, prefix string, replicas ...int) (jetstream.Stream, error) {
	r := 1
	if len(replicas) > 0 && replicas[0] > 0 {
		r = replicas[0]
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Replicas:    r,
		Name:        name,
		Description: "rollguard: per-tick partial aggregates from sidecars",
		Subjects:    []string{Subjects(prefix)},
		Storage:     jetstream.FileStorage,
		MaxAge:      MaxAge,
		Duplicates:  MaxAge,
		MaxMsgSize:  MaxMessageBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return st, nil
}

// Message is one guard's encoded aggregates of one tick, from one sidecar.
type Message struct {
	// Sidecar is the publishing sidecar's id.
	Sidecar string
	// At is the tick.
	At time.Time
	// Data is Encode's output.
	Data []byte
}

// ID is the message's Nats-Msg-Id, <sidecar>/<guard>/<tick unix ms>: a
// retried publish of the same tick is stored once.
func (m Message) ID(guard string) string {
	return fmt.Sprintf("%s/%s/%d", m.Sidecar, guard, m.At.UnixMilli())
}

// Publish sends m on <prefix>.agg.<guard> and waits for the stream's ack.
func Publish(ctx context.Context, js jetstream.JetStream, prefix, guard string, m Message) error {
	msg := nats.NewMsg(Subject(prefix, guard))
	msg.Data = m.Data
	// The id is the only header: the payload's magic and version byte say
	// what it is, and a Content-Type would add a third to a typical message.
	msg.Header.Set(jetstream.MsgIDHeader, m.ID(guard))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return nil
}

// Consume hands every guard's aggregates from the stream to appendFn,
// through the durable consumer durable, and acknowledges each message once
// appended: a message appendFn fails on is delivered again, one that does
// not decode, or whose guard is not its subject's, is reported to onError
// and dropped. It returns when ctx ends.
func Consume(ctx context.Context, js jetstream.JetStream, stream, durable, prefix string,
	appendFn func([]detector.Aggregate) error, onError func(error)) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "rollguard: sidecars' aggregates into the engine",
		FilterSubject: Subjects(prefix),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	})
	if err != nil {
		return fmt.Errorf("aggregates consumer: %w", err)
	}
	subjectPrefix := prefix + ".agg."
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		guard, _, aggs, err := Decode(msg.Data())
		if err == nil && strings.TrimPrefix(msg.Subject(), subjectPrefix) != guard {
			err = fmt.Errorf("%w: guard %q on subject %s", ErrMalformed, guard, msg.Subject())
		}
		if err != nil {
			onError(fmt.Errorf("aggregates on %s dropped: %w", msg.Subject(), err))
			_ = msg.Term()
			return
		}
		if err := appendFn(aggs); err != nil {
			onError(fmt.Errorf("aggregates on %s: %w", msg.Subject(), err))
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { onError(err) }))
	if err != nil {
		return fmt.Errorf("aggregates consumer: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	select { // the callback in flight finishes before Consume returns
	case <-cc.Closed():
	case <-time.After(10 * time.Second):
	}
	return nil
}
