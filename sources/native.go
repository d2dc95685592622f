package sources

import (
	"math"

	"github.com/rollguard/rollguard/sample"
)

// Aliases of the histogram types and helpers that moved to package sample.
type (
	NativeHistogram = sample.NativeHistogram
	ExpBuckets      = sample.ExpBuckets
)

// MinScale is the coarsest scale histograms are merged down to.
const MinScale = sample.MinScale

// UpperBound is the upper edge of bucket index i at scale.
var UpperBound = sample.UpperBound

// Span is a run of Length consecutive buckets, Offset buckets after the
// previous span's end (the first span's Offset is its start index), as in
// Prometheus' native histograms.
type Span struct {
	Offset int32
	Length uint32
}

// BucketsFromSpans expands Prometheus spans into dense buckets in the
// OpenTelemetry convention. counts are absolute counts per populated bucket
// (decode Prometheus' deltas before calling). It returns false when the spans
// and the counts disagree.
func BucketsFromSpans(spans []Span, counts []float64) (ExpBuckets, bool) {
	var n uint64
	for i, s := range spans {
		if i > 0 && s.Offset < 0 {
			return ExpBuckets{}, false // spans must not overlap or go back
		}
		n += uint64(s.Length)
	}
	if n != uint64(len(counts)) || n > 1<<20 {
		return ExpBuckets{}, false
	}
	if n == 0 {
		return ExpBuckets{}, true
	}
	// Prometheus index k covers (base^(k-1), base^k]: OpenTelemetry index k-1.
	first := int64(spans[0].Offset) - 1
	idx := first
	last := first
	for i, s := range spans {
		if i > 0 {
			idx += int64(s.Offset)
		}
		if s.Length > 0 {
			last = idx + int64(s.Length) - 1
		}
		idx += int64(s.Length)
	}
	if last-first+1 > 1<<20 || first < math.MinInt32 || last > math.MaxInt32 {
		return ExpBuckets{}, false
	}
	out := ExpBuckets{Offset: int32(first), Counts: make([]float64, last-first+1)}
	idx, c := first, 0
	for i, s := range spans {
		if i > 0 {
			idx += int64(s.Offset)
		}
		for j := uint32(0); j < s.Length; j++ {
			out.Counts[idx-first] += counts[c]
			c++
			idx++
		}
	}
	return out, true
}

// sub returns a − b per bucket at their common scale; ok is false when a
// bucket went down (a reset).
func sub(a, b NativeHistogram) (NativeHistogram, bool) {
	scale := min(a.Scale, b.Scale)
	a, b = a.Downscale(scale), b.Downscale(scale)
	out := NativeHistogram{Scale: scale, ZeroThreshold: a.ZeroThreshold, ZeroCount: a.ZeroCount - b.ZeroCount}
	if out.ZeroCount < 0 || a.ZeroThreshold != b.ZeroThreshold {
		return NativeHistogram{}, false
	}
	var ok1, ok2 bool
	out.Positive, ok1 = subBuckets(a.Positive, b.Positive)
	out.Negative, ok2 = subBuckets(a.Negative, b.Negative)
	return out, ok1 && ok2
}

func subBuckets(a, b ExpBuckets) (ExpBuckets, bool) {
	out := ExpBuckets{Offset: a.Offset, Counts: append([]float64(nil), a.Counts...)}
	for i, c := range b.Counts {
		if c == 0 {
			continue
		}
		j := int(b.Offset) + i - int(a.Offset)
		if j < 0 || j >= len(out.Counts) || out.Counts[j] < c {
			return ExpBuckets{}, false
		}
		out.Counts[j] -= c
	}
	return out, true
}
