package agg_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

// TestPublishConsume runs the transport against a real NATS server: a
// retried publish of the same tick is stored once, messages arrive in
// order and are acknowledged, a message that does not decode or lies about
// its guard is reported and dropped, and Consume returns on cancel.
func TestPublishConsume(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	st, err := agg.EnsureStream(ctx, js, "ROLLGUARD_AGG", "rollguard")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agg.EnsureStream(ctx, js, "ROLLGUARD_AGG", "rollguard"); err != nil {
		t.Fatalf("a second EnsureStream: %v", err)
	}

	var mu sync.Mutex
	var got [][]detector.Aggregate
	var errs []string
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agg.Consume(cctx, js, "ROLLGUARD_AGG", "test-central", "rollguard",
			func(a []detector.Aggregate) error { mu.Lock(); got = append(got, a); mu.Unlock(); return nil },
			func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() })
	}()

	publish := func(sidecar string, at time.Time, total float64) {
		t.Helper()
		b, err := agg.Encode("checkout", at, []detector.Aggregate{{Signal: "errors", Version: "v1", Total: total}})
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Publish(ctx, js, "rollguard", "checkout", agg.Message{Sidecar: sidecar, At: at, Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	publish("edge-1", tick, 1)
	publish("edge-1", tick, 1) // a retry: deduplicated by its id
	publish("edge-2", tick, 2) // another sidecar, same tick: its own id
	publish("edge-1", tick.Add(10*time.Second), 3)
	if _, err := js.Publish(ctx, "rollguard.agg.checkout", []byte("not an aggregate")); err != nil {
		t.Fatal(err)
	}
	lie, _ := agg.Encode("cart", tick, nil)
	if _, err := js.Publish(ctx, "rollguard.agg.checkout", lie); err != nil {
		t.Fatal(err)
	}

	poll(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 3 || len(errs) != 2 {
			return fmt.Errorf("%d messages appended, %d errors", len(got), len(errs))
		}
		return nil
	})
	for i, want := range []float64{1, 2, 3} {
		if len(got[i]) != 1 || got[i][0].Total != want || got[i][0].Guard != "checkout" {
			t.Errorf("message %d = %+v", i, got[i])
		}
	}
	if !strings.Contains(errs[0], `no "RGAG" header`) || !strings.Contains(errs[1], `guard "cart" on subject rollguard.agg.checkout`) {
		t.Errorf("errors = %q", errs)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 5 {
		t.Errorf("stream holds %d messages, want 5 (the retry deduplicated)", info.State.Msgs)
	}
	// Everything was acknowledged (or terminated): nothing is pending.
	poll(t, 10*time.Second, func() error {
		ci, err := js.Consumer(ctx, "ROLLGUARD_AGG", "test-central")
		if err != nil {
			return err
		}
		if i, err := ci.Info(ctx); err != nil || i.NumAckPending != 0 || i.NumPending != 0 {
			return fmt.Errorf("consumer: %+v %v", i, err)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Consume: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Consume did not return on cancel")
	}
}

// TestConsumeRedeliversOnError: a message appendFn fails on is delivered
// again, not lost.
func TestConsumeRedeliversOnError(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	if _, err := agg.EnsureStream(ctx, js, "AGG", "rg"); err != nil {
		t.Fatal(err)
	}
	b, _ := agg.Encode("checkout", tick, []detector.Aggregate{{Signal: "errors", Version: "v1", Total: 1}})
	if err := agg.Publish(ctx, js, "rg", "checkout", agg.Message{Sidecar: "s", At: tick, Data: b}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = agg.Consume(cctx, js, "AGG", "c", "rg", func([]detector.Aggregate) error {
			mu.Lock()
			defer mu.Unlock()
			if calls++; calls == 1 {
				return fmt.Errorf("not now")
			}
			return nil
		}, func(error) {})
	}()
	poll(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if calls < 2 {
			return fmt.Errorf("%d deliveries", calls)
		}
		return nil
	})
}

// TestEnsureStreamConflict: a stream that cannot be created says which.
func TestEnsureStreamConflict(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"rollguard.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := agg.EnsureStream(ctx, js, "ROLLGUARD_AGG", "rollguard"); err == nil || !strings.Contains(err.Error(), "ensure stream ROLLGUARD_AGG: ") {
		t.Errorf("overlapping stream: %v", err)
	}
}

func poll(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s: %v", total, err)
}
