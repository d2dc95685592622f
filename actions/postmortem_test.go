package actions_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/postmortem")

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func ptr(t time.Time) *time.Time { return &t }

// stabilizedIncident is a canary caught on its error ratio: the flag kill
// worked but did not bring recovery, the rollback waited for approval,
// then the service recovered and a data audit was asked for.
func stabilizedIncident() actions.Incident {
	start := at("2030-01-02T03:04:05Z")
	detected := at("2030-01-02T03:07:05Z")
	d := detector.Deployment{ID: "d-3fa2b1c0d4e5", Service: "checkout", Version: "v2.4.0", PreviousVersion: "v2.3.1",
		Commit: "9f1c2ab", PreviousCommit: "77de0a1", Flags: []string{"new-checkout"}, Migration: "none",
		Strategy: "canary", Weight: 10, Source: "api", StartedAt: start}
	trigger := []detector.Evidence{
		{Signal: "errors", Kind: "sequential", State: detector.StateRegressed,
			Baseline:  detector.CohortCounts{Version: "v2.3.1", Total: 24000, Bad: 120, Ratio: 0.005},
			Candidate: detector.CohortCounts{Version: "v2.4.0", Total: 2600, Bad: 96, Ratio: 96.0 / 2600},
			Estimate:  7.38, IntervalLow: 4.1, IntervalHigh: 13.2, Theta0: 1, EValue: 2350, PValue: 1.0 / 2350,
			Threshold: 1000, Alpha: 0.001, Ticks: 36, WindowStart: start, WindowEnd: detected,
			Reason: "e-value reached 1/alpha: the candidate's bad-event rate is above the tolerance (3.69% against 0.5%)"},
		{Signal: "latency:p99", Kind: "sequential", State: detector.StateInconclusive, Quantile: 0.99, Boundary: 0.8,
			Baseline:  detector.CohortCounts{Version: "v2.3.1", Total: 24000, Bad: 240, Ratio: 0.01},
			Candidate: detector.CohortCounts{Version: "v2.4.0", Total: 2600, Bad: 31, Ratio: 31.0 / 2600},
			Estimate:  1.19, IntervalLow: 0.6, IntervalHigh: 2.4, Theta0: 1, EValue: 1.7, PValue: 0.59,
			Threshold: 1000, Alpha: 0.001, Ticks: 36, WindowStart: start, WindowEnd: detected},
	}
	verifyStart := at("2030-01-02T03:14:52Z")
	latest := []detector.Evidence{
		{Signal: "errors", Kind: "sequential", State: detector.StateHealthy,
			Baseline:  detector.CohortCounts{Version: "v2.3.1", Total: 9000, Bad: 45, Ratio: 0.005},
			Candidate: detector.CohortCounts{Version: "v2.4.0"},
			Estimate:  detector.Float(math.NaN()), IntervalLow: 0, IntervalHigh: detector.Float(math.Inf(1)), Theta0: 1,
			EValue: 1, PValue: 1, Threshold: 1000, Alpha: 0.001, Ticks: 24, WindowStart: verifyStart, WindowEnd: at("2030-01-02T03:17:30Z"),
			Reason: "the confidence interval excludes ratios above the tolerance"},
	}
	zero := 0
	auditFrom, auditTo := start, verifyStart
	return actions.Incident{
		ID: "inc-d-3fa2b1c0d4e5", Guard: "checkout", Service: "checkout", State: actions.StateStabilized,
		Reason: "every signal has stayed within tolerance of the baseline for 2m", Deployment: d,
		Trigger: trigger, Latest: latest, Ladder: []string{actions.ActionFlagKill, actions.ActionRollback}, Rung: 1,
		OpenedAt: detected, DetectedAt: detected,
		MitigatedAt: ptr(at("2030-01-02T03:07:06Z")), RecoveredAt: ptr(at("2030-01-02T03:25:17Z")),
		Timeline: []actions.TimelineEntry{
			{At: start, Kind: actions.EntryState, To: "deployed", Reason: "deployment d-3fa2b1c0d4e5 of checkout: v2.3.1 -> v2.4.0"},
			{At: detected, Kind: actions.EntryState, To: actions.StateWatching, Reason: "regression detected: errors 3.69% vs 0.5% baseline (ratio 7.38, e-value 2.35e+03 >= 1e+03)"},
			{At: detected, Kind: actions.EntryCommand, CommandID: "d-3fa2b1c0d4e5/flag_kill/new-checkout", Reason: "flag_kill new-checkout sent"},
			{At: detected, Kind: actions.EntryState, From: actions.StateWatching, To: actions.StateContaining, Reason: "regression detected"},
			{At: at("2030-01-02T03:07:06Z"), Kind: actions.EntryResult, CommandID: "d-3fa2b1c0d4e5/flag_kill/new-checkout", Reason: "flag_kill new-checkout: ok by flagd-file"},
			{At: at("2030-01-02T03:07:06Z"), Kind: actions.EntryState, From: actions.StateContaining, To: actions.StateVerifying, Reason: "flag_kill carried out by flagd-file; comparing against the baseline again"},
			{At: at("2030-01-02T03:12:06Z"), Kind: actions.EntryState, From: actions.StateVerifying, To: actions.StateRollingBack, Reason: "flag_kill did not bring recovery within 5m; taking the next step: rollback"},
			{At: at("2030-01-02T03:12:06Z"), Kind: actions.EntryCommand, CommandID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Reason: "rollback to v2.3.1 (77de0a1) by redeploy held: awaiting approval (rollguard approve d-3fa2b1c0d4e5/rollback/v2.3.1)"},
			{At: at("2030-01-02T03:14:30Z"), Kind: actions.EntryApproval, CommandID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Reason: "rollback to v2.3.1 (77de0a1) by redeploy approved by alice"},
			{At: at("2030-01-02T03:14:30Z"), Kind: actions.EntryCommand, CommandID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Reason: "rollback to v2.3.1 (77de0a1) by redeploy sent"},
			{At: verifyStart, Kind: actions.EntryResult, CommandID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Reason: "rollback to v2.3.1 (77de0a1) by redeploy: ok by deployer (12 hosts on v2.3.1)"},
			{At: verifyStart, Kind: actions.EntryCommand, CommandID: "d-3fa2b1c0d4e5/data_audit/window", Reason: "data_audit of errors sent"},
			{At: verifyStart, Kind: actions.EntryState, From: actions.StateRollingBack, To: actions.StateVerifying, Reason: "rollback carried out by deployer; comparing against the baseline again"},
			{At: at("2030-01-02T03:23:17Z"), Kind: actions.EntryEvidence, Reason: "signals back within tolerance of the baseline; holding for 2m"},
			{At: at("2030-01-02T03:25:17Z"), Kind: actions.EntryState, From: actions.StateVerifying, To: actions.StateStabilized, Reason: "every signal has stayed within tolerance of the baseline for 2m"},
		},
		Commands: []actions.CommandRecord{
			{ID: "d-3fa2b1c0d4e5/flag_kill/new-checkout", Action: actions.ActionFlagKill, Subject: "rollguard.cmd.flag_kill.checkout",
				Target: actions.Target{Flag: "new-checkout", Percent: &zero}, Status: actions.CommandOK,
				IssuedAt: detected, SentAt: ptr(detected), Published: ptr(detected.Add(200 * time.Millisecond)), ResultAt: ptr(at("2030-01-02T03:07:06Z")),
				Result: &actions.ResultData{CommandID: "d-3fa2b1c0d4e5/flag_kill/new-checkout", Action: actions.ActionFlagKill, Service: "checkout",
					Status: actions.ResultOK, Detail: "new-checkout set to 0% in flags.json", Actuator: "flagd-file", At: at("2030-01-02T03:07:06Z")}},
			{ID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Action: actions.ActionRollback, Subject: "rollguard.cmd.rollback.checkout",
				Target: actions.Target{Version: "v2.3.1", Commit: "77de0a1", Strategy: actions.StrategyRedeploy}, Status: actions.CommandOK,
				ApprovedBy: "alice", IssuedAt: at("2030-01-02T03:12:06Z"), SentAt: ptr(at("2030-01-02T03:14:30Z")),
				Published: ptr(at("2030-01-02T03:14:30Z")), ResultAt: ptr(verifyStart), Step: 1,
				Result: &actions.ResultData{CommandID: "d-3fa2b1c0d4e5/rollback/v2.3.1", Action: actions.ActionRollback, Service: "checkout",
					Status: actions.ResultOK, Detail: "12 hosts on v2.3.1", Actuator: "deployer", At: verifyStart}},
			{ID: "d-3fa2b1c0d4e5/data_audit/window", Action: actions.ActionDataAudit, Subject: "rollguard.cmd.data_audit.checkout",
				Target: actions.Target{WindowStart: &auditFrom, WindowEnd: &auditTo, Signals: []string{"errors"}}, Status: actions.CommandPublished,
				IssuedAt: verifyStart, SentAt: ptr(verifyStart), Published: ptr(verifyStart.Add(time.Second)), Step: -1},
		},
		Statuses: []actions.StatusRecord{
			{Seq: 1, At: detected, State: actions.StateWatching, Customer: "We are investigating errors in checkout."},
			{Seq: 2, At: detected, State: actions.StateContaining, Customer: "We are investigating errors in checkout."},
			{Seq: 5, At: at("2030-01-02T03:25:17Z"), State: actions.StateStabilized,
				Customer: "Checkout is working normally again.\n\nSome customers saw errors between 03:04 and 03:25 UTC; no action is needed on your side."},
		},
	}
}

