package detector

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/sample"
)

// phases is an Incidents the tests set by hand.
type phases struct {
	mu sync.Mutex
	m  map[string]Phase
}

func (p *phases) Phase(id string) Phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id]
}

func (p *phases) set(id string, ph Phase) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]Phase{}
	}
	p.m[id] = ph
}

func active(t *testing.T, e *Engine) Deployment {
	t.Helper()
	deps := e.Deployments()
	if len(deps) == 0 || deps[0].EndedAt != nil {
		t.Fatalf("no deployment under way: %+v", deps)
	}
	return deps[0]
}

// An announced deployment is not superseded by traffic of an older
// version; the healthy twin: a version never seen before still opens an
// implicit deployment.
func TestTrackerOldVersionDoesNotSupersede(t *testing.T) {
	c := newClock()
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10)})
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	v3, err := e.Announce(Deployment{Service: "checkout", Version: "v3", PreviousVersion: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10), requests("checkout", "v2", 200, 10), requests("checkout", "v3", 200, 10)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	if d := active(t, e); d.ID != v3.ID {
		t.Fatalf("old-version traffic superseded the announcement: active %+v", d)
	}
	// A new version serving for global.new_version_hold (1m) supersedes it.
	for i := 0; i <= 6; i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v4", 200, 10)})
		if d := active(t, e); i < 6 && d.ID != v3.ID {
			t.Fatalf("v4 superseded the deployment after %ds, before the hold: %+v", i*10, d)
		}
		c.advance(10 * time.Second)
	}
	if d := active(t, e); d.Version != "v4" || d.PreviousVersion != "v2" || d.Source != SourceImplicit {
		t.Fatalf("a new version serving for the hold did not open a deployment: %+v", d)
	}
}

// Version churn (issue 13, item 7): a new service.version every 2 s used to
// supersede the deployment under way every time, so a 10x bad canary was
// never judged. Versions that never serve for global.new_version_hold wait,
// are counted, and the canary's regression is found; the healthy twin is
// the test above (a version that keeps serving does supersede).
func TestTrackerVersionChurnDoesNotHideCanary(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	regressed := func() bool { return len(rec.verdicts) > 0 && rec.last(t).State == StateRegressed }
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1000)})
	var n int
	for i := 0; i < 90 && !regressed(); i++ {
		for j := 0; j < 5; j++ { // a new junk version every 2 s
			n++
			_ = e.Append([]sample.Sample{requests("checkout", fmt.Sprintf("junk-%d", n), 200, 1)})
			c.advance(2 * time.Second)
		}
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1000), requests("checkout", "v1", 500, 10),
			requests("checkout", "v2", 200, 1000), requests("checkout", "v2", 500, 100)})
		e.Evaluate()
	}
	// junk-1 opened a deployment (none was under way); v2, serving
	// steadily, superseded it after the hold; the rest of the junk waits.
	if d := active(t, e); d.Version != "v2" || d.PreviousVersion != "v1" {
		t.Fatalf("churn superseded the canary: active %+v", d)
	}
	if !regressed() {
		t.Fatal("10x bad canary not judged under version churn")
	}
	if got := testutil.ToFloat64(e.metrics.unconfirmed.WithLabelValues("checkout")); got < float64(n-2) {
		t.Errorf("unconfirmed versions counted %v, want about %d", got, n)
	}
	if len(e.tracks["checkout"].Pending) > maxPending {
		t.Errorf("pending versions unbounded: %d", len(e.tracks["checkout"].Pending))
	}
}

