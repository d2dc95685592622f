package actions

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rollguard/rollguard/detector"
)

// RenderPostmortem writes the first draft of a blameless post-mortem of inc
// as Markdown: summary, impact window, timeline, key times, evidence, the
// deployment, commands and results, status updates, a five-whys scaffold
// and corrective actions derived from the record. now is when the draft is
// written; it bounds what is still open. The output depends on inc and now
// alone, so the same record always gives the same text.
//
// Every string that came from outside rollguard (flag names, versions,
// reasons, actuator details, status texts) is escaped: it cannot end a table
// cell, start a line, open a code span or inject HTML or a link.
func RenderPostmortem(w io.Writer, inc Incident, now time.Time) error {
	pm := &postmortem{inc: inc, now: now.UTC()}
	pm.detected = inc.DetectedAt
	if pm.detected.IsZero() {
		pm.detected = inc.OpenedAt
	}
	for _, e := range inc.Trigger {
		if e.State == detector.StateRegressed {
			pm.fired = append(pm.fired, e)
		}
	}
	pm.timeline = append([]TimelineEntry(nil), inc.Timeline...)
	sort.SliceStable(pm.timeline, func(i, j int) bool { return pm.timeline[i].At.Before(pm.timeline[j].At) })

	pm.title()
	pm.summary()
	pm.impact()
	pm.timelineSection()
	pm.keyTimes()
	pm.evidence()
	pm.deployment()
	pm.commands()
	pm.statuses()
	pm.fiveWhys()
	pm.corrective()
	_, err := io.WriteString(w, pm.b.String())
	return err
}

type postmortem struct {
	b        strings.Builder
	inc      Incident
	now      time.Time
	detected time.Time           // DetectedAt, or OpenedAt for a record without it
	fired    []detector.Evidence // the trigger's regressed signals
	timeline []TimelineEntry     // by time
}

func (pm *postmortem) p(format string, args ...any) { fmt.Fprintf(&pm.b, format, args...) }

func (pm *postmortem) title() {
	inc := pm.inc
	pm.p("# Post-mortem draft: %s — %s\n\n", pmEsc(inc.Service), pmEsc(inc.ID))
	pm.p("*Draft written by rollguard at %s UTC from the incident record. It is blameless: it describes what the system and the process did, not who did what. Edit it freely; the five whys and the corrective actions are for people to complete.*\n\n", pmStamp(pm.now))
	pm.p("- **Incident:** %s\n", pmEsc(inc.ID))
	pm.p("- **State:** %s\n", pmEsc(inc.State))
	pm.p("- **Guard:** %s\n", pmEsc(inc.Guard))
	pm.p("- **Deployment:** %s — %s %s → %s\n", pmEsc(inc.Deployment.ID), pmEsc(inc.Service),
		pmEsc(inc.Deployment.PreviousVersion), pmEsc(inc.Deployment.Version))
	if inc.DryRun {
		pm.p("- **Dry run:** yes — commands were marked dry_run; actuators reported what they would do and changed nothing\n")
	} else {
		pm.p("- **Dry run:** no\n")
	}
	pm.p("\n")
}