// escalatedIncident is an all-at-once deployment with an irreversible
// migration: no rollback, the flag kill failed, the audit timed out, and
// people took over.
func escalatedIncident() actions.Incident {
	start := at("2030-03-04T10:00:00Z")
	detected := at("2030-03-04T10:02:30Z")
	d := detector.Deployment{ID: "d-8c41aa9e0b17", Service: "payments", Version: "v7", PreviousVersion: "v6",
		Flags: []string{"new-pricing"}, Migration: detector.MigrationIrreversible, Strategy: "all_at_once", Source: "api", StartedAt: start}
	ev := []detector.Evidence{{Signal: "errors", Kind: "before_after", State: detector.StateRegressed,
		Baseline:  detector.CohortCounts{Version: "v6 (before)", Total: 60000, Bad: 30, Ratio: 0.0005},
		Candidate: detector.CohortCounts{Version: "v7", Total: 52000, Bad: 410, Ratio: 410.0 / 52000},
		Estimate:  15.77, IntervalHigh: detector.Float(math.Inf(1)), Theta0: 1.2, EValue: 840, PValue: 1.0 / 840,
		Threshold: 100, Alpha: 0.01, Ticks: 20, WindowStart: start, WindowEnd: detected,
		Reason: "e-value reached 1/alpha: the candidate's rate 0.788% is above the tolerance over the 0.05% of the window before the deployment (assumed representative)"}}
	forward := "the deployment declares an irreversible migration: rolling back would run old code on migrated data, so rollguard never sends rollback"
	zero := 0
	failedAt := at("2030-03-04T10:02:41Z")
	escalated := at("2030-03-04T10:02:41Z")
	auditFrom := start
	return actions.Incident{
		ID: "inc-d-8c41aa9e0b17", Guard: "payments", Service: "payments", State: actions.StateEscalated,
		Reason: "flag_kill new-pricing: failed by pricing-flags (flag service answered 503); handing over to people", Deployment: d,
		Trigger: ev, Latest: ev, Ladder: []string{actions.ActionFlagKill}, Rung: 0, Forward: forward,
		OpenedAt: detected, DetectedAt: detected, EscalatedAt: &escalated,
		Timeline: []actions.TimelineEntry{
			{At: start, Kind: actions.EntryState, To: "deployed", Reason: "deployment d-8c41aa9e0b17 of payments: v6 -> v7"},
			{At: detected, Kind: actions.EntryState, To: actions.StateWatching, Reason: "regression detected: errors 0.788% vs 0.05% baseline (ratio 15.8, e-value 840 >= 100)"},
			{At: detected, Kind: actions.EntryState, Reason: "forward mitigation: " + forward},
			{At: detected, Kind: actions.EntryCommand, CommandID: "d-8c41aa9e0b17/flag_kill/new-pricing", Reason: "flag_kill new-pricing sent"},
			{At: detected, Kind: actions.EntryState, From: actions.StateWatching, To: actions.StateContaining, Reason: "regression detected"},
			{At: failedAt, Kind: actions.EntryResult, CommandID: "d-8c41aa9e0b17/flag_kill/new-pricing", Reason: "flag_kill new-pricing: failed by pricing-flags (flag service answered 503)"},
			{At: escalated, Kind: actions.EntryState, From: actions.StateContaining, To: actions.StateEscalated, Reason: "flag_kill new-pricing: failed by pricing-flags (flag service answered 503); handing over to people"},
			{At: escalated, Kind: actions.EntryCommand, CommandID: "d-8c41aa9e0b17/data_audit/window", Reason: "data_audit of errors sent"},
			{At: at("2030-03-04T10:03:41Z"), Kind: actions.EntryResult, CommandID: "d-8c41aa9e0b17/data_audit/window", Reason: "no result for data_audit of errors within ack_timeout (1m)"},
		},
		Commands: []actions.CommandRecord{
			{ID: "d-8c41aa9e0b17/flag_kill/new-pricing", Action: actions.ActionFlagKill, Target: actions.Target{Flag: "new-pricing", Percent: &zero},
				Status: actions.CommandFailed, IssuedAt: detected, SentAt: ptr(detected), Published: ptr(detected), ResultAt: &failedAt,
				Result: &actions.ResultData{Status: actions.ResultFailed, Detail: "flag service answered 503", Actuator: "pricing-flags", At: failedAt}},
			{ID: "d-8c41aa9e0b17/data_audit/window", Action: actions.ActionDataAudit, Target: actions.Target{WindowStart: &auditFrom, WindowEnd: &escalated, Signals: []string{"errors"}},
				Status: actions.CommandTimedOut, IssuedAt: escalated, SentAt: &escalated, Published: &escalated, Step: -1},
		},
		Statuses: []actions.StatusRecord{
			{Seq: 1, At: detected, State: actions.StateWatching, Customer: "We are investigating payment errors."},
			{Seq: 2, At: escalated, State: actions.StateEscalated, Customer: "Engineers are working on payment errors. Next update in 15m."},
		},
	}
}

