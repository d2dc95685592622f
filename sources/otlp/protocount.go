package otlp

import "google.golang.org/protobuf/encoding/protowire"

// protoPoints counts the data points of a protobuf ExportMetricsServiceRequest
// without decoding it, so that a request over MaxPoints is refused before
// pdata builds its objects (1.2 million gauge points, 25 KB gzip'd, cost
// 175 MB decoded). It only walks the message tree and skips every field
// but the ones that lead to data points. A body it cannot walk counts what
// it found so far: the decoder reports what is wrong with it, and the
// count after decoding (consume) is the one that decides in the end.
func protoPoints(b []byte) int {
	return countRepeated(b, 1, func(rm []byte) int { // ResourceMetrics
		scopes := func(sm []byte) int { // ScopeMetrics (and the deprecated InstrumentationLibraryMetrics)
			return countRepeated(sm, 2, metricPoints)
		}
		return countRepeated(rm, 2, scopes) + countRepeated(rm, 1000, scopes)
	})
}

// metricPoints counts a Metric's points: its data is one of gauge (5), sum
// (7), histogram (9), exponential histogram (10) and summary (11), the
// last one on the wire winning as in any oneof, and each keeps its points
// in field 1.
func metricPoints(m []byte) int {
	n := 0
	walk(m, func(num protowire.Number, v []byte) {
		switch num {
		case 5, 7, 9, 10, 11:
			n = countRepeated(v, 1, func([]byte) int { return 1 })
		}
	})
	return n
}

// countRepeated sums each(v) over the length-delimited fields numbered num
// of the message b.
func countRepeated(b []byte, num protowire.Number, each func([]byte) int) int {
	n := 0
	walk(b, func(f protowire.Number, v []byte) {
		if f == num {
			n += each(v)
		}
	})
	return n
}

// walk calls f with every length-delimited field of the message b and
// skips the others; it stops at the first malformed field.
func walk(b []byte, f func(protowire.Number, []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			f(num, v)
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return
		}
		b = b[n:]
	}
}
