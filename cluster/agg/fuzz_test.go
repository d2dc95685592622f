package agg_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/detector"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic; what it
// accepts must encode again and decode to the same aggregates, with counts
// that are finite and not negative.
func FuzzDecode(f *testing.F) {
	for _, aggs := range [][]detector.Aggregate{
		realistic("checkout"),
		nil,
		{{Signal: "pool", Version: "v2", Total: 0.5, Bad: 1 << 60, Cum: map[float64]float64{math.Inf(1): 3, -1: 0}}},
	} {
		b, err := agg.Encode("checkout", tick, aggs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("RGAG\x01"))
	f.Add([]byte("RGAG\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		guard, at, aggs, err := agg.Decode(b)
		if err != nil {
			if guard != "" || aggs != nil {
				t.Fatalf("partial result with %v", err)
			}
			return
		}
		for _, a := range aggs {
			for _, c := range append([]float64{a.Total, a.Bad}, values(a.Cum)...) {
				if !(c >= 0) || math.IsInf(c, 0) {
					t.Fatalf("count %v accepted", c)
				}
			}
		}
		again, err := agg.Encode(guard, at, aggs)
		if err != nil {
			t.Fatalf("decoded aggregates do not encode: %v", err)
		}
		g2, at2, aggs2, err := agg.Decode(again)
		if err != nil || g2 != guard || !at2.Equal(at) || !reflect.DeepEqual(aggs2, aggs) {
			t.Fatalf("re-encoded message differs: %v\n got: %+v\nwant: %+v", err, aggs2, aggs)
		}
	})
}

func values(m map[float64]float64) []float64 {
	out := make([]float64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