// A re-announcement while the incident is in rollguard's hands keeps the
// deployment (and merges its details); after the incident ended, or was
// handed to people, it opens a new generation with its own id.
func TestTrackerReannouncementGenerations(t *testing.T) {
	c, ph := newClock(), &phases{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now, Incidents: ph})
	ann := Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Commit: "9f2c1e", PreviousCommit: "41ab07", Flags: []string{"f"}}
	d1, err := e.Announce(ann)
	if err != nil {
		t.Fatal(err)
	}
	// The tour's three announcements: the later ones name no commit.
	ph.set(d1.ID, PhaseActing)
	d, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Source: SourceNATS})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != d1.ID || d.Commit != "9f2c1e" || d.PreviousCommit != "41ab07" || len(d.Flags) != 1 || d.Source != SourceNATS {
		t.Fatalf("re-announcement lost details: %+v", d)
	}
	for _, p := range []Phase{PhaseClosed, PhaseEscalated} {
		cur := active(t, e)
		ph.set(cur.ID, p)
		next, err := e.Announce(ann)
		if err != nil {
			t.Fatal(err)
		}
		if next.ID == cur.ID || !strings.HasPrefix(next.ID, d1.ID+"-") || next.Generation() < 2 {
			t.Fatalf("phase %v: re-announcement id %q, want a new generation of %q", p, next.ID, d1.ID)
		}
		deps := e.Deployments()
		if deps[1].ID != cur.ID || deps[1].SupersededBy != next.ID {
			t.Fatalf("phase %v: earlier generation not superseded: %+v", p, deps[1])
		}
	}
	if g := active(t, e).Generation(); g != 3 {
		t.Errorf("generation = %d, want 3", g)
	}
}

// --id is honoured for versions already seen, and an id in use is refused.
func TestTrackerExplicitID(t *testing.T) {
	c, ph := newClock(), &phases{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now, Incidents: ph})
	d1, _ := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"})
	ph.set(d1.ID, PhaseClosed)
	d, err := e.Announce(Deployment{ID: "d-retry1", Service: "checkout", Version: "v2", PreviousVersion: "v1"})
	if err != nil || d.ID != "d-retry1" || !d.StartedAt.Equal(c.now()) {
		t.Fatalf("announce with id = %+v, %v", d, err)
	}
	if _, err := e.Announce(Deployment{ID: d1.ID, Service: "checkout", Version: "v3", PreviousVersion: "v2"}); err == nil {
		t.Error("an id taken by an earlier deployment was accepted")
	}
	// The same id again is the same deployment (a retried announcement).
	if again, err := e.Announce(Deployment{ID: "d-retry1", Service: "checkout", Version: "v2", PreviousVersion: "v1", Commit: "c"}); err != nil || again.ID != "d-retry1" || again.Commit != "c" {
		t.Errorf("retried announcement = %+v, %v", again, err)
	}
}

// No promotion while an incident is in hand, even with the previous
// version gone; the twin without an incident is promoted.
func TestTrackerNoPromotionWithOpenIncident(t *testing.T) {
	for _, tc := range []struct {
		phase    Phase
		promoted bool
	}{{PhaseNone, true}, {PhaseActing, false}, {PhaseEscalated, false}} {
		c, ph := newClock(), &phases{}
		// v1 falls silent as v2 appears: a before/after comparison, watched
		// for baseline.watch (here as short as the promotion hold).
		doc := strings.Replace(engineConfig, "no_data_timeout: 1m", "no_data_timeout: 1m\n  promotion_hold: 1m", 1)
		cfg := mustParse(t, strings.Replace(doc, "    alpha: 0.01\n", "    alpha: 0.01\n    baseline: {watch: 1m}\n", 1))
		e := NewEngine(cfg, EngineOptions{Now: c.now, Incidents: ph})
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
		runTick(e, c, 1, 1)
		ph.set(active(t, e).ID, tc.phase)
		for i := 0; i < 10; i++ {
			_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 100)})
			c.advance(10 * time.Second)
			e.Evaluate()
		}
		if got := e.Deployments()[0].EndReason == "promoted"; got != tc.promoted {
			t.Errorf("phase %v: promoted = %v, want %v", tc.phase, got, tc.promoted)
		}
	}
}