// summary says in a few sentences what happened, what was done and how it ended.
func (pm *postmortem) summary() {
	inc := pm.inc
	d := inc.Deployment
	pm.p("## Summary\n\n")
	var s []string
	what := "rollguard opened an incident"
	if !d.StartedAt.IsZero() {
		what = fmt.Sprintf("%s after %s started moving from %s to %s, rollguard opened an incident",
			pmDur(pm.detected.Sub(d.StartedAt)), pmEsc(inc.Service), pmEsc(d.PreviousVersion), pmEsc(d.Version))
	}
	what = fmt.Sprintf("At %s UTC, %s", pmStamp(pm.detected), what)
	if len(pm.fired) > 0 {
		e := pm.fired[0]
		what += fmt.Sprintf(": guard %s found the new version worse on signal %s — %s", pmEsc(inc.Guard), pmEsc(e.Signal), pmSymptom(e))
		if test := pmTestSummary(e); test != "" {
			what += " (" + test + ")"
		}
		if n := len(pm.fired) - 1; n > 0 {
			names := make([]string, 0, n)
			for _, o := range pm.fired[1:] {
				names = append(names, pmEsc(o.Signal))
			}
			what += fmt.Sprintf("; %s also regressed", strings.Join(names, ", "))
		}
	} else if inc.Reason != "" {
		what += ": " + pmEsc(inc.Reason)
	}
	s = append(s, what+".")
	if inc.DryRun {
		s = append(s, "This was a dry run: every command was marked dry_run, so actuators changed nothing.")
	}
	if inc.Forward != "" {
		s = append(s, "Rollback was ruled out: "+pmEsc(inc.Forward)+".")
	}
	if len(inc.Commands) == 0 {
		s = append(s, "rollguard issued no command.")
	} else {
		acts := make([]string, 0, len(inc.Commands))
		for _, c := range inc.Commands {
			acts = append(acts, fmt.Sprintf("%s (%s)", pmShortCommand(c), pmEsc(c.Status)))
		}
		s = append(s, "rollguard issued "+strings.Join(acts, "; ")+".")
	}
	if inc.AckedBy != "" && inc.AckedAt != nil {
		s = append(s, fmt.Sprintf("%s acknowledged the incident at %s UTC.", pmEsc(inc.AckedBy), pmStamp(*inc.AckedAt)))
	}
	s = append(s, pm.outcome())
	pm.p("%s\n\n", strings.Join(s, " "))
}

func (pm *postmortem) outcome() string {
	inc := pm.inc
	switch {
	case inc.RecoveredAt != nil:
		o := fmt.Sprintf("The service recovered at %s UTC, %s after detection", pmStamp(*inc.RecoveredAt), pmDur(inc.RecoveredAt.Sub(pm.detected)))
		if inc.EscalatedAt != nil {
			o += fmt.Sprintf(", after the incident had been escalated to people at %s UTC", pmStamp(*inc.EscalatedAt))
		}
		return o + "; the incident is " + pmEsc(inc.State) + "."
	case inc.EscalatedAt != nil:
		o := fmt.Sprintf("The incident was escalated to people at %s UTC, %s after detection", pmStamp(*inc.EscalatedAt), pmDur(inc.EscalatedAt.Sub(pm.detected)))
		if why := pm.escalationReason(); why != "" {
			o += " (" + why + ")"
		}
		if inc.State == StateClosed && inc.ClosedAt != nil {
			return o + fmt.Sprintf(", and closed at %s UTC%s without a recorded recovery.", pmStamp(*inc.ClosedAt), pm.closedBy())
		}
		return o + "; no recovery is recorded as of this draft."
	case inc.State == StateClosed && inc.ClosedAt != nil:
		return fmt.Sprintf("The incident was closed at %s UTC%s without a recorded recovery.", pmStamp(*inc.ClosedAt), pm.closedBy())
	case inc.State == StateClosed:
		return "The incident was closed without a recorded recovery."
	}
	return fmt.Sprintf("The incident is still %s as of this draft.", pmEsc(inc.State))
}

// closedBy names the person who closed the incident, and why, if one did.
func (pm *postmortem) closedBy() string {
	inc := pm.inc
	if inc.ClosedBy == "" {
		return ""
	}
	return fmt.Sprintf(" by %s (%s)", pmEsc(inc.ClosedBy), pmEsc(inc.CloseReason))
}

