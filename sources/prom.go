package sources

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
)

// PromPoint is one point of a Prometheus-style series, as remote write and
// scrapes decode it, before normalisation.
type PromPoint struct {
	// Labels are sorted and include __name__.
	Labels Labels
	// Type comes from metadata; model.MetricTypeUnknown (or "") when there is none.
	Type        model.MetricType
	TimestampMs int64
	// CreatedMs is the series' start (RW2 created timestamp, OpenMetrics
	// _created) when known, else 0.
	CreatedMs int64
	Value     float64
	// Histogram is set for a native histogram point (cumulative unless Gauge).
	Histogram *PromHistogram
}

// PromHistogram is a native histogram point.
type PromHistogram struct {
	Count, Sum float64
	Native     NativeHistogram
	Gauge      bool
}

// PromConverter turns Prometheus-style points into normalised samples:
// counters and histograms (classic, reassembled from their _bucket, _count and
// _sum series, and native) become increments; gauges pass through. Series of
// metrics the Filter does not want are dropped before any state is kept.
type PromConverter struct {
	cum    *Cumulative
	filter Filter
	limits Limits
	// PerSeries converts each series of a classic histogram on its own
	// (_count to Count, _sum to Sum, each _bucket to an LE sample) instead of
	// reassembling the histogram from one batch: remote write shards a
	// histogram's series across requests, so no batch can be trusted to
	// hold them all.
	PerSeries bool
}

// Limits are the bounds a converter keeps (the limits section of the
// configuration). Zero fields are no bound, but for MaxSeries.
type Limits struct {
	// MaxSeries bounds the series whose totals are tracked.
	MaxSeries int
	// MaxSeriesPerVersion bounds the tracked series of one cohort: the
	// values of CohortLabels (the guards' service and version labels).
	MaxSeriesPerVersion int
	CohortLabels        []string
	// MaxTimestampAhead: a point stamped further after its receive time is
	// dropped (too_far_ahead) and changes no state.
	MaxTimestampAhead time.Duration
	// MaxBucketsPerHistogram: a histogram point with more buckets is
	// dropped (too_many_buckets).
	MaxBucketsPerHistogram int
}

// NewPromConverter builds a converter within limits.
func NewPromConverter(filter Filter, limits Limits) *PromConverter {
	if filter == nil {
		filter = FilterFunc(func(string) bool { return true })
	}
	return &PromConverter{filter: filter, limits: limits,
		cum: NewCumulative(limits.MaxSeries, 15*time.Minute, MaxAhead(limits.MaxTimestampAhead), MaxSeriesPerCohort(limits.MaxSeriesPerVersion))}
}

// Drop reasons counted by Convert, besides those of check.go.
const (
	DropSeriesLimit     = "series_limit"
	DropNoName          = "no_metric_name"
	DropSummaryQuantile = "summary_quantile"
	DropBadHistogram    = "invalid_histogram"
)

// Refusal names the first point a conversion dropped for a reason that is
// the sender's error (see Rejected), for the message that answers it.
type Refusal struct {
	Series      string // metric name and labels
	TimestampMs int64
	Reason      string
}

func (r *Refusal) String() string {
	return fmt.Sprintf("%s at %d: %s", r.Series, r.TimestampMs, r.Reason)
}

// drops counts one conversion's drops and keeps its first refusal.
type drops struct {
	counts  map[string]int
	refused *Refusal
}

func (d *drops) add(reason string, p *PromPoint) {
	d.counts[reason]++
	if d.refused == nil && Rejected(reason) {
		d.refused = NewRefusal(p.Labels, p.TimestampMs, reason)
	}
}

// NewRefusal names a point of the series ls (with __name__) at ms.
func NewRefusal(ls Labels, ms int64, reason string) *Refusal {
	series := ls.Get(model.MetricNameLabel) + without(ls, model.MetricNameLabel).String()
	return &Refusal{Series: series, TimestampMs: ms, Reason: reason}
}

// key is a point's series key in its cohort's budget.
func (c *PromConverter) key(metric, part string, ls Labels) SeriesKey {
	return Key(metric, part, ls).In(CohortOf(ls, c.limits.CohortLabels))
}

type classicGroup struct {
	name       string
	labels     Labels
	t, created int64
	buckets    []Bucket // cumulative, as exposed
	count, sum float64
	hasCount   bool
	first      *PromPoint // names the histogram in a refusal
}

