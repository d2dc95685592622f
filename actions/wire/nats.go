package wire

import (
	"context"
	"fmt"
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

// JetStreamPublisher publishes into the stream and waits for the ack.
type JetStreamPublisher struct {
	JS jetstream.JetStream
}

// Publish sends msg with its id as Nats-Msg-Id.
func (p JetStreamPublisher) Publish(ctx context.Context, m Message) error {
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	msg.Header.Set("Content-Type", "application/cloudevents+json")
	for k, v := range m.Header {
		msg.Header.Set(k, v)
	}
	if _, err := p.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}