func render(t *testing.T, inc actions.Incident, now time.Time) string {
	t.Helper()
	var b bytes.Buffer
	if err := actions.RenderPostmortem(&b, inc, now); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPostmortemGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		inc  actions.Incident
		now  time.Time
	}{
		{"stabilized", stabilizedIncident(), at("2030-01-02T04:00:00Z")},
		{"escalated-irreversible", escalatedIncident(), at("2030-03-04T10:30:00Z")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.inc, tc.now)
			if again := render(t, tc.inc, tc.now); again != got {
				t.Fatal("two renders of the same incident differ")
			}
			file := filepath.Join("testdata", "postmortem", tc.name+".md")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./actions/ -run Postmortem -update to write it)", err)
			}
			if got != string(want) {
				gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
				for i := 0; i < len(gl) || i < len(wl); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Fatalf("%s differs at line %d (rerun with -update if intended)\n got: %q\nwant: %q", file, i+1, g, w)
					}
				}
			}
		})
	}
}

// TestPostmortemKeyLines pins the figures a reader relies on, and that
// each corrective action appears exactly when the record calls for it.
func TestPostmortemKeyLines(t *testing.T) {
	noFlag := stabilizedIncident()
	noFlag.Deployment.Flags = nil
	noFlag.Ladder = []string{actions.ActionRollback}
	noFlag.Commands = noFlag.Commands[1:2]
	dry := stabilizedIncident()
	dry.DryRun = true
	open := stabilizedIncident()
	open.State, open.RecoveredAt, open.MitigatedAt = actions.StateVerifying, nil, nil
	approvedAtOnce := stabilizedIncident()
	approvedAtOnce.Deployment.Weight = 0
	approvedAtOnce.Commands[1].SentAt = &approvedAtOnce.Commands[1].IssuedAt
	latency := stabilizedIncident()
	latency.Trigger = latency.Trigger[1:]
	latency.Trigger[0].State = detector.StateRegressed

	const (
		noFlagAction  = "No feature flag was declared: put the change behind a flag so containment does not need a rollback."
		canaryAction  = "add a canary stage with automatic rollback to limit exposure."
		migration     = "use expand/contract migrations so rollback stays possible."
		actuator      = "An actuator failed, rejected or timed out"
		audit         = "review the data_audit findings"
		escalation    = "list what people had to do by hand"
		approvalDelay = "Approval delayed containment (d-3fa2b1c0d4e5/flag_kill/new-checkout"
	)
	for _, tc := range []struct {
		name      string
		inc       actions.Incident
		now       time.Time
		want, not []string
	}{
		{"stabilized", stabilizedIncident(), at("2030-01-02T04:00:00Z"), []string{
			"# Post-mortem draft: checkout — inc-d-3fa2b1c0d4e5\n",
			"- Time to detect: **3m** (deployment started 2030-01-02 03:04:05 → detected 2030-01-02 03:07:05)\n",
			"- Time to mitigate: **1s** (detected 2030-01-02 03:07:05 → mitigated 2030-01-02 03:07:06)\n",
			"- Time to recover: **18m12s** (detected 2030-01-02 03:07:05 → recovered 2030-01-02 03:25:17)\n",
			"- **To:** 2030-01-02 03:25:17 UTC (recovered) — 21m12s\n",
			"- **Exposure:** 10% of traffic went to v2.4.0 (the declared weight)\n",
			"guard checkout found the new version worse on signal errors — 3.69% of v2.4.0 requests were bad, against 0.5% of v2.3.1 requests (ratio 7.38 [4.1, 13.2]; e-value 2350 ≥ 1000)",
			"| errors | sequential | regressed | v2.3.1: 120/24000 (0.5%) | v2.4.0: 96/2600 (3.69%) | 7.38 [4.1, 13.2] | 2350 ≥ 1000 | 0.001 | — |\n",
			"| latency:p99 | sequential | inconclusive | v2.3.1: 240/24000 (1%) | v2.4.0: 31/2600 (1.19%) | 1.19 [0.6, 2.4] | 1.7 / 1000 | 0.001 | p99 = 800 ms |\n",
			"| d-3fa2b1c0d4e5/rollback/v2.3.1 | rollback | version v2.3.1 (commit 77de0a1); by redeploy | no | ok | alice |",
			"3 status updates were sent (first 2030-01-02 03:07:05 UTC, last 2030-01-02 03:25:17 UTC).\n",
			"> Checkout is working normally again.\n>\n> Some customers saw errors",
			"1. Why did checkout v2.4.0 regress against v2.3.1 on errors (3.69% of v2.4.0 requests were bad, against 0.5% of v2.3.1 requests)?\n   - Answer: ______\n",
			"4. Why could it reach 10% of traffic before it was detected?\n",
			"- [ ] Keep the guard on errors: it fired (e-value 2350 ≥ threshold 1000, α = 0.001, tolerance θ₀ = 1) 3m after the deployment started.",
			"rollback/v2.3.1 waited 2m24s for approval",
			audit,
		}, []string{noFlagAction, canaryAction, migration, actuator, escalation, "dry run:", "ongoing"}},
		{"escalated irreversible", escalatedIncident(), at("2030-03-04T10:30:00Z"), []string{
			"- Time to detect: **2m30s**",
			"- Time to mitigate: **not reached**\n",
			"- Time to recover: **not reached**\n",
			"- Time to escalate: **11s**",
			"- **To:** ongoing as of 2030-03-04 10:30:00 UTC — 30m\n",
			"- **Exposure:** 100% of traffic went to v7 (strategy all_at_once)\n",
			"Rollback was ruled out: the deployment declares an irreversible migration",
			"The incident was escalated to people at 2030-03-04 10:02:41 UTC, 11s after detection (flag_kill new-pricing: failed by pricing-flags (flag service answered 503)); no recovery is recorded as of this draft.",
			"| errors | before_after | regressed | v6 (before): 30/60000 (0.05%) | v7: 410/52000 (0.788%) | 15.77 | 840 ≥ 100 | 0.01 | — |\n",
			"The latest evidence is the same as at detection.",
			"| failed | — |",
			"failed: flag service answered 503 (actuator pricing-flags)",
			"| timed_out | — |",
			"- **Migration:** irreversible\n",
			"The deployment went to 100% of traffic at once (strategy all_at_once): " + canaryAction,
			migration, actuator + " (d-8c41aa9e0b17/flag_kill/new-pricing failed (flag service answered 503); d-8c41aa9e0b17/data_audit/window timed_out)",
			audit, "- [ ] The incident was escalated to people 11s after detection (flag_kill new-pricing: failed by pricing-flags (flag service answered 503)): " + escalation,
			"- [ ] A data audit was requested (d-8c41aa9e0b17/data_audit/window for errors): ",
			"4. Why could it reach 100% of traffic at once before it was detected?",
		}, []string{noFlagAction, "Approval delayed", "(recovered)"}},
		{"no flag", noFlag, at("2030-01-02T04:00:00Z"), []string{noFlagAction, "- **Feature flags:** none declared\n"}, []string{"flag_kill of"}},
		{"approved at once", approvedAtOnce, at("2030-01-02T04:00:00Z"), []string{"| alice |", "4. Why could it reach users before it was detected?"}, []string{"Approval delayed"}},
		{"dry run", dry, at("2030-01-02T04:00:00Z"), []string{
			"- **Dry run:** yes",
			"This was a dry run: every command was marked dry_run, so actuators changed nothing.",
			"The guard ran in dry run, so nothing was contained",
		}, nil},
		{"still open", open, at("2030-01-02T03:20:05Z"), []string{
			"- Time to mitigate: **not reached**\n", "- Time to recover: **not reached**\n",
			"- **To:** ongoing as of 2030-01-02 03:20:05 UTC — 16m\n",
			"The incident is still verifying as of this draft.",
		}, []string{escalation}},
		{"latency", latency, at("2030-01-02T04:00:00Z"), []string{
			"on signal latency:p99 — 1.19% of v2.4.0 requests were slower than 800 ms (the baseline's p99), against 1% of v2.3.1 requests",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := render(t, tc.inc, tc.now)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("unexpected %q in:\n%s", n, out)
				}
			}
		})
	}
}

