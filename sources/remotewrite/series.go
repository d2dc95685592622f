package remotewrite

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"

	"github.com/rollguard/rollguard/sources"
)

// batch is one request's decoded points, before conversion.
type batch struct {
	r      *Receiver
	floats []sources.PromPoint
	hists  []sources.PromPoint
	// drops counts samples and histogram samples not written, by reason.
	drops   map[string]int
	written written
	// wants caches the Filter per metric name for one request: a request
	// carries many series of few metrics, and the Filter may take a lock.
	wants map[string]bool
	// doors caches the Filter's door labels per metric name (see sources.DoorFilter).
	doors map[string][]sources.Label
	// names caches, for 1.0, what the Filter says of metric names (views
	// into the request), in sets of two chosen by a hash of a few of their
	// bytes: cheaper than the maps, which hash the whole name.
	names     [128][2]nameEntry
	namesUsed []uint8 // the sets to clear
	// families are the 1.0 metadata of this request.
	families map[string]familyType
	// buckets is what is left of MaxNativeBuckets.
	buckets int64
	// refused is the first point the decoder dropped for a value the
	// sender must not send (see sources.Rejected).
	refused *sources.Refusal
	// points counts the request's samples and histogram samples, against
	// MaxPointsPerRequest.
	points int
	// labels holds the labels of the points: they are only read until the
	// converter has made its samples (with labels of their own), so the
	// space is reused by the next request.
	labels []sources.Label
	// floatDrops and histDrops count the converter's drops.
	floatDrops, histDrops map[string]int
	// The decoders' state, kept with its buffers from request to request.
	v1 v1Series
	v2 v2State
}

// getBatch takes a batch for a request from the pool; putBatch returns it.
func (r *Receiver) getBatch() *batch {
	if b, ok := r.batches.Get().(*batch); ok {
		b.buckets = r.cfg.MaxNativeBuckets
		return b
	}
	return &batch{r: r, drops: map[string]int{}, wants: map[string]bool{}, doors: map[string][]sources.Label{},
		floatDrops: map[string]int{}, histDrops: map[string]int{}, buckets: r.cfg.MaxNativeBuckets}
}

// maxPooledNames bounds the names a pooled batch keeps in its maps.
const maxPooledNames = 1 << 12

func (r *Receiver) putBatch(b *batch) {
	clear(b.floats)
	clear(b.hists)
	clear(b.labels)
	b.floats, b.hists, b.labels = shrink(b.floats), shrink(b.hists), shrink(b.labels)
	for _, m := range []map[string]int{b.drops, b.floatDrops, b.histDrops} {
		clear(m)
	}
	if len(b.wants) > maxPooledNames {
		b.wants, b.doors = map[string]bool{}, map[string][]sources.Label{}
	}
	clear(b.wants)
	clear(b.doors)
	b.families = nil
	for _, i := range b.namesUsed {
		b.names[i] = [2]nameEntry{}
	}
	b.namesUsed = b.namesUsed[:0]
	b.written = written{}
	b.points, b.refused = 0, nil
	b.v1.release()
	b.v2.release()
	r.batches.Put(b)
}

// newLabels returns room for a series' n labels.
func (b *batch) newLabels(n int) sources.Labels {
	start := len(b.labels)
	b.labels = append(b.labels, make([]sources.Label, n)...)
	return b.labels[start : start+n : start+n]
}

// drop counts the points of a series that is not written.
func (b *batch) drop(reason string, points int) {
	b.drops[reason] += points
}

// refuse counts the points of a series that is not written for the
// sender's error (see sources.Rejected), and keeps the first such series
// to name it in the answer: labels and ms are only read for that one.
func (b *batch) refuse(reason string, points int, labels func() sources.Labels, ms int64) {
	b.drops[reason] += points
	if b.refused == nil {
		b.refused = refusalOf(labels(), ms, reason)
	}
}

