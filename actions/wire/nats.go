package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is one event ready for the wire.
type Message struct {
	Subject string            `json:"subject"`
	ID      string            `json:"id"`
	Data    []byte            `json:"data"`
	Header  map[string]string `json:"header,omitempty"` // besides Nats-Msg-Id and Content-Type
}

// Subjects builds the NATS subjects of the external contract.
type Subjects struct{ Prefix string }

// Command is rollguard.cmd.<action>.<service>.
func (s Subjects) Command(action, service string) string {
	return fmt.Sprintf("%s.cmd.%s.%s", s.Prefix, action, service)
}

// Incident is rollguard.incident.<service>.
func (s Subjects) Incident(service string) string {
	return fmt.Sprintf("%s.incident.%s", s.Prefix, service)
}

// Result is rollguard.result.<action>.<service>.
func (s Subjects) Result(action, service string) string {
	return fmt.Sprintf("%s.result.%s.%s", s.Prefix, action, service)
}

// Results matches every result.
func (s Subjects) Results() string { return s.Prefix + ".result.>" }

// Status is rollguard.status.<service>.
func (s Subjects) Status(service string) string {
	return fmt.Sprintf("%s.status.%s", s.Prefix, service)
}

// Stream lists the subjects the JetStream stream holds.
func (s Subjects) Stream() []string {
	return []string{s.Prefix + ".cmd.>", s.Prefix + ".result.>", s.Prefix + ".status.>", s.Prefix + ".incident.>"}
}

// EnsureStream creates or updates the stream that holds commands, results,
// status updates and incident events, so a subscriber that was down catches up.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, subj Subjects) (jetstream.Stream, error) {
	return EnsureStreamReplicated(ctx, js, name, subj, 1)
}

// EnsureStreamReplicated is EnsureStream with the stream kept on replicas
// servers (3 on a three-node cluster, so losing one loses nothing).
func EnsureStreamReplicated(ctx context.Context, js jetstream.JetStream, name string, subj Subjects, replicas int) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Replicas:    replicas,
		Name:        name,
		Description: "rollguard commands, results, status updates and incident events",
		Subjects:    subj.Stream(),
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		// A command id must stay deduplicated for as long as an incident can
		// plausibly be retried or resumed by another replica.
		Duplicates: 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return st, nil
}

// ErrPreempted is returned by Publish when JetStream already holds a
// different message under the same Nats-Msg-Id: whoever published it
// first made JetStream drop ours as a duplicate. The message can never be
// stored under its id; retrying does not help.
var ErrPreempted = errors.New("wire: pre-empted: the stream holds a different message with this id")

// JetStreamPublisher publishes into the stream and waits for the ack.
type JetStreamPublisher struct {
	JS jetstream.JetStream
	// Signer, when set, signs every message not signed yet and keys its
	// Nats-Msg-Id (Signer.MsgID), so that nobody without the seed can
	// pre-empt it. Without one the id is sent as it is.
	Signer *Signer
}

// Publish sends m with its Nats-Msg-Id and waits for JetStream to store
// it. When JetStream answers that the id is a duplicate, the stored
// message is fetched and compared with m: a message on the same subject,
// signed by this publisher's key, with the same bytes or the same envelope
// id (an earlier publish before a crash, or by a replica sharing the
// seed), is success; anything else returns an error wrapping ErrPreempted.
func (p JetStreamPublisher) Publish(ctx context.Context, m Message) error {
	msgID := m.ID
	if p.Signer != nil {
		if m.Header[HeaderSignature] == "" {
			m.Header = maps.Clone(m.Header)
			if err := p.Signer.Sign(&m); err != nil {
				return err
			}
		}
		msgID = p.Signer.MsgID(m.ID)
	}
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	msg.Header.Set("Content-Type", "application/cloudevents+json")
	for k, v := range m.Header {
		msg.Header.Set(k, v)
	}
	ack, err := p.JS.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	if !ack.Duplicate {
		return nil
	}
	return p.checkDuplicate(ctx, m, ack)
}

// checkDuplicate tells an earlier publish of m from a pre-emption.
func (p JetStreamPublisher) checkDuplicate(ctx context.Context, m Message, ack *jetstream.PubAck) error {
	st, err := p.JS.Stream(ctx, ack.Stream)
	if err != nil {
		return fmt.Errorf("publish %s: duplicate of stream message %d, which cannot be read: %w", m.ID, ack.Sequence, err)
	}
	stored, err := st.GetMsg(ctx, ack.Sequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Deleted within the duplicate window: nothing says it was ours.
		return fmt.Errorf("%w: %s on %s: stream message %d is gone", ErrPreempted, m.ID, m.Subject, ack.Sequence)
	}
	if err != nil {
		return fmt.Errorf("publish %s: duplicate of stream message %d, which cannot be read: %w", m.ID, ack.Sequence, err)
	}
	if p.earlier(stored, m) {
		return nil
	}
	return fmt.Errorf("%w: %s on %s: stream message %d on %s (key %.60q) came first", ErrPreempted,
		m.ID, m.Subject, ack.Sequence, stored.Subject, stored.Header.Get(HeaderKey))
}

// earlier reports whether stored is m as published before. With a signer
// it must carry this signer's valid signature, on the same subject, and be
// the same bytes or — after a restart that built the message again with a
// later time — have the same envelope id. (The same bytes signed by
// another key are junk to every receiver that checks signatures.) Without
// a signer only the same bytes under the same signature header count.
func (p JetStreamPublisher) earlier(stored *jetstream.RawStreamMsg, m Message) bool {
	if stored.Subject != m.Subject {
		return false
	}
	if p.Signer == nil {
		return bytes.Equal(stored.Data, m.Data) && stored.Header.Get(HeaderSignature) == m.Header[HeaderSignature]
	}
	if !p.Signer.Signs(stored.Data, stored.Header.Get) {
		return false
	}
	if bytes.Equal(stored.Data, m.Data) {
		return true
	}
	var ev struct {
		ID string `json:"id"`
	}
	return json.Unmarshal(stored.Data, &ev) == nil && ev.ID == m.ID
}