// sections are the headings every post-mortem has, in order.
var sections = []string{
	"# Post-mortem draft: ",
	"## Summary", "## Impact window", "## Timeline", "## Key times", "## Evidence",
	"### At detection", "### Latest", "## Deployment", "## Commands and results",
	"## Status updates sent", "## Five whys", "## Suggested corrective actions",
}

// cells counts a table row's cells: the '|' not escaped by a backslash, less one.
func cells(line string) int {
	n := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n - 1
}

// TestPostmortemHostileStrings: flag names, versions, reasons, actuator
// details and status texts come from outside; whatever they hold, the
// document keeps its headings and every table row keeps its columns, and
// no HTML, code span or link gets through.
func TestPostmortemHostileStrings(t *testing.T) {
	hostile := []string{
		"a|b||c\\|d",
		"line one\nline two\r\n# Injected heading\n| x | y |\n|---|---|",
		"<script>alert(1)</script><img src=x onerror=alert(2)>",
		"`code` ``` fenced ``` and ~~~",
		"[click](javascript:alert(1)) ![img](http://evil/x.png) <http://evil>",
		"*bold* _it_ \\ trailing backslash\\",
		"\x00\x1b[31mred\x1b[0m\ttab\u2028sep\u0085nel",
		"\n\n---\n\n1. list\n- item\n> quote\n    indented code",
		"&lt;already&gt; &amp;",
		"\xff\xfe invalid utf-8",
	}
	for i, h := range hostile {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for _, base := range []actions.Incident{stabilizedIncident(), escalatedIncident()} {
				inc := poison(base, h)
				out := render(t, inc, at("2030-03-04T10:30:00Z"))
				checkStructure(t, out)
			}
		})
	}
}

