package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
)

// Leases keeps the leases of the guards this replica owns and takes the
// ones nobody holds: a guard is owned by the replica whose id is under its
// key; the owner renews it (compare-and-set on the revision) every third of
// the TTL, and when it dies the key expires and another replica takes it.
//
// Fencing. A lease is this replica's only until its local deadline: the
// time the last successful renewal (or the Create) was sent, plus the TTL,
// less a safety margin (a fifth of the TTL unless set). The server keeps
// the key at least a TTL after it stored that write, which is after it was
// sent, so the deadline passes at least a margin before any other replica
// can take the key — whatever the renewals' errors say, and even when this
// process was paused (SIGSTOP, a long GC, a frozen VM) and has not run a
// renewal since it woke up. Owns is false from the deadline on.
//
// Errors that say nothing about the key (a stream leader election, no
// responders, a timeout) are retried, every tenth of the TTL once a
// renewal failed, and only the deadline ends ownership: at the deadline
// OnRelease is called, and renewals go on trying the same revision — one
// that succeeds proves nobody wrote the key meanwhile, and the guard is
// taken back (OnAcquire). An error that proves another write (a revision
// mismatch: the key expired or someone else holds it) ends ownership at
// once.
type Leases struct {
	kv     jetstream.KeyValue
	id     string
	ttl    time.Duration
	margin time.Duration
	log    hclog.Logger
	now    func() time.Time

	mu     sync.Mutex
	guards []string
	owned  map[string]*lease
	// OnAcquire and OnRelease are called (outside the lock) when this
	// replica takes or loses a guard.
	onAcquire, onRelease func(guard string)
}

// lease is this replica's hold on one guard's key.
type lease struct {
	rev      uint64    // KV revision of our last write of the key
	deadline time.Time // ours until then: when that write was sent + TTL − margin
	expired  bool      // the deadline passed and OnRelease was called
	failing  bool      // the last renewal failed: retry sooner
}

// LeaseOptions configure Leases.
type LeaseOptions struct {
	Bucket    string
	ReplicaID string
	TTL       time.Duration
	// Margin is taken off the TTL for the local deadline: the clock drift
	// and scheduling delay tolerated between this replica and the NATS
	// server. Zero means TTL/5.
	Margin time.Duration
	// Replicas of the KV bucket: 3 on a three-node NATS cluster.
	Replicas  int
	OnAcquire func(guard string)
	OnRelease func(guard string)
	Logger    hclog.Logger
	// Now is the clock of the local deadlines; nil is time.Now.
	Now func() time.Time
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
	if o.Margin == 0 {
		o.Margin = o.TTL / 5
	}
	if o.Margin < 0 || o.Margin >= o.TTL*2/3 {
		return nil, fmt.Errorf("cluster: the lease margin %s must be between 0 and two thirds of the TTL %s (renewals come every third)", o.Margin, o.TTL)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
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
	return &Leases{kv: kv, id: o.ReplicaID, ttl: o.TTL, margin: o.Margin, log: o.Logger, now: o.Now,
		owned: map[string]*lease{}, onAcquire: o.OnAcquire, onRelease: o.OnRelease}, nil
}

// SetGuards sets the guards to hold leases for (a reload may change them);
// leases of guards no longer configured are released.
func (l *Leases) SetGuards(guards []string) {
	l.mu.Lock()
	l.guards = append([]string(nil), guards...)
	sort.Strings(l.guards)
	gone := map[string]*lease{}
	for g, e := range l.owned {
		if !contains(l.guards, g) {
			gone[g] = e
			delete(l.owned, g)
		}
	}
	l.mu.Unlock()
	for g, e := range gone {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.kv.Delete(ctx, g, jetstream.LastRevision(e.rev))
		cancel()
		if !e.expired {
			l.onRelease(g)
		}
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

// Owns reports whether this replica holds the guard's lease now: its
// local deadline has not passed.
func (l *Leases) Owns(guard string) bool {
	_, ok := l.Lease(guard)
	return ok
}

// Lease returns the KV revision of this replica's lease of the guard — a
// fencing token: it grows with every write of the key, whoever makes it —
// and whether the lease is this replica's now (as Owns).
func (l *Leases) Lease(guard string) (rev uint64, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.owned[guard]
	if e == nil || e.expired || !now.Before(e.deadline) {
		return 0, false
	}
	return e.rev, true
}

// ReplicaID is this replica's id, the value of the keys it holds.
func (l *Leases) ReplicaID() string { return l.id }

// Owner returns the replica holding the guard's lease, if any.
func (l *Leases) Owner(ctx context.Context, guard string) (string, bool) {
	e, err := l.kv.Get(ctx, guard)
	if err != nil {
		return "", false
	}
	return string(e.Value()), true
}

// Run renews and takes leases every third of the TTL (every tenth while a
// renewal is failing) until ctx ends, and gives up at its deadline a lease
// not renewed in time; then it gives up its leases so another replica
// takes them at once.
func (l *Leases) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.releaseAll()
			return nil
		case <-t.C:
			l.round(ctx)
			t.Reset(l.next())
		}
	}
}

