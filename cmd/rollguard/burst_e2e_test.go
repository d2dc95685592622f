package main

import (
	"math"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
)

// A bursty pod (issue 12): the candidate's only pod — an OpenTelemetry SDK
// pod like the retry-storm fleet's, beside five baseline pods — fails ten
// times as often for burstRounds rounds, then is as healthy as the
// baseline. The burst budget (detector.CountTest, DefaultBurstTicks) keeps
// the daemon from taking that minute for a version effect: no command.
// The twins: in process, the same blocks tested without the budget alarm
// during the burst (the case is not easy); and a candidate whose tenfold
// failures persist gets one flag_kill, after it outlasted a burst.
const (
	burstFrom   = 10
	burstRounds = detector.DefaultBurstTicks
	burstFactor = 10
)

func TestBurstyPodFleet(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, testConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newStormFleet(t, td, stormErr)
		for i := 0; i < stormRounds; i++ {
			f.cand.errRate = stormErr
			if i >= burstFrom && i < burstFrom+burstRounds {
				f.cand.errRate = stormErr * burstFactor
			}
			f.round(t, td)
		}
		e := f.quiet(t, td, seen, stormRounds)
		f.checkStormEvidence(t, e)
		uncapped, at := f.replayUncapped(stormRounds)
		if at == 0 {
			t.Errorf("in process, the test without the burst budget did not alarm on the burst (max log e-value %.2f): the case shows nothing", -math.Log(uncapped.PValue()))
		}
		t.Logf("%d rounds, a %dx burst on the candidate's only pod over rounds %d–%d: daemon max log e-value %.2f (threshold %.2f), assumption %q; without the budget alarmed at round %d; %s",
			stormRounds, burstFactor, burstFrom+1, burstFrom+burstRounds, -math.Log(float64(e.PValue)), math.Log(e.Threshold), e.Model.Assumption, at, time.Since(start).Round(time.Millisecond))
	})

	t.Run("persistent", func(t *testing.T) {
		start := time.Now()
		td := startDaemon(t, testConfig)
		seen := watchCommands(t, td)
		announceStorm(t, td)
		f := newStormFleet(t, td, stormErr)
		rounds := 0
		cd := oneCommand(t, td, func() {
			if rounds >= burstFrom {
				f.cand.errRate = stormErr * burstFactor
			}
			rounds++
			f.round(t, td)
		})
		e := actions.DetectorEvidence(cd.Evidence)[0]
		if e.State != detector.StateRegressed || e.Candidate.Ratio <= e.Baseline.Ratio {
			t.Errorf("evidence = %+v", e)
		}
		f.checkStormEvidence(t, e)
		if e.Ticks < burstFrom+burstRounds {
			t.Errorf("flag_kill on evidence over %d ticks, before the regression outlasted a burst (tick %d)", e.Ticks, burstFrom+burstRounds)
		}
		if ids := seen.all(); len(ids) != 1 {
			t.Errorf("commands on the wire: %v, want one", ids)
		}
		t.Logf("%dx from round %d: flag_kill with evidence over %d ticks; %s", burstFactor, burstFrom+1, e.Ticks, time.Since(start).Round(time.Millisecond))
	})
}

// replayUncapped feeds the first n rounds' blocks to the daemon's test
// without the burst budget, and returns it and the round at which it
// first alarmed (0: never).
func (f *stormFleet) replayUncapped(n int) (*detector.CountTest, int) {
	ct := detector.NewCountTest(stormTheta0, stormAlpha)
	ct.BurstTicks = -1
	at := 0
	for i, tk := range f.ticks[:n] {
		ct.ObserveBlocks(tk.cand, tk.base)
		if at == 0 && ct.Regressed() {
			at = i + 1
		}
	}
	return ct, at
}
