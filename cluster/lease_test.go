package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// replica is one Leases with the guards it was given and lost.
type replica struct {
	l      *Leases
	nc     *nats.Conn
	mu     sync.Mutex
	events []string
	cancel context.CancelFunc
	done   chan struct{}
}

func startReplica(t *testing.T, url, id string, ttl time.Duration, replicas int) *replica {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	r := &replica{nc: nc, done: make(chan struct{})}
	r.l, err = NewLeases(context.Background(), js, LeaseOptions{Bucket: "ROLLGUARD_LEASES", ReplicaID: id, TTL: ttl, Replicas: replicas,
		OnAcquire: func(g string) { r.mu.Lock(); r.events = append(r.events, "+"+g); r.mu.Unlock() },
		OnRelease: func(g string) { r.mu.Lock(); r.events = append(r.events, "-"+g); r.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	r.l.SetGuards([]string{"checkout", "payments"})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); _ = r.l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func owners(rs ...*replica) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		for _, g := range []string{"checkout", "payments"} {
			if r.l.Owns(g) {
				out[g]++
			}
		}
	}
	return out
}

func waitFor(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, within, f)
}

// TestLeasesOneOwnerEach: two replicas share two guards, each owned by
// exactly one of them; a stopped replica hands its guards over at once.
func TestLeasesOneOwnerEach(t *testing.T) {
	ns := natstest.Start(t)
	a := startReplica(t, ns.ClientURL(), "a", 3*time.Second, 1)
	b := startReplica(t, ns.ClientURL(), "b", 3*time.Second, 1)
	waitFor(t, 5*time.Second, func() error {
		if o := owners(a, b); o["checkout"] != 1 || o["payments"] != 1 {
			return fmt.Errorf("owners %v", o)
		}
		return nil
	})
	poll.Holds(t, 2*time.Second, func() error { // several renewals: ownership stays put
		if o := owners(a, b); o["checkout"] != 1 || o["payments"] != 1 {
			return fmt.Errorf("owners %v after renewals", o)
		}
		return nil
	})
	a.cancel()
	<-a.done
	start := time.Now()
	waitFor(t, 3*time.Second, func() error {
		if !b.l.Owns("checkout") || !b.l.Owns("payments") {
			return fmt.Errorf("b owns checkout %v payments %v", b.l.Owns("checkout"), b.l.Owns("payments"))
		}
		return nil
	})
	t.Logf("handover after a clean stop: %s", time.Since(start))
}

// TestLeasesTakeoverAfterCrash: a replica that dies without a word (its
// connection gone) loses its guards when the TTL runs out, not before.
func TestLeasesTakeoverAfterCrash(t *testing.T) {
	ns := natstest.Start(t)
	const ttl = 2 * time.Second
	a := startReplica(t, ns.ClientURL(), "a", ttl, 1)
	waitFor(t, 5*time.Second, func() error {
		if !a.l.Owns("checkout") {
			return fmt.Errorf("a does not own checkout yet")
		}
		return nil
	})
	b := startReplica(t, ns.ClientURL(), "b", ttl, 1)
	a.nc.Close() // the crash: no renewal, no release
	crashed := time.Now()
	poll.Holds(t, ttl/2, func() error {
		if b.l.Owns("checkout") {
			return errors.New("b took checkout before the lease expired")
		}
		return nil
	})
	waitFor(t, 2*ttl, func() error {
		if !b.l.Owns("checkout") || !b.l.Owns("payments") {
			return fmt.Errorf("b has not taken over")
		}
		return nil
	})
	took := time.Since(crashed)
	t.Logf("takeover after a crash: %s (ttl %s)", took, ttl)
	if took > ttl+ttl/2+time.Second {
		t.Errorf("takeover took %s, want within the TTL plus a renewal period", took)
	}
	if owner, _ := b.l.Owner(context.Background(), "checkout"); owner != "b" {
		t.Errorf("checkout's lease names %q", owner)
	}
}

// TestLeasesOnClusterR3: leases on a three-node cluster survive the loss of
// a node.
func TestLeasesOnClusterR3(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	a := startReplica(t, natstest.URLs(nodes), "a", 3*time.Second, 3)
	waitFor(t, 10*time.Second, func() error {
		if !a.l.Owns("checkout") {
			return fmt.Errorf("a does not own checkout")
		}
		return nil
	})
	nodes[0].Shutdown()
	poll.Holds(t, 4*time.Second, func() error { // more than a TTL: renewals must go on through the other nodes
		if !a.l.Owns("checkout") {
			a.mu.Lock()
			defer a.mu.Unlock()
			return fmt.Errorf("lease lost with one node of three down; events %v", a.events)
		}
		return nil
	})
}
