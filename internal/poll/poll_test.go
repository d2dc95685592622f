package poll

import (
	"errors"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf only records.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) }
func run(r *recorder, f func(testing.TB)) {
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	f(r)
}

func TestUntil(t *testing.T) {
	n := 0
	Until(t, time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	r := &recorder{TB: t}
	run(r, func(tb testing.TB) { Until(tb, 50*time.Millisecond, func() error { return errors.New("never") }) })
	if !r.failed {
		t.Error("Until did not fail on a condition that never holds")
	}
}

func TestHolds(t *testing.T) {
	Holds(t, 60*time.Millisecond, func() error { return nil })
	start := time.Now()
	r := &recorder{TB: t}
	run(r, func(tb testing.TB) {
		Holds(tb, time.Second, func() error {
			if time.Since(start) > 50*time.Millisecond {
				return errors.New("broke")
			}
			return nil
		})
	})
	if !r.failed || time.Since(start) > 500*time.Millisecond {
		t.Errorf("Holds: failed %v after %s, want a failure as soon as the condition broke", r.failed, time.Since(start))
	}
}