// Convert normalises points. counts counts the points not converted, by
// reason; refused is the first point dropped for the sender's error, or nil.
func (c *PromConverter) Convert(points []PromPoint, counts map[string]int) (_ []Sample, refused *Refusal) {
	drops := &drops{counts: counts}
	var out []Sample
	bases := map[string]bool{} // classic histograms seen in this batch, by base name
	for i := range points {
		p := &points[i]
		name := p.Labels.Get(model.MetricNameLabel)
		if base, ok := strings.CutSuffix(name, "_bucket"); ok && p.Histogram == nil && p.Labels.Get(model.BucketLabel) != "" {
			bases[base] = true
		}
	}
	groups := map[string]*classicGroup{}
	var order []string
	var refuse map[int]string // PerSeries: points of histograms that do not add up
	if c.PerSeries {
		refuse = c.checkSeriesGroups(points, bases)
	}
	for i := range points {
		p := &points[i]
		name := p.Labels.Get(model.MetricNameLabel)
		if name == "" {
			drops.add(DropNoName, p)
			continue
		}
		if reason, ok := refuse[i]; ok {
			drops.add(reason, p)
			continue
		}
		if p.Histogram != nil {
			if s, ok := c.native(p, name, drops); ok {
				out = append(out, s)
			}
			continue
		}
		base, part := histogramPart(name, p, bases)
		switch {
		case part != "":
			if !c.filter.Wants(base) || !WantsSeries(c.filter, base, p.Labels) {
				continue
			}
			if p.Type == model.MetricTypeSummary && part == "quantile" {
				drops.add(DropSummaryQuantile, p)
				continue
			}
			if c.PerSeries {
				if s, ok := c.histogramSeries(p, base, part, drops); ok {
					out = append(out, s)
				}
				continue
			}
			ls := without(p.Labels, model.MetricNameLabel, model.BucketLabel, model.QuantileLabel)
			key := base + ls.String() + "@" + strconv.FormatInt(p.TimestampMs, 10)
			g := groups[key]
			if g == nil {
				g = &classicGroup{name: base, labels: ls, t: p.TimestampMs, created: p.CreatedMs, first: p}
				groups[key] = g
				order = append(order, key)
			}
			switch part {
			case "bucket":
				le, err := strconv.ParseFloat(p.Labels.Get(model.BucketLabel), 64)
				if err != nil || math.IsNaN(le) {
					drops.add(DropBadHistogram, p)
					continue
				}
				g.buckets = append(g.buckets, Bucket{UpperBound: le, Count: p.Value})
			case "count":
				g.count, g.hasCount = p.Value, true
			case "sum":
				g.sum = p.Value
			}
		case !c.filter.Wants(name) || !WantsSeries(c.filter, name, p.Labels):
		case p.Type == model.MetricTypeCounter || (isUnknown(p.Type) && strings.HasSuffix(name, "_total")):
			if IsStaleNaN(p.Value) {
				continue // the series ended: nothing to count
			}
			inc, from, ok, err := c.cum.Counter(c.key(name, "", p.Labels), p.CreatedMs*1e6, p.TimestampMs*1e6, p.Value)
			if err != nil {
				drops.add(DropReason(err), p)
				continue
			}
			if ok {
				out = append(out, Sample{Metric: name, Labels: without(p.Labels, model.MetricNameLabel),
					Kind: KindCounter, TimeUnixNano: p.TimestampMs * 1e6, StartUnixNano: from, Value: inc})
			}
		default:
			if math.IsNaN(p.Value) {
				continue // stale marker or no value
			}
			if err := c.cum.CheckTime(p.TimestampMs * 1e6); err != nil {
				drops.add(DropReason(err), p)
				continue
			}
			out = append(out, Sample{Metric: name, Labels: without(p.Labels, model.MetricNameLabel),
				Kind: KindGauge, TimeUnixNano: p.TimestampMs * 1e6, Value: p.Value})
		}
	}
	for _, key := range order {
		if s, ok := c.classic(groups[key], drops); ok {
			out = append(out, s)
		}
	}
	return out, drops.refused
}

