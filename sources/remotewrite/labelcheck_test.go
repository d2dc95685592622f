package remotewrite

import (
	"strconv"
	"testing"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rollguard/rollguard/sources"
)

// The label checks run for every series, those no guard reads included:
// decoding a request of 2,000 such series allocates no more than one of
// 20 (of the same 20 metrics). The series take the checks' slower paths:
// values of non-ASCII UTF-8 (each label looked at alone), 32 names (the
// filter of names takes two of one bit, so they are sorted to be told
// apart).
func TestLabelChecksAllocateNothingPerSeries(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops the pooled batch at random: the counts are not the code's")
	}
	r := NewReceiver(Config{Filter: sources.FilterFunc(func(m string) bool { return m == "pool_in_use" })})
	labels := func(i int) []string {
		kv := []string{"__name__", "node_metric_" + strconv.Itoa(i%20), "zone", "zürich-" + strconv.Itoa(i%3)}
		for j := 0; j < 30; j++ {
			kv = append(kv, "l"+strconv.Itoa(j), "日本")
		}
		return kv
	}
	v1 := func(n int) []byte {
		req := &prompb.WriteRequest{}
		for i := range n {
			ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}}}
			kv := labels(i)
			for j := 0; j < len(kv); j += 2 {
				ts.Labels = append(ts.Labels, prompb.Label{Name: kv[j], Value: kv[j+1]})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		b, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v2 := func(n int) []byte {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{}
		for i := range n {
			req.Timeseries = append(req.Timeseries, &writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels(i), nil),
				Samples: []*writev2.Sample{{Value: 1, Timestamp: 1000}}})
		}
		req.Symbols = st.Symbols()
		b, err := req.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The names do take two of one bit, or the test would not reach duplicateName.
	var seen uint64
	twice := false
	for j := 0; j < 30; j++ {
		n := "l" + strconv.Itoa(j)
		bit := uint64(1) << nameBit(len(n), n[0], n[len(n)-1])
		twice = twice || seen&bit != 0
		seen |= bit
	}
	if !twice {
		t.Fatal("no two names of one bit: duplicateName is not reached")
	}
	for _, p := range []struct {
		name   string
		build  func(int) []byte
		decode func([]byte, *batch) error
	}{{"1.0", v1, r.decodeV1}, {"2.0", v2, r.decodeV2}} {
		allocs := func(n int) float64 {
			body := p.build(n)
			return testing.AllocsPerRun(20, func() {
				b := r.getBatch()
				if err := p.decode(body, b); err != nil || b.refused != nil || b.written.samples != n {
					t.Fatalf("%s: %v, refused %v, written %+v", p.name, err, b.refused, b.written)
				}
				r.putBatch(b)
			})
		}
		if few, many := allocs(20), allocs(2000); many > few+2 {
			t.Errorf("%s: decoding 2,000 unguarded series allocates %v times, 20 of them %v", p.name, many, few)
		}
	}
}
