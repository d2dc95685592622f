package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVStore keeps incidents in a JetStream KV bucket, one key per incident id,
// so a restarted rollguard (or another replica) continues them.
//
// Every write is a compare-and-set: an incident is updated on the revision
// this store last read or wrote for its key, and a new one is created only
// if its key does not exist. A write that finds another revision means
// another rollguard wrote the incident since (a replica that took the guard
// over): it fails with an error wrapping ErrFenced and nothing is written,
// so a deposed replica never overwrites its successor's record.
type KVStore struct {
	kv jetstream.KeyValue

	mu   sync.Mutex
	revs map[string]uint64 // incident id -> revision last read or written here
}

// ErrFenced is wrapped by a Put that lost its compare-and-set: the stored
// incident is not the one this store last saw. Do not retry it blindly:
// reload the incident, if this rollguard still acts for its guard.
var ErrFenced = errors.New("incident written by another rollguard since it was read here")

// NewKVStore creates or opens the bucket.
func NewKVStore(ctx context.Context, js jetstream.JetStream, bucket string) (*KVStore, error) {
	return NewKVStoreReplicated(ctx, js, bucket, 1)
}

// NewKVStoreReplicated is NewKVStore with the bucket kept on replicas servers.
func NewKVStoreReplicated(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*KVStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Replicas:    replicas,
		Bucket:      bucket,
		Description: "rollguard incidents",
		Storage:     jetstream.FileStorage,
		History:     1,
		TTL:         90 * 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("incident store %s: %w", bucket, err)
	}
	return &KVStore{kv: kv, revs: map[string]uint64{}}, nil
}

// Put saves an incident on the revision last seen here (a new incident
// only if its key is free); see ErrFenced.
func (s *KVStore) Put(ctx context.Context, inc *Incident) error {
	b, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", inc.ID, err)
	}
	s.mu.Lock()
	rev, seen := s.revs[inc.ID]
	s.mu.Unlock()
	var nrev uint64
	if seen {
		nrev, err = s.kv.Update(ctx, inc.ID, b, rev)
	} else {
		nrev, err = s.kv.Create(ctx, inc.ID, b)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("save incident %s: %w (%v)", inc.ID, ErrFenced, err)
	}
	if err != nil {
		return fmt.Errorf("save incident %s: %w", inc.ID, err)
	}
	s.mu.Lock()
	s.revs[inc.ID] = nrev
	s.mu.Unlock()
	return nil
}

// Load returns every stored incident (LoadOf every guard).
func (s *KVStore) Load(ctx context.Context) ([]Incident, error) {
	return s.LoadOf(ctx, func(string) bool { return true })
}

// LoadOf returns the stored incidents of the guards for which want is
// true, and from then on saves them on the revisions it read; the
// revisions it knows of other incidents are kept, so that adopting one
// guard never makes a stale save of another's pass. An entry that does
// not decode is skipped with its key in the error, after the others are
// returned.
func (s *KVStore) LoadOf(ctx context.Context, want func(guard string) bool) ([]Incident, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []Incident
	var errs []error
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load incident %s: %w", k, err)
		}
		var inc Incident
		if err := json.Unmarshal(e.Value(), &inc); err != nil {
			errs = append(errs, fmt.Errorf("incident %s does not decode: %w", k, err))
			continue
		}
		if !want(inc.Guard) {
			continue
		}
		s.mu.Lock()
		s.revs[k] = e.Revision()
		s.mu.Unlock()
		out = append(out, inc)
	}
	return out, errors.Join(errs...)
}

// ConsumeResults feeds actuators' results to handle through a durable
// JetStream consumer, so results published while rollguard was down are
// read when it is back. A message is acknowledged once handle returns nil;
// one that does not decode, or that check (when not nil) refuses, is
// terminated (it can never be read, or must not be believed).
func ConsumeResults(ctx context.Context, js jetstream.JetStream, stream, durable string, subj Subjects,
	check func(data []byte, header func(string) string) error,
	handle func(context.Context, ResultData) error, onError func(error)) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "rollguard playbook: actuator results",
		FilterSubject: subj.Results(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	})
	if err != nil {
		return fmt.Errorf("results consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		r, err := decodeResult(msg.Data(), msg.Headers().Get, check)
		if err != nil {
			onError(fmt.Errorf("result on %s ignored: %w", msg.Subject(), err))
			_ = msg.Term()
			return
		}
		if err := handle(ctx, r); err != nil {
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { onError(err) }))
	if err != nil {
		return fmt.Errorf("results consumer: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
