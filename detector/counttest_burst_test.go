package detector

import (
	"fmt"
	"math"
	"testing"
)

// burstFleet plays a fleet of one-percent pods tick by tick: cand
// candidate pods and 19 baseline pods of 100 requests a tick each, with
// the expected bad events (no noise, so the figures are exact); the
// candidate's pods have ten times their bad events from tick from for
// ticks ticks. It returns the tick of the first alarm (0: none) and the
// test.
func burstFleet(cand, from, ticks, watch int) (int, *CountTest) {
	ct := NewCountTest(1.1, 0.01)
	alarm := 0
	for i := 1; i <= watch; i++ {
		bad := 1.0
		if i >= from && i < from+ticks {
			bad = 10
		}
		var c, b []Block
		for p := 0; p < cand; p++ {
			c = append(c, Block{Pod: fmt.Sprint("c", p), Bad: bad, Total: 100})
		}
		for p := 0; p < 19; p++ {
			b = append(b, Block{Pod: fmt.Sprint("b", p), Bad: 1, Total: 100})
		}
		ct.ObserveBlocks(c, b)
		if alarm == 0 && ct.Regressed() {
			alarm = i
		}
	}
	return alarm, ct
}

// TestBurstOnTheOnlyPod: the candidate's only pod has ten times its errors
// for a minute (DefaultBurstTicks ticks) and then is as healthy as the
// baseline: no alarm, though uncapped the same data alarm within the
// burst. The twins: the same excess that persists is caught, one window
// after it began at most; on a candidate of three pods the budget does not
// apply and it is caught sooner.
func TestBurstOnTheOnlyPod(t *testing.T) {
	const from = 30
	if at, ct := burstFleet(1, from, DefaultBurstTicks, 120); at != 0 {
		t.Errorf("a one-minute burst on the only candidate pod alarmed at tick %d (log e %v)", at, ct.LogEValue())
	}
	// What the budget holds back: the uncapped test alarms on the burst.
	uncapped := NewCountTest(1.1, 0.01)
	uncapped.BurstTicks = -1
	alarmed := false
	for i := 1; i <= 120; i++ {
		bad := 1.0
		if i >= from && i < from+DefaultBurstTicks {
			bad = 10
		}
		b := make([]Block, 19)
		for p := range b {
			b[p] = Block{Pod: fmt.Sprint("b", p), Bad: 1, Total: 100}
		}
		uncapped.ObserveBlocks([]Block{{Pod: "c0", Bad: bad, Total: 100}}, b)
		alarmed = alarmed || uncapped.Regressed()
	}
	if !alarmed {
		t.Fatal("the uncapped test did not alarm on the burst: the case shows nothing")
	}
	one, _ := burstFleet(1, from, 1000, 120)
	if one == 0 || one > from+2*(DefaultBurstTicks+2) {
		t.Errorf("a persistent 10x regression on the only candidate pod: first alarm at tick %d, want within two windows of tick %d", one, from)
	}
	if one < from+DefaultBurstTicks {
		t.Errorf("a persistent 10x regression on the only candidate pod alarmed at tick %d, before it outlasted a burst (tick %d)", one, from+DefaultBurstTicks)
	}
	three, _ := burstFleet(3, from, 1000, 120)
	if three == 0 || three >= one {
		t.Errorf("a persistent 10x regression on three candidate pods: first alarm at tick %d, want before the one-pod case's %d", three, one)
	}
	t.Logf("persistent 10x from tick %d: one pod alarms at %d, three pods at %d", from, one, three)
}

// TestBurstBudgetNeverRaisesTheEValue: whatever the data, the capped
// e-value is the uncapped one times factors of at most 1 — never above it
// — so the cap leaves the test valid.
func TestBurstBudgetNeverRaisesTheEValue(t *testing.T) {
	capped, uncapped := NewCountTest(1.1, 0.01), NewCountTest(1.1, 0.01)
	uncapped.BurstTicks = -1
	for i := 1; i <= 400; i++ {
		// A candidate that alternates between health, bursts and a
		// regression, on one pod.
		bad := []float64{1, 1, 12, 0, 3, 1, 25, 2}[i%8]
		if i > 300 {
			bad = 2.5
		}
		b := []Block{{Pod: "b0", Bad: 10, Total: 1000}, {Pod: "b1", Bad: 9, Total: 1000}}
		c := []Block{{Pod: "c0", Bad: bad, Total: 100}}
		capped.ObserveBlocks(c, b)
		uncapped.ObserveBlocks(c, b)
		if capped.LogEValue() > uncapped.LogEValue()+1e-9 || math.IsNaN(capped.LogEValue()) {
			t.Fatalf("tick %d: capped log e %v above the uncapped %v", i, capped.LogEValue(), uncapped.LogEValue())
		}
	}
}
