// Package sample owns the shared vocabulary of rollguard's data path: the
// normalised Sample every input produces and the detector consumes, its
// labels, kinds and histogram buckets, and the interfaces that pass samples
// along (Appender) and say which are wanted (Filter and its optional
// refinements). It must know nothing of inputs (decoding, normalising,
// transports) nor of detection: both sides depend on it, never it on them.
package sample

import (
	"slices"
	"strconv"
	"strings"
)

// Kind says how a sample's value is to be read.
type Kind uint8

const (
	// KindCounter: Value is an increment (>= 0) since the previous sample of the series.
	KindCounter Kind = iota + 1
	// KindGauge: Value is the current reading.
	KindGauge
	// KindHistogram: Count and Sum are increments; Buckets (classic) or
	// Native (exponential) hold per-bucket increments; a summary has neither.
	KindHistogram
)

func (k Kind) String() string {
	switch k {
	case KindCounter:
		return "counter"
	case KindGauge:
		return "gauge"
	case KindHistogram:
		return "histogram"
	}
	return "unknown"
}

// Label is one name/value pair of a series.
type Label struct{ Name, Value string }

// Labels are sorted by name. Resource, scope and point attributes of OTLP are
// flattened into one set (point attributes win on a clash).
type Labels []Label

// Get returns the value of name, or "".
func (ls Labels) Get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Sort orders the labels by name, keeping the last of duplicate names. It
// sorts with slices.SortStableFunc: sort.SliceStable's reflection and
// allocations cost a tenth of a kept OTLP point.
func (ls Labels) Sort() Labels {
	slices.SortStableFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls.KeepLast()
}

// KeepLast drops, from labels sorted stably by name, all but the last of
// each name (a point's attribute over its resource's).
func (ls Labels) KeepLast() Labels {
	out := ls[:0]
	for i, l := range ls {
		if i+1 < len(ls) && ls[i+1].Name == l.Name {
			continue
		}
		out = append(out, l)
	}
	return out
}

func (ls Labels) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		if strings.ContainsAny(l.Name, "=\",{}\\") {
			b.WriteString(strconv.Quote(l.Name))
		} else {
			b.WriteString(l.Name)
		}
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Bucket is one histogram bucket increment: observations <= UpperBound.
// Counts are per bucket, not cumulative.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Sample is one normalised observation of one series.
type Sample struct {
	Metric string
	Labels Labels
	Kind   Kind
	// TimeUnixNano is when the observation ends (OTLP time_unix_nano).
	TimeUnixNano int64
	// StartUnixNano, for an increment, is when it began (the series'
	// previous point, or the start of a delta's interval); 0 when unknown.
	StartUnixNano int64
	// Value: counter increment or gauge reading.
	Value float64
	// Count and Sum: histogram increments.
	Count, Sum float64
	Buckets    []Bucket
	// Native holds the bucket increments of an exponential/native histogram.
	Native *NativeHistogram
	// LE is set, alone, for one series of a classic histogram converted on
	// its own (remote write splits a histogram's series across requests):
	// the increment of observations <= LE.UpperBound, cumulative as exposed.
	LE *Bucket
}

// Appender receives normalised samples. Append must not keep the slice.
type Appender interface {
	Append(samples []Sample) error
}

// Filter tells a source cheaply, before any per-series state is kept,
// whether a metric is of interest to anyone.
type Filter interface {
	Wants(metric string) bool
}

// SeriesFilter is an optional second look a Filter may offer, with the
// series' labels: sources drop series no one wants (another service's, say)
// before keeping any state for them.
type SeriesFilter interface {
	WantsSeries(metric string, ls Labels) bool
}

// DoorFilter is an optional interface of a Filter for decoders that see
// labels as raw bytes: the label pairs of which a series of metric must
// carry at least one to be wanted (nil: any series). It lets a decoder skip
// another service's series without allocating its labels.
type DoorFilter interface {
	Doors(metric string) []Label
}
