package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
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
		done <- c.Run(rctx, func() time.Duration { return 10 * time.Millisecond }, Source{Deployments: deployments, Tests: tests, Keep: keep})
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

// TestCheckpointsOnChange: with a tick far away, a deployment that opens
// is saved as soon as Changed is called, and so is each service's stable
// version; the twin without Changed saves nothing before the tick. After
// Forget, a value another replica wrote in between is written again.
func TestCheckpointsOnChange(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, changed := range []bool{true, false} {
		c, err := NewCheckpoints(ctx, js, CheckpointOptions{Bucket: fmt.Sprintf("ROLLGUARD_DEPLOYMENTS_%v", changed)})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var deps []detector.Deployment
		stable := map[string]string{}
		src := Source{
			Deployments: func() []detector.Deployment {
				mu.Lock()
				defer mu.Unlock()
				return append([]detector.Deployment(nil), deps...)
			},
			Stable: func() map[string]string {
				mu.Lock()
				defer mu.Unlock()
				return maps.Clone(stable)
			},
			Keep: func(service string) bool { return service == "checkout" },
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(rctx, func() time.Duration { return time.Hour }, src) }()

		mu.Lock()
		stable["checkout"], stable["cart"] = "v1", "v7"
		deps = append(deps, detector.Deployment{ID: "checkout-1", Service: "checkout", Version: "v2", PreviousVersion: "v1", Source: "implicit", StartedAt: start})
		mu.Unlock()
		if !changed {
			poll.Holds(t, time.Second, func() error {
				if d, ok := c.Deployment(ctx, "checkout"); ok {
					return fmt.Errorf("saved before the tick without a change reported: %+v", d)
				}
				return nil
			})
			cancel()
			<-done
			continue
		}
		c.Changed()
		waitFor(t, 10*time.Second, func() error {
			if d, ok := c.Deployment(ctx, "checkout"); !ok || d.ID != "checkout-1" {
				return fmt.Errorf("checkpoint %+v, %v", d, ok)
			}
			if v, ok := c.Stable(ctx, "checkout"); !ok || v != "v1" {
				return fmt.Errorf("stable version %q, %v", v, ok)
			}
			return nil
		})
		if v, ok := c.Stable(ctx, "cart"); ok {
			t.Errorf("the stable version of a service not kept was checkpointed: %q", v)
		}

		// Another replica writes; this one takes the service back over.
		if _, err := c.kv.Put(ctx, stableKey("checkout"), []byte("v0")); err != nil {
			t.Fatal(err)
		}
		c.Forget("checkout")
		c.Changed()
		waitFor(t, 10*time.Second, func() error {
			if v, _ := c.Stable(ctx, "checkout"); v != "v1" {
				return fmt.Errorf("stable version %q after Forget, want v1 again", v)
			}
			return nil
		})
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return on cancel")
		}
	}
}
