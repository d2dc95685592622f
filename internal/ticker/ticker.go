// Package ticker runs the daemon's periodic loops (evaluation, PromQL
// polling, shipping aggregates, checkpoints): a function every interval
// until the context ends, with the interval read again after each tick so
// that a reload that changes it takes effect. It knows nothing of what the
// loops do.
package ticker

import (
	"context"
	"time"
)

// minInterval is the shortest interval: a zero or negative one (which a
// valid configuration never has) is raised to it rather than panic.
const minInterval = time.Millisecond

// Run calls f every interval until ctx ends. interval is read at the start
// and after each call of f, so a change takes effect from the next tick;
// ticks missed while f runs are dropped, not queued. Run returns once ctx
// has ended and f is not running; f is not called after ctx has ended.
func Run(ctx context.Context, interval func() time.Duration, f func(context.Context)) {
	iv := max(interval(), minInterval)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil { // both were ready and select chose the tick
			return
		}
		f(ctx)
		if next := max(interval(), minInterval); next != iv {
			iv = next
			t.Reset(iv)
		}
	}
}

// Start runs Run in a goroutine; the channel it returns is closed once Run
// has returned.
func Start(ctx context.Context, interval func() time.Duration, f func(context.Context)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, interval, f)
	}()
	return done
}
