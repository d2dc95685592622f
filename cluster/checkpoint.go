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
// first samples it sees. A deployment is saved when it opens and on every
// change (Changed), not only on the tick, so that an owner that dies a
// moment after a deployment opened leaves it behind; each service's stable
// version is kept too (under "stable.<service>"), for a takeover before
// any deployment opened.
//
// With each deployment go its tests' states (detector.TestState, under
// "tests.<service>"), saved at most once a minute: the replica that takes
// over goes on with the same evidence instead of spending α again.
type Checkpoints struct {
	kv     jetstream.KeyValue
	log    hclog.Logger
	wake   chan struct{}
	saveMu sync.Mutex // one save at a time, so an older one never lands last
	mu     sync.Mutex
	last   map[string]detector.Deployment // by service: what was last saved
	stable map[string]string              // by service: the stable version last saved
	// lastTests is when the tests were last saved (under saveMu).
	lastTests time.Time
}

// testsEvery is how often the tests' states are saved: each is a few kB a
// signal, and a minute of evidence lost on a takeover costs little.
const testsEvery = time.Minute

func testsKey(service string) string  { return "tests." + service }
func stableKey(service string) string { return "stable." + service }

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
	return &Checkpoints{kv: kv, log: o.Logger, wake: make(chan struct{}, 1),
		last: map[string]detector.Deployment{}, stable: map[string]string{}}, nil
}

// Source is what Run saves: the detector's deployments, tests and stable
// versions, of the services for which Keep is true (this replica owns a
// guard of them).
type Source struct {
	Deployments func() []detector.Deployment
	// Tests, when not nil, gives the deployments' tests to save with them.
	Tests func() []detector.TestState
	// Stable, when not nil, gives each service's stable version.
	Stable func() map[string]string
	Keep   func(service string) bool
}

// Changed asks Run to save now: a deployment opened, changed or ended. It
// never blocks (the detector calls it); changes that come while a save
// runs are saved by the next.
func (c *Checkpoints) Changed() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run saves the source's deployments and stable versions every interval
// and whenever Changed is called, until ctx ends. A save that fails is
// logged and tried again on the next tick or change; interval is read
// again after each tick, so that a reload takes effect.
func (c *Checkpoints) Run(ctx context.Context, interval func() time.Duration, src Source) error {
	save := func(ctx context.Context, tick bool) {
		sctx, cancel := context.WithTimeout(ctx, saveTimeout)
		defer cancel()
		c.saveMu.Lock()
		defer c.saveMu.Unlock()
		err := c.Save(sctx, src.Deployments(), src.Keep)
		if err == nil && src.Stable != nil {
			err = c.SaveStable(sctx, src.Stable(), src.Keep)
		}
		if err == nil && tick && src.Tests != nil && time.Since(c.lastTests) >= testsEvery {
			if err = c.SaveTests(sctx, src.Tests(), src.Keep); err == nil {
				c.lastTests = time.Now()
			}
		}
		if err != nil {
			c.log.Warn("deployments not checkpointed; will retry", "error", err)
		}
	}
	ticks := ticker.Start(ctx, interval, func(ctx context.Context) { save(ctx, true) })
	for {
		select {
		case <-ctx.Done():
			<-ticks
			return nil
		case <-c.wake:
			save(ctx, false)
		}
	}
}

// SaveStable stores the stable versions of the services for which keep is
// true, writing only what changed.
func (c *Checkpoints) SaveStable(ctx context.Context, stable map[string]string, keep func(service string) bool) error {
	for svc, v := range stable {
		c.mu.Lock()
		same := c.stable[svc] == v
		c.mu.Unlock()
		if same || v == "" || !keep(svc) {
			continue
		}
		if _, err := c.kv.Put(ctx, stableKey(svc), []byte(v)); err != nil {
			return fmt.Errorf("checkpoint the stable version of %s: %w", svc, err)
		}
		c.mu.Lock()
		c.stable[svc] = v
		c.mu.Unlock()
	}
	return nil
}

// Forget drops what this replica last saved of the service, so that its
// next save writes again: another replica may have written since (call it
// when this one takes a guard of the service over).
func (c *Checkpoints) Forget(service string) {
	c.mu.Lock()
	delete(c.last, service)
	delete(c.stable, service)
	c.mu.Unlock()
}

// Stable returns the service's last checkpointed stable version.
func (c *Checkpoints) Stable(ctx context.Context, service string) (string, bool) {
	e, err := c.kv.Get(ctx, stableKey(service))
	if err != nil || len(e.Value()) == 0 {
		return "", false
	}
	return string(e.Value()), true
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
