package chart

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// renderRate draws the arm's rates of both cohorts and the decision line.
func renderRate(a *armData, ms []marker, o Options) Chart {
	id := chartID(o, a.name, "rate")
	title := clip(a.name, maxTextRunes) + " — " + a.what() + " (%, last " + strconv.Itoa(window) + " batches)"
	base := a.samples(a.base, true)
	cand := a.samples(a.cand, true)
	dec := a.samples(a.decision, true)
	c := newCanvas(o, len(base)+len(cand)+len(dec))
	t0, t1, ok := a.span()
	if !ok || len(base)+len(cand) == 0 {
		desc := clip(a.name, maxTextRunes) + ": no data yet; the " + a.what() +
			" appears once the tests have compared batches of both versions."
		return Chart{ID: id, Title: title, SVG: c.noData(id, title, desc)}
	}
	c.setX(t0, t1)
	marks := c.layout(ms)
	yt := c.linearTicks(maxOf(0, a.base, a.cand, a.decision))
	c.open(id, title, a.rateDesc(ms, t0, t1))
	c.axes(c.timeTicks(), yt)
	c.series("threshold", colourThreshold, "1.5", dashThreshold, dec)
	// The thin baseline goes over the thick candidate: where they meet,
	// both stay visible.
	c.series("series-candidate", colourCandidate, "3", "", cand)
	c.series("series-baseline", colourBaseline, "1.5", "", base)
	c.marks(marks)
	c.legend([]legendItem{
		{"baseline", colourBaseline, "1.5", "", cohort("baseline", a.baseVersion)},
		{"candidate", colourCandidate, "3", "", cohort("candidate", a.candVersion)},
		{"threshold", colourThreshold, "1.5", dashThreshold, "decision line " + a.theta0() + " × baseline"},
	})
	return Chart{ID: id, Title: title, SVG: c.close()}
}

// renderEvidence draws the arm's e-value against its threshold.
func renderEvidence(a *armData, ms []marker, o Options) Chart {
	id := chartID(o, a.name, "evidence")
	title := clip(a.name, maxTextRunes) + " — evidence (e-value, log scale)"
	ev := a.samples(a.evalue, true)
	thr := a.samples(a.threshold, false)
	c := newCanvas(o, len(ev)+len(thr))
	t0, t1, ok := a.span()
	if !ok || len(ev) == 0 {
		desc := clip(a.name, maxTextRunes) + ": no data yet; the e-value appears once the tests have compared batches of both versions."
		return Chart{ID: id, Title: title, SVG: c.noData(id, title, desc)}
	}
	c.setX(t0, t1)
	marks := c.layout(ms)
	yt := c.logTicks(minOf(0, a.evalue, a.threshold), maxOf(0, a.evalue, a.threshold))
	c.open(id, title, a.evidenceDesc(ms, t0, t1))
	c.axes(c.timeTicks(), yt)
	label := "threshold 1/α"
	if i := lastDefined(a.threshold); i >= 0 {
		label += " = " + number(a.points[i].Threshold)
	}
	c.series("threshold", colourThreshold, "1.5", dashThreshold, thr)
	if len(thr) > 0 {
		// Named on the line too, at the left where the e-value starts
		// low (at 1) and rarely is in the way.
		c.raw(`<text class="threshold-label"`)
		c.attr("x", c.left+4)
		c.attr("y", c.y(thr[0].v)-4)
		c.raw(` font-size="10" fill="` + colourThreshold + `">`)
		c.text(label)
		c.raw("</text>\n")
	}
	c.series("series-evalue", colourEValue, "2.5", "", ev)
	c.marks(marks)
	c.legend([]legendItem{
		{"evalue", colourEValue, "2.5", "", a.evalueLabel()},
		{"threshold", colourThreshold, "1.5", dashThreshold, label},
	})
	return Chart{ID: id, Title: title, SVG: c.close()}
}

