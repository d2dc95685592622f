package detector

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rollguard/rollguard/sample"
)

// TestTrackerProperties drives the engine's deployment tracking with random
// traffic, announcements, incident phases, promotions, rollbacks and new
// generations, and checks its rules after every step: ids are never reused
// by a new deployment; an ended deployment never comes back; a retired
// version's traffic never opens or supersedes a deployment; no deployment
// is promoted while its incident is in hand; and every change reaches the
// listener.
func TestTrackerProperties(t *testing.T) {
	base := mustParse(t, engineConfig)
	rapid.Check(t, func(t *rapid.T) {
		c, ph := newClock(), &phases{}
		heard := map[string][]Deployment{}
		cp := *base
		cfg := &cp
		cfg.Global.PromotionHold = 0
		e := NewEngine(cfg, EngineOptions{Now: c.now, Incidents: ph,
			OnDeployment: func(d Deployment) { heard[d.ID] = append(heard[d.ID], d) }})
		versions := []string{"v1", "v2", "v3", "v4"}
		opened := map[string]time.Time{} // id -> start of the deployment that took it
		ended := map[string]bool{}
		n := rapid.IntRange(1, 80).Draw(t, "steps")
		for i := 0; i < n; i++ {
			before := e.Deployments()
			var cur *Deployment
			if len(before) > 0 && before[0].EndedAt == nil {
				cur = &before[0]
			}
			retired := append([]string(nil), e.tracks["checkout"].Retired...)
			pending := append([]Sighting(nil), e.tracks["checkout"].Pending...)
			op := rapid.SampledFrom([]string{"traffic", "traffic", "announce", "phase", "evaluate", "end", "next"}).Draw(t, "op")
			switch op {
			case "traffic":
				v := rapid.SampledFrom(versions).Draw(t, "version")
				_ = e.Append([]sample.Sample{requests("checkout", v, 200, 10)})
				after := e.Deployments()
				for _, r := range retired {
					if r == v && len(after) > 0 && (cur == nil || after[0].ID != cur.ID) && after[0].EndedAt == nil {
						t.Fatalf("traffic of retired version %s opened %+v", v, after[0])
					}
				}
				if cur != nil && len(after) > 0 && after[0].ID != cur.ID && after[0].EndedAt == nil {
					// Traffic superseded the deployment under way: only a
					// version seen serving for the hold may.
					hold := time.Duration(cfg.Global.NewVersionHold)
					quiet := max(hold, time.Duration(cfg.Global.NoDataTimeout))
					served := false
					for _, p := range pending {
						served = served || (p.Version == v && c.now().Sub(p.First) >= hold && c.now().Sub(p.Last) <= quiet)
					}
					if !served {
						t.Fatalf("traffic of %s superseded %s before serving for %v (pending %+v)", v, cur.ID, hold, pending)
					}
				}
				if len(e.tracks["checkout"].Pending) > maxPending {
					t.Fatalf("%d versions pending", len(e.tracks["checkout"].Pending))
				}
			case "announce":
				a := Deployment{Service: "checkout", Version: rapid.SampledFrom(versions).Draw(t, "version"),
					PreviousVersion: rapid.SampledFrom(versions).Draw(t, "previous"),
					ID:              rapid.SampledFrom([]string{"", "", "d-mine"}).Draw(t, "id")}
				_, _ = e.Announce(a)
			case "phase":
				if cur != nil {
					ph.set(cur.ID, Phase(rapid.IntRange(0, 3).Draw(t, "phase")))
				}
			case "evaluate":
				c.advance(10 * time.Second)
				e.Evaluate()
				after := e.Deployments()
				if cur != nil && len(after) > 0 {
					for _, d := range after {
						if d.ID == cur.ID && d.EndReason == "promoted" {
							if p := ph.Phase(cur.ID); p == PhaseActing || p == PhaseEscalated {
								t.Fatalf("deployment %s promoted while its incident is %v", cur.ID, p)
							}
						}
					}
				}
			case "end":
				if cur != nil {
					e.EndDeployment(cur.ID, "rolled_back")
				}
			case "next":
				if cur != nil {
					ph.set(cur.ID, PhaseClosed)
					e.NextGeneration(cur.ID)
				}
			}
			c.advance(time.Second)
			deps := e.Deployments()
			active := 0
			for _, d := range deps {
				if d.EndedAt == nil {
					active++
					if ended[d.ID] {
						t.Fatalf("ended deployment %s is under way again", d.ID)
					}
					if st, ok := opened[d.ID]; ok && !st.Equal(d.StartedAt) {
						t.Fatalf("id %s reused by a new deployment (started %v, before %v)", d.ID, d.StartedAt, st)
					}
					opened[d.ID] = d.StartedAt
					if cur := e.tracks["checkout"].Current; cur == nil || cur.ID != d.ID {
						t.Fatalf("tracker's current %+v is not the engine's %s", cur, d.ID)
					}
				} else {
					ended[d.ID] = true
				}
				if got := heard[d.ID]; len(got) == 0 || (d.EndedAt != nil && got[len(got)-1].EndedAt == nil) {
					t.Fatalf("listener did not hear %s as it is now: %+v", d.ID, got)
				}
			}
			if active > 1 {
				t.Fatalf("%d deployments under way for one service", active)
			}
		}
	})
}