// refusalOf names a refused series as it was sent: its labels sorted,
// none left out (not the second of two names, nor one of empty value), a
// label name that is empty or not UTF-8 quoted (and the rest as
// sample.Labels.String writes them), a metric name that is not UTF-8
// escaped (\xff): the answer is UTF-8.
func refusalOf(ls sources.Labels, ms int64, reason string) *sources.Refusal {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
	var sb strings.Builder
	i := slices.IndexFunc(ls, func(l sources.Label) bool { return l.Name == model.MetricNameLabel })
	if i >= 0 {
		sb.WriteString(escapeInvalid(ls[i].Value))
	}
	sb.WriteByte('{')
	sep := false
	for j, l := range ls {
		if j == i {
			continue
		}
		if sep {
			sb.WriteByte(',')
		}
		sep = true
		if l.Name == "" || !utf8.ValidString(l.Name) || strings.ContainsAny(l.Name, "=\",{}\\") {
			sb.WriteString(strconv.Quote(l.Name))
		} else {
			sb.WriteString(l.Name)
		}
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(l.Value))
	}
	sb.WriteByte('}')
	return &sources.Refusal{Series: sb.String(), TimestampMs: ms, Reason: reason}
}

// escapeInvalid writes the bytes of s that are not UTF-8 as \xff.
func escapeInvalid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&sb, `\x%02x`, s[i])
		} else {
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	return sb.String()
}

// The label checks of the specification run for every series, before the
// door: a label name not empty, names and values UTF-8, no name twice.
// They read the labels where they are in the request, and allocate nothing.

// nameBit is the number of a label name's bit (0 to 63) in a series'
// filter of its names, from the name's length and first and last bytes:
// two names of different bits differ, two of one bit may be the same (see
// duplicateName).
func nameBit(n int, first, last byte) uint8 {
	return uint8((uint32(first)<<16 | uint32(last)<<8 | uint32(n)) * 0x9e3779b1 >> 26)
}

// ascii says whether b is all ASCII (and so UTF-8), sixteen bytes at a
// time: it runs over the labels of every series.
func ascii(b []byte) bool {
	n := len(b)
	if n < 8 {
		var or byte
		for _, c := range b {
			or |= c
		}
		return or < 0x80
	}
	x := binary.LittleEndian.Uint64(b[n-8:]) // the last bytes, which the loop may leave
	var y uint64
	for len(b) >= 16 {
		x |= binary.LittleEndian.Uint64(b)
		y |= binary.LittleEndian.Uint64(b[8:16])
		b = b[16:]
	}
	if len(b) >= 8 {
		x |= binary.LittleEndian.Uint64(b)
	}
	return (x|y)&0x8080808080808080 == 0
}

// accept counts points as written without handing them on: the series is of
// no interest to anyone.
func (b *batch) accept(samples, histograms, exemplars int) {
	b.written.samples += samples
	b.written.histograms += histograms
	b.written.exemplars += exemplars
}

// wanted says whether a metric name may be of interest: the metric itself, or
// the histogram or summary a _bucket, _count or _sum series belongs to. The
// converter decides exactly; this only lets the rest skip decoding.
func (b *batch) wanted(name string) bool {
	if w, ok := b.wants[name]; ok {
		return w
	}
	return b.decide(name)
}

// wantedBytes is wanted for a name not yet made a string: a cache hit
// allocates nothing.
func (b *batch) wantedBytes(name []byte) bool {
	if w, ok := b.wants[string(name)]; ok {
		return w
	}
	return b.decide(string(name))
}

func (b *batch) decide(name string) bool {
	f := b.r.cfg.Filter
	w := f.Wants(name)
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if w {
			break
		}
		if base, ok := strings.CutSuffix(name, suffix); ok {
			w = f.Wants(base)
		}
	}
	b.wants[name] = w
	return w
}

type nameEntry struct {
	name  []byte
	want  bool
	doors []sources.Label
}

// decisionOf is wanted and doorsOf for a name (not empty) not yet made a
// string.
func (b *batch) decisionOf(name []byte) (want bool, doors []sources.Label) {
	// The first and last eight bytes tell most names apart.
	var h uint64
	if n := len(name); n >= 8 {
		h = binary.LittleEndian.Uint64(name)*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(name[n-8:])*0xc2b2ae3d27d4eb4f
	} else {
		h = uint64(name[0])<<16 | uint64(name[n-1])<<8
	}
	i := uint8((h ^ uint64(len(name))) * 0x9e3779b97f4a7c15 >> 57)
	set := &b.names[i]
	for j := range set {
		if e := &set[j]; e.name != nil && string(e.name) == string(name) {
			return e.want, e.doors
		}
	}
	want = b.wantedBytes(name)
	if want {
		var ok bool
		if doors, ok = b.doors[string(name)]; !ok {
			doors = b.doorsOf(string(name))
		}
	}
	if set[0].name == nil {
		b.namesUsed = append(b.namesUsed, i)
	}
	set[1], set[0] = set[0], nameEntry{name: name, want: want, doors: doors}
	return want, doors
}

