// Package chart draws a signal's evidence as server-side SVG for the web UI
// and the post-mortem page: per test arm, the bad-event rates of baseline
// and candidate against the decision line, and the e-value against 1/α.
//
// It owns turning the detector's chart history (running totals per tested
// batch) into pictures a person can read, screen readers included. Output is
// standalone SVG 1.1 without script, stylesheet or external asset, styled by
// presentation attributes only (a <style> in inline SVG would leak into the
// page), and byte-for-byte deterministic for the same input so pages can be
// cached and golden-tested. It knows nothing of HTTP, NATS or how the
// tests decide.
package chart

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rollguard/rollguard/detector"
)

const (
	defaultWidth, defaultHeight = 640, 220
	minWidth, minHeight         = 240, 120
	maxWidth, maxHeight         = 4096, 2048

	// window is how many tested batches a rate is smoothed over: one batch
	// is often a handful of requests, too noisy to read on its own.
	window = 6
	// maxSeriesPoints bounds a drawn series: the detector's own cap.
	maxSeriesPoints = 720
	// maxMarkers bounds the vertical markers of one chart; a flapping
	// verdict would otherwise draw one per point. The most recent are kept.
	maxMarkers = 100

	// The e-value axis, in powers of ten.
	minLogE, maxLogE = -3, 12
)

// Event marks a moment on every chart: an action (flag kill, rollback) or an
// incident state change.
type Event struct {
	At    time.Time
	Label string
}

// Options shape the charts. Zero values take the defaults.
type Options struct {
	// Width and Height are the SVG's size in pixels: 640×220 by default,
	// kept within 240×120 and 4096×2048.
	Width, Height int
	// IDPrefix is put in front of every chart ID (the guard's name, say) so
	// that the charts of several guards can share a page without their ids
	// colliding.
	IDPrefix string
}

func (o Options) withDefaults() Options {
	if o.Width <= 0 {
		o.Width = defaultWidth
	}
	if o.Height <= 0 {
		o.Height = defaultHeight
	}
	o.Width = min(max(o.Width, minWidth), maxWidth)
	o.Height = min(max(o.Height, minHeight), maxHeight)
	return o
}

// Chart is one rendered chart.
type Chart struct {
	// ID is safe for an HTML id: letters, digits and '-'. It is the id of
	// the <svg> element; its <title> and <desc> have ID+"-title" and
	// ID+"-desc".
	ID string
	// Title is plain text: escape it when writing it into HTML.
	Title string
	// SVG is a complete <svg> element, to inline in HTML or serve as
	// image/svg+xml.
	SVG []byte
}

// Signal renders, for every arm of the signal (one for an error ratio, one
// per quantile for a latency signal), two charts:
//
//  1. "rate": the bad-event rate of the baseline and the candidate over the
//     last 6 tested batches, in %, with the decision line θ0 × baseline
//     rate (dashed) the candidate must stay under;
//  2. "evidence": the e-value on a log10 axis (clamped to 10⁻³…10¹²)
//     against the threshold 1/α (dashed).
//
// Both carry a dotted vertical marker where the arm's verdict changed, where
// its tests restarted (running totals dropped), and at each event within the
// charted time. A restart splits the history into segments and no rate is
// taken across one. An arm with fewer than two points is drawn as "no data
// yet"; so is a signal without points.
func Signal(s detector.SignalSeries, events []Event, o Options) []Chart {
	o = o.withDefaults()
	arms := collect(s)
	if len(arms) == 0 {
		name := clean(s.Signal)
		if name == "" {
			name = "unnamed signal"
		}
		arms = []*armData{{signal: name, name: name}}
	}
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b Event) int { return a.At.Compare(b.At) })
	out := make([]Chart, 0, 2*len(arms))
	for _, a := range arms {
		a.compute()
		ms := a.markers(sorted)
		out = append(out, renderRate(a, ms, o), renderEvidence(a, ms, o))
	}
	return out
}

// armData is one arm's history, its values aligned with its points; NaN
// marks a value that is not defined at a point.
type armData struct {
	signal, name string
	from         int // the series point the last of points came from
	points       []detector.ArmPoint
	at           []time.Time
	// restart[i] reports that point i starts a segment after the tests
	// restarted: its running totals count from zero again.
	restart []bool

	base, cand, decision []float64 // %, over the window
	evalue, threshold    []float64 // clamped to the e-value axis

	baseVersion, candVersion string
}