func (pm *postmortem) impact() {
	inc := pm.inc
	d := inc.Deployment
	pm.p("## Impact window\n\n")
	start := "unknown (the deployment's start is not recorded)"
	if !d.StartedAt.IsZero() {
		start = pmStamp(d.StartedAt) + " UTC (deployment started)"
	}
	pm.p("- **From:** %s\n", start)
	switch {
	case inc.RecoveredAt != nil:
		pm.p("- **To:** %s UTC (recovered)%s\n", pmStamp(*inc.RecoveredAt), pmLength(d.StartedAt, *inc.RecoveredAt))
	case inc.ClosedAt != nil:
		pm.p("- **To:** unknown: closed at %s UTC without a recorded recovery%s\n", pmStamp(*inc.ClosedAt), pmLength(d.StartedAt, *inc.ClosedAt))
	default:
		pm.p("- **To:** ongoing as of %s UTC%s\n", pmStamp(pm.now), pmLength(d.StartedAt, pm.now))
	}
	switch {
	case d.Weight > 0:
		pm.p("- **Exposure:** %s%% of traffic went to %s (the declared weight)\n", pmNum(d.Weight), pmEsc(d.Version))
	case d.Strategy == "all_at_once":
		pm.p("- **Exposure:** 100%% of traffic went to %s (strategy all_at_once)\n", pmEsc(d.Version))
	default:
		pm.p("- **Exposure:** not declared: the deployment announced no traffic weight\n")
	}
	if len(pm.fired) > 0 {
		e := pm.fired[0]
		if e.Candidate.Total > 0 && !pmThroughput(e) {
			pm.p("- **Candidate requests in the test window at detection:** %s, of which %s bad (signal %s)\n",
				pmCount(e.Candidate.Total), pmCount(e.Candidate.Bad), pmEsc(e.Signal))
		}
	}
	pm.p("\n")
}

func pmLength(from, to time.Time) string {
	if from.IsZero() {
		return ""
	}
	return " — " + pmDur(to.Sub(from))
}

func (pm *postmortem) timelineSection() {
	inc := pm.inc
	d := inc.Deployment
	pm.p("## Timeline\n\n")
	pm.p("| time (UTC) | since deploy | event | what happened |\n|---|---|---|---|\n")
	since := func(t time.Time) string {
		if d.StartedAt.IsZero() {
			return "—"
		}
		return "+" + pmDur(t.Sub(d.StartedAt))
	}
	recorded := false // the playbook records the deployment's start itself
	for _, e := range pm.timeline {
		recorded = recorded || (e.Kind == EntryState && e.To == "deployed")
	}
	if !d.StartedAt.IsZero() && !recorded {
		what := fmt.Sprintf("%s %s → %s started", pmEsc(inc.Service), pmEsc(d.PreviousVersion), pmEsc(d.Version))
		var extra []string
		if d.Strategy != "" {
			extra = append(extra, "strategy "+pmEsc(d.Strategy))
		}
		if d.Weight > 0 {
			extra = append(extra, "weight "+pmNum(d.Weight)+"%")
		}
		if len(extra) > 0 {
			what += " (" + strings.Join(extra, ", ") + ")"
		}
		pm.p("| %s | %s | deploy | %s |\n", pmStamp(d.StartedAt), since(d.StartedAt), what)
	}
	for _, e := range pm.timeline {
		pm.p("| %s | %s | %s | %s |\n", pmStamp(e.At), since(e.At), pmEsc(e.Kind), pmDescribe(e))
	}
	if len(pm.timeline) == 0 {
		pm.p("| %s | %s | opened | incident opened (no timeline recorded) |\n", pmStamp(pm.detected), since(pm.detected))
	}
	pm.p("\n")
}

func pmDescribe(e TimelineEntry) string {
	var parts []string
	switch {
	case e.From != "" && e.To != "":
		parts = append(parts, pmEsc(e.From)+" → "+pmEsc(e.To))
	case e.To != "":
		parts = append(parts, "→ "+pmEsc(e.To))
	}
	if e.CommandID != "" {
		parts = append(parts, pmEsc(e.CommandID))
	}
	what := strings.Join(parts, " ")
	if e.Reason != "" {
		if what != "" {
			what += ": "
		}
		what += pmEsc(e.Reason)
	}
	if what == "" {
		what = "—"
	}
	return what
}

func (pm *postmortem) keyTimes() {
	inc := pm.inc
	d := inc.Deployment
	pm.p("## Key times\n\n")
	if d.StartedAt.IsZero() {
		pm.p("- Time to detect: **unknown** (the deployment's start is not recorded)\n")
	} else {
		pm.p("- Time to detect: **%s** (deployment started %s → detected %s)\n", pmDur(pm.detected.Sub(d.StartedAt)), pmStamp(d.StartedAt), pmStamp(pm.detected))
	}
	after := func(name string, at *time.Time, what string) {
		if at == nil {
			pm.p("- %s: **not reached**\n", name)
			return
		}
		pm.p("- %s: **%s** (detected %s → %s %s)\n", name, pmDur(at.Sub(pm.detected)), pmStamp(pm.detected), what, pmStamp(*at))
	}
	after("Time to mitigate", inc.MitigatedAt, "mitigated")
	after("Time to recover", inc.RecoveredAt, "recovered")
	if inc.EscalatedAt != nil {
		after("Time to escalate", inc.EscalatedAt, "escalated")
	}
	pm.p("\n")
}