// poison puts s into every string of the incident a person or a tool outside rollguard could set.
func poison(inc actions.Incident, s string) actions.Incident {
	inc.Service, inc.Guard, inc.Reason, inc.Forward = "svc"+s, "guard"+s, "reason"+s, "forward"+s
	d := &inc.Deployment
	d.ID, d.Service, d.Version, d.PreviousVersion, d.Commit, d.PreviousCommit = "id"+s, "svc"+s, "v2"+s, "v1"+s, "c2"+s, "c1"+s
	d.Flags = []string{"flag" + s, s}
	d.Strategy, d.Source, d.EndReason, d.SupersededBy = "strategy"+s, "source"+s, "end"+s, "next"+s
	d.EndedAt = ptr(at("2030-03-04T10:20:00Z"))
	for _, evs := range [][]detector.Evidence{inc.Trigger, inc.Latest} {
		for j := range evs {
			evs[j].Signal, evs[j].Kind, evs[j].Reason = "sig"+s, evs[j].Kind+s, "why"+s
			evs[j].Baseline.Version, evs[j].Candidate.Version = "b"+s, "c"+s
		}
	}
	inc.Trigger = append(inc.Trigger[:0:0], inc.Trigger...)
	inc.Trigger[0].State = detector.State("regressed" + s)
	inc.Trigger = append(inc.Trigger, inc.Trigger[0])
	inc.Trigger[len(inc.Trigger)-1].State = detector.StateRegressed
	inc.Timeline = append([]actions.TimelineEntry(nil), inc.Timeline...)
	for j := range inc.Timeline {
		e := &inc.Timeline[j]
		e.Kind, e.From, e.To, e.Reason, e.CommandID = e.Kind+s, e.From+s, e.To+s, e.Reason+s, e.CommandID+s
	}
	inc.Commands = append([]actions.CommandRecord(nil), inc.Commands...)
	for j := range inc.Commands {
		c := &inc.Commands[j]
		c.ID, c.Action, c.Status, c.HoldReason, c.ApprovedBy = c.ID+s, c.Action+s, c.Status+s, "hold"+s, "by"+s
		c.Target.Flag, c.Target.Version, c.Target.Commit, c.Target.Strategy = "flag"+s, "v"+s, "c"+s, "st"+s
		c.Target.Signals = []string{s, "sig" + s}
		c.Result = &actions.ResultData{Status: "st" + s, Detail: "detail" + s, Actuator: "act" + s}
	}
	inc.Statuses = append([]actions.StatusRecord(nil), inc.Statuses...)
	for j := range inc.Statuses {
		inc.Statuses[j].State, inc.Statuses[j].Customer = "state"+s, s+"\ncustomer "+s+"\n# not a heading\n```"
	}
	return inc
}

