package sources

import "math"

// Drop reasons of the per-point checks and of the cumulative tracker, shared
// by every input so that one reason means the same wherever it is counted.
const (
	// DropInvalidValue: a counter value or a histogram's count, sum of
	// buckets or bucket count is NaN, infinite or negative.
	DropInvalidValue = "invalid_value"
	// DropInconsistentHistogram: a histogram's buckets do not add up
	// (classic: cumulative counts that go down, or a +Inf bucket other than
	// the count; native: bucket counts that do not sum to the count).
	DropInconsistentHistogram = "inconsistent_histogram"
	// DropTooManyBuckets: a histogram point has more buckets than the
	// limit (limits.max_buckets_per_histogram).
	DropTooManyBuckets = "too_many_buckets"
	// DropTooFarAhead: a point is stamped further after its receive time
	// than limits.max_timestamp_ahead.
	DropTooFarAhead = "too_far_ahead"
	// DropOutOfOrder: a point is older than its series' last point.
	DropOutOfOrder = "out_of_order"
	// DropDuplicate: a point has the timestamp of its series' last point.
	DropDuplicate = "duplicate"
	// DropVersionSeriesLimit: a new series of a service version that
	// already holds limits.max_series_per_version series.
	DropVersionSeriesLimit = "version_series_limit"
	// DropInvalidLabel: a series has a label with an empty name, or a
	// label name or value that is not UTF-8.
	DropInvalidLabel = "invalid_label"
	// DropDuplicateLabel: a series has two labels of the same name.
	DropDuplicateLabel = "duplicate_label"
)

// Rejected says whether a drop reason is a value the sender must not send
// (a series without a metric name, labels the specification forbids, a
// count no counter can have, buckets that do not add up, a timestamp that
// would poison the state), as opposed to a point that came too late or
// twice, or a budget that is full. Remote write answers 400 for the first
// kind, as its specification asks of a series without a name, of labels
// that are empty, not UTF-8 or repeated, and of a histogram that does not
// add up.
// (Malformed histograms, invalid_histogram, are counted and answered 204,
// as before these checks.)
func Rejected(reason string) bool {
	switch reason {
	case DropNoName, DropInvalidLabel, DropDuplicateLabel, DropInvalidValue, DropInconsistentHistogram, DropTooManyBuckets, DropTooFarAhead:
		return true
	}
	return false
}

// ValidCounter says whether v can be a cumulative counter's value or a
// histogram's count: finite and not negative.
func ValidCounter(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

// staleNaN is Prometheus' stale marker (value.StaleNaN): a NaN that says a
// series ended. It is a legal value of every series, counters included.
const staleNaN = 0x7ff0000000000002

// IsStaleNaN says whether v is Prometheus' stale marker.
func IsStaleNaN(v float64) bool { return math.Float64bits(v) == staleNaN }

// CheckClassic checks a classic histogram's cumulative bucket counts,
// sorted by upper bound: each finite and not negative, none below the one
// before, and the +Inf bucket (when there is one) equal to the count (when
// known). It returns the drop reason, or "".
func CheckClassic(buckets []Bucket, count float64, hasCount bool) string {
	prev := 0.0
	for _, b := range buckets {
		switch {
		case !ValidCounter(b.Count):
			return DropInvalidValue
		case b.Count < prev:
			return DropInconsistentHistogram
		}
		prev = b.Count
	}
	if !hasCount {
		return ""
	}
	if !ValidCounter(count) {
		return DropInvalidValue
	}
	if n := len(buckets); n > 0 && math.IsInf(buckets[n-1].UpperBound, 1) && buckets[n-1].Count != count {
		return DropInconsistentHistogram
	}
	return ""
}

// CheckNative checks a native histogram point: its count and bucket counts
// finite and not negative, and the bucket counts (the zero bucket's
// included) summing to the count. When the sum is NaN the count may be
// larger, as Prometheus allows: NaN observations are counted in no bucket.
// Float counts may differ from their sum by rounding (one part in 10⁹).
func CheckNative(count, sum float64, h NativeHistogram) string {
	var t NativeTotal
	t.Add(h.ZeroCount)
	for _, side := range [2][]float64{h.Positive.Counts, h.Negative.Counts} {
		for _, c := range side {
			t.Add(c)
		}
	}
	return t.Check(count, sum)
}

// NativeTotal adds up a native histogram's bucket counts (the zero
// bucket's included) for CheckNative, or for a decoder that checks
// histograms as it reads them, without building one.
type NativeTotal struct {
	total   float64
	invalid bool
}

// Add adds one bucket's count.
func (t *NativeTotal) Add(c float64) {
	if !ValidCounter(c) {
		t.invalid = true
	}
	t.total += c
}

// Check is CheckNative's verdict on the buckets added: the drop reason, or "".
func (t *NativeTotal) Check(count, sum float64) string {
	if t.invalid || !ValidCounter(count) {
		return DropInvalidValue
	}
	slack := 1e-9 * max(count, 1)
	switch {
	case t.total > count+slack:
		return DropInconsistentHistogram
	case t.total < count-slack && !math.IsNaN(sum):
		return DropInconsistentHistogram
	}
	return ""
}

// NativeBuckets is the number of buckets of a native histogram, the zero
// bucket included, as limits.max_buckets_per_histogram counts them.
func NativeBuckets(h NativeHistogram) int {
	return 1 + len(h.Positive.Counts) + len(h.Negative.Counts)
}