// rateDesc tells the rate chart in words: the latest rates, the state, and
// what happened when.
func (a *armData) rateDesc(ms []marker, t0, t1 time.Time) string {
	var b strings.Builder
	a.period(&b, t0, t1)
	if i := lastBoth(a.cand, a.base); i >= 0 {
		b.WriteString("At " + clock(a.at[i]) + " UTC, " + cohort("candidate", a.candVersion) + " " + a.what() + " " +
			percent(a.cand[i]) + " against " + cohort("baseline", a.baseVersion) + " " + percent(a.base[i]))
		if d := a.decision[i]; !math.IsNaN(d) {
			b.WriteString(", decision line " + percent(d))
		}
		b.WriteString(", over the last " + strconv.Itoa(window) + " batches. ")
	} else {
		b.WriteString("No " + a.what() + " of both versions yet. ")
	}
	a.story(&b, ms)
	return b.String()
}

// evidenceDesc tells the evidence chart in words.
func (a *armData) evidenceDesc(ms []marker, t0, t1 time.Time) string {
	var b strings.Builder
	a.period(&b, t0, t1)
	if i := lastDefined(a.evalue); i >= 0 {
		p := a.points[i]
		b.WriteString("At " + clock(a.at[i]) + " UTC, the e-value of " + cohort("candidate", a.candVersion) +
			" against " + cohort("baseline", a.baseVersion) + " is " + number(float64(p.EValue)))
		if finite(p.Threshold) && p.Threshold > 0 {
			b.WriteString(" against the threshold 1/α = " + number(p.Threshold))
		}
		b.WriteString(". ")
	}
	for i, p := range a.points {
		if e := float64(p.EValue); finite(p.Threshold) && p.Threshold > 0 && e >= p.Threshold {
			b.WriteString("The e-value first reached the threshold at " + clock(a.at[i]) + " UTC. ")
			break
		}
	}
	a.story(&b, ms)
	return b.String()
}

func (a *armData) period(b *strings.Builder, t0, t1 time.Time) {
	b.WriteString(clip(a.name, maxTextRunes) + ", " + strconv.Itoa(len(a.points)) + " batches from " +
		t0.UTC().Format("2006-01-02 15:04:05") + " to " + clock(t1) + " UTC. ")
}

// maxStory bounds the marks a description lists: the most recent are kept.
const maxStory = 12

// story lists the current state and the markers.
func (a *armData) story(b *strings.Builder, ms []marker) {
	if n := len(a.points); n > 0 && a.points[n-1].State != "" {
		b.WriteString("Current state: " + stateText(a.points[n-1].State) + ".")
	}
	if len(ms) == 0 {
		return
	}
	b.WriteString(" Marks: ")
	if len(ms) > maxStory {
		b.WriteString(strconv.Itoa(len(ms)-maxStory) + " earlier, then ")
		ms = ms[len(ms)-maxStory:]
	}
	for i, m := range ms {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(clip(m.label, maxTextRunes) + " at " + clock(m.at))
	}
	b.WriteString(".")
}

// theta0 is the last θ0, as "1.2".
func (a *armData) theta0() string {
	for i := len(a.points) - 1; i >= 0; i-- {
		if t := a.points[i].Theta0; finite(t) && t > 0 {
			return number(t)
		}
	}
	return "θ0"
}

// evalueLabel names the e-value series: "e-value v2 vs v1".
func (a *armData) evalueLabel() string {
	if a.candVersion == "" || a.baseVersion == "" {
		return "e-value"
	}
	return "e-value " + a.candVersion + " vs " + a.baseVersion
}

// cohort names a cohort with its version: "candidate v2".
func cohort(role, version string) string {
	if version == "" {
		return role
	}
	return role + " " + clip(version, maxTextRunes)
}

func lastDefined(x []float64) int {
	for i := len(x) - 1; i >= 0; i-- {
		if !math.IsNaN(x[i]) {
			return i
		}
	}
	return -1
}