func (pm *postmortem) evidence() {
	inc := pm.inc
	pm.p("## Evidence\n\n")
	pm.p("### At detection\n\n")
	pmEvidenceTable(pm, inc.Trigger)
	pm.p("### Latest\n\n")
	switch {
	case len(inc.Latest) == 0:
		pm.p("No later evidence is recorded.\n\n")
	case pmSameEvidence(inc.Trigger, inc.Latest):
		pm.p("The latest evidence is the same as at detection.\n\n")
	default:
		pmEvidenceTable(pm, inc.Latest)
	}
}

func pmSameEvidence(a, b []detector.Evidence) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func pmEvidenceTable(pm *postmortem, ev []detector.Evidence) {
	if len(ev) == 0 {
		pm.p("No evidence is recorded.\n\n")
		return
	}
	pm.p("| signal | kind | state | baseline bad/total (ratio) | candidate bad/total (ratio) | ratio estimate [interval] | e-value / threshold | α | latency boundary |\n")
	pm.p("|---|---|---|---|---|---|---|---|---|\n")
	for _, e := range ev {
		test := pmNum(float64(e.EValue)) + " / " + pmNum(e.Threshold)
		if e.State == detector.StateRegressed && e.Kind != "rule" {
			test = pmNum(float64(e.EValue)) + " ≥ " + pmNum(e.Threshold)
		}
		if e.Kind == "rule" {
			test = "rule-based; threshold " + pmNum(e.Threshold)
		}
		estimate := pmNum(float64(e.Estimate))
		if e.Kind == "sequential" && !pmThroughput(e) {
			estimate += " [" + pmNum(float64(e.IntervalLow)) + ", " + pmNum(float64(e.IntervalHigh)) + "]"
		}
		alpha := "—"
		if e.Alpha > 0 {
			alpha = pmNum(e.Alpha)
		}
		pm.p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pmEsc(e.Signal), pmEsc(e.Kind), pmEsc(string(e.State)),
			pmCohort(e.Baseline), pmCohort(e.Candidate), estimate, test, alpha, pmBoundary(e))
	}
	pm.p("\n")
	for _, e := range ev {
		window := ""
		if !e.WindowStart.IsZero() || !e.WindowEnd.IsZero() {
			window = fmt.Sprintf("window %s → %s UTC, ", pmStamp(e.WindowStart), pmStamp(e.WindowEnd))
		}
		reason := "no reason recorded"
		if e.Reason != "" {
			reason = pmEsc(e.Reason)
		}
		pm.p("- **%s** (%s%d ticks, tolerance θ₀ = %s): %s\n", pmEsc(e.Signal), window, e.Ticks, pmNum(e.Theta0), reason)
	}
	pm.p("\n")
}

func pmCohort(c detector.CohortCounts) string {
	if c.Version == "" && c.Total == 0 && c.Bad == 0 {
		return "—"
	}
	ratio := pmPct(c.Ratio)
	if c.Total == 0 {
		ratio = "no traffic"
	}
	s := pmCount(c.Bad) + "/" + pmCount(c.Total) + " (" + ratio + ")"
	if c.Version != "" {
		s = pmEsc(c.Version) + ": " + s
	}
	return s
}

func pmBoundary(e detector.Evidence) string {
	switch {
	case e.Quantile <= 0:
		return "—"
	case e.Boundary <= 0:
		return "p" + pmQuantile(e.Quantile) + " (not placed yet)"
	}
	return "p" + pmQuantile(e.Quantile) + " = " + pmSeconds(e.Boundary)
}

