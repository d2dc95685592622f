package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

// TestCheckpointsRun: the loop saves the deployments of the services it
// keeps, saves one again when it changes (here: it ends), leaves the others
// alone, and returns on cancel.
func TestCheckpointsRun(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	c, err := NewCheckpoints(ctx, js, CheckpointOptions{Bucket: "ROLLGUARD_DEPLOYMENTS"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	deps := []detector.Deployment{
		{ID: "checkout-1", Service: "checkout", Version: "v2", PreviousVersion: "v1", Source: "api", StartedAt: start},
		{ID: "cart-1", Service: "cart", Version: "v8", PreviousVersion: "v7", Source: "api", StartedAt: start},
	}
	deployments := func() []detector.Deployment {
		mu.Lock()
		defer mu.Unlock()
		return append([]detector.Deployment(nil), deps...)
	}
	keep := func(service string) bool { return service == "checkout" }
	tests := func() []detector.TestState {
		return []detector.TestState{
			{Service: "checkout", Deployment: "checkout-1", From: start, Tests: map[string]json.RawMessage{"checkout/errors": json.RawMessage(`{"Theta0":1.1}`)}},
			{Service: "cart", Deployment: "cart-1", From: start, Tests: map[string]json.RawMessage{"cart/errors": json.RawMessage(`{}`)}},
		}
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(rctx, func() time.Duration { return 10 * time.Millisecond }, deployments, tests, keep)
	}()

	waitFor(t, 10*time.Second, func() error {
		if d, ok := c.Deployment(ctx, "checkout"); !ok || d.ID != "checkout-1" || d.EndedAt != nil {
			return fmt.Errorf("checkpoint %+v, %v", d, ok)
		}
		return nil
	})
	ended := start.Add(time.Hour)
	mu.Lock()
	deps[0].EndedAt, deps[0].EndReason = &ended, "promoted"
	mu.Unlock()
	waitFor(t, 10*time.Second, func() error {
		if d, ok := c.Deployment(ctx, "checkout"); !ok || d.EndedAt == nil || !d.EndedAt.Equal(ended) || d.EndReason != "promoted" {
			return fmt.Errorf("checkpoint after the end %+v, %v", d, ok)
		}
		return nil
	})
	if d, ok := c.Deployment(ctx, "cart"); ok {
		t.Errorf("a service not kept was checkpointed: %+v", d)
	}
	// The tests go with the deployment (the first tick saves them).
	if st, ok := c.Tests(ctx, "checkout"); !ok || st.Deployment != "checkout-1" || string(st.Tests["checkout/errors"]) != `{"Theta0":1.1}` {
		t.Errorf("tests checkpoint %+v, %v", st, ok)
	}
	if st, ok := c.Tests(ctx, "cart"); ok {
		t.Errorf("tests of a service not kept were checkpointed: %+v", st)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return on cancel")
	}
}
