package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Leases keeps the leases of the guards this replica owns and takes the
// ones nobody holds: a guard is owned by the replica whose id is under its
// key; the owner renews it (compare-and-set on the revision) every third of
// the TTL, and when it dies the key expires and another replica takes it.
type Leases struct {
	kv  jetstream.KeyValue
	id  string
	ttl time.Duration
	log hclog.Logger

	mu     sync.Mutex
	guards []string
	owned  map[string]uint64 // guard -> revision of our lease
	// OnAcquire and OnRelease are called (outside the lock) when this
	// replica takes or loses a guard.
	onAcquire, onRelease func(guard string)
}

// LeaseOptions configure Leases.
type LeaseOptions struct {
	Bucket    string
	ReplicaID string
	TTL       time.Duration
	// Replicas of the KV bucket: 3 on a three-node NATS cluster.
	Replicas  int
	OnAcquire func(guard string)
	OnRelease func(guard string)
	Logger    hclog.Logger
}

// NewLeases creates or opens the lease bucket. Its TTL is the lease's: a
// key not renewed within it expires.
func NewLeases(ctx context.Context, js jetstream.JetStream, o LeaseOptions) (*Leases, error) {
	if o.ReplicaID == "" {
		return nil, errors.New("cluster: a replica id is required")
	}
	if o.TTL <= 0 {
		return nil, errors.New("cluster: the lease TTL must be > 0")
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "rollguard guard ownership leases",
		TTL:         o.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", o.Bucket, err)
	}
	nop := func(string) {}
	if o.OnAcquire == nil {
		o.OnAcquire = nop
	}
	if o.OnRelease == nil {
		o.OnRelease = nop
	}
	return &Leases{kv: kv, id: o.ReplicaID, ttl: o.TTL, log: o.Logger, owned: map[string]uint64{},
		onAcquire: o.OnAcquire, onRelease: o.OnRelease}, nil
}

// SetGuards sets the guards to hold leases for (a reload may change them);
// leases of guards no longer configured are released.
func (l *Leases) SetGuards(guards []string) {
	l.mu.Lock()
	l.guards = append([]string(nil), guards...)
	sort.Strings(l.guards)
	var gone []string
	for g := range l.owned {
		if !contains(l.guards, g) {
			gone = append(gone, g)
			delete(l.owned, g)
		}
	}
	l.mu.Unlock()
	for _, g := range gone {
		_ = l.kv.Delete(context.Background(), g)
		l.onRelease(g)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Owns reports whether this replica holds the guard's lease.
func (l *Leases) Owns(guard string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.owned[guard]
	return ok
}

// Owner returns the replica holding the guard's lease, if any.
func (l *Leases) Owner(ctx context.Context, guard string) (string, bool) {
	e, err := l.kv.Get(ctx, guard)
	if err != nil {
		return "", false
	}
	return string(e.Value()), true
}

// Run renews and takes leases every third of the TTL until ctx ends; then
// it gives up its leases so another replica takes them at once.
func (l *Leases) Run(ctx context.Context) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	l.round(ctx)
	for {
		select {
		case <-ctx.Done():
			l.releaseAll()
			return nil
		case <-t.C:
			l.round(ctx)
		}
	}
}

// round renews owned leases and tries to take free ones.
func (l *Leases) round(ctx context.Context) {
	l.mu.Lock()
	guards := append([]string(nil), l.guards...)
	l.mu.Unlock()
	for _, g := range guards {
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		l.step(rctx, g)
		cancel()
	}
}

func (l *Leases) step(ctx context.Context, g string) {
	l.mu.Lock()
	rev, owned := l.owned[g]
	l.mu.Unlock()
	if owned {
		nrev, err := l.kv.Update(ctx, g, []byte(l.id), rev)
		if err == nil {
			l.mu.Lock()
			l.owned[g] = nrev
			l.mu.Unlock()
			return
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) {
			l.log.Warn("lease not renewed; will retry", "guard", g, "error", err)
			return // NATS is slow or failing over: the lease may still be ours
		}
		l.log.Warn("lease lost", "guard", g, "error", err)
		l.mu.Lock()
		delete(l.owned, g)
		l.mu.Unlock()
		l.onRelease(g)
		return
	}
	nrev, err := l.kv.Create(ctx, g, []byte(l.id))
	if err != nil {
		return // held by another replica (or NATS unavailable)
	}
	l.mu.Lock()
	l.owned[g] = nrev
	l.mu.Unlock()
	l.log.Info("lease taken: this replica now evaluates and acts for the guard", "guard", g, "replica", l.id)
	l.onAcquire(g)
}

// releaseAll deletes this replica's leases.
func (l *Leases) releaseAll() {
	l.mu.Lock()
	owned := l.owned
	l.owned = map[string]uint64{}
	l.mu.Unlock()
	for g, rev := range owned {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.kv.Delete(ctx, g, jetstream.LastRevision(rev))
		cancel()
		l.onRelease(g)
	}
}
