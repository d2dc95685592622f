package remotewrite_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

const detectConfig = `
global:
  evaluation_interval: 10s
  no_data_timeout: 1m
guards:
  - name: checkout
    service: checkout
    service_label: job
    version_label: version
    alpha: 0.01
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`

type verdicts struct{ all []detector.GuardVerdict }

func (v *verdicts) HandleVerdict(gv detector.GuardVerdict) { v.all = append(v.all, gv) }

// The whole way from a Prometheus remote write sender to a verdict: the
// real detector engine is the receiver's Appender and Filter; checkout v1
// and v2 report cumulative request counters by status code, one request
// per 10 s round, and the engine evaluates between rounds on an injected
// clock. With v2 failing 10 % of requests against v1's 1 %, the guard
// regresses; with both at 1 % it never does, and every request arrives.
func TestDetectRegressionThroughRemoteWrite(t *testing.T) {
	cfg, err := configs.Parse([]byte(detectConfig))
	if err != nil {
		t.Fatal(err)
	}
	const perRound = 1000
	for _, p := range []struct {
		name string
		msg  remote.WriteMessageType
		req  func(...series) any
	}{
		{"1.0", remote.WriteV1MessageType, func(ss ...series) any { return v1Request(ss...) }},
		{"2.0", remote.WriteV2MessageType, func(ss ...series) any { return v2Request(ss...) }},
	} {
		for _, tc := range []struct {
			name           string
			candidateBad   int // per 1000 requests
			rounds         int
			wantRegression bool
		}{
			{"bad canary", 100, 20, true},
			{"healthy canary", 10, 30, false},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
				got := &verdicts{}
				engine := detector.NewEngine(cfg, detector.EngineOptions{Handler: got, Now: func() time.Time { return now }})
				f := newFixture(t, remotewrite.Config{Appender: engine, Filter: engine})
				api := newSender(t, f)
				round := 0
				for round = 1; round <= tc.rounds; round++ {
					ts := now.UnixMilli()
					counter := func(version, code string, total int) series {
						return series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "version", version, "code", code),
							typ: "counter", samples: []pt{{ts, float64(total * round)}}}
					}
					// v1 first: the first version seen is the stable one.
					req := p.req(
						counter("v1", "200", perRound-10), counter("v1", "500", 10),
						counter("v2", "200", perRound-tc.candidateBad), counter("v2", "500", tc.candidateBad),
						// Another service's traffic, of no interest to the guard.
						series{labels: lbls("__name__", "http_requests_total", "job", "search", "version", "v9", "code", "500"),
							typ: "counter", samples: []pt{{ts, float64(500 * round)}}},
					)
					stats, err := api.Write(context.Background(), p.msg, req)
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					if p.msg == remote.WriteV2MessageType && stats.Samples != 5 {
						t.Fatalf("round %d: %d samples written, want 5", round, stats.Samples)
					}
					now = now.Add(10 * time.Second)
					engine.Evaluate()
					if n := len(got.all); n > 0 && got.all[n-1].State == detector.StateRegressed {
						break
					}
				}
				if len(got.all) == 0 {
					t.Fatal("no verdict: no deployment was opened from the remote write data")
				}
				last := got.all[len(got.all)-1]
				if d := last.Deployment; d.Service != "checkout" || d.Version != "v2" || d.PreviousVersion != "v1" || d.Source != "implicit" {
					t.Errorf("deployment = %+v", d)
				}
				ev := last.Signals[0]
				if !tc.wantRegression {
					if last.State == detector.StateRegressed {
						t.Fatalf("healthy canary regressed: %+v", ev)
					}
					// Round 1 only sets the counters' bases; round 2 opens the
					// deployment (after v1's samples of that round went by);
					// every later round reaches both cohorts in full.
					want := fmt.Sprintf("baseline %v/%v candidate %v/%v",
						float64(perRound*(tc.rounds-2)), float64(10*(tc.rounds-2)), float64(perRound*(tc.rounds-1)), float64(10*(tc.rounds-1)))
					if got := fmt.Sprintf("baseline %v/%v candidate %v/%v", ev.Baseline.Total, ev.Baseline.Bad, ev.Candidate.Total, ev.Candidate.Bad); got != want {
						t.Errorf("counts seen by the detector: %s, want %s", got, want)
					}
					return
				}
				if last.State != detector.StateRegressed {
					t.Fatalf("a 10x worse canary was not detected in %d rounds: %s %+v", tc.rounds, last.State, ev)
				}
				if ev.Candidate.Ratio <= ev.Baseline.Ratio || ev.Candidate.Version != "v2" || ev.Baseline.Version != "v1" {
					t.Errorf("evidence = %+v", ev)
				}
				t.Logf("regressed after %d rounds: candidate %v/%v, baseline %v/%v", round, ev.Candidate.Bad, ev.Candidate.Total, ev.Baseline.Bad, ev.Baseline.Total)
			})
		}
	}
}