var (
	rawBacktick = regexp.MustCompile("(^|[^\\\\])`")
	rawHTML     = regexp.MustCompile(`<[a-zA-Z/!]`)
)

func checkStructure(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	var headings []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "#") {
			headings = append(headings, line)
		}
		if strings.HasPrefix(line, "```") || strings.HasPrefix(line, "~~~") || strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "   - Answer") {
			t.Errorf("line %d opens a code block: %q", i+1, line)
		}
		if m := rawHTML.FindString(strings.ReplaceAll(line, "<br>", "")); m != "" {
			t.Errorf("line %d has raw HTML %q: %q", i+1, m, line)
		}
		if rawBacktick.MatchString(line) {
			t.Errorf("line %d has an unescaped backtick: %q", i+1, line)
		}
		if strings.Contains(line, "](") && !strings.Contains(line, "\\](") {
			t.Errorf("line %d has a link: %q", i+1, line)
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		// A table: the header fixes the column count for every row.
		want := cells(line)
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "|---") || cells(lines[i+1]) != want {
			t.Fatalf("line %d: table header without its delimiter row: %q", i+1, line)
		}
		for i++; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
			if got := cells(lines[i]); got != want {
				t.Errorf("line %d has %d cells, want %d: %q", i+1, got, want, lines[i])
			}
		}
		if i < len(lines) && lines[i] != "" {
			t.Errorf("line %d continues a table without '|': %q", i+1, lines[i])
		}
	}
	if len(headings) != len(sections) {
		t.Fatalf("headings %q, want %q", headings, sections)
	}
	for i, h := range headings {
		if !strings.HasPrefix(h, sections[i]) || (i > 0 && h != sections[i]) {
			t.Errorf("heading %d is %q, want %q", i, h, sections[i])
		}
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x00") || strings.Contains(out, "\x1b") {
		t.Error("control characters got through")
	}
}