func (pm *postmortem) deployment() {
	d := pm.inc.Deployment
	pm.p("## Deployment\n\n")
	pm.p("- **Service:** %s\n", pmEsc(d.Service))
	pm.p("- **Deployment id:** %s\n", pmEsc(d.ID))
	pm.p("- **New version (candidate):** %s%s\n", pmEsc(d.Version), pmCommit(d.Commit))
	pm.p("- **Previous version (stable):** %s%s\n", pmEsc(d.PreviousVersion), pmCommit(d.PreviousCommit))
	pm.p("- **Feature flags:** %s\n", pmList(d.Flags, "none declared"))
	pm.p("- **Migration:** %s\n", pmOrNot(d.Migration))
	pm.p("- **Strategy:** %s\n", pmOrNot(d.Strategy))
	weight := "not declared"
	if d.Weight > 0 {
		weight = pmNum(d.Weight) + "%"
	}
	pm.p("- **Weight:** %s\n", weight)
	pm.p("- **Source:** %s\n", pmOrNot(d.Source))
	if !d.StartedAt.IsZero() {
		pm.p("- **Started:** %s UTC\n", pmStamp(d.StartedAt))
	}
	if d.EndedAt != nil {
		pm.p("- **Ended:** %s UTC (%s)\n", pmStamp(*d.EndedAt), pmOrNot(d.EndReason))
	}
	if d.SupersededBy != "" {
		pm.p("- **Superseded by:** %s\n", pmEsc(d.SupersededBy))
	}
	pm.p("\n")
}

func pmCommit(c string) string {
	if c == "" {
		return ""
	}
	return " (commit " + pmEsc(c) + ")"
}

func pmOrNot(s string) string {
	if s == "" {
		return "not declared"
	}
	return pmEsc(s)
}

func pmList(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = pmEsc(s)
	}
	return strings.Join(out, ", ")
}

func (pm *postmortem) commands() {
	inc := pm.inc
	pm.p("## Commands and results\n\n")
	if len(inc.Commands) == 0 {
		pm.p("rollguard issued no command.\n\n")
		return
	}
	pm.p("| command | action | target | dry run | status | approved by | issued | published | result at | result |\n")
	pm.p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range inc.Commands {
		status := pmEsc(c.Status)
		if c.HoldReason != "" {
			status += " (" + pmEsc(c.HoldReason) + ")"
		}
		approved := "—"
		if c.ApprovedBy != "" {
			approved = pmEsc(c.ApprovedBy)
		}
		result := "—"
		if r := c.Result; r != nil {
			result = pmEsc(r.Status)
			if r.Detail != "" {
				result += ": " + pmEsc(r.Detail)
			}
			if r.Actuator != "" {
				result += " (actuator " + pmEsc(r.Actuator) + ")"
			}
			if r.DryRun {
				result += " (dry run)"
			}
		}
		pm.p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pmEsc(c.ID), pmEsc(c.Action), pmTarget(c.Target),
			pmYesNo(c.DryRun), status, approved, pmStamp(c.IssuedAt), pmStampPtr(c.Published), pmStampPtr(c.ResultAt), result)
	}
	pm.p("\n")
}

