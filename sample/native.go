package sample

import "math"

// NativeHistogram is an exponential (OpenTelemetry) or native (Prometheus)
// histogram, in the OpenTelemetry convention: with base = 2^(2^-Scale),
// bucket index i holds observations in (base^i, base^(i+1)], and a slice of
// counts starts at its offset. A Prometheus native histogram of schema s is
// scale s with every index shifted down by one.
type NativeHistogram struct {
	Scale         int32
	ZeroThreshold float64
	ZeroCount     float64
	Positive      ExpBuckets
	Negative      ExpBuckets
}

// ExpBuckets are consecutive bucket counts from index Offset.
type ExpBuckets struct {
	Offset int32
	Counts []float64
}

// MinScale is the coarsest scale histograms are merged down to.
const MinScale = -4

// downscale merges buckets by 2^by: index i goes to i >> by.
func (b ExpBuckets) downscale(by int32) ExpBuckets {
	if by <= 0 || len(b.Counts) == 0 {
		return b
	}
	first := int64(b.Offset) >> by
	last := (int64(b.Offset) + int64(len(b.Counts)) - 1) >> by
	out := ExpBuckets{Offset: int32(first), Counts: make([]float64, last-first+1)}
	for i, c := range b.Counts {
		out.Counts[((int64(b.Offset)+int64(i))>>by)-first] += c
	}
	return out
}

// Downscale returns h at a coarser scale (a no-op when scale >= h.Scale).
func (h NativeHistogram) Downscale(scale int32) NativeHistogram {
	if scale >= h.Scale {
		return h
	}
	by := h.Scale - scale
	h.Positive = h.Positive.downscale(by)
	h.Negative = h.Negative.downscale(by)
	h.Scale = scale
	return h
}

// Total is the number of observations in all buckets.
func (h NativeHistogram) Total() float64 {
	t := h.ZeroCount
	for _, c := range h.Positive.Counts {
		t += c
	}
	for _, c := range h.Negative.Counts {
		t += c
	}
	return t
}

// UpperBound is the upper edge of bucket index i at scale.
func UpperBound(scale, i int32) float64 {
	return math.Exp2(math.Ldexp(float64(i+1), -int(scale)))
}
