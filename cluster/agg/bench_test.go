package agg_test

import (
	"testing"

	"github.com/rollguard/rollguard/cluster/agg"
)

// BenchmarkEncode and BenchmarkDecode: one message of a realistic guard
// (errors, latency with 15 bounds and data integrity, for a stable and a
// canary version); B/msg is its size on the wire.
func BenchmarkEncode(b *testing.B) {
	aggs := realistic("checkout")
	var n int
	b.ReportAllocs()
	for b.Loop() {
		msg, err := agg.Encode("checkout", tick, aggs)
		if err != nil {
			b.Fatal(err)
		}
		n = len(msg)
	}
	b.ReportMetric(float64(n), "B/msg")
}

func BenchmarkDecode(b *testing.B) {
	msg, err := agg.Encode("checkout", tick, realistic("checkout"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := agg.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(msg)), "B/msg")
}