// checkSeriesGroups checks, for PerSeries, the classic histograms whose
// _bucket and _count series of one timestamp share the request, with the
// rule a whole histogram gets (CheckClassic and the bucket limit): remote
// write shards a histogram's series across requests, so this sees what one
// request holds; the buckets it holds must still not go down, and a +Inf
// bucket must still equal a count beside it. It returns the reason to drop
// each point of a histogram that fails, by index; nil when all pass.
func (c *PromConverter) checkSeriesGroups(points []PromPoint, bases map[string]bool) map[int]string {
	type group struct {
		buckets  []Bucket
		count    float64
		hasCount bool
		members  []int
	}
	var groups map[uint64]*group
	for i := range points {
		p := &points[i]
		if p.Histogram != nil || (p.Type != model.MetricTypeHistogram && p.Type != model.MetricTypeGaugeHistogram && !isUnknown(p.Type)) {
			continue
		}
		base, part := histogramPart(p.Labels.Get(model.MetricNameLabel), p, bases)
		if part != "bucket" && part != "count" {
			continue
		}
		var le float64
		if part == "bucket" {
			var err error
			if le, err = strconv.ParseFloat(p.Labels.Get(model.BucketLabel), 64); err != nil || math.IsNaN(le) {
				continue // dropped as invalid_histogram on its own
			}
		}
		if IsStaleNaN(p.Value) {
			continue
		}
		k := groupKey(base, p.Labels, p.TimestampMs)
		if groups == nil {
			groups = map[uint64]*group{}
		}
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
		}
		g.members = append(g.members, i)
		if part == "bucket" {
			g.buckets = append(g.buckets, Bucket{UpperBound: le, Count: p.Value})
		} else {
			g.count, g.hasCount = p.Value, true
		}
	}
	var refuse map[int]string
	for _, g := range groups {
		if len(g.buckets) == 0 {
			continue
		}
		sort.Slice(g.buckets, func(i, j int) bool { return g.buckets[i].UpperBound < g.buckets[j].UpperBound })
		reason := CheckClassic(g.buckets, g.count, g.hasCount)
		if max := c.limits.MaxBucketsPerHistogram; max > 0 && len(g.buckets) > max {
			reason = DropTooManyBuckets
		}
		if reason == "" || reason == DropInvalidValue {
			continue // an invalid value is the one point's, and refused on its own
		}
		if refuse == nil {
			refuse = map[int]string{}
		}
		for _, i := range g.members {
			refuse[i] = reason
		}
	}
	return refuse
}

// groupKey identifies a classic histogram point: its base name, its labels
// but the name and le, and its timestamp.
func groupKey(base string, ls Labels, ms int64) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(base)
	for _, l := range ls {
		if l.Name == model.MetricNameLabel || l.Name == model.BucketLabel {
			continue
		}
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Name)
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Value)
	}
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(ms))
	_, _ = d.Write(buf[:])
	return d.Sum64()
}

// histogramSeries converts one series of a classic histogram on its own.
// Its count and buckets must be valid counters; a sum may be negative (of
// negative observations), and is then left out, as before this check.
func (c *PromConverter) histogramSeries(p *PromPoint, base, part string, drops *drops) (Sample, bool) {
	if IsStaleNaN(p.Value) || (part == "sum" && p.Value < 0 && !math.IsInf(p.Value, -1)) {
		return Sample{}, false
	}
	inc, from, ok, err := c.cum.Counter(c.key(base, "_"+part, p.Labels), p.CreatedMs*1e6, p.TimestampMs*1e6, p.Value)
	if err != nil {
		drops.add(DropReason(err), p)
		return Sample{}, false
	}
	if !ok {
		return Sample{}, false
	}
	s := Sample{Metric: base, Labels: without(p.Labels, model.MetricNameLabel, model.BucketLabel),
		Kind: KindHistogram, TimeUnixNano: p.TimestampMs * 1e6, StartUnixNano: from}
	switch part {
	case "count":
		s.Count = inc
	case "sum":
		s.Sum = inc
	case "bucket":
		le, err := strconv.ParseFloat(p.Labels.Get(model.BucketLabel), 64)
		if err != nil || math.IsNaN(le) {
			drops.add(DropBadHistogram, p)
			return Sample{}, false
		}
		s.LE = &Bucket{UpperBound: le, Count: inc}
	}
	return s, true
}

func isUnknown(t model.MetricType) bool { return t == "" || t == model.MetricTypeUnknown }

// histogramPart says whether a series is part of a classic histogram or a
// summary, and which: "bucket", "count", "sum" or "quantile".
func histogramPart(name string, p *PromPoint, bases map[string]bool) (base, part string) {
	switch p.Type {
	case model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary:
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suf); ok {
				return b, suf[1:]
			}
		}
		if p.Type == model.MetricTypeSummary {
			return name, "quantile"
		}
		return "", ""
	case "", model.MetricTypeUnknown:
		if b, ok := strings.CutSuffix(name, "_bucket"); ok && p.Labels.Get(model.BucketLabel) != "" {
			return b, "bucket"
		}
		for _, suf := range []string{"_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suf); ok && bases[b] {
				return b, suf[1:]
			}
		}
	}
	return "", ""
}