// A deployment rolled back ends, its candidate may come back as a new
// generation; one whose incident closed goes on as a new generation; the
// listener hears every change.
func TestTrackerEndAndNextGeneration(t *testing.T) {
	c, ph := newClock(), &phases{}
	var heard []Deployment
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now, Incidents: ph,
		OnDeployment: func(d Deployment) { heard = append(heard, d) }})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10), requests("checkout", "v2", 200, 10)})
	d1 := active(t, e)
	ph.set(d1.ID, PhaseClosed)
	g2, ok := e.NextGeneration(d1.ID)
	if !ok || g2.Generation() != 2 || g2.Version != "v2" || g2.PreviousVersion != "v1" {
		t.Fatalf("next generation = %+v, %v", g2, ok)
	}
	ph.set(g2.ID, PhaseClosed)
	if !e.EndDeployment(g2.ID, "rolled_back") {
		t.Fatal("EndDeployment: not under way")
	}
	if deps := e.Deployments(); deps[0].EndReason != "rolled_back" {
		t.Fatalf("after rollback: %+v", deps)
	}
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10)})
	if deps := e.Deployments(); deps[0].EndedAt == nil {
		t.Fatalf("stable traffic opened a deployment: %+v", deps[0])
	}
	_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 10)})
	if d := active(t, e); d.Generation() != 3 {
		t.Fatalf("redeploy of the rolled-back version = %+v, want generation 3", d)
	}
	var ended, opened int
	for _, d := range heard {
		if d.EndedAt != nil {
			ended++
		} else {
			opened++
		}
	}
	if opened != 3 || ended != 2 {
		t.Errorf("listener heard %d opened and %d ended, want 3 and 2: %+v", opened, ended, heard)
	}
}

// Resume never brings back an ended deployment.
func TestTrackerResumeEnded(t *testing.T) {
	c := newClock()
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now})
	at := c.now()
	e.Resume(Deployment{ID: "d-x", Service: "checkout", Version: "v2", PreviousVersion: "v1", EndedAt: &at, EndReason: "superseded"}, at)
	if deps := e.Deployments(); len(deps) != 0 {
		t.Errorf("an ended deployment was resumed: %+v", deps)
	}
	e.Resume(Deployment{ID: "d-y", Service: "checkout", Version: "v2", PreviousVersion: "v1", StartedAt: at}, at)
	if d := active(t, e); d.ID != "d-y" {
		t.Errorf("resume = %+v", d)
	}
}

// An increment that began before the tests did (the export that straddles
// a mitigation, or a series' history from before a restart) is left out;
// one that began after counts.
func TestEngineDropsIncrementsFromBeforeTheTests(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10), requests("checkout", "v2", 200, 10)})
	d := active(t, e)
	c.advance(time.Minute)
	e.Verify(d.ID, c.now())
	before := requests("checkout", "v2", 500, 500)
	before.StartUnixNano = c.now().Add(-time.Second).UnixNano() // straddles the restart
	after := requests("checkout", "v2", 200, 100)
	after.StartUnixNano = c.now().Add(time.Second).UnixNano()
	base := requests("checkout", "v1", 200, 100)
	_ = e.Append([]sample.Sample{before, after, base})
	c.advance(10 * time.Second)
	e.Evaluate()
	ev := rec.last(t).Signals[0]
	if ev.Candidate.Total != 100 || ev.Candidate.Bad != 0 {
		t.Errorf("candidate %+v: want the 100 requests that began after the restart, and none of the 500 errors from before", ev.Candidate)
	}
}

// A sample with a number no metric can have (NaN, ±Inf, a negative
// increment) never reaches a test, whatever input it came from; the twin
// with sound numbers counts.
func TestEngineDropsUnusableNumbers(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 10), requests("checkout", "v2", 200, 10)})
	nan, neg, inf := requests("checkout", "v2", 500, math.NaN()), requests("checkout", "v2", 500, -400), requests("checkout", "v2", 500, 100)
	inf.Buckets = []sample.Bucket{{UpperBound: 1, Count: math.Inf(1)}}
	_ = e.Append([]sample.Sample{nan, neg, inf, requests("checkout", "v2", 200, 100), requests("checkout", "v1", 200, 100)})
	c.advance(10 * time.Second)
	e.Evaluate()
	ev := rec.last(t).Signals[0]
	if ev.Candidate.Total != 110 || ev.Candidate.Bad != 0 || math.IsNaN(float64(ev.EValue)) {
		t.Errorf("candidate %+v, e-value %v: want the 110 sound requests only", ev.Candidate, ev.EValue)
	}
}