func pmTarget(t Target) string {
	var parts []string
	if t.Flag != "" {
		f := "flag " + pmEsc(t.Flag)
		if t.Percent != nil {
			f += " → " + strconv.Itoa(*t.Percent) + "%"
		}
		parts = append(parts, f)
	}
	if t.Version != "" {
		parts = append(parts, "version "+pmEsc(t.Version)+pmCommit(t.Commit))
	} else if t.Commit != "" {
		parts = append(parts, "commit "+pmEsc(t.Commit))
	}
	if t.Strategy != "" {
		parts = append(parts, "by "+pmEsc(t.Strategy))
	}
	if t.WindowStart != nil || t.WindowEnd != nil {
		parts = append(parts, "window "+pmStampPtr(t.WindowStart)+" → "+pmStampPtr(t.WindowEnd))
	}
	if len(t.Signals) > 0 {
		parts = append(parts, "signals "+pmList(t.Signals, ""))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

// pmShortCommand names a command in a sentence: "flag_kill of new-checkout".
func pmShortCommand(c CommandRecord) string {
	switch {
	case c.Target.Flag != "":
		return pmEsc(c.Action) + " of flag " + pmEsc(c.Target.Flag)
	case c.Target.Version != "":
		return pmEsc(c.Action) + " to " + pmEsc(c.Target.Version)
	case c.Target.WindowStart != nil && c.Target.WindowEnd != nil:
		return pmEsc(c.Action) + " of " + pmStamp(*c.Target.WindowStart) + " → " + pmStamp(*c.Target.WindowEnd)
	}
	return pmEsc(c.Action)
}

func (pm *postmortem) statuses() {
	st := pm.inc.Statuses
	pm.p("## Status updates sent\n\n")
	if len(st) == 0 {
		pm.p("No status update was sent.\n\n")
		return
	}
	first, last := st[0], st[len(st)-1]
	n := "1 status update was"
	if len(st) != 1 {
		n = strconv.Itoa(len(st)) + " status updates were"
	}
	pm.p("%s sent (first %s UTC, last %s UTC).\n\n", n, pmStamp(first.At), pmStamp(last.At))
	pm.p("The last customer-facing text (update %d, %s, %s UTC):\n\n", last.Seq, pmEsc(last.State), pmStamp(last.At))
	text := strings.TrimSpace(strings.ReplaceAll(last.Customer, "\r\n", "\n"))
	if text == "" {
		pm.p("> (empty)\n\n")
		return
	}
	for _, line := range strings.Split(text, "\n") {
		if line = pmEscLine(line); line == "" {
			pm.p(">\n")
			continue
		}
		pm.p("> %s\n", line)
	}
	pm.p("\n")
}

func (pm *postmortem) fiveWhys() {
	inc := pm.inc
	pm.p("## Five whys\n\n")
	pm.p("*Blameless: ask why the system and the process allowed this, not who made a mistake. Each answer becomes the next question; stop at a cause you can fix.*\n\n")
	sym := fmt.Sprintf("%s %s regress against %s", pmEsc(inc.Service), pmEsc(inc.Deployment.Version), pmEsc(inc.Deployment.PreviousVersion))
	if len(pm.fired) > 0 {
		sym += " on " + pmEsc(pm.fired[0].Signal) + " (" + pmSymptom(pm.fired[0]) + ")"
	}
	exposure := "reach users"
	if w := inc.Deployment.Weight; w > 0 {
		exposure = "reach " + pmNum(w) + "% of traffic"
	} else if inc.Deployment.Strategy == "all_at_once" {
		exposure = "reach 100% of traffic at once"
	}
	prompts := []string{
		"Why did " + sym + "?",
		"Why did the change behave that way in production?",
		"Why did tests, review and staging not catch it before the deployment?",
		"Why could it " + exposure + " before it was detected?",
		"Why did our process allow that, and what would stop it next time?",
	}
	for i, q := range prompts {
		pm.p("%d. %s\n   - Answer: ______\n", i+1, q)
	}
	pm.p("\n")
}

// corrective lists actions the record itself suggests; people add the rest.
func (pm *postmortem) corrective() {
	inc := pm.inc
	d := inc.Deployment
	pm.p("## Suggested corrective actions\n\n")
	var items []string
	for _, e := range pm.fired {
		s := fmt.Sprintf("Keep the guard on %s: it fired (%s) %s after the deployment started", pmEsc(e.Signal), pmFiredBy(e), pmDur(pm.detected.Sub(d.StartedAt)))
		if d.StartedAt.IsZero() {
			s = fmt.Sprintf("Keep the guard on %s: it fired (%s)", pmEsc(e.Signal), pmFiredBy(e))
		}
		s += ". Check that its tolerance and α still match what the service can afford; this draft does not estimate when other settings would have fired."
		items = append(items, s)
	}
	if len(d.Flags) == 0 || (len(inc.Ladder) > 0 && inc.Ladder[0] == ActionRollback) {
		items = append(items, "No feature flag was declared: put the change behind a flag so containment does not need a rollback.")
	}
	noStable := false
	for _, e := range inc.Trigger {
		if e.Kind == "before_after" {
			noStable = true
		}
	}
	switch {
	case d.Strategy == "all_at_once":
		items = append(items, "The deployment went to 100% of traffic at once (strategy all_at_once): add a canary stage with automatic rollback to limit exposure.")
	case noStable:
		items = append(items, "The deployment went to 100% of traffic at once (no stable cohort ran beside it; the baseline was the window before the deployment): add a canary stage with automatic rollback to limit exposure.")
	}
	if inc.Forward != "" || d.Migration == detector.MigrationIrreversible {
		why := "the deployment declared an irreversible migration"
		if inc.Forward != "" {
			why = pmEsc(inc.Forward)
		}
		items = append(items, "Rollback was unsafe ("+why+"): use expand/contract migrations so rollback stays possible.")
	}
	var broken, audits, held, slow []string
	for _, c := range inc.Commands {
		switch c.Status {
		case CommandFailed, CommandRejected, CommandTimedOut:
			s := pmEsc(c.ID) + " " + pmEsc(c.Status)
			if c.Result != nil && c.Result.Detail != "" {
				s += " (" + pmEsc(c.Result.Detail) + ")"
			}
			broken = append(broken, s)
		case CommandHeld:
			held = append(held, pmEsc(c.ID))
		}
		if c.Action == ActionDataAudit {
			a := pmEsc(c.ID)
			if len(c.Target.Signals) > 0 {
				a += " for " + pmList(c.Target.Signals, "")
			}
			audits = append(audits, a)
		}
		if c.ApprovedBy != "" && c.SentAt != nil && c.SentAt.Sub(c.IssuedAt) >= time.Second {
			slow = append(slow, fmt.Sprintf("%s waited %s for approval", pmEsc(c.ID), pmDur(c.SentAt.Sub(c.IssuedAt))))
		}
	}
	if len(broken) > 0 {
		items = append(items, "An actuator failed, rejected or timed out ("+strings.Join(broken, "; ")+"): fix the actuator path and exercise it with a dry-run incident.")
	}
	if len(audits) > 0 {
		items = append(items, "A data audit was requested ("+strings.Join(audits, "; ")+"): review the data_audit findings and repair partial or inconsistent writes before closing.")
	}
	if len(slow) > 0 {
		items = append(items, "Approval delayed containment ("+strings.Join(slow, "; ")+"): decide which actions may run without a person, or who approves at night.")
	}
	if len(held) > 0 {
		items = append(items, "Commands are still held ("+strings.Join(held, ", ")+"): approve or cancel them.")
	}
	if inc.EscalatedAt != nil {
		s := fmt.Sprintf("The incident was escalated to people %s after detection", pmDur(inc.EscalatedAt.Sub(pm.detected)))
		if why := pm.escalationReason(); why != "" {
			s += " (" + why + ")"
		}
		items = append(items, s+": list what people had to do by hand, and automate or document it in the playbook.")
	}
	if inc.DryRun {
		items = append(items, "The guard ran in dry run, so nothing was contained: if this verdict was right, let the guard act.")
	}
	items = append(items, "Add a test that reproduces this regression before the next deployment of "+pmEsc(inc.Service)+".")
	for _, it := range items {
		pm.p("- [ ] %s\n", it)
	}
}

// escalationReason is why the incident was handed over, from the timeline.
func (pm *postmortem) escalationReason() string {
	for i := len(pm.timeline) - 1; i >= 0; i-- {
		if e := pm.timeline[i]; e.Kind == EntryState && e.To == StateEscalated {
			return pmEsc(strings.TrimSuffix(e.Reason, "; handing over to people"))
		}
	}
	return ""
}

// pmFiredBy says what made a signal fire, in the terms of its test.
func pmFiredBy(e detector.Evidence) string {
	switch e.Kind {
	case "rule":
		return "rule-based, threshold " + pmNum(e.Threshold)
	}
	s := "e-value " + pmNum(float64(e.EValue)) + " ≥ threshold " + pmNum(e.Threshold)
	if e.Alpha > 0 {
		s += ", α = " + pmNum(e.Alpha)
	}
	if e.Theta0 > 0 {
		s += ", tolerance θ₀ = " + pmNum(e.Theta0)
	}
	return s
}

// pmSymptom is what a person would see of a regressed signal.
func pmSymptom(e detector.Evidence) string {
	b, c := e.Baseline, e.Candidate
	switch {
	case e.Quantile > 0 && e.Boundary > 0:
		return fmt.Sprintf("%s of %s requests were slower than %s (%s), against %s of %s requests",
			pmPct(c.Ratio), pmEsc(c.Version), pmSeconds(e.Boundary), pmEsc(detector.BoundQuantile(e)), pmPct(b.Ratio), pmEsc(b.Version))
	case e.Kind == "rule" || pmThroughput(e):
		if e.Reason != "" {
			return pmEsc(e.Reason)
		}
		return "its check failed"
	case e.Kind == "before_after":
		return fmt.Sprintf("%s of %s requests were bad, against %s before the deployment", pmPct(c.Ratio), pmEsc(c.Version), pmPct(b.Ratio))
	}
	return fmt.Sprintf("%s of %s requests were bad, against %s of %s requests", pmPct(c.Ratio), pmEsc(c.Version), pmPct(b.Ratio), pmEsc(b.Version))
}

func pmTestSummary(e detector.Evidence) string {
	if e.Kind == "rule" {
		return ""
	}
	s := "ratio " + pmNum(float64(e.Estimate))
	if e.Kind == "sequential" && !pmThroughput(e) {
		s += " [" + pmNum(float64(e.IntervalLow)) + ", " + pmNum(float64(e.IntervalHigh)) + "]"
	}
	if pmThroughput(e) {
		s = ""
	} else {
		s += "; "
	}
	return s + "e-value " + pmNum(float64(e.EValue)) + " ≥ " + pmNum(e.Threshold)
}

// pmThroughput tells a throughput signal's evidence apart: its counts are
// successful requests and shares, not bad events, and it has no ratio estimate.
func pmThroughput(e detector.Evidence) bool {
	return e.Kind == "sequential" && math.IsNaN(float64(e.Estimate))
}

// Formatting.

const pmStampLayout = "2006-01-02 15:04:05"

func pmStamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(pmStampLayout)
}

func pmStampPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return pmStamp(*t)
}

func pmYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// pmDur is a duration to the second (to the millisecond below one second).
func pmDur(d time.Duration) string {
	if d < 0 {
		return "−" + pmDur(-d)
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	d = d.Round(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

func pmNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.IsInf(v, 1):
		return "∞"
	case math.IsInf(v, -1):
		return "−∞"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func pmCount(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return pmNum(v)
}

func pmPct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return pmNum(r)
	}
	return strconv.FormatFloat(100*r, 'g', 3, 64) + "%"
}

func pmQuantile(q float64) string { return strconv.FormatFloat(100*q, 'g', 4, 64) }

func pmSeconds(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'g', 4, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'g', 4, 64) + " s"
}

// pmEsc makes s safe inline in Markdown, table cells included: a line break
// becomes <br>, '|' and the characters that open emphasis, code or links
// are backslash-escaped, '<' (HTML, autolinks) and an '&' that would start
// an entity become entities. Other control characters become spaces.
func pmEsc(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' || r == '\u0085':
			b.WriteString("<br>")
		case r == '<':
			b.WriteString("&lt;")
		case r == '&' && i+1 < len(s) && (s[i+1] == '#' || 'a' <= s[i+1]|0x20 && s[i+1]|0x20 <= 'z'):
			b.WriteString("&amp;") // would start an entity
		case strings.ContainsRune("\\`*[]|~", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		case unicode.IsControl(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// pmEscLine is esc for text that starts a line: it also escapes what would
// make the line a heading, list item, quote, rule or code block.
func pmEscLine(s string) string {
	s = pmEsc(strings.TrimRight(s, " \t"))
	trimmed := strings.TrimLeft(s, " \t")
	if trimmed == "" {
		return ""
	}
	switch trimmed[0] {
	case '#', '-', '+', '=', '_', '>':
		return "\\" + trimmed
	}
	if j := strings.IndexFunc(trimmed, func(r rune) bool { return r < '0' || r > '9' }); j > 0 && (trimmed[j] == '.' || trimmed[j] == ')') {
		return trimmed[:j] + "\\" + trimmed[j:]
	}
	return trimmed
}