// A bad canary is still detected after hostile input, and a healthy one
// still passes: before v2 first reports, a flood of 1,000 junk series of
// v1 (each a new path) hits the series limits, and every round also brings
// a request with a point of v2's error counter from the year 2200 and a NaN
// one (both refused with 400). Before the fix the flood took every tracked
// series (one budget for all versions) and the canary was never judged; the
// year-2200 point, had it been taken, would have blinded the error counter.
func TestDetectAfterHostileInput(t *testing.T) {
	cfg, err := configs.Parse([]byte(detectConfig))
	if err != nil {
		t.Fatal(err)
	}
	const perRound = 1000
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, p := range []struct {
		name string
		msg  remote.WriteMessageType
		req  func(...series) any
	}{
		{"1.0", remote.WriteV1MessageType, func(ss ...series) any { return v1Request(ss...) }},
		{"2.0", remote.WriteV2MessageType, func(ss ...series) any { return v2Request(ss...) }},
	} {
		for _, tc := range []struct {
			name           string
			candidateBad   int // per 1000 requests
			rounds         int
			wantRegression bool
		}{
			{"bad canary", 100, 20, true},
			{"healthy canary", 10, 30, false},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
				got := &verdicts{}
				engine := detector.NewEngine(cfg, detector.EngineOptions{Handler: got, Now: func() time.Time { return now }})
				f := newFixture(t, remotewrite.Config{Appender: engine, Filter: engine,
					MaxSeries: 500, MaxSeriesPerVersion: 50, VersionLabels: []string{"job", "version"}})
				api := newSender(t, f)
				counter := func(version, code string, total, round int) series {
					return series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "version", version, "code", code),
						typ: "counter", samples: []pt{{now.UnixMilli(), float64(total * round)}}}
				}
				// Round 1: v1 alone, then the flood of v1 junk.
				if _, err := api.Write(context.Background(), p.msg, p.req(counter("v1", "200", perRound-10, 1), counter("v1", "500", 10, 1))); err != nil {
					t.Fatal(err)
				}
				var junk []series
				for i := range 1000 {
					s := counter("v1", "200", 1, 1)
					s.labels = append(s.labels, "path", "/junk/"+itoa(int64(i)))
					junk = append(junk, s)
				}
				if resp := f.send(p.req(junk...)); resp.code != 204 {
					t.Fatalf("junk: %d %s", resp.code, resp.body)
				}
				now = now.Add(10 * time.Second)
				engine.Evaluate()
				round := 0
				for round = 2; round <= tc.rounds; round++ {
					req := p.req(
						counter("v1", "200", perRound-10, round), counter("v1", "500", 10, round),
						counter("v2", "200", perRound-tc.candidateBad, round), counter("v2", "500", tc.candidateBad, round),
					)
					if _, err := api.Write(context.Background(), p.msg, req); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					future, nan := counter("v2", "500", 1, round), counter("v2", "500", 1, round)
					future.samples[0] = pt{year2200, 1e9}
					nan.samples[0].v = math.NaN()
					if resp := f.send(p.req(future, nan)); resp.code != 400 {
						t.Fatalf("round %d: hostile request answered %d %s", round, resp.code, resp.body)
					}
					now = now.Add(10 * time.Second)
					engine.Evaluate()
					if n := len(got.all); n > 0 && got.all[n-1].State == detector.StateRegressed {
						break
					}
				}
				if len(got.all) == 0 {
					t.Fatal("no verdict: the canary was never judged")
				}
				last := got.all[len(got.all)-1]
				if d := last.Deployment; d.Version != "v2" || d.PreviousVersion != "v1" {
					t.Errorf("deployment = %+v", d)
				}
				ev := last.Signals[0]
				if !tc.wantRegression {
					if last.State == detector.StateRegressed {
						t.Fatalf("healthy canary regressed: %+v", ev)
					}
					// Every round after v2's first (its base) reaches the
					// detector in full: no refused point counted.
					if want := float64(perRound * (tc.rounds - 2)); ev.Candidate.Total != want || ev.Candidate.Bad != want/100 {
						t.Errorf("candidate %v/%v, want %v/%v", ev.Candidate.Bad, ev.Candidate.Total, want/100, want)
					}
					return
				}
				if last.State != detector.StateRegressed {
					t.Fatalf("a 10x worse canary was not detected in %d rounds after hostile input: %s %+v", tc.rounds, last.State, ev)
				}
				t.Logf("regressed after %d rounds: candidate %v/%v, baseline %v/%v", round, ev.Candidate.Bad, ev.Candidate.Total, ev.Baseline.Bad, ev.Baseline.Total)
			})
		}
	}
}