// classic reassembles a classic histogram (or a summary's count and sum),
// checks it (see CheckClassic) and turns it into increments.
func (c *PromConverter) classic(g *classicGroup, drops *drops) (Sample, bool) {
	sort.Slice(g.buckets, func(i, j int) bool { return g.buckets[i].UpperBound < g.buckets[j].UpperBound })
	for _, b := range g.buckets {
		if IsStaleNaN(b.Count) {
			return Sample{}, false // the series ended
		}
	}
	if IsStaleNaN(g.count) {
		return Sample{}, false
	}
	if max := c.limits.MaxBucketsPerHistogram; max > 0 && len(g.buckets) > max {
		drops.add(DropTooManyBuckets, g.first)
		return Sample{}, false
	}
	if reason := CheckClassic(g.buckets, g.count, g.hasCount); reason != "" {
		drops.add(reason, g.first)
		return Sample{}, false
	}
	var bounds, counts []float64
	prev := 0.0
	for _, b := range g.buckets {
		if !math.IsInf(b.UpperBound, 1) {
			bounds = append(bounds, b.UpperBound)
		}
		counts = append(counts, b.Count-prev)
		prev = b.Count
	}
	if len(g.buckets) > 0 && !math.IsInf(g.buckets[len(g.buckets)-1].UpperBound, 1) {
		counts = append(counts, math.Max(0, g.count-prev)) // the implicit +Inf bucket
	}
	if !g.hasCount {
		g.count = prev
	}
	dc, ds, db, from, ok, err := c.cum.Histogram(c.key(g.name, "", g.labels), g.created*1e6, g.t*1e6, g.count, g.sum, bounds, counts)
	if err != nil {
		drops.add(DropReason(err), g.first)
		return Sample{}, false
	}
	if !ok {
		return Sample{}, false
	}
	s := Sample{Metric: g.name, Labels: g.labels, Kind: KindHistogram, TimeUnixNano: g.t * 1e6, StartUnixNano: from, Count: dc, Sum: ds}
	if len(db) > 0 {
		s.Buckets = make([]Bucket, len(db))
		for i, v := range db {
			ub := math.Inf(1)
			if i < len(bounds) {
				ub = bounds[i]
			}
			s.Buckets[i] = Bucket{UpperBound: ub, Count: v}
		}
	}
	return s, true
}

// native checks a native histogram point (see CheckNative) and turns it
// into increments; a gauge histogram passes as it is.
func (c *PromConverter) native(p *PromPoint, name string, drops *drops) (Sample, bool) {
	if !c.filter.Wants(name) || !WantsSeries(c.filter, name, p.Labels) {
		return Sample{}, false
	}
	h := p.Histogram
	if max := c.limits.MaxBucketsPerHistogram; max > 0 && NativeBuckets(h.Native) > max {
		drops.add(DropTooManyBuckets, p)
		return Sample{}, false
	}
	if reason := CheckNative(h.Count, h.Sum, h.Native); reason != "" {
		drops.add(reason, p)
		return Sample{}, false
	}
	ls := without(p.Labels, model.MetricNameLabel)
	s := Sample{Metric: name, Labels: ls, Kind: KindHistogram, TimeUnixNano: p.TimestampMs * 1e6}
	if h.Gauge {
		if err := c.cum.CheckTime(p.TimestampMs * 1e6); err != nil {
			drops.add(DropReason(err), p)
			return Sample{}, false
		}
		nh := h.Native
		s.Count, s.Sum, s.Native = h.Count, h.Sum, &nh
		return s, true
	}
	dc, ds, dh, from, ok, err := c.cum.Native(c.key(name, "", ls), p.CreatedMs*1e6, p.TimestampMs*1e6, h.Count, h.Sum, h.Native)
	if err != nil {
		drops.add(DropReason(err), p)
		return Sample{}, false
	}
	if !ok {
		return Sample{}, false
	}
	s.Count, s.Sum, s.Native, s.StartUnixNano = dc, ds, &dh, from
	return s, true
}

// without returns ls less the named labels (ls is sorted; so is the result).
func without(ls Labels, names ...string) Labels {
	out := make(Labels, 0, len(ls))
outer:
	for _, l := range ls {
		for _, n := range names {
			if l.Name == n {
				continue outer
			}
		}
		out = append(out, l)
	}
	return out
}