// memPublisher keeps what the playbook publishes.
type memPublisher struct {
	mu   sync.Mutex
	msgs []actions.Message
}

func (m *memPublisher) Publish(_ context.Context, msg actions.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

// TestPostmortemOfPlaybookIncident renders an incident the real playbook
// opened (the rollback held for approval, then approved), so the renderer
// is held to the records the playbook actually writes.
func TestPostmortemOfPlaybookIncident(t *testing.T) {
	cfg, err := configs.Parse([]byte(`
playbook:
  approval: [rollback]
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
`))
	if err != nil {
		t.Fatal(err)
	}
	now := at("2030-01-02T03:07:05Z")
	p := actions.NewPlaybook(actions.PlaybookOptions{Publisher: &memPublisher{}, Subjects: actions.Subjects{Prefix: "rollguard"},
		Config: cfg, Tick: 10 * time.Millisecond, Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	inc := stabilizedIncident()
	d := inc.Deployment
	d.Flags = nil // straight to the rollback rung, which waits for approval
	p.HandleVerdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed,
		At: now, Since: d.StartedAt, Signals: inc.Trigger})
	id := actions.IncidentID(d.ID)
	got := waitFor(t, func() (actions.Incident, bool) { return p.Incident(id) })
	if got.State != actions.StateWatching || len(got.Commands) != 1 || got.Commands[0].Status != actions.CommandHeld {
		t.Fatalf("incident %+v: want one held rollback", got)
	}
	approved, err := p.Approve(id, "alice")
	if err != nil || len(approved) != 1 {
		t.Fatalf("approve: %v %v", approved, err)
	}
	got, _ = p.Incident(id)

	out := render(t, got, now.Add(time.Minute))
	checkStructure(t, out)
	for _, w := range []string{
		"# Post-mortem draft: checkout — " + id + "\n",
		"- Time to detect: **3m** (",
		"- Time to mitigate: **not reached**\n",
		"| d-3fa2b1c0d4e5/rollback/v2.3.1 | rollback | version v2.3.1 (commit 77de0a1); by redeploy | no |",
		"| approval | d-3fa2b1c0d4e5/rollback/v2.3.1: rollback to v2.3.1 (77de0a1) by redeploy approved by alice |",
		noFlag,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	if strings.Count(out, "| deploy |")+strings.Count(out, "→ deployed") != 1 {
		t.Errorf("the deployment's start should appear once in the timeline:\n%s", out)
	}
}

const noFlag = "No feature flag was declared: put the change behind a flag so containment does not need a rollback."

func waitFor(t *testing.T, f func() (actions.Incident, bool)) actions.Incident {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if inc, ok := f(); ok {
			return inc
		}
		if time.Now().After(deadline) {
			t.Fatal("no incident within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