// collect splits the series per arm, in order of first appearance.
func collect(s detector.SignalSeries) []*armData {
	var arms []*armData
	for k, p := range s.Points {
		for _, ap := range p.Arms {
			name := clean(ap.Signal)
			if name == "" {
				name = clean(s.Signal)
			}
			var a *armData
			for _, x := range arms {
				if x.name == name {
					a = x
					break
				}
			}
			if a == nil {
				a = &armData{signal: clean(s.Signal), name: name, from: -1,
					points: make([]detector.ArmPoint, 0, len(s.Points)-k),
					at:     make([]time.Time, 0, len(s.Points)-k)}
				arms = append(arms, a)
			}
			if a.from == k {
				continue // the same arm twice in one point: keep the first
			}
			a.from = k
			a.points = append(a.points, ap)
			a.at = append(a.at, p.At)
		}
	}
	return arms
}

// compute derives the plotted values from the running totals.
func (a *armData) compute() {
	n := len(a.points)
	a.restart = make([]bool, n)
	for i := 1; i < n; i++ {
		c, b := a.points[i], a.points[i-1]
		a.restart[i] = c.Candidate.Total < b.Candidate.Total || c.Baseline.Total < b.Baseline.Total
	}
	a.base, a.cand, a.decision = nanSlice(n), nanSlice(n), nanSlice(n)
	a.evalue, a.threshold = nanSlice(n), nanSlice(n)
	counts := make([]detector.CohortCounts, n)
	for s := 0; s < n; {
		e := s + 1
		for e < n && !a.restart[e] {
			e++
		}
		fromZero := a.restart[s]
		for i := s; i < e; i++ {
			counts[i] = a.points[i].Baseline
		}
		windowRates(a.base[s:e], counts[s:e], fromZero, true)
		for i := s; i < e; i++ {
			counts[i] = a.points[i].Candidate
		}
		windowRates(a.cand[s:e], counts[s:e], fromZero, false)
		s = e
	}
	for i, p := range a.points {
		if t := p.Theta0; finite(t) && t > 0 && !math.IsNaN(a.base[i]) {
			a.decision[i] = t * a.base[i]
		}
		a.evalue[i] = logE(float64(p.EValue), true)
		a.threshold[i] = logE(p.Threshold, false)
		if v := p.Baseline.Version; v != "" {
			a.baseVersion = clean(v)
		}
		if v := p.Candidate.Version; v != "" {
			a.candVersion = clean(v)
		}
	}
}

// windowRates fills out with each point's bad-event rate in % over the last
// window batches of one segment, NaN where the window saw no traffic or the
// counts make no sense. fromZero says the segment began with a restart, so
// its first totals count from zero; the oldest segment may have lost its
// beginning to the history's cap, so its first point only opens the window.
// A baseline whose totals never move (the window before the deployment of
// a before/after comparison) is a fixed reference: its ratio is drawn flat.
func windowRates(out []float64, counts []detector.CohortCounts, fromZero, reference bool) {
	if reference && len(counts) >= 2 && static(counts) {
		for i := range out {
			out[i] = 100 * counts[0].Ratio
		}
		return
	}
	type entry struct{ total, bad float64 }
	seen := make([]entry, 0, len(counts)+1)
	if fromZero {
		seen = append(seen, entry{})
	}
	for i, c := range counts {
		if !finite(c.Total) || !finite(c.Bad) {
			continue
		}
		cur := entry{c.Total, c.Bad}
		if len(seen) > 0 {
			ref := seen[max(0, len(seen)-window)]
			dt, db := cur.total-ref.total, cur.bad-ref.bad
			if dt > 0 && db >= 0 {
				if r := 100 * db / dt; finite(r) {
					out[i] = r
				}
			}
		}
		seen = append(seen, cur)
	}
}

// static reports whether a cohort's counts stayed put over a segment.
func static(counts []detector.CohortCounts) bool {
	c0 := counts[0]
	if !finite(c0.Total) || c0.Total <= 0 || !finite(c0.Ratio) || c0.Ratio < 0 {
		return false
	}
	for _, c := range counts[1:] {
		if c.Total != c0.Total || c.Bad != c0.Bad {
			return false
		}
	}
	return true
}

// logE is v on the e-value axis (log10, clamped), NaN when v cannot be
// drawn. An infinite e-value is off the scale rather than missing: it is
// pinned to the axis' end when inf is set.
func logE(v float64, inf bool) float64 {
	switch {
	case math.IsNaN(v), math.IsInf(v, 0) && !inf:
		return math.NaN()
	case v <= 0:
		return minLogE
	}
	return min(max(math.Log10(v), minLogE), maxLogE)
}

// marker is a vertical line with a label.
type marker struct {
	at    time.Time
	kind  string // "state", "restart" or "event"
	label string
}

