// Package poll is the tests' one way to wait: on a condition, with a
// deadline, never by sleeping and then asserting. Until waits for a
// condition to become true; Holds checks that one stays true for a while
// (a thing that must not happen, watched the whole time, not looked at
// once at the end).
package poll

import (
	"testing"
	"time"
)

// Step is how often a condition is checked.
const Step = 20 * time.Millisecond

// Until calls f every Step until it returns nil, and fails the test with
// f's last error once total has passed.
func Until(t testing.TB, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %v", total, err)
		}
		time.Sleep(Step)
	}
}

// Holds calls f every Step for d and fails the test at the first error.
func Holds(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		if err := f(); err != nil {
			t.Fatalf("after %s of %s: %v", time.Since(end.Add(-d)).Round(time.Millisecond), d, err)
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(Step)
	}
}
