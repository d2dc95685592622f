package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/ticker"
)

// saveTimeout bounds one tick's saves; what did not land is saved on a
// later tick.
const saveTimeout = 5 * time.Second

// Checkpoints keep each service's deployment under way in JetStream KV, so
// that the replica that takes a guard over resumes the same deployment (its
// id, versions and start) instead of guessing the stable version from the
// first samples it sees.
//
// With each deployment go its tests' states (detector.TestState, under
// "tests.<service>"), saved at most once a minute: the replica that takes
// over goes on with the same evidence instead of spending α again.
type Checkpoints struct {
	kv        jetstream.KeyValue
	log       hclog.Logger
	mu        sync.Mutex
	last      map[string]detector.Deployment // by service: what was last saved
	lastTests time.Time
}

// testsEvery is how often the tests' states are saved: each is a few kB a
// signal, and a minute of evidence lost on a takeover costs little.
const testsEvery = time.Minute

func testsKey(service string) string { return "tests." + service }

// CheckpointOptions configure Checkpoints.
type CheckpointOptions struct {
	Bucket string
	// Replicas of the KV bucket: 3 on a three-node NATS cluster.
	Replicas int
	Logger   hclog.Logger
}

// NewCheckpoints creates or opens the bucket.
func NewCheckpoints(ctx context.Context, js jetstream.JetStream, o CheckpointOptions) (*Checkpoints, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "rollguard deployments under way, by service",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", o.Bucket, err)
	}
	return &Checkpoints{kv: kv, log: o.Logger, last: map[string]detector.Deployment{}}, nil
}

// Run saves, every interval until ctx ends, the deployments of the
// services for which keep is true (this replica owns a guard of them). A
// save that fails is logged and tried again on the next tick; interval is
// read again after each tick, so that a reload takes effect.
//
// tests, when not nil, gives the deployments' tests to save with them.
func (c *Checkpoints) Run(ctx context.Context, interval func() time.Duration,
	deployments func() []detector.Deployment, tests func() []detector.TestState, keep func(service string) bool) error {
	ticker.Run(ctx, interval, func(ctx context.Context) {
		sctx, cancel := context.WithTimeout(ctx, saveTimeout)
		err := c.Save(sctx, deployments(), keep)
		if err == nil && tests != nil && time.Since(c.lastTests) >= testsEvery {
			if err = c.SaveTests(sctx, tests(), keep); err == nil {
				c.lastTests = time.Now()
			}
		}
		cancel()
		if err != nil {
			c.log.Warn("deployments not checkpointed; will retry", "error", err)
		}
	})
	return nil
}

// SaveTests stores the tests of the services for which keep is true.
func (c *Checkpoints) SaveTests(ctx context.Context, states []detector.TestState, keep func(service string) bool) error {
	for _, st := range states {
		if !keep(st.Service) || len(st.Tests) == 0 {
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if _, err := c.kv.Put(ctx, testsKey(st.Service), b); err != nil {
			return fmt.Errorf("checkpoint tests of %s: %w", st.Service, err)
		}
	}
	return nil
}

// Tests returns the service's last checkpointed tests.
func (c *Checkpoints) Tests(ctx context.Context, service string) (detector.TestState, bool) {
	return getJSON[detector.TestState](ctx, c.kv, testsKey(service))
}

// getJSON reads the value under key, decoded; false when there is none or
// it does not decode.
func getJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, bool) {
	var v T
	e, err := kv.Get(ctx, key)
	if err != nil || json.Unmarshal(e.Value(), &v) != nil {
		var zero T
		return zero, false
	}
	return v, true
}

// Save stores the deployments of the services for which keep is true,
// writing only what changed; an ended deployment is stored too, so the
// next owner does not resume it.
func (c *Checkpoints) Save(ctx context.Context, deps []detector.Deployment, keep func(service string) bool) error {
	seen := map[string]bool{}
	for _, d := range deps {
		if !keep(d.Service) || seen[d.Service] {
			continue // the active deployment comes first; older ended ones are history
		}
		seen[d.Service] = true
		c.mu.Lock()
		same := reflect.DeepEqual(c.last[d.Service], d)
		c.mu.Unlock()
		if same {
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, err := c.kv.Put(ctx, d.Service, b); err != nil {
			return fmt.Errorf("checkpoint %s: %w", d.Service, err)
		}
		c.mu.Lock()
		c.last[d.Service] = d
		c.mu.Unlock()
	}
	return nil
}

// Deployment returns the service's last checkpointed deployment.
func (c *Checkpoints) Deployment(ctx context.Context, service string) (detector.Deployment, bool) {
	return getJSON[detector.Deployment](ctx, c.kv, service)
}