// Announcements are bounded: at most MaxFlags flags and short fields; the
// twin at the bound is accepted.
func TestAnnouncementBounds(t *testing.T) {
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: newClock().now})
	flags := make([]string, MaxFlags+1)
	for i := range flags {
		flags[i] = "f" + strings.Repeat("x", i)
	}
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Flags: flags}); err == nil ||
		!strings.Contains(err.Error(), "at most 32") {
		t.Errorf("%d flags: %v", len(flags), err)
	}
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Commit: strings.Repeat("c", 257)}); err == nil {
		t.Error("a 257-byte commit was accepted")
	}
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Flags: flags[:MaxFlags]}); err != nil {
		t.Errorf("%d flags refused: %v", MaxFlags, err)
	}
}

// TestBeforeAfterWatch: a before/after comparison (v1 silent from the
// start) is watched for baseline.watch before its deployment may end as
// promoted, though promotion_hold (1 m) passed long before; the twin above
// (TestTrackerNoPromotionWithOpenIncident, watch 1 m) is promoted at once.
func TestBeforeAfterWatch(t *testing.T) {
	c := newClock()
	doc := strings.Replace(engineConfig, "no_data_timeout: 1m", "no_data_timeout: 1m\n  promotion_hold: 1m", 1)
	cfg := mustParse(t, strings.Replace(doc, "    alpha: 0.01\n", "    alpha: 0.01\n    baseline: {watch: 30m}\n", 1))
	e := NewEngine(cfg, EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	promotedAt := time.Duration(-1)
	start := c.now()
	for i := 0; i < 240 && promotedAt < 0; i++ { // 40 minutes of v2 alone
		_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 100)})
		c.advance(10 * time.Second)
		e.Evaluate()
		if deps := e.Deployments(); len(deps) > 0 && deps[0].EndReason == "promoted" {
			promotedAt = c.now().Sub(start)
		}
	}
	if promotedAt < 30*time.Minute || promotedAt > 31*time.Minute {
		t.Errorf("promoted after %v, want at the end of the 30 m watch", promotedAt)
	}
}

// A version waiting for the hold is judged on the gaps a real exporter
// leaves: an SDK exporting once a minute confirms a version after a
// minute's hold (gaps up to quiet are fine), while one silent for longer
// than quiet starts over.
func TestTrackerHoldToleratesExportGaps(t *testing.T) {
	none := func(string) bool { return false }
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	tr, _, _ := Track{}.Observe("s", "v1", nil, t0, time.Minute, 2*time.Minute, none)
	tr, _, _ = tr.Observe("s", "v2", nil, t0, time.Minute, 2*time.Minute, none) // opens at once: nothing under way
	if tr.Current == nil || tr.Current.Version != "v2" {
		t.Fatalf("v2 did not open: %+v", tr)
	}
	step := func(tr Track, at time.Duration) (Track, string) {
		tr, _, why := tr.Observe("s", "v3", nil, t0.Add(at), time.Minute, 2*time.Minute, none)
		return tr, why
	}
	tr2, why := step(tr, 0)
	if why != DropUnconfirmed {
		t.Fatalf("v3 under way at once: %q %+v", why, tr2.Current)
	}
	if tr2, why = step(tr2, 61*time.Second); why != "" || tr2.Current.Version != "v3" || len(tr2.Pending) != 0 {
		t.Fatalf("v3 exported once a minute not confirmed after the hold: %q %+v", why, tr2)
	}
	tr3, _ := step(tr, 0)
	if tr3, why = step(tr3, 3*time.Minute); why != DropUnconfirmed || tr3.Current.Version != "v2" {
		t.Fatalf("v3 silent for 3m (quiet 2m) did not start over: %q %+v", why, tr3.Current)
	}
	if tr3, why = step(tr3, 4*time.Minute+time.Second); why != "" || tr3.Current.Version != "v3" {
		t.Fatalf("v3 serving a minute after starting over not confirmed: %q %+v", why, tr3.Current)
	}
}