// doorsOf returns the door labels for a metric name (or its histogram base).
func (b *batch) doorsOf(name string) []sources.Label {
	if d, ok := b.doors[name]; ok {
		return d
	}
	f := b.r.cfg.Filter
	var d []sources.Label
	if f.Wants(name) {
		d = sources.Doors(f, name)
	} else {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && f.Wants(base) {
				d = sources.Doors(f, base)
				break
			}
		}
	}
	b.doors[name] = d
	return d
}

// normaliseLabels normalises a series' labels, checked before the door, in
// place: a label with an empty value is no label (as in PromQL); the result
// is sorted.
func normaliseLabels(ls sources.Labels) sources.Labels {
	out := ls[:0]
	sorted := true
	for _, l := range ls {
		if l.Value == "" {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Name >= l.Name {
			sorted = false
		}
		out = append(out, l)
	}
	if !sorted {
		out = sortLabels(out)
	}
	return out
}

// sortLabels is sources.Labels.Sort (stable by name, the last of a name
// kept), by insertion (stable too) for the few labels of most series.
func sortLabels(ls sources.Labels) sources.Labels {
	if len(ls) > 32 {
		return ls.Sort()
	}
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
	return ls.KeepLast()
}

// nativeHistogram turns a remote write histogram (1.0 and 2.0 share the
// message) into a PromHistogram. Integer histograms carry bucket counts as
// deltas between consecutive populated buckets; float histograms carry
// absolute counts. reason is the drop reason when it cannot be used.
//
// The buckets become dense (every bucket between the lowest and the highest
// populated one), which a few bytes of spans can make millions of: budget
// is what is left of the request's MaxNativeBuckets, and is charged before
// anything is allocated; a histogram of more than maxBuckets buckets (the
// zero bucket included, as sources.NativeBuckets counts them) is refused
// before it is allocated too.
func nativeHistogram(h *writev2.Histogram, gauge bool, budget *int64, maxBuckets int) (ph *sources.PromHistogram, reason string) {
	switch {
	case h.Schema < -4 || h.Schema > 8:
		return nil, DropInvalidSchema
	}
	pw, ok1 := denseWidth(h.PositiveSpans)
	nw, ok2 := denseWidth(h.NegativeSpans)
	switch {
	case !ok1 || !ok2:
		return nil, sources.DropBadHistogram
	case maxBuckets > 0 && pw+nw+1 > int64(maxBuckets):
		return nil, sources.DropTooManyBuckets
	case pw+nw > *budget:
		return nil, DropNativeBucketLimit
	}
	_, isFloatCount := h.Count.(*writev2.Histogram_CountFloat)
	_, isFloatZero := h.ZeroCount.(*writev2.Histogram_ZeroCountFloat)
	hasDeltas := len(h.PositiveDeltas)+len(h.NegativeDeltas) > 0
	hasCounts := len(h.PositiveCounts)+len(h.NegativeCounts) > 0
	isFloat := isFloatCount || isFloatZero || hasCounts
	if isFloat && hasDeltas {
		return nil, sources.DropBadHistogram
	}
	ph = &sources.PromHistogram{Sum: h.Sum, Gauge: gauge || h.ResetHint == writev2.Histogram_RESET_HINT_GAUGE}
	nh := &ph.Native
	nh.Scale = h.Schema
	nh.ZeroThreshold = h.ZeroThreshold
	var pos, neg []float64
	if isFloat {
		ph.Count = h.GetCountFloat()
		nh.ZeroCount = h.GetZeroCountFloat()
		// NaN, infinite or negative counts are refused by the converter
		// (sources.CheckNative), as every input's are.
		pos, neg = h.PositiveCounts, h.NegativeCounts
	} else {
		ph.Count = float64(h.GetCountInt())
		nh.ZeroCount = float64(h.GetZeroCountInt())
		pos, ok1 = absolute(h.PositiveDeltas)
		neg, ok2 = absolute(h.NegativeDeltas)
		if !ok1 || !ok2 {
			return nil, sources.DropBadHistogram
		}
	}
	if !(nh.ZeroThreshold >= 0) {
		return nil, sources.DropBadHistogram
	}
	*budget -= pw + nw
	nh.Positive, ok1 = sources.BucketsFromSpans(spans(h.PositiveSpans), pos)
	nh.Negative, ok2 = sources.BucketsFromSpans(spans(h.NegativeSpans), neg)
	if !ok1 || !ok2 {
		return nil, sources.DropBadHistogram
	}
	return ph, ""
}

// absolute decodes Prometheus' bucket deltas: each is the difference to the
// previous populated bucket, across spans. ok is false for a negative count.
func absolute(deltas []int64) ([]float64, bool) {
	if len(deltas) == 0 {
		return nil, true
	}
	out := make([]float64, len(deltas))
	var cur int64
	for i, d := range deltas {
		cur += d
		if cur < 0 {
			return nil, false
		}
		out[i] = float64(cur)
	}
	return out, true
}

// denseWidth is the number of buckets from the first populated one to the
// last. Every span after the first must start at or after the end of the
// one before: only the first offset may be negative. (Checked here because
// sources.BucketsFromSpans does not, and panics on it.)
func denseWidth(in []*writev2.BucketSpan) (int64, bool) {
	var idx, first, last int64
	seen := false
	for i, s := range in {
		if i > 0 && s.GetOffset() < 0 {
			return 0, false
		}
		idx += int64(s.GetOffset())
		if s.GetLength() > 0 {
			if !seen {
				first, seen = idx, true
			}
			last = idx + int64(s.GetLength()) - 1
		}
		idx += int64(s.GetLength())
	}
	if !seen {
		return 0, true
	}
	if w := last - first + 1; w <= 1<<20 {
		return w, true
	}
	return 0, false
}

func spans(in []*writev2.BucketSpan) []sources.Span {
	if len(in) == 0 {
		return nil
	}
	out := make([]sources.Span, len(in))
	for i, s := range in {
		out[i] = sources.Span{Offset: s.GetOffset(), Length: s.GetLength()}
	}
	return out
}

// familyType is a metric family's type as 1.0 metadata gives it.
type familyType = model.MetricType

// metricType maps the metadata enum (the same numbers in 1.0 and 2.0).
func metricType(t int32) model.MetricType {
	switch t {
	case 1:
		return model.MetricTypeCounter
	case 2:
		return model.MetricTypeGauge
	case 3:
		return model.MetricTypeHistogram
	case 4:
		return model.MetricTypeGaugeHistogram
	case 5:
		return model.MetricTypeSummary
	case 6:
		return model.MetricTypeInfo
	case 7:
		return model.MetricTypeStateset
	}
	return model.MetricTypeUnknown
}

// familyTypes remembers metric types from remote write 1.0 metadata, which
// Prometheus sends in requests of their own, apart from the samples.
type familyTypes struct {
	mu    sync.RWMutex
	types map[string]familyType
	max   int
}

// merge records a request's metadata; it returns how many new families did
// not fit.
func (f *familyTypes) merge(in map[string]familyType) (refused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, t := range in {
		if old, ok := f.types[name]; ok || len(f.types) < f.max {
			if old != t {
				f.types[name] = t
			}
			continue
		}
		refused++
	}
	return refused
}

func (f *familyTypes) get(name string) (familyType, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.types[name]
	return t, ok
}

// typeOf finds a series' type from 1.0 metadata: its own family, or the
// family a _total, _bucket, _count or _sum series belongs to (when
// that family's type has such series). The request's own metadata wins over
// what was remembered.
func (b *batch) typeOf(name string) model.MetricType {
	lookup := func(n string) (familyType, bool) {
		if t, ok := b.families[n]; ok {
			return t, true
		}
		return b.r.families.get(n)
	}
	if t, ok := lookup(name); ok {
		return t
	}
	for _, s := range familySuffixes {
		base, ok := strings.CutSuffix(name, s.suffix)
		if !ok {
			continue
		}
		if t, ok := lookup(base); ok {
			for _, ft := range s.types {
				if t == ft {
					return t
				}
			}
		}
	}
	return model.MetricTypeUnknown
}

var familySuffixes = []struct {
	suffix string
	types  []model.MetricType
}{
	{"_total", []model.MetricType{model.MetricTypeCounter}},
	{"_bucket", []model.MetricType{model.MetricTypeHistogram, model.MetricTypeGaugeHistogram}},
	{"_count", []model.MetricType{model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary}},
	{"_sum", []model.MetricType{model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary}},
}

// schemaCustomBuckets is the schema of a native histogram with custom
// buckets: a classic histogram sent as one sample (Prometheus'
// convert_classic_histograms_to_nhcb).
const schemaCustomBuckets = -53

// addCustomBuckets adds a histogram sample with custom buckets as the
// classic histogram it is: a cumulative _bucket series for each bound of
// its custom values and +Inf, and _count and _sum, which the converter
// takes as it takes a classic histogram's series. Its count was checked
// against its buckets before the door (checkHistogram).
func (b *batch) addCustomBuckets(ls sources.Labels, typ model.MetricType, createdMs int64, h *writev2.Histogram) {
	bounds := h.CustomValues
	counts, ok := customCounts(h)
	for i, ub := range bounds {
		if math.IsNaN(ub) || math.IsInf(ub, 0) || i > 0 && ub <= bounds[i-1] {
			ok = false
		}
	}
	// Bucket i is bounded by bounds[i], the last (i == len(bounds)) by
	// +Inf; the spans say which buckets the counts are of.
	index := make([]int64, 0, len(counts))
	var idx int64
	for _, sp := range h.PositiveSpans {
		if sp.Offset < 0 || idx+int64(sp.Offset)+int64(sp.Length) > int64(len(bounds))+1 {
			ok = false
			break
		}
		idx += int64(sp.Offset)
		for range sp.Length {
			index = append(index, idx)
			idx++
		}
	}
	if !ok || len(index) != len(counts) || len(h.NegativeSpans)+len(h.NegativeDeltas)+len(h.NegativeCounts) > 0 {
		b.drop(sources.DropBadHistogram, 1)
		return
	}
	if typ == "" || typ == model.MetricTypeUnknown {
		typ = model.MetricTypeHistogram
	}
	count := float64(h.GetCountInt())
	if _, isFloat := h.Count.(*writev2.Histogram_CountFloat); isFloat {
		count = h.GetCountFloat()
	}
	name := ls.Get(model.MetricNameLabel)
	point := func(suffix string, le string, v float64) {
		out := b.newLabels(len(ls) + 1)[:0]
		for _, l := range ls {
			if l.Name == model.MetricNameLabel {
				l.Value = name + suffix
			}
			out = append(out, l)
		}
		if le != "" {
			out = sortLabels(append(out, sources.Label{Name: model.BucketLabel, Value: le}))
		}
		b.floats = append(b.floats, sources.PromPoint{Labels: out, Type: typ, TimestampMs: h.Timestamp, CreatedMs: createdMs, Value: v})
	}
	cum, j := 0.0, 0
	for i := 0; i <= len(bounds); i++ {
		for j < len(index) && index[j] == int64(i) {
			cum += counts[j]
			j++
		}
		le := "+Inf"
		if i < len(bounds) {
			le = strconv.FormatFloat(bounds[i], 'g', -1, 64)
		}
		point("_bucket", le, cum)
	}
	point("_count", "", count)
	point("_sum", "", h.Sum)
	b.written.histograms++
}

// customCounts are the bucket counts of a custom-bucket histogram,
// absolute; ok is false for a count below zero, or integer and float
// buckets mixed.
func customCounts(h *writev2.Histogram) (counts []float64, ok bool) {
	if len(h.PositiveCounts) > 0 {
		return h.PositiveCounts, len(h.PositiveDeltas) == 0
	}
	return absolute(h.PositiveDeltas)
}
