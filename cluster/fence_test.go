package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// fenced is one Leases over the guard "checkout" whose renewals the test
// drives itself (round), so that it can stop them as a paused process
// stops them.
type fenced struct {
	l      *Leases
	kv     jetstream.KeyValue
	mu     sync.Mutex
	events []string
}

func newFenced(t *testing.T, js jetstream.JetStream, id string, ttl, margin time.Duration, replicas int) *fenced {
	t.Helper()
	f := &fenced{}
	var err error
	f.l, err = NewLeases(context.Background(), js, LeaseOptions{Bucket: "ROLLGUARD_LEASES", ReplicaID: id, TTL: ttl, Margin: margin, Replicas: replicas,
		OnAcquire: func(g string) { f.mu.Lock(); f.events = append(f.events, "+"+g); f.mu.Unlock() },
		OnRelease: func(g string) { f.mu.Lock(); f.events = append(f.events, "-"+g); f.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	f.l.SetGuards([]string{"checkout"})
	f.kv = f.l.kv
	return f
}

func (f *fenced) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// run renews f's leases in the background until the test ends.
func (f *fenced) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestLeaseDeadlineFencesAPausedOwner: an owner that stops renewing (a
// paused process) stops owning at its local deadline, while the key still
// names it — before any other replica can take the guard — and, woken up
// after another replica took it, does not get it back. Its healthy twin,
// renewing, keeps the guard over several TTLs.
func TestLeaseDeadlineFencesAPausedOwner(t *testing.T) {
	ns := natstest.Start(t)
	const ttl, margin = 3 * time.Second, time.Second
	a := newFenced(t, natstest.JetStream(t, ns.ClientURL()), "a", ttl, margin, 1)
	a.l.round(context.Background()) // takes checkout; then "paused": no more rounds
	rev, ok := a.l.Lease("checkout")
	if !ok || rev == 0 {
		t.Fatalf("a does not hold checkout after taking it (rev %d)", rev)
	}
	took := time.Now()
	poll.Until(t, 2*ttl, func() error {
		if a.l.Owns("checkout") {
			return errors.New("a still owns checkout without renewing it")
		}
		return nil
	})
	fencedAfter := time.Since(took)
	// The key is still there and still a's: nobody else can act yet, and
	// a already does not.
	if owner, ok := a.l.Owner(context.Background(), "checkout"); !ok || owner != "a" {
		t.Fatalf("a stopped owning only once its key was gone (owner %q, %v) — fenced after %s", owner, ok, fencedAfter)
	}
	t.Logf("a paused owner stops owning %s after its last write (TTL %s, margin %s)", fencedAfter.Round(time.Millisecond), ttl, margin)
	if fencedAfter > ttl {
		t.Errorf("a owned checkout for %s without renewing, more than the TTL %s", fencedAfter, ttl)
	}

	b := newFenced(t, natstest.JetStream(t, ns.ClientURL()), "b", ttl, margin, 1)
	b.run(t)
	poll.Until(t, 3*ttl, func() error {
		if !b.l.Owns("checkout") {
			return errors.New("b has not taken checkout")
		}
		return nil
	})
	a.l.round(context.Background()) // a wakes up: it gives the guard up and does not take it back
	if a.l.Owns("checkout") {
		t.Fatal("a owns checkout again after b took it")
	}
	if got := a.seen(); !slices.Equal(got, []string{"+checkout", "-checkout"}) {
		t.Errorf("a's events %v, want [+checkout -checkout]", got)
	}
	if _, ok := a.l.owned["checkout"]; ok {
		t.Errorf("a keeps a lease whose key b holds")
	}

	// The healthy twin: b renews and keeps checkout over several TTLs.
	poll.Holds(t, 2*ttl, func() error {
		if !b.l.Owns("checkout") {
			return fmt.Errorf("b lost checkout while renewing it; events %v", b.seen())
		}
		return nil
	})
	if got := b.seen(); !slices.Equal(got, []string{"+checkout"}) {
		t.Errorf("b's events %v, want [+checkout]", got)
	}
}

// TestLeaseTakenBackAfterItsDeadline: a renewal that comes after the
// deadline but before the key expired (nobody can have written it, the
// revision matches) takes the guard back — released at the deadline,
// acquired again — instead of leaving it ownerless until the key expires.
func TestLeaseTakenBackAfterItsDeadline(t *testing.T) {
	ns := natstest.Start(t)
	const ttl, margin = 4 * time.Second, 2 * time.Second
	a := newFenced(t, natstest.JetStream(t, ns.ClientURL()), "a", ttl, margin, 1)
	a.l.round(context.Background())
	rev, _ := a.l.Lease("checkout")
	poll.Until(t, 2*ttl, func() error {
		if a.l.Owns("checkout") {
			return errors.New("a still owns checkout without renewing it")
		}
		return nil
	})
	a.l.round(context.Background()) // late, within the margin
	nrev, ok := a.l.Lease("checkout")
	if !ok || nrev <= rev {
		t.Fatalf("a does not hold checkout after a late renewal on its revision (rev %d, was %d)", nrev, rev)
	}
	if got := a.seen(); !slices.Equal(got, []string{"+checkout", "-checkout", "+checkout"}) {
		t.Errorf("a's events %v, want [+checkout -checkout +checkout]", got)
	}
}

// TestLeaseStreamLeaderElectionKeepsOwner: shutting down the NATS node
// that leads the lease bucket's stream fails renewals for a while (no
// response from the stream, timeouts) — the owner keeps the guard, with no
// release and no handover. Its twin: a real loss (someone else's write of
// the key) ends ownership at once, before the deadline.
func TestLeaseStreamLeaderElectionKeepsOwner(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	const ttl = 6 * time.Second
	js := natstest.JetStream(t, natstest.URLs(nodes))
	a := newFenced(t, js, "a", ttl, 0, 3)
	a.run(t)
	poll.Until(t, 20*time.Second, func() error {
		if !a.l.Owns("checkout") {
			return errors.New("a does not own checkout")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_ROLLGUARD_LEASES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("no leader of the lease stream: %v %+v", err, info)
	}
	leader := info.Cluster.Leader
	for _, ns := range nodes {
		if ns.Name() == leader {
			ns.Shutdown()
		}
	}
	t.Logf("lease stream leader %s shut down", leader)
	// Renewals must go on through a new leader: a over two TTLs, owning
	// the whole time.
	poll.Holds(t, 2*ttl, func() error {
		if !a.l.Owns("checkout") {
			return fmt.Errorf("a lost checkout to the election of the lease stream's leader; events %v", a.seen())
		}
		return nil
	})
	if got := a.seen(); !slices.Equal(got, []string{"+checkout"}) {
		t.Errorf("a's events %v, want [+checkout]: no release during the election", got)
	}

	// The twin: someone else writes the key — a loss the next renewal proves.
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := a.kv.Put(pctx, "checkout", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	poll.Until(t, ttl, func() error {
		if got := a.seen(); !slices.Equal(got, []string{"+checkout", "-checkout"}) {
			return fmt.Errorf("a's events %v after another write of its key", got)
		}
		return nil
	})
	if a.l.Owns("checkout") {
		t.Error("a owns checkout after losing it")
	}
	t.Logf("ownership ended %s after another write of the key (TTL %s)", time.Since(lost).Round(time.Millisecond), ttl)
}

// TestLeaseQuorumLossKeepsOwnerUntilDeadline: with two of the three NATS
// nodes gone the lease stream has no leader and renewals fail (no response
// from the stream, timeouts): the owner keeps the guard — no release —
// until its deadline, and gives it up then.
func TestLeaseQuorumLossKeepsOwnerUntilDeadline(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	const ttl = 3 * time.Second
	a := newFenced(t, natstest.JetStream(t, nodes[0].ClientURL()), "a", ttl, 0, 3)
	a.run(t)
	poll.Until(t, 20*time.Second, func() error {
		if !a.l.Owns("checkout") {
			return errors.New("a does not own checkout")
		}
		return nil
	})
	nodes[1].Shutdown()
	nodes[2].Shutdown()
	poll.Until(t, 2*ttl, func() error {
		if !a.l.renewalFailing("checkout") && len(a.seen()) == 1 {
			return errors.New("no renewal has failed yet")
		}
		return nil
	})
	if got := a.seen(); !a.l.Owns("checkout") || !slices.Equal(got, []string{"+checkout"}) {
		t.Fatalf("a failed renewal ended ownership before the deadline; events %v", got)
	}
	poll.Until(t, 2*ttl, func() error {
		if a.l.Owns("checkout") {
			return errors.New("a still owns checkout past the deadline of its last renewal")
		}
		if got := a.seen(); !slices.Equal(got, []string{"+checkout", "-checkout"}) {
			return fmt.Errorf("a's events %v, want [+checkout -checkout]", got)
		}
		return nil
	})
}

func (l *Leases) renewalFailing(g string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.owned[g]
	return e != nil && e.failing
}

// TestLeaseErrorsThatEndOwnership: only an error that proves another write
// ends ownership before the deadline.
func TestLeaseErrorsThatEndOwnership(t *testing.T) {
	for _, err := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders, nats.ErrTimeout,
		context.DeadlineExceeded, fmt.Errorf("publish: %w", nats.ErrConnectionClosed)} {
		if definitive(err) {
			t.Errorf("%v ends ownership; it says nothing about the key", err)
		}
	}
	for _, err := range []error{fmt.Errorf("nats: API error: code=400 err_code=10071: %w", jetstream.ErrKeyRevisionMismatch), jetstream.ErrKeyExists} {
		if !definitive(err) {
			t.Errorf("%v does not end ownership", err)
		}
	}
}
