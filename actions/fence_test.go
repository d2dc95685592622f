package actions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/poll"
)

// wire records every message published under rollguard.> as a core NATS
// subscriber sees it: what went on the wire, not only what the
// deduplicating stream kept.
type onWire struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func listen(t *testing.T, url string) *onWire {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &onWire{}
	if _, err := nc.Subscribe("rollguard.>", func(m *nats.Msg) { w.mu.Lock(); w.msgs = append(w.msgs, m); w.mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *onWire) seen() []*nats.Msg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*nats.Msg(nil), w.msgs...)
}

func (w *onWire) subjects() []string {
	var out []string
	for _, m := range w.seen() {
		out = append(out, m.Subject)
	}
	return out
}

// fencedHarness is a harness whose lease the test holds or takes away.
func fencedHarness(t *testing.T, h *harness, replica string) *atomic.Bool {
	owned := &atomic.Bool{}
	owned.Store(true)
	h.p.o.Owns = func(g string) bool { return g == "checkout" && owned.Load() }
	h.p.o.Lease = func(g string) string {
		if !h.p.o.Owns(g) {
			return ""
		}
		return replica + "/7"
	}
	return owned
}

// TestFencedReplicaPublishesNothing: a replica that decided while it owned
// the guard and lost the lease before its outbox went out (a pause)
// publishes nothing — no command, no event, no status — and its ticks
// decide nothing more: no ack timeout, no status cadence, no save. Its
// healthy twin, still the owner, publishes its messages, each carrying the
// lease it was sent under, and keeps ticking.
func TestFencedReplicaPublishesNothing(t *testing.T) {
	js, ns := startJetStream(t)
	w := listen(t, ns.ClientURL())
	store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	a := newHarnessOn(t, js, "", detector.Deployment{}, store)
	owned := fencedHarness(t, a, "a")
	a.p.step(func(m *Model) Effects { // decided while owning ...
		return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: a.dep, State: detector.StateRegressed,
			At: a.now, Since: a.dep.StartedAt, Signals: evidence(detector.StateRegressed, 0.05, 0.01)}, a.now)
	})
	queued := a.p.pendingLen()
	if queued == 0 {
		t.Fatal("nothing queued for a regressed verdict")
	}
	owned.Store(false) // ... deposed before the outbox went out
	a.flush()
	a.advance(20 * time.Minute) // past ack_timeout and status_interval
	if n := a.p.pendingLen(); n != 0 {
		t.Errorf("%d messages left in the deposed replica's outbox", n)
	}
	if n := testutil.ToFloat64(a.p.metrics.fenced.WithLabelValues("cmd")); n != 1 {
		t.Errorf("rollguard_messages_fenced_total{kind=cmd} = %v, want 1", n)
	}
	fenced := 0.0
	for _, kind := range []string{"cmd", "incident", "status"} {
		fenced += testutil.ToFloat64(a.p.metrics.fenced.WithLabelValues(kind))
	}
	if int(fenced) != queued {
		t.Errorf("%v messages counted as fenced, %d were queued", fenced, queued)
	}
	if incs := a.p.Incidents(); len(incs) != 0 {
		t.Errorf("the deposed replica still holds %d incidents", len(incs))
	}
	if incs, _ := store.Load(context.Background()); len(incs) != 0 {
		t.Errorf("the deposed replica saved %d incidents", len(incs))
	}
	poll.Holds(t, time.Second, func() error {
		if s := w.subjects(); len(s) != 0 {
			return fmt.Errorf("a deposed replica published %v", s)
		}
		return nil
	})

	// The twin: the owner publishes the same decision, under its lease.
	b := newHarnessOn(t, js, "", a.dep, store)
	fencedHarness(t, b, "b")
	b.now = a.now
	b.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	b.wantState(StateContaining)
	poll.Until(t, 5*time.Second, func() error {
		if n := len(w.seen()); n != queued {
			return fmt.Errorf("the owner published %v, want the %d messages of the decision", w.subjects(), queued)
		}
		return nil
	})
	for _, m := range w.seen() {
		if got := m.Header.Get(HeaderLease); got != "b/7" {
			t.Errorf("%s carries lease %q, want b/7", m.Subject, got)
		}
	}
	b.advance(2 * time.Minute) // the owner's ticks go on: the ack timeout escalates
	b.wantState(StateEscalated)
	poll.Until(t, 5*time.Second, func() error {
		if n := len(w.seen()); n <= queued {
			return fmt.Errorf("the owner's tick published nothing: %v", w.subjects())
		}
		return nil
	})
}

