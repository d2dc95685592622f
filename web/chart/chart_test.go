package chart

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var start = time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)

const batch = 10 * time.Second

// badCanary is an error-ratio arm: the candidate fails 6 % of requests
// against the baseline's 1 %, the test regresses at point 20, the flag is
// killed, the tests restart at point 25 and the candidate is back at 1 %.
func badCanary() (detector.SignalSeries, []Event) {
	s := detector.SignalSeries{Signal: "errors"}
	var ct, cb, bt, bb float64
	for i := range 55 {
		if i == 25 {
			ct, cb, bt, bb = 0, 0, 0, 0 // the tests restart after the mitigation
		}
		candBad := float64(6 + i%3 - 1)
		state, e := detector.StateInconclusive, math.Exp(0.27*float64(i))
		if i >= 25 {
			candBad = []float64{0, 1, 1, 2}[i%4]
			e = math.Exp(-0.1 * float64(i-24))
			if i >= 35 {
				state = detector.StateHealthy
			}
		} else if i >= 20 {
			state = detector.StateRegressed
		}
		ct, cb = ct+100, cb+candBad
		bt, bb = bt+900, bb+float64(9+i%2)
		s.Points = append(s.Points, detector.Point{At: start.Add(time.Duration(i) * batch), Arms: []detector.ArmPoint{{
			Signal: "errors", State: state,
			Candidate: detector.CohortCounts{Version: "v2", Total: ct, Bad: cb, Ratio: cb / ct},
			Baseline:  detector.CohortCounts{Version: "v1", Total: bt, Bad: bb, Ratio: bb / bt},
			EValue:    detector.Float(e), Threshold: 200, Theta0: 1.2,
		}}})
	}
	return s, []Event{
		{At: start.Add(22*batch + 3*time.Second), Label: "flag_kill ok"},
		{At: start.Add(-time.Hour), Label: "before the charted time"},
	}
}

// latency has two quantile arms whose boundary is placed after 5 points:
// p99 regresses (3 % of candidate requests slower against 1 %), p50 is
// healthy.
func latency() detector.SignalSeries {
	s := detector.SignalSeries{Signal: "latency"}
	type run struct{ ct, cx, bt, bx float64 }
	var p50, p99 run
	for i := range 40 {
		p := detector.Point{At: start.Add(time.Duration(i) * batch)}
		st50, st99 := detector.StateInconclusive, detector.StateInconclusive
		e50, e99 := 1.0, 1.0
		if i >= 5 {
			p50 = run{p50.ct + 200, p50.cx + 104, p50.bt + 1800, p50.bx + 900}
			p99 = run{p99.ct + 200, p99.cx + float64(5+i%3), p99.bt + 1800, p99.bx + 18}
			e50, e99 = math.Exp(-0.25*float64(i-5)), math.Exp(0.2*float64(i-5))
			if i >= 20 {
				st50 = detector.StateHealthy
			}
			if e99 >= 400 {
				st99 = detector.StateRegressed
			}
		}
		for _, a := range []struct {
			name  string
			r     run
			e     float64
			state detector.State
		}{{"latency:p50", p50, e50, st50}, {"latency:p99", p99, e99, st99}} {
			p.Arms = append(p.Arms, detector.ArmPoint{Signal: a.name, State: a.state,
				Candidate: detector.CohortCounts{Version: "v2", Total: a.r.ct, Bad: a.r.cx, Ratio: ratio(a.r.cx, a.r.ct)},
				Baseline:  detector.CohortCounts{Version: "v1", Total: a.r.bt, Bad: a.r.bx, Ratio: ratio(a.r.bx, a.r.bt)},
				EValue:    detector.Float(a.e), Threshold: 400, Theta0: 1.1})
		}
		s.Points = append(s.Points, p)
	}
	return s
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func TestGolden(t *testing.T) {
	canary, events := badCanary()
	for _, tc := range []struct {
		name   string
		series detector.SignalSeries
		events []Event
		charts int
	}{
		{"bad-canary", canary, events, 2},
		{"latency", latency(), nil, 4},
		{"empty", detector.SignalSeries{Signal: "errors"}, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			charts := Signal(tc.series, tc.events, Options{})
			if len(charts) != tc.charts {
				t.Fatalf("got %d charts, want %d", len(charts), tc.charts)
			}
			for _, c := range charts {
				path := filepath.Join("testdata", tc.name+"."+c.ID+".svg")
				if *update {
					if err := os.WriteFile(path, c.SVG, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./web/chart -update to create it)", err)
				}
				if !bytes.Equal(c.SVG, want) {
					t.Errorf("%s differs from the golden file; if the change is intended, run go test ./web/chart -update and review the diff", path)
				}
			}
		})
	}
}