// next is how long to wait before the next round: a third of the TTL, a
// tenth while a renewal fails, and never past the next deadline (so that
// OnRelease is called on time).
func (l *Leases) next() time.Duration {
	wait := l.ttl / 3
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.owned {
		if e.failing && l.ttl/10 < wait {
			wait = l.ttl / 10
		}
		if !e.expired {
			if d := e.deadline.Sub(now); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
	}
	return wait
}

// round gives up the leases past their deadline, renews owned leases and
// tries to take free ones.
func (l *Leases) round(ctx context.Context) {
	l.expire()
	l.mu.Lock()
	guards := append([]string(nil), l.guards...)
	l.mu.Unlock()
	for _, g := range guards {
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		l.step(rctx, g)
		cancel()
	}
}

// expire calls OnRelease for the leases whose deadline passed without a
// renewal; they stay in the map, so that a later renewal on the same
// revision can take them back.
func (l *Leases) expire() {
	now := l.now()
	var gone []string
	l.mu.Lock()
	for g, e := range l.owned {
		if !e.expired && !now.Before(e.deadline) {
			e.expired = true
			gone = append(gone, g)
		}
	}
	l.mu.Unlock()
	sort.Strings(gone)
	for _, g := range gone {
		l.log.Warn("lease deadline passed without a renewal: this replica no longer acts for the guard", "guard", g, "replica", l.id)
		l.onRelease(g)
	}
}

// definitive reports whether a failed write of a lease proves that someone
// else wrote the key (or it expired): anything else may be a slow or
// failing-over NATS and leaves the lease to its deadline.
func definitive(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

func (l *Leases) step(ctx context.Context, g string) {
	l.mu.Lock()
	e := l.owned[g]
	var rev uint64
	if e != nil {
		rev = e.rev
	}
	l.mu.Unlock()
	sent := l.now() // before the write: the server's TTL runs from a later instant
	if e != nil {
		nrev, err := l.kv.Update(ctx, g, []byte(l.id), rev)
		l.mu.Lock()
		if l.owned[g] != e { // released meanwhile (SetGuards, shutdown)
			l.mu.Unlock()
			return
		}
		if err == nil {
			// Back: the deadline passed before this renewal landed, so Owns
			// said no meanwhile (whether or not expire has run yet) and the
			// playbook may have let the guard's incidents go: adopt again.
			back := e.expired || !l.now().Before(e.deadline)
			e.rev, e.deadline, e.expired, e.failing = nrev, sent.Add(l.ttl-l.margin), false, false
			l.mu.Unlock()
			if back {
				l.log.Info("lease renewed after its deadline, nobody having taken it: this replica acts for the guard again", "guard", g, "replica", l.id)
				l.onAcquire(g)
			}
			return
		}
		if !definitive(err) {
			e.failing = true
			left := e.deadline.Sub(sent)
			l.mu.Unlock()
			l.log.Warn("lease not renewed; retrying until its deadline", "guard", g, "error", err, "left", left.Round(time.Millisecond))
			return
		}
		delete(l.owned, g)
		expired := e.expired
		l.mu.Unlock()
		l.log.Warn("lease lost", "guard", g, "error", err)
		if !expired {
			l.onRelease(g)
		}
		return
	}
	nrev, err := l.kv.Create(ctx, g, []byte(l.id))
	if err != nil {
		return // held by another replica (or NATS unavailable)
	}
	l.mu.Lock()
	l.owned[g] = &lease{rev: nrev, deadline: sent.Add(l.ttl - l.margin)}
	l.mu.Unlock()
	l.log.Info("lease taken: this replica now evaluates and acts for the guard", "guard", g, "replica", l.id, "revision", nrev)
	l.onAcquire(g)
}

// releaseAll deletes this replica's leases.
func (l *Leases) releaseAll() {
	l.mu.Lock()
	owned := l.owned
	l.owned = map[string]*lease{}
	l.mu.Unlock()
	for g, e := range owned {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = l.kv.Delete(ctx, g, jetstream.LastRevision(e.rev))
		cancel()
		if !e.expired {
			l.onRelease(g)
		}
	}
}