// TestKVStoreCompareAndSet: two stores on one bucket (two replicas): a
// write on a revision another store has written since fails with
// ErrFenced and changes nothing; the up-to-date store writes on.
func TestKVStoreCompareAndSet(t *testing.T) {
	js, _ := startJetStream(t)
	ctx := context.Background()
	s1, err := NewKVStore(ctx, js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewKVStore(ctx, js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	inc := Incident{ID: "inc-d-1", Guard: "checkout", Service: "checkout", State: StateContaining}
	if err := s1.Put(ctx, &inc); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	inc2 := inc
	inc2.State = StateRollingBack
	if err := s2.Put(ctx, &inc2); err != nil {
		t.Fatalf("the store that read the last revision cannot write: %v", err)
	}
	stale := inc
	stale.State = StateEscalated
	if err := s1.Put(ctx, &stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("a write on a stale revision: %v, want ErrFenced", err)
	}
	// Loading another guard's incidents does not make the stale write pass.
	if _, err := s1.LoadOf(ctx, func(g string) bool { return g == "payments" }); err != nil {
		t.Fatal(err)
	}
	if err := s1.Put(ctx, &stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("a stale write after loading another guard: %v, want ErrFenced", err)
	}
	// A store that never read the key cannot create it over another's.
	s3, _ := NewKVStore(ctx, js, "ROLLGUARD_INCIDENTS")
	if err := s3.Put(ctx, &stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("creating an existing incident: %v, want ErrFenced", err)
	}
	got, err := s2.Load(ctx)
	if err != nil || len(got) != 1 || got[0].State != StateRollingBack {
		t.Fatalf("stored %+v (%v), want the up-to-date store's rolling_back", got, err)
	}
	inc2.State = StateVerifying // the twin: the up-to-date store writes on
	if err := s2.Put(ctx, &inc2); err != nil {
		t.Fatal(err)
	}
}

// TestPlaybookFencedWriteReloads: a replica whose save finds another
// replica's revision counts it, does not retry it, and — still owning the
// guard — continues from the stored incident; the other's record stands.
// Its twin, alone on the incident, saves every change without a fence.
func TestPlaybookFencedWriteReloads(t *testing.T) {
	js, _ := startJetStream(t)
	ctx := context.Background()
	s1, _ := NewKVStore(ctx, js, "ROLLGUARD_INCIDENTS")
	s2, _ := NewKVStore(ctx, js, "ROLLGUARD_INCIDENTS")
	a := newHarnessOn(t, js, "", detector.Deployment{}, s1)
	fencedHarness(t, a, "a")
	a.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	a.wantState(StateContaining)
	b := newHarnessOn(t, js, "", a.dep, s2)
	fencedHarness(t, b, "b")
	b.now = a.now.Add(time.Second)
	if err := b.p.Adopt(ctx, "checkout"); err != nil {
		t.Fatal(err)
	}
	b.advance(2 * time.Minute) // b writes: the ack timeout escalates
	b.wantState(StateEscalated)
	if n := testutil.ToFloat64(b.p.metrics.writesFenced); n != 0 {
		t.Fatalf("the twin's saves were fenced %v times", n)
	}
	a.now = b.now
	a.result(CommandID(a.dep.ID, ActionFlagKill, "new-flow"), ResultOK) // a's stale view moves on and saves
	if n := testutil.ToFloat64(a.p.metrics.writesFenced); n != 1 {
		t.Fatalf("rollguard_incident_writes_fenced_total = %v, want 1", n)
	}
	a.wantState(StateEscalated) // reloaded: b's record
	incs, err := s2.Load(ctx)
	if err != nil || len(incs) != 1 || incs[0].State != StateEscalated {
		t.Fatalf("stored %+v (%v), want b's escalated incident", incs, err)
	}
}
