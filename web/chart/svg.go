package chart

import (
	"bytes"
	"encoding/xml"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The Okabe–Ito palette, safe for the common colour-vision deficiencies;
// every series also differs by width or dash, and the legend names it.
const (
	colourBaseline  = "#0072B2" // blue, solid
	colourCandidate = "#D55E00" // vermillion, solid and thicker
	colourEValue    = "#009E73" // bluish green, solid
	colourThreshold = "#000000" // dashed
	colourMarker    = "#555555" // dotted
	colourGrid      = "#E5E5E5"
	colourText      = "#333333"

	dashThreshold = "6 4"
	dashMarker    = "2 3"
)

// Layout, in pixels.
const (
	marginLeft   = 52
	marginRight  = 16
	marginTop    = 40
	marginBottom = 24
	titleY       = 15
	legendY      = 31
	// Rough advance of one character of the sans-serif font at 11 px and
	// 10 px: enough to keep labels from running into each other.
	charWidth      = 6.2
	smallCharWidth = 5.6
	markerRows     = 3
)

// Visible text is clipped; the full text (up to maxTextRunes) is in the
// <title> and <desc>.
const (
	maxTextRunes   = 200
	maxLegendRunes = 32
	maxMarkerRunes = 24
)

// canvas writes one SVG document.
type canvas struct {
	b    bytes.Buffer
	num  [64]byte
	w, h int
	// The plot area.
	left, right, top, bottom float64
	t0                       time.Time
	span                     float64 // seconds from t0 to the right edge
	ylo, yhi                 float64 // the y axis' domain, in its units
}

func newCanvas(o Options, points int) *canvas {
	c := &canvas{w: o.Width, h: o.Height,
		left: marginLeft, right: float64(o.Width - marginRight),
		top: marginTop, bottom: float64(o.Height - marginBottom)}
	c.b.Grow(4096 + 24*points)
	return c
}

func (c *canvas) raw(s string) { c.b.WriteString(s) }

// text writes s escaped for XML text and attribute values; runes XML cannot
// carry (controls, invalid UTF-8) become U+FFFD.
func (c *canvas) text(s string) {
	_ = xml.EscapeText(&c.b, []byte(s)) // a bytes.Buffer does not fail
}

// num writes v with one decimal: enough for pixels, and fixed so that
// output is the same on every platform.
func (c *canvas) num1(v float64) {
	if v > -0.05 && v < 0.05 {
		v = 0 // no "-0.0"
	}
	c.b.Write(strconv.AppendFloat(c.num[:0], v, 'f', 1, 64))
}

func (c *canvas) int(v int) { c.b.Write(strconv.AppendInt(c.num[:0], int64(v), 10)) }

// attr writes ` name="v"` for a coordinate.
func (c *canvas) attr(name string, v float64) {
	c.b.WriteByte(' ')
	c.b.WriteString(name)
	c.b.WriteString(`="`)
	c.num1(v)
	c.b.WriteByte('"')
}

func (c *canvas) setX(t0, t1 time.Time) {
	c.t0 = t0
	c.span = seconds(t0, t1)
	if !(c.span > 0) {
		c.span = 1
	}
}

func seconds(t0, t1 time.Time) float64 {
	return float64(t1.Unix()-t0.Unix()) + float64(t1.Nanosecond()-t0.Nanosecond())/1e9
}

func (c *canvas) x(t time.Time) float64 {
	x := c.left + seconds(c.t0, t)/c.span*(c.right-c.left)
	return min(max(x, c.left), c.right)
}

func (c *canvas) y(v float64) float64 {
	y := c.bottom - (v-c.ylo)/(c.yhi-c.ylo)*(c.bottom-c.top)
	return min(max(y, c.top), c.bottom)
}

// open starts the document: its accessible name and description, and the
// visible title.
func (c *canvas) open(id, title, desc string) {
	c.raw(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" id="`)
	c.raw(id)
	c.raw(`" width="`)
	c.int(c.w)
	c.raw(`" height="`)
	c.int(c.h)
	c.raw(`" viewBox="0 0 `)
	c.int(c.w)
	c.raw(" ")
	c.int(c.h)
	c.raw(`" role="img" aria-labelledby="`)
	c.raw(id + "-title " + id + "-desc")
	c.raw(`" font-family="sans-serif" font-size="11">` + "\n")
	c.raw(`<title id="` + id + `-title">`)
	c.text(title)
	c.raw("</title>\n")
	c.raw(`<desc id="` + id + `-desc">`)
	c.text(desc)
	c.raw("</desc>\n")
	c.raw(`<rect width="`)
	c.int(c.w)
	c.raw(`" height="`)
	c.int(c.h)
	c.raw(`" fill="#FFFFFF"/>` + "\n")
	c.raw(`<text class="title" x="8" y="`)
	c.int(titleY)
	c.raw(`" font-size="12" font-weight="bold" fill="` + colourText + `">`)
	c.text(clip(title, int((float64(c.w)-80)/6.8)))
	c.raw("</text>\n")
	c.raw(`<text class="timezone" x="`)
	c.int(c.w - 8)
	c.raw(`" y="`)
	c.int(titleY)
	c.raw(`" text-anchor="end" font-size="10" fill="` + colourText + `">times in UTC</text>` + "\n")
}

func (c *canvas) close() []byte {
	c.raw("</svg>\n")
	return c.b.Bytes()
}

// noData is the whole body of a chart without enough points.
func (c *canvas) noData(id, title, desc string) []byte {
	c.open(id, title, desc)
	c.raw(`<text class="no-data" x="`)
	c.num1(float64(c.w) / 2)
	c.raw(`" y="`)
	c.num1(float64(c.h) / 2)
	c.raw(`" text-anchor="middle" font-size="13" fill="` + colourMarker + `">no data yet</text>` + "\n")
	return c.close()
}

// tick is a labelled position on an axis, in the axis' units.
type tick struct {
	v     float64
	label string
}

// axes draws the grid, the axis lines and the tick labels.
func (c *canvas) axes(xt []tick, yt []tick) {
	c.raw(`<path class="grid" fill="none" stroke="` + colourGrid + `" stroke-width="1" d="`)
	for _, t := range yt {
		c.raw("M")
		c.num1(c.left)
		c.raw(" ")
		c.num1(c.y(t.v))
		c.raw("H")
		c.num1(c.right)
	}
	for _, t := range xt {
		c.raw("M")
		c.num1(t.v)
		c.raw(" ")
		c.num1(c.top)
		c.raw("V")
		c.num1(c.bottom)
	}
	c.raw(`"/>` + "\n")
	c.raw(`<path class="axis" fill="none" stroke="` + colourText + `" stroke-width="1" d="M`)
	c.num1(c.left)
	c.raw(" ")
	c.num1(c.top)
	c.raw("V")
	c.num1(c.bottom)
	c.raw("H")
	c.num1(c.right)
	c.raw(`"/>` + "\n")
	c.raw(`<g class="y-ticks" font-size="10" fill="` + colourText + `" text-anchor="end">` + "\n")
	for _, t := range yt {
		c.raw("<text")
		c.attr("x", c.left-5)
		c.attr("y", c.y(t.v)+3.5)
		c.raw(">")
		c.text(t.label)
		c.raw("</text>\n")
	}
	c.raw("</g>\n")
	c.raw(`<g class="x-ticks" font-size="10" fill="` + colourText + `" text-anchor="middle">` + "\n")
	for _, t := range xt {
		half := float64(utf8.RuneCountInString(t.label)) * smallCharWidth / 2
		c.raw("<text")
		c.attr("x", min(max(t.v, half+2), float64(c.w)-half-2))
		c.attr("y", c.bottom+15)
		c.raw(">")
		c.text(t.label)
		c.raw("</text>\n")
	}
	c.raw("</g>\n")
}

// series draws samples as one path, broken where a sample starts a gap; a
// point standing alone is drawn as a dot. Nothing is drawn without samples.
func (c *canvas) series(class, colour, width, dash string, s []sample) {
	if len(s) == 0 {
		return
	}
	c.raw(`<path class="` + class + `" data-points="`)
	c.int(len(s))
	c.raw(`" fill="none" stroke="` + colour + `" stroke-width="` + width + `" stroke-linejoin="round" stroke-linecap="round"`)
	if dash != "" {
		c.raw(` stroke-dasharray="` + dash + `"`)
	}
	c.raw(` d="`)
	for i, p := range s {
		if p.gap || i == 0 {
			c.raw("M")
		} else {
			c.raw("L")
		}
		c.num1(c.x(p.at))
		c.raw(" ")
		c.num1(c.y(p.v))
		if (p.gap || i == 0) && (i+1 == len(s) || s[i+1].gap) {
			c.raw("h0") // a lone point: a dot, thanks to the round cap
		}
	}
	c.raw(`"/>` + "\n")
}

// mark is the markers of one instant, laid out: one dotted vertical line,
// a label in one of the rows of the band above the plot when there is
// room, and the full text as a tooltip. Marks at the same instant (a
// restart and the verdict it resets) share a line.
type mark struct {
	x, lx          float64
	kinds, tooltip string
	label, anchor  string
	row            int // -1: no room for the label
}

// layout places the markers' labels from left to right in the first row
// where they do not run into the previous one, and makes room for the
// rows used above the plot.
func (c *canvas) layout(ms []marker) []mark {
	var rowEnd [markerRows]float64
	for i := range rowEnd {
		rowEnd[i] = math.Inf(-1)
	}
	var out []mark
	rows := 0
	for len(ms) > 0 {
		n := 1
		for n < len(ms) && ms[n].at.Equal(ms[0].at) {
			n++
		}
		same := ms[:n]
		ms = ms[n:]
		kinds, labels, short := make([]string, n), make([]string, n), make([]string, n)
		for i, m := range same {
			kinds[i], labels[i], short[i] = m.kind, clip(m.label, maxTextRunes), clip(m.label, maxMarkerRunes)
		}
		m := mark{x: c.x(same[0].at), kinds: strings.Join(kinds, " "), row: -1,
			tooltip: strings.Join(labels, ", ") + " at " + clock(same[0].at) + " UTC",
			label:   strings.Join(short, ", ")}
		w := float64(utf8.RuneCountInString(m.label)) * smallCharWidth
		m.lx = m.x + 3
		from, to := m.lx, m.lx+w
		if to > float64(c.w)-2 {
			m.lx, m.anchor = m.x-3, ` text-anchor="end"`
			from, to = m.lx-w, m.lx
		}
		for r := range rowEnd {
			if m.label != "" && from >= rowEnd[r]+4 {
				m.row, rowEnd[r] = r, to
				rows = max(rows, r+1)
				break
			}
		}
		out = append(out, m)
	}
	if rows > 0 {
		c.top = marginTop + 11*float64(rows) + 3
	}
	return out
}

// marks draws the laid out markers.
func (c *canvas) marks(ms []mark) {
	for _, m := range ms {
		c.raw(`<line class="marker" data-kind="` + m.kinds + `"`)
		c.attr("x1", m.x)
		c.attr("y1", marginTop)
		c.attr("x2", m.x)
		c.attr("y2", c.bottom)
		c.raw(` stroke="` + colourMarker + `" stroke-width="1" stroke-dasharray="` + dashMarker + `"><title>`)
		c.text(m.tooltip)
		c.raw("</title></line>\n")
		if m.row < 0 {
			continue // no room: the tooltip and the description still tell
		}
		c.raw(`<text class="marker-label"`)
		c.attr("x", m.lx)
		c.attr("y", marginTop+8+11*float64(m.row))
		c.raw(` font-size="10" fill="` + colourText + `"` + m.anchor + ">")
		c.text(m.label)
		c.raw("</text>\n")
	}
}

// legendItem is one entry of the legend: a swatch drawn like its series and
// a text label.
type legendItem struct {
	class, colour, width, dash, label string
}

func (c *canvas) legend(items []legendItem) {
	c.raw(`<g class="legend" font-size="11" fill="` + colourText + `">` + "\n")
	x := c.left
	for _, it := range items {
		label := clip(it.label, maxLegendRunes)
		c.raw(`<line class="legend-` + it.class + `"`)
		c.attr("x1", x)
		c.attr("y1", legendY-4)
		c.attr("x2", x+20)
		c.attr("y2", legendY-4)
		c.raw(` stroke="` + it.colour + `" stroke-width="` + it.width + `"`)
		if it.dash != "" {
			c.raw(` stroke-dasharray="` + it.dash + `"`)
		}
		c.raw("/>\n<text")
		c.attr("x", x+24)
		c.attr("y", legendY)
		c.raw(">")
		c.text(label)
		c.raw("</text>\n")
		x += 24 + float64(utf8.RuneCountInString(label))*charWidth + 14
	}
	c.raw("</g>\n")
}

// timeTicks are the x axis' ticks: round UTC times, about one per 90 px.
func (c *canvas) timeTicks() []tick {
	n := max(2, int((c.right-c.left)/90))
	step := int64(0)
	for _, s := range []int64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400} {
		if c.span/float64(s) <= float64(n) {
			step = s
			break
		}
	}
	if step == 0 {
		step = 86400 * int64(math.Ceil(c.span/float64(n)/86400))
	}
	start := c.t0.Unix()
	if c.t0.Nanosecond() > 0 {
		start++
	}
	first := ceilDiv(start, step) * step
	var out []tick
	for k := first; len(out) <= n+1; k += step {
		t := time.Unix(k, 0)
		if seconds(c.t0, t) > c.span {
			break
		}
		out = append(out, tick{v: c.x(t), label: clock(t)})
	}
	return out
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}

// linearTicks sets a y domain from 0 to a round number above top and
// returns about four ticks, labelled in %.
func (c *canvas) linearTicks(top float64) []tick {
	switch {
	case !(top > 0) || !finite(top):
		top = 1
	case top < 1e-6:
		top = 1e-6 // below, steps would underflow
	}
	top = min(top*1.05, math.MaxFloat64/4)
	step := niceStep(top / 4)
	c.ylo, c.yhi = 0, math.Ceil(top/step)*step
	var out []tick
	for k := 0; k <= 12; k++ {
		v := float64(k) * step
		if v > c.yhi*(1+1e-9) {
			break
		}
		out = append(out, tick{v: v, label: percentTick(v, step)})
	}
	return out
}

// niceStep is the smallest of 1, 2 or 5 times a power of ten at or above raw.
func niceStep(raw float64) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

func percentTick(v, step float64) string {
	if step < 1e-4 || v >= 1e6 {
		return strconv.FormatFloat(v, 'g', 3, 64) + "%"
	}
	dec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	return strconv.FormatFloat(v, 'f', dec, 64) + "%"
}

// logTicks sets a y domain of whole powers of ten covering lo..hi (log10
// values, within the e-value axis) and ticks every one, two, three or five
// decades.
func (c *canvas) logTicks(lo, hi float64) []tick {
	l := max(math.Floor(lo), minLogE)
	h := min(math.Ceil(hi), maxLogE)
	if h <= l {
		if h = l + 1; h > maxLogE {
			l, h = maxLogE-1, maxLogE
		}
	}
	c.ylo, c.yhi = l, h
	k := 1
	for _, s := range []int{1, 2, 3, 5} {
		if k = s; (h-l)/float64(s) <= 5 {
			break
		}
	}
	var out []tick
	for e := int(ceilDiv(int64(l), int64(k)) * int64(k)); float64(e) <= h; e += k {
		out = append(out, tick{v: float64(e), label: power(e)})
	}
	return out
}

// power is 10 to the e, as "10⁻³".
func power(e int) string {
	sup := [...]string{"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"}
	var b strings.Builder
	b.WriteString("10")
	if e < 0 {
		b.WriteString("⁻")
		e = -e
	}
	for _, d := range strconv.Itoa(e) {
		b.WriteString(sup[d-'0'])
	}
	return b.String()
}

// clip shortens s to n runes, marking the cut with "…".
func clip(s string, n int) string {
	if n < 1 {
		return ""
	}
	count := 0
	for i := range s {
		if count == n-1 {
			if utf8.RuneCountInString(s[i:]) > 1 {
				return s[:i] + "…"
			}
			return s
		}
		count++
	}
	return s
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

// percent formats a rate for reading: two or three significant digits.
func percent(v float64) string {
	switch {
	case v == 0:
		return "0%"
	case v >= 1e6 || v < 0:
		return strconv.FormatFloat(v, 'g', 3, 64) + "%"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	case v >= 0.1:
		return strconv.FormatFloat(v, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(v, 'g', 2, 64) + "%"
}

// number formats an e-value or threshold: "200", "3.4e5".
func number(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "infinite"
	case math.IsNaN(v):
		return "undefined"
	}
	s := strconv.FormatFloat(v, 'g', 3, 64)
	if i := strings.IndexByte(s, 'e'); i >= 0 {
		exp := strings.TrimPrefix(s[i+1:], "+")
		neg := strings.HasPrefix(exp, "-")
		exp = strings.TrimLeft(strings.TrimPrefix(exp, "-"), "0")
		if neg {
			exp = "-" + exp
		}
		s = s[:i] + "e" + exp
	}
	return s
}
