package ticker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// within is how long a test waits for what must happen.
const within = 10 * time.Second

// sender is a loop body that reports each tick on an unbuffered channel,
// so that a tick is seen only when the test receives it.
func sender(ticks chan<- int) func(context.Context) {
	n := 0
	return func(ctx context.Context) {
		n++
		select {
		case ticks <- n:
		case <-ctx.Done():
		}
	}
}

func receive(t *testing.T, ticks <-chan int, what string) int {
	t.Helper()
	select {
	case n := <-ticks:
		return n
	case <-time.After(within):
		t.Fatalf("no %s within %s", what, within)
		return 0
	}
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("loop still running %s after cancel", within)
	}
}

// TestEndsOnCancel: the loop ticks, and ends (closing done) on cancel,
// also while its function is running; a cancelled loop never calls it.
func TestEndsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan int)
	done := Start(ctx, func() time.Duration { return time.Millisecond }, sender(ticks))
	for want := 1; want <= 3; want++ {
		if n := receive(t, ticks, "tick"); n != want {
			t.Fatalf("tick %d, want %d", n, want)
		}
	}
	cancel() // the fourth call is blocked sending, or about to be made
	waitDone(t, done)
	select {
	case n := <-ticks:
		t.Errorf("tick %d after the loop ended", n)
	default:
	}

	var calls atomic.Int64
	done = Start(ctx, func() time.Duration { return time.Millisecond }, func(context.Context) { calls.Add(1) })
	waitDone(t, done)
	if n := calls.Load(); n != 0 {
		t.Errorf("a loop started cancelled ran %d times", n)
	}
}

// TestPicksUpInterval: an interval changed while the loop runs is used
// from the next tick on. The loop goes from 1ms to an hour during its
// third tick; while a reference loop at 1ms ticks 50 times, it ticks no
// more.
func TestPicksUpInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var interval atomic.Int64
	interval.Store(int64(time.Millisecond))
	ticks := make(chan int)
	send := sender(ticks)
	calls := 0
	done := Start(ctx, func() time.Duration { return time.Duration(interval.Load()) }, func(ctx context.Context) {
		if calls++; calls == 3 {
			interval.Store(int64(time.Hour)) // as a reload between two ticks would
		}
		send(ctx)
	})
	for range 3 {
		receive(t, ticks, "tick at 1ms")
	}
	ref := make(chan int)
	refDone := Start(ctx, func() time.Duration { return time.Millisecond }, sender(ref))
	for range 50 {
		receive(t, ref, "tick of the reference loop")
	}
	select {
	case n := <-ticks:
		t.Errorf("tick %d at the old interval after the change to an hour", n)
	default:
	}
	cancel()
	waitDone(t, done)
	waitDone(t, refDone)
}

// TestNonPositiveInterval: an interval of zero is raised to the minimum,
// not a panic.
func TestNonPositiveInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan int)
	done := Start(ctx, func() time.Duration { return 0 }, sender(ticks))
	receive(t, ticks, "tick")
	cancel()
	waitDone(t, done)
}
