package remotewrite

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// checkHistogram checks a native histogram sample (a Histogram message of
// 1.0 or 2.0, already found well-formed by its decoder) where the
// specification asks a receiver to refuse it: a count that its buckets do
// not add up to, or a count that no histogram can have. It reads the wire
// form and allocates nothing, so that every series is checked, those
// dropped at the door included; the rule is sources.CheckNative's, through
// sources.NativeTotal. It returns the drop reason, or "", and the
// histogram's timestamp, to name it.
//
// A histogram that is malformed in other ways (bucket deltas that go below
// zero, float and integer buckets mixed, spans that do not match the bucket
// counts) is not refused here: the decoders count it as invalid_histogram
// when its series is kept, and answer 204 for it, as before this check.
func checkHistogram(d []byte) (reason string, ms int64) {
	var h histogramSums
	err := walkHistogram(d, &h)
	isFloat := h.isFloatCount || h.isFloatZero || h.hasCounts
	switch {
	case err != nil, sources.IsStaleNaN(h.sum):
		return "", h.ms
	case isFloat && h.hasDeltas, h.negative, h.spans != h.n:
		return "", h.ms // invalid_histogram, where its series is kept
	}
	if isFloat {
		h.total.Add(h.zeroFloat)
		return h.total.Check(h.countFloat, h.sum), h.ms
	}
	h.total.Add(float64(h.zeroInt))
	return h.total.Check(float64(h.countInt), h.sum), h.ms
}

// histogramSums is what checkHistogram needs of a histogram, as
// walkHistogram reads it.
type histogramSums struct {
	countInt, zeroInt         uint64
	countFloat, zeroFloat     float64
	isFloatCount, isFloatZero bool
	sum                       float64
	ms                        int64
	total                     sources.NativeTotal
	// Per side (negative, positive): the buckets the spans describe, the
	// buckets read, and the last absolute count read from the deltas.
	spans, n             [2]uint64
	abs                  [2]int64
	hasDeltas, hasCounts bool
	negative             bool // a delta took a count below zero
}

// sideOf is 0 for a field of the negative buckets, 1 for the positive ones.
func sideOf(num int32) int {
	if num >= 8 && num <= 10 {
		return 0
	}
	return 1
}

// count and zero_count are oneofs: the last field read is the one set.
func (h *histogramSums) varint(num int32, v uint64) {
	switch num {
	case 1:
		h.countInt, h.countFloat, h.isFloatCount = v, 0, false
	case 6:
		h.zeroInt, h.zeroFloat, h.isFloatZero = v, 0, false
	case 15:
		h.ms = int64(v)
	}
}

func (h *histogramSums) fixed(num int32, f float64) {
	switch num {
	case 2:
		h.countInt, h.countFloat, h.isFloatCount = 0, f, true
	case 3:
		h.sum = f
	case 7:
		h.zeroInt, h.zeroFloat, h.isFloatZero = 0, f, true
	}
}

// delta adds an integer bucket: each is a (zigzag) difference to the one before.
func (h *histogramSums) delta(side int, v uint64) {
	h.hasDeltas = true
	h.abs[side] += protowire.DecodeZigZag(v)
	h.negative = h.negative || h.abs[side] < 0
	h.total.Add(float64(h.abs[side]))
	h.n[side]++
}

// count adds a float bucket.
func (h *histogramSums) count(side int, c float64) {
	h.hasCounts = true
	h.total.Add(c)
	h.n[side]++
}