// element is a parsed SVG element with its direct text.
type element struct {
	name  string
	attrs map[string]string
	text  string
	path  []string // ancestors' class attributes, outermost first
}

// parse decodes doc strictly, failing the test when it is not well-formed,
// and returns its elements in document order.
func parse(t *testing.T, doc []byte) []*element {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	var all, stack []*element
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := &element{name: tok.Name.Local, attrs: map[string]string{}}
			if len(stack) == 0 && tok.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("root namespace %q, want the SVG namespace", tok.Name.Space)
			}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			for _, p := range stack {
				e.path = append(e.path, p.attrs["class"])
			}
			all, stack = append(all, e), append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(tok)
			}
		case xml.ProcInst, xml.Directive:
			t.Errorf("unexpected %T in an inline SVG", tok)
		}
	}
	if len(all) == 0 || all[0].name != "svg" {
		t.Fatalf("no <svg> root:\n%s", doc)
	}
	return all
}

func byClass(es []*element, class string) []*element {
	var out []*element
	for _, e := range es {
		if e.attrs["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func inGroup(es []*element, class string) []*element {
	var out []*element
	for _, e := range es {
		for _, p := range e.path {
			if p == class {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

var coord = regexp.MustCompile(`[ML](-?[0-9.]+) (-?[0-9.]+)`)

// points are the drawn coordinates of a path.
func points(t *testing.T, d string) [][2]float64 {
	t.Helper()
	var out [][2]float64
	for _, m := range coord.FindAllStringSubmatch(d, -1) {
		x, err1 := strconv.ParseFloat(m[1], 64)
		y, err2 := strconv.ParseFloat(m[2], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad coordinate in %q", m[0])
		}
		out = append(out, [2]float64{x, y})
	}
	return out
}

// checkDocument asserts what every chart must be: well-formed standalone
// SVG with an accessible name and description.
func checkDocument(t *testing.T, c Chart) []*element {
	t.Helper()
	es := parse(t, c.SVG)
	root := es[0]
	if !regexp.MustCompile(`^[A-Za-z0-9-]+$`).MatchString(c.ID) || root.attrs["id"] != c.ID {
		t.Errorf("ID %q (root id %q) is not a safe HTML id", c.ID, root.attrs["id"])
	}
	for k, v := range map[string]string{"version": "1.1", "role": "img",
		"width": "640", "height": "220", "viewBox": "0 0 640 220"} {
		if root.attrs[k] != v {
			t.Errorf("%s: <svg %s=%q>, want %q", c.ID, k, root.attrs[k], v)
		}
	}
	ids := map[string]*element{}
	for _, e := range es {
		if id := e.attrs["id"]; id != "" {
			if ids[id] != nil {
				t.Errorf("%s: id %q twice", c.ID, id)
			}
			ids[id] = e
		}
	}
	want := []string{"title", "desc"}
	refs := strings.Fields(root.attrs["aria-labelledby"])
	if len(refs) != 2 {
		t.Fatalf("%s: aria-labelledby=%q, want a title and a desc", c.ID, root.attrs["aria-labelledby"])
	}
	for i, ref := range refs {
		e := ids[ref]
		if e == nil || e.name != want[i] || strings.TrimSpace(e.text) == "" {
			t.Errorf("%s: aria-labelledby names %q, which is not a non-empty <%s>", c.ID, ref, want[i])
		}
	}
	if ids[refs[0]] != nil && ids[refs[0]].text != c.Title {
		t.Errorf("%s: <title> %q, Chart.Title %q", c.ID, ids[refs[0]].text, c.Title)
	}
	for _, e := range es {
		if dp, ok := e.attrs["data-points"]; ok {
			n, err := strconv.Atoi(dp)
			if got := len(points(t, e.attrs["d"])); err != nil || got != n {
				t.Errorf("%s: %s has data-points=%q but draws %d points", c.ID, e.attrs["class"], dp, got)
			}
		}
	}
	for _, bad := range []string{"<script", "<style", "<image", "<foreignObject"} {
		if bytes.Contains(c.SVG, []byte(bad)) {
			t.Errorf("%s: output contains %q", c.ID, bad)
		}
	}
	for _, e := range es {
		for k, v := range e.attrs {
			switch k {
			case "x", "y", "x1", "y1", "x2", "y2", "d", "width", "height", "viewBox":
				if strings.Contains(v, "NaN") || strings.Contains(v, "Inf") {
					t.Errorf("%s: <%s %s=%q>", c.ID, e.name, k, v)
				}
			case "href", "style", "src":
				t.Errorf("%s: <%s> has %s", c.ID, e.name, k)
			}
			if strings.HasPrefix(k, "on") {
				t.Errorf("%s: <%s> has an event handler %s", c.ID, e.name, k)
			}
		}
	}
	return es
}

func desc(es []*element) string {
	for _, e := range es {
		if e.name == "desc" {
			return e.text
		}
	}
	return ""
}

func texts(es []*element) []string {
	var out []string
	for _, e := range es {
		if e.name == "text" {
			out = append(out, e.text)
		}
	}
	return out
}

func TestBadCanaryRate(t *testing.T) {
	s, events := badCanary()
	charts := Signal(s, events, Options{})
	c := charts[0]
	if c.ID != "chart-errors-rate" {
		t.Fatalf("first chart %q, want chart-errors-rate", c.ID)
	}
	es := checkDocument(t, c)
	// The oldest segment's first point only opens the window (24 rates);
	// the segment after the restart counts from zero (30 rates).
	for class, n := range map[string]string{"series-baseline": "54", "series-candidate": "54", "threshold": "54"} {
		got := byClass(es, class)
		if len(got) != 1 || got[0].attrs["data-points"] != n {
			t.Errorf("%s: %d elements, want one with data-points=%s", class, len(got), n)
			continue
		}
		if m := strings.Count(got[0].attrs["d"], "M"); m != 2 {
			t.Errorf("%s is drawn in %d pieces, want 2: the restart breaks the line", class, m)
		}
	}
	legend := strings.Join(texts(inGroup(es, "legend")), "|")
	if legend != "baseline v1|candidate v2|decision line 1.2 × baseline" {
		t.Errorf("legend %q", legend)
	}
	if got := byClass(es, "series-candidate")[0].attrs["stroke"]; got != colourCandidate {
		t.Errorf("candidate stroke %q", got)
	}
	if got := byClass(es, "threshold")[0].attrs["stroke-dasharray"]; got == "" {
		t.Error("the decision line is not dashed")
	}
	d := desc(es)
	for _, want := range []string{
		"At 10:09:00 UTC, candidate v2 bad-event rate 1.0% against baseline v1 1.1%, decision line 1.3%, over the last 6 batches.",
		"Current state: healthy.",
		"regressed at 10:03:20", "flag_kill ok at 10:03:43", "tests restarted at 10:04:10", "inconclusive at 10:04:10", "healthy at 10:05:50",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("desc lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "before the charted time") {
		t.Error("an event outside the charted time is marked")
	}
}

func TestBadCanaryMarkers(t *testing.T) {
	s, events := badCanary()
	for _, c := range Signal(s, events, Options{}) {
		es := checkDocument(t, c)
		var got []string
		for _, m := range byClass(es, "marker") {
			if m.attrs["stroke-dasharray"] == "" || m.attrs["y1"] == m.attrs["y2"] || m.attrs["x1"] != m.attrs["x2"] {
				t.Errorf("%s: marker %v is not a dotted vertical line", c.ID, m.attrs)
			}
			got = append(got, m.attrs["data-kind"])
		}
		if want := "state|event|restart state|state"; strings.Join(got, "|") != want {
			t.Errorf("%s: markers %q, want %q", c.ID, got, want)
		}
		labels := strings.Join(texts(byClass(es, "marker-label")), "|")
		if labels != "regressed|flag_kill ok|tests restarted, inconclusive|healthy" {
			t.Errorf("%s: marker labels %q", c.ID, labels)
		}
	}
}

func TestBadCanaryEvidence(t *testing.T) {
	s, events := badCanary()
	c := Signal(s, events, Options{})[1]
	if c.ID != "chart-errors-evidence" {
		t.Fatalf("second chart %q", c.ID)
	}
	es := checkDocument(t, c)
	ev := byClass(es, "series-evalue")
	if len(ev) != 1 || ev[0].attrs["data-points"] != "55" {
		t.Fatalf("e-value series %v", ev)
	}
	thr := byClass(es, "threshold")
	if len(thr) != 1 || thr[0].attrs["stroke-dasharray"] == "" {
		t.Fatalf("threshold %v", thr)
	}
	// The threshold is flat at 200, above the start (e = 1) and below the peak.
	tp := points(t, thr[0].attrs["d"])
	ep := points(t, ev[0].attrs["d"])
	if tp[0][1] != tp[len(tp)-1][1] || !(tp[0][1] < ep[0][1]) || !(tp[0][1] > ep[24][1]) {
		t.Errorf("threshold at y=%v, e-value from y=%v to peak y=%v", tp[0][1], ep[0][1], ep[24][1])
	}
	if got := texts(byClass(es, "threshold-label")); len(got) != 1 || got[0] != "threshold 1/α = 200" {
		t.Errorf("threshold label %q", got)
	}
	legend := strings.Join(texts(inGroup(es, "legend")), "|")
	if legend != "e-value v2 vs v1|threshold 1/α = 200" {
		t.Errorf("legend %q", legend)
	}
	ticks := strings.Join(texts(inGroup(es, "y-ticks")), " ")
	if ticks != "10⁻² 10⁻¹ 10⁰ 10¹ 10² 10³" {
		t.Errorf("y ticks %q", ticks)
	}
	d := desc(es)
	for _, want := range []string{"against the threshold 1/α = 200", "first reached the threshold at 10:03:20 UTC"} {
		if !strings.Contains(d, want) {
			t.Errorf("desc lacks %q:\n%s", want, d)
		}
	}
}

func TestLatencyArms(t *testing.T) {
	charts := Signal(latency(), nil, Options{IDPrefix: "checkout"})
	var ids []string
	for _, c := range charts {
		ids = append(ids, c.ID)
		es := checkDocument(t, c)
		if strings.HasSuffix(c.ID, "-rate") {
			// No rate while the boundary was not placed: 5 points with
			// totals at zero, the first of which opens the window.
			if got := byClass(es, "series-candidate")[0].attrs["data-points"]; got != "35" {
				t.Errorf("%s: candidate data-points %s, want 35", c.ID, got)
			}
		}
	}
	want := "chart-checkout-latency-3a-p50-rate chart-checkout-latency-3a-p50-evidence chart-checkout-latency-3a-p99-rate chart-checkout-latency-3a-p99-evidence"
	if strings.Join(ids, " ") != want {
		t.Errorf("ids %q", ids)
	}
	es := parse(t, charts[2].SVG)
	if d := desc(es); !strings.Contains(d, "candidate v2 share of requests slower than the baseline's p99 3.0% against baseline v1 1.0%") {
		t.Errorf("p99 desc: %s", d)
	}
	if ticks := strings.Join(texts(inGroup(es, "y-ticks")), " "); ticks != "0% 1% 2% 3% 4%" {
		t.Errorf("p99 y ticks %q", ticks)
	}
	if ticks := strings.Join(texts(inGroup(es, "x-ticks")), " "); ticks != "10:00:00 10:02:00 10:04:00 10:06:00" {
		t.Errorf("x ticks %q", ticks)
	}
}

func TestNoData(t *testing.T) {
	one := detector.SignalSeries{Signal: "errors", Points: []detector.Point{{At: start, Arms: []detector.ArmPoint{{
		Signal: "errors", State: detector.StateInconclusive, EValue: 1, Threshold: 200, Theta0: 1.2,
		Candidate: detector.CohortCounts{Version: "v2", Total: 10, Bad: 1}, Baseline: detector.CohortCounts{Version: "v1", Total: 10}}}}}}
	idle := detector.SignalSeries{Signal: "errors", Points: []detector.Point{
		{At: start, Arms: []detector.ArmPoint{{Signal: "errors", EValue: 1, Threshold: 200}}},
		{At: start.Add(batch), Arms: []detector.ArmPoint{{Signal: "errors", EValue: 1, Threshold: 200}}},
	}}
	for _, tc := range []struct {
		name   string
		s      detector.SignalSeries
		noData []bool // per chart
	}{
		{"empty", detector.SignalSeries{Signal: "errors"}, []bool{true, true}},
		{"nameless", detector.SignalSeries{}, []bool{true, true}},
		{"single point", one, []bool{true, true}},
		{"no traffic", idle, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			charts := Signal(tc.s, []Event{{At: start, Label: "x"}}, Options{})
			if len(charts) != len(tc.noData) {
				t.Fatalf("%d charts", len(charts))
			}
			for i, c := range charts {
				es := checkDocument(t, c)
				got := len(byClass(es, "no-data")) == 1
				if got != tc.noData[i] {
					t.Errorf("%s: no data shown %v, want %v", c.ID, got, tc.noData[i])
				}
				if got && (byClass(es, "no-data")[0].text != "no data yet" || !strings.Contains(desc(es), "no data yet")) {
					t.Errorf("%s: no-data text or desc missing", c.ID)
				}
			}
		})
	}
}

func TestHostileText(t *testing.T) {
	const evil = `<script>alert("x&y")</script>'&amp;` + "\x00\x1b\xff"
	s, _ := badCanary()
	s.Signal = evil
	for i := range s.Points {
		for j := range s.Points[i].Arms {
			a := &s.Points[i].Arms[j]
			a.Signal = evil
			a.Candidate.Version = `v2"><script>`
			a.Baseline.Version = `v1 & "old"`
			a.State = `</desc><script>`
		}
	}
	events := []Event{{At: start.Add(5 * batch), Label: `]]><script>alert(1)</script>`}}
	charts := Signal(s, events, Options{IDPrefix: `"><img onerror=1>`})
	if len(charts) != 2 {
		t.Fatalf("%d charts", len(charts))
	}
	for _, c := range charts {
		es := checkDocument(t, c)
		if bytes.Contains(c.SVG, []byte("\x00")) || bytes.Contains(c.SVG, []byte("\xff")) {
			t.Errorf("%s: raw control or invalid bytes in the output", c.ID)
		}
		if !strings.HasPrefix(es[1].text, `<script>alert("x&y")</script>'&amp;`) {
			t.Errorf("%s: title %q does not read back the signal name", c.ID, es[1].text)
		}
		d := desc(es)
		for _, want := range []string{`]]><script>alert(1)</script> at 10:00:50`} {
			if !strings.Contains(d, want) {
				t.Errorf("%s: desc lacks %q:\n%s", c.ID, want, d)
			}
		}
		if strings.HasSuffix(c.ID, "-rate") {
			legend := texts(inGroup(es, "legend"))
			if len(legend) != 3 || legend[0] != `baseline v1 & "old"` || legend[1] != `candidate v2"><script>` {
				t.Errorf("%s: legend %q", c.ID, legend)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	s, events := badCanary()
	a, b := Signal(s, events, Options{}), Signal(s, events, Options{})
	for i := range a {
		if a[i].ID != b[i].ID || !bytes.Equal(a[i].SVG, b[i].SVG) {
			t.Errorf("%s: two renders of the same input differ", a[i].ID)
		}
	}
}

// TestRestart checks that no rate is taken across a restart, whichever
// cohort's totals drop.
func TestRestart(t *testing.T) {
	s, _ := badCanary()
	arms := collect(s)
	a := arms[0]
	a.compute()
	for i := range a.points {
		if a.restart[i] != (i == 25) {
			t.Errorf("restart[%d] = %v", i, a.restart[i])
		}
		for _, v := range [][]float64{a.base, a.cand, a.decision} {
			if v[i] < 0 {
				t.Errorf("negative rate %v at %d", v[i], i)
			}
		}
	}
	if !math.IsNaN(a.cand[0]) {
		t.Errorf("the oldest point has a rate %v: its totals may not start from zero", a.cand[0])
	}
	// Right after the restart the rate is the new segment's own: its first
	// totals over zero, not the old segment's 6 % nor a delta across the
	// drop; the window then grows within the segment only.
	rate := func(c func(detector.ArmPoint) detector.CohortCounts, i, j int) float64 {
		if j < 0 {
			return 100 * c(a.points[i]).Bad / c(a.points[i]).Total
		}
		return 100 * (c(a.points[i]).Bad - c(a.points[j]).Bad) / (c(a.points[i]).Total - c(a.points[j]).Total)
	}
	cand := func(p detector.ArmPoint) detector.CohortCounts { return p.Candidate }
	base := func(p detector.ArmPoint) detector.CohortCounts { return p.Baseline }
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"candidate before", a.cand[24], rate(cand, 24, 18)},
		{"candidate after", a.cand[25], rate(cand, 25, -1)},
		{"candidate after+1", a.cand[26], rate(cand, 26, -1)},
		{"candidate after+6", a.cand[31], rate(cand, 31, 25)},
		{"baseline after", a.base[25], rate(base, 25, -1)},
		{"decision after", a.decision[25], 1.2 * rate(base, 25, -1)},
	} {
		if math.Abs(tc.got-tc.want) > 1e-9 || !(tc.got >= 0) {
			t.Errorf("%s: rate %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if a.cand[25] != 1 || a.cand[24] < 5 {
		t.Errorf("candidate rate %v%% before and %v%% after the restart, want 5-7%% and 1%%", a.cand[24], a.cand[25])
	}

	// Only the baseline's totals drop: still a restart.
	s.Points = s.Points[20:30]
	for i := range s.Points {
		s.Points[i].Arms[0].Candidate.Total = float64(1000 + 100*i)
	}
	a = collect(s)[0]
	a.compute()
	if !a.restart[5] || !(a.base[5] >= 0) {
		t.Errorf("baseline-only drop: restart %v, rate %v", a.restart[5], a.base[5])
	}

	// In the drawing: every rate sits on or above the zero line.
	c := Signal(s, nil, Options{})[0]
	es := checkDocument(t, c)
	for _, class := range []string{"series-baseline", "series-candidate", "threshold"} {
		for _, p := range points(t, byClass(es, class)[0].attrs["d"]) {
			if p[1] > float64(220-marginBottom) {
				t.Errorf("%s point %v below the zero line", class, p)
			}
		}
	}
}

func TestWindowRates(t *testing.T) {
	cc := func(pairs ...float64) []detector.CohortCounts {
		var out []detector.CohortCounts
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, detector.CohortCounts{Total: pairs[i], Bad: pairs[i+1], Ratio: ratio(pairs[i+1], pairs[i])})
		}
		return out
	}
	nan := math.NaN()
	for _, tc := range []struct {
		name      string
		counts    []detector.CohortCounts
		fromZero  bool
		reference bool
		want      []float64
	}{
		{"oldest segment opens the window", cc(100, 1, 200, 3, 300, 3), false, false, []float64{nan, 2, 1}},
		{"restart counts from zero", cc(100, 1, 200, 3), true, false, []float64{1, 1.5}},
		{"window of six batches", cc(100, 0, 200, 0, 300, 0, 400, 0, 500, 0, 600, 0, 700, 6, 800, 6), false, false,
			[]float64{nan, 0, 0, 0, 0, 0, 1, 1}},
		{"no traffic in the window", cc(100, 1, 100, 1, 200, 2), false, false, []float64{nan, nan, 1}},
		{"bad count going back", cc(100, 5, 200, 3), false, false, []float64{nan, nan}},
		{"non-finite counts skipped", cc(100, 1, math.NaN(), 1, 200, math.Inf(1), 300, 3), false, false, []float64{nan, nan, nan, 1}},
		{"fixed reference drawn flat", cc(1000, 20, 1000, 20, 1000, 20), false, true, []float64{2, 2, 2}},
		{"a still candidate is not a reference", cc(1000, 20, 1000, 20), false, false, []float64{nan, nan}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nanSlice(len(tc.counts))
			windowRates(got, tc.counts, tc.fromZero, tc.reference)
			for i := range got {
				if !(math.IsNaN(got[i]) && math.IsNaN(tc.want[i])) && math.Abs(got[i]-tc.want[i]) > 1e-9 {
					t.Errorf("rates %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}

func TestNonFinite(t *testing.T) {
	s, _ := badCanary()
	s.Points = s.Points[:12]
	s.Points[3].Arms[0].EValue = detector.Float(math.NaN())
	s.Points[4].Arms[0].EValue = detector.Float(math.Inf(1))
	s.Points[5].Arms[0].EValue = detector.Float(math.Inf(-1))
	s.Points[6].Arms[0].Candidate.Total = math.NaN()
	s.Points[7].Arms[0].Baseline.Bad = math.Inf(1)
	s.Points[8].Arms[0].Threshold = math.NaN()
	s.Points[9].Arms[0].Theta0 = math.Inf(1)
	charts := Signal(s, nil, Options{})
	for _, c := range charts {
		checkDocument(t, c)
	}
	es := parse(t, charts[1].SVG)
	// NaN is skipped; +Inf is off the scale and pinned to its top.
	if got := byClass(es, "series-evalue")[0].attrs["data-points"]; got != "11" {
		t.Errorf("e-value data-points %s, want 11", got)
	}
	if ticks := texts(inGroup(es, "y-ticks")); ticks[len(ticks)-1] != "10¹²" {
		t.Errorf("y ticks %q: +Inf should reach the axis' end", ticks)
	}
}

func TestDownsample(t *testing.T) {
	s := detector.SignalSeries{Signal: "errors"}
	for i := range 2000 {
		n := float64(i%1000 + 1) // a restart at 1000
		s.Points = append(s.Points, detector.Point{At: start.Add(time.Duration(i) * batch), Arms: []detector.ArmPoint{{
			Signal: "errors", EValue: 2, Threshold: 200, Theta0: 1.2,
			Candidate: detector.CohortCounts{Total: 100 * n, Bad: 2 * n}, Baseline: detector.CohortCounts{Total: 100 * n, Bad: n}}}})
	}
	for _, c := range Signal(s, nil, Options{}) {
		es := checkDocument(t, c)
		for _, e := range es {
			if dp, ok := e.attrs["data-points"]; ok {
				if dp != "720" {
					t.Errorf("%s %s: data-points %s, want 720", c.ID, e.attrs["class"], dp)
				}
				if want := map[bool]int{true: 2, false: 1}[e.attrs["class"] != "threshold" || c.ID == "chart-errors-rate"]; strings.Count(e.attrs["d"], "M") != want {
					t.Errorf("%s %s: %d pieces, want %d", c.ID, e.attrs["class"], strings.Count(e.attrs["d"], "M"), want)
				}
			}
		}
		if len(c.SVG) > 64<<10 {
			t.Errorf("%s: %d bytes", c.ID, len(c.SVG))
		}
	}
}

func TestOptions(t *testing.T) {
	s, _ := badCanary()
	for _, tc := range []struct {
		in   Options
		w, h string
	}{{Options{}, "640", "220"}, {Options{Width: 900, Height: 300}, "900", "300"}, {Options{Width: 10, Height: 1e6}, "240", "2048"}} {
		c := Signal(s, nil, tc.in)[0]
		es := parse(t, c.SVG)
		if es[0].attrs["width"] != tc.w || es[0].attrs["height"] != tc.h || es[0].attrs["viewBox"] != "0 0 "+tc.w+" "+tc.h {
			t.Errorf("%+v: svg %v", tc.in, es[0].attrs)
		}
	}
}

func TestIDPart(t *testing.T) {
	seen := map[string]string{}
	for _, s := range []string{"errors", "latency:p99", "latency-p99", "latency-3a-p99", "my sig", "", strings.Repeat("x", 300), strings.Repeat("x", 299) + "y"} {
		id := idPart(s)
		if !regexp.MustCompile(`^[A-Za-z0-9-]*$`).MatchString(id) || len(id) > 64 {
			t.Errorf("idPart(%q) = %q", s, id)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("idPart(%q) = idPart(%q) = %q", s, other, id)
		}
		seen[id] = s
	}
}

func TestHelpers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{power(-3), "10⁻³"}, {power(12), "10¹²"}, {power(0), "10⁰"},
		{clip("abcdef", 4), "abc…"}, {clip("abcd", 4), "abcd"}, {clip("αβγδε", 3), "αβ…"},
		{percent(6.123), "6.1%"}, {percent(0.05), "0.05%"}, {percent(12.6), "13%"}, {percent(0), "0%"},
		{number(200.00000000000003), "200"}, {number(340000), "3.4e5"}, {number(2e-7), "2e-7"}, {number(math.Inf(1)), "infinite"},
		{percentTick(2.5, 0.5), "2.5%"}, {percentTick(4, 1), "4%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// BenchmarkSignal renders one arm at the detector's cap of 720 points.
func BenchmarkSignal(b *testing.B) {
	s := detector.SignalSeries{Signal: "errors"}
	for i := range maxPointsForBench {
		n := float64(i + 1)
		s.Points = append(s.Points, detector.Point{At: start.Add(time.Duration(i) * batch), Arms: []detector.ArmPoint{{
			Signal: "errors", State: detector.StateInconclusive, EValue: detector.Float(math.Exp(float64(i%50) / 10)), Threshold: 200, Theta0: 1.2,
			Candidate: detector.CohortCounts{Version: "v2", Total: 100 * n, Bad: 3*n + float64(i%3)},
			Baseline:  detector.CohortCounts{Version: "v1", Total: 900 * n, Bad: 9*n + float64(i%5)}}}})
	}
	events := []Event{{At: start.Add(time.Minute), Label: "flag_kill ok"}}
	b.ReportAllocs()
	var size int
	for b.Loop() {
		size = 0
		for _, c := range Signal(s, events, Options{}) {
			size += len(c.SVG)
		}
	}
	b.ReportMetric(float64(size), "bytes/op-svg")
}

const maxPointsForBench = 720

// FuzzSignal feeds arbitrary names, counts and times to Signal: it must
// not panic and must always produce well-formed SVG without NaN or Inf.
func FuzzSignal(f *testing.F) {
	f.Add("errors", "v2", "flag_kill ok", 100.0, 6.0, 250.0, 200.0, int64(10))
	f.Add("latency:p99", `<v&"'>`, "]]>", math.NaN(), math.Inf(1), math.Inf(1), 0.0, int64(-5))
	f.Add("", "\xff\x00", "", 5e-324, 1e308, 1e-300, -1.0, int64(0))
	f.Add("a", "b", "c", -1.0, -1.0, math.NaN(), math.NaN(), int64(1<<62))
	f.Fuzz(func(t *testing.T, name, version, label string, total, bad, e, threshold float64, step int64) {
		s := detector.SignalSeries{Signal: name}
		at := start
		for i := range 9 {
			k := float64(i%4 + 1) // running totals that drop: a restart every 4 points
			s.Points = append(s.Points, detector.Point{At: at, Arms: []detector.ArmPoint{{
				Signal: name + ":p99", State: detector.State(label),
				Candidate: detector.CohortCounts{Version: version, Total: total * k, Bad: bad * k, Ratio: bad / total},
				Baseline:  detector.CohortCounts{Version: version, Total: total * k / 2, Bad: bad, Ratio: bad},
				EValue:    detector.Float(e * k), Threshold: threshold, Theta0: threshold / 100}}})
			at = at.Add(time.Duration(step) * time.Second)
		}
		charts := Signal(s, []Event{{At: start.Add(time.Duration(step)), Label: label}}, Options{IDPrefix: label})
		if len(charts) != 2 {
			t.Fatalf("%d charts", len(charts))
		}
		for _, c := range charts {
			checkDocument(t, c)
		}
	})
}
