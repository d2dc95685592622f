package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredResult is an actuator's result read again from the stream, with
// the time the stream stored it.
type StoredResult struct {
	ResultData
	Stored time.Time
}

// ResultReader reads again the results kept in the stream for services
// since a time, believing only those check accepts. The playbook uses it
// when it restores or adopts incidents, so that a result stored while no
// replica owned the guard (or before a restart) is not lost.
type ResultReader interface {
	Results(ctx context.Context, services []string, since time.Time, check ResultCheck) ([]StoredResult, error)
}

// ResultCheck decides whether a result message may be believed
// (Playbook.CheckResult).
type ResultCheck func(data []byte, header func(string) string) error

// StreamResults reads results from the JetStream stream through an
// ephemeral ordered consumer filtered on the services' result subjects.
type StreamResults struct {
	JS       jetstream.JetStream
	Stream   string
	Subjects Subjects
}

// rereadBatch is how many results one fetch asks for; rereadTimeout
// bounds a whole read.
const (
	rereadBatch   = 256
	rereadTimeout = 3 * time.Second
)

// Results returns the results stored for the services from since on, in
// stream order. A message that does not decode or that check refuses is
// skipped, as the results consumer terminates it.
func (s StreamResults) Results(ctx context.Context, services []string, since time.Time, check ResultCheck) ([]StoredResult, error) {
	if len(services) == 0 {
		return nil, nil
	}
	filters := make([]string, 0, len(services))
	for _, svc := range services {
		filters = append(filters, s.Subjects.Result("*", svc))
	}
	var out []StoredResult
	err := s.read(ctx, filters, since, func(msg jetstream.Msg, md *jetstream.MsgMetadata) {
		if r, err := decodeResult(msg.Data(), msg.Headers().Get, check); err == nil {
			out = append(out, StoredResult{ResultData: r, Stored: md.Timestamp})
		}
	})
	if err != nil {
		return out, fmt.Errorf("read stored results: %w", err)
	}
	return out, nil
}

// read hands each message stored on filters from since on to each, in
// stream order, through an ephemeral ordered consumer. It is bounded
// (rereadTimeout): a take-over runs on the leases' loop, which must go on
// renewing; what is not read in time still comes through the consumers.
func (s StreamResults) read(ctx context.Context, filters []string, since time.Time, each func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	ctx, cancel := context.WithTimeout(ctx, rereadTimeout)
	defer cancel()
	cons, err := s.JS.OrderedConsumer(ctx, s.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		InactiveThreshold: rereadTimeout, // the server drops it soon after
	})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.FetchNoWait(rereadBatch)
		if err != nil {
			return err
		}
		n, last := 0, false
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			last = md.NumPending == 0
			each(msg, md)
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 || last {
			return ctx.Err()
		}
	}
}

// decodeResult checks a result message (when check is not nil) and
// decodes its data; a result must name its command.
func decodeResult(data []byte, header func(string) string, check ResultCheck) (ResultData, error) {
	if check != nil {
		if err := check(data, header); err != nil {
			return ResultData{}, err
		}
	}
	var ev Event
	var r ResultData
	if err := json.Unmarshal(data, &ev); err != nil {
		return ResultData{}, fmt.Errorf("not a CloudEvent: %w", err)
	}
	if err := json.Unmarshal(ev.Data, &r); err != nil || r.CommandID == "" {
		return ResultData{}, fmt.Errorf("result %s has no valid data (command_id required): %v", ev.ID, err)
	}
	return r, nil
}