// markers lists the arm's verdict changes and restarts and the events
// within its time span, in time order, at most maxMarkers of them.
func (a *armData) markers(events []Event) []marker {
	var ms []marker
	for i := 1; i < len(a.points); i++ {
		if a.restart[i] {
			ms = append(ms, marker{at: a.at[i], kind: "restart", label: "tests restarted"})
		}
		if st := a.points[i].State; st != a.points[i-1].State {
			ms = append(ms, marker{at: a.at[i], kind: "state", label: stateText(st)})
		}
	}
	if t0, t1, ok := a.span(); ok {
		for _, e := range events {
			if !e.At.Before(t0) && !e.At.After(t1) {
				ms = append(ms, marker{at: e.At, kind: "event", label: clean(e.Label)})
			}
		}
	}
	slices.SortStableFunc(ms, func(x, y marker) int { return x.at.Compare(y.at) })
	if len(ms) > maxMarkers {
		ms = ms[len(ms)-maxMarkers:]
	}
	return ms
}

// span is the arm's time range; ok is false with fewer than two points.
func (a *armData) span() (t0, t1 time.Time, ok bool) {
	if len(a.at) < 2 {
		return t0, t1, false
	}
	t0, t1 = a.at[0], a.at[0]
	for _, t := range a.at[1:] {
		if t.Before(t0) {
			t0 = t
		}
		if t.After(t1) {
			t1 = t
		}
	}
	return t0, t1, true
}

// quantile is "p99" for a latency arm named "latency:p99" of signal
// "latency", "" otherwise.
func (a *armData) quantile() string {
	if q, ok := strings.CutPrefix(a.name, a.signal+":"); ok && a.signal != "" && strings.HasPrefix(q, "p") {
		return q
	}
	return ""
}

// what names the rate an arm counts.
func (a *armData) what() string {
	if q := a.quantile(); q != "" {
		return "share of requests slower than the baseline's " + q
	}
	return "bad-event rate"
}

// sample is one drawn point; gap starts a new line.
type sample struct {
	at  time.Time
	v   float64
	gap bool
}

// samples turns aligned values into drawn points: a line breaks at a
// restart and where a value is missing, and at most maxSeriesPoints are
// kept, evenly spaced.
func (a *armData) samples(vals []float64, breakAtRestart bool) []sample {
	out := make([]sample, 0, len(vals))
	gap := true
	for i, v := range vals {
		if math.IsNaN(v) {
			gap = true
			continue
		}
		out = append(out, sample{at: a.at[i], v: v, gap: gap || (breakAtRestart && a.restart[i])})
		gap = false
	}
	return downsample(out, maxSeriesPoints)
}

// downsample keeps m of the samples, evenly spaced, first and last
// included; a break among the dropped ones moves to the next kept one.
func downsample(s []sample, m int) []sample {
	n := len(s)
	if n <= m {
		return s
	}
	out := make([]sample, 0, m)
	prev := -1
	for k := range m {
		i := int((int64(k)*int64(n-1) + int64(m-1)/2) / int64(m-1))
		p := s[i]
		for j := prev + 1; j < i; j++ {
			p.gap = p.gap || s[j].gap
		}
		out = append(out, p)
		prev = i
	}
	return out
}

// idPart encodes s in letters, digits and '-', one to one: any other rune
// becomes "-<hex>-". Long names end in a hash to keep the id short.
func idPart(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(int64(r), 16))
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > 64 {
		out = out[:47] + "-" + strconv.FormatUint(fnv64(s), 16)
	}
	return out
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func chartID(o Options, arm, kind string) string {
	id := "chart-"
	if o.IDPrefix != "" {
		id += idPart(o.IDPrefix) + "-"
	}
	return id + idPart(arm) + "-" + kind
}

// clean makes user text safe to carry in XML and HTML alike: runes XML
// cannot hold (controls, invalid UTF-8) become U+FFFD, so that Chart.Title
// reads the same as the SVG's <title>.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if !xmlChar(r) || r == utf8.RuneError {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if !xmlChar(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

// xmlChar is the Char production of XML 1.0.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// stateText is a verdict state for reading: "no data".
func stateText(s detector.State) string {
	return strings.ReplaceAll(clip(clean(string(s)), 40), "_", " ")
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// lastBoth is the last point where both values are defined, or -1.
func lastBoth(x, y []float64) int {
	for i := len(x) - 1; i >= 0; i-- {
		if !math.IsNaN(x[i]) && !math.IsNaN(y[i]) {
			return i
		}
	}
	return -1
}

// maxOf is the largest defined value of the slices, or def.
func maxOf(def float64, ss ...[]float64) float64 {
	m := def
	for _, s := range ss {
		for _, v := range s {
			if !math.IsNaN(v) {
				m = max(m, v)
			}
		}
	}
	return m
}

func minOf(def float64, ss ...[]float64) float64 {
	m := def
	for _, s := range ss {
		for _, v := range s {
			if !math.IsNaN(v) {
				m = min(m, v)
			}
		}
	}
	return m
}
