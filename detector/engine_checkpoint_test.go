package detector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rollguard/rollguard/sample"
)

// appendTick sends one tick of traffic for both versions.
func appendTick(e *Engine, stableBad, canaryBad float64) {
	_ = e.Append([]sample.Sample{
		requests("checkout", "v1", 200, 1000-stableBad), requests("checkout", "v1", 500, stableBad),
		requests("checkout", "v2", 200, 1000-canaryBad), requests("checkout", "v2", 502, canaryBad),
	})
}

// TestEngineResumeTests: a deployment's tests checkpointed (TestStates,
// through JSON as the KV keeps them) and restored in another engine
// (ResumeTests, as a replica taking the guard over does) go on with the
// same evidence: after every later tick the restored engine's log e-value
// equals the uninterrupted one's, and a mild regression (12 against 10 bad
// of 1000 a tick) is flagged at the same tick. The twin, a plain Resume
// (tests afresh from the takeover, the old behaviour), has spent its
// evidence: lower e-values throughout, and flagged later or not at all.
func TestEngineResumeTests(t *testing.T) {
	cfg := mustParse(t, engineConfig)
	c, recA := newClock(), &recorder{}
	a := NewEngine(cfg, EngineOptions{Handler: recA, Now: c.now})
	_ = a.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	const before = 30
	for i := 0; i < before; i++ {
		runTick(a, c, 10, 12)
	}
	if s := recA.last(t).State; s == StateRegressed {
		t.Fatalf("regressed before the checkpoint; choose a milder regression")
	}
	states := a.TestStates()
	if len(states) != 1 || len(states[0].Tests) != 1 {
		t.Fatalf("test states = %+v", states)
	}
	raw, err := json.Marshal(states[0])
	if err != nil {
		t.Fatal(err)
	}
	var st TestState
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	dep := a.Deployments()[0]

	recB, recC := &recorder{}, &recorder{}
	b := NewEngine(cfg, EngineOptions{Handler: recB, Now: c.now})
	cc := NewEngine(cfg, EngineOptions{Handler: recC, Now: c.now})
	if n := b.ResumeTests(dep, st, c.now()); n != 1 {
		t.Fatalf("restored %d tests, want 1", n)
	}
	cc.Resume(dep, c.now())
	if n := NewEngine(cfg, EngineOptions{Now: c.now}).ResumeTests(dep, TestState{Service: dep.Service, Deployment: "d-other", Tests: st.Tests}, c.now()); n != 0 {
		t.Errorf("restored %d tests of another deployment", n)
	}

	flagged := map[string]int{}
	for i := 0; i < 360; i++ {
		for _, e := range []*Engine{a, b, cc} {
			appendTick(e, 10, 12)
		}
		c.advance(10 * time.Second)
		for _, e := range []*Engine{a, b, cc} {
			e.Evaluate()
		}
		va, vb, vc := recA.last(t), recB.last(t), recC.last(t)
		if va.Signals[0].LogEValue != vb.Signals[0].LogEValue {
			t.Fatalf("tick %d after the takeover: log e-value %v uninterrupted, %v restored", i, va.Signals[0].LogEValue, vb.Signals[0].LogEValue)
		}
		if vc.Signals[0].LogEValue > va.Signals[0].LogEValue+1e-9 && i >= 30 {
			t.Errorf("tick %d: the afresh twin's log e-value %v above the restored %v", i, vc.Signals[0].LogEValue, va.Signals[0].LogEValue)
		}
		for name, v := range map[string]GuardVerdict{"a": va, "b": vb, "c": vc} {
			if _, ok := flagged[name]; !ok && v.State == StateRegressed {
				flagged[name] = i
			}
		}
		if _, ok := flagged["c"]; ok {
			break
		}
	}
	fa, okA := flagged["a"]
	fb, okB := flagged["b"]
	if !okA || !okB || fa != fb {
		t.Fatalf("flagged at %v: the uninterrupted and the restored engines must flag, at the same tick", flagged)
	}
	if fc, ok := flagged["c"]; ok && fc <= fa {
		t.Errorf("the afresh twin flagged at tick %d, no later than the restored one (%d)", fc, fa)
	}
	t.Logf("flagged after the takeover at tick: %v", flagged)
}

// TestEngineQuietFlushFollowsBatchCadence: exporters that report once a
// minute while the engine evaluates every 10 s leave five quiet
// evaluations between batches; the tests must not take that for the data
// stopping and flush the tick they hold for a shock's end (which would
// switch the shock gate off). After every batch the slow engine's evidence
// equals that of an engine evaluated only at the batches. The twin: once
// the data really stop (quiet for three of the usual gaps), the held tick
// is tested and the evidence moves.
func TestEngineQuietFlushFollowsBatchCadence(t *testing.T) {
	cfg := mustParse(t, engineConfig)
	cs, cf := newClock(), newClock()
	recS, recF := &recorder{}, &recorder{}
	slow := NewEngine(cfg, EngineOptions{Handler: recS, Now: cs.now})
	fast := NewEngine(cfg, EngineOptions{Handler: recF, Now: cf.now})
	for _, e := range []*Engine{slow, fast} {
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	}
	for i := 0; i < 20; i++ {
		appendTick(slow, 10, 13)
		appendTick(fast, 10, 13)
		cs.advance(10 * time.Second)
		slow.Evaluate()
		for k := 0; k < 5; k++ { // five quiet evaluations: the next export is a minute away
			cs.advance(10 * time.Second)
			slow.Evaluate()
		}
		cf.advance(60 * time.Second)
		fast.Evaluate()
		if s, f := recS.last(t).Signals[0].LogEValue, recF.last(t).Signals[0].LogEValue; s != f {
			t.Fatalf("batch %d: log e-value %v with quiet evaluations between batches, %v without", i, s, f)
		}
	}
	before := recS.last(t).Signals[0].LogEValue
	for k := 0; k < 24; k++ { // the data stop: four minutes of quiet
		cs.advance(10 * time.Second)
		slow.Evaluate()
	}
	if after := recS.last(t).Signals[0].LogEValue; after == before {
		t.Errorf("the data stopped but the held tick was never tested (log e-value still %v)", after)
	}
}
