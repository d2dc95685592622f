package remotewrite

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// The wire-level 2.0 decoder must take and refuse what the generated
// code did (v2ref_test.go keeps the decoder built on it), with the same
// messages, and add the same points, drops and written counts.

// diffFilter wants a few metrics, and one of them only for job="checkout".
type diffFilter struct{}

func (diffFilter) Wants(m string) bool {
	switch m {
	case "http_requests_total", "up", "rt", "nrt", "frt", "pool_in_use", "rpc_seconds", "a":
		return true
	}
	return strings.HasPrefix(m, "w")
}

func (diffFilter) Doors(m string) []sources.Label {
	if m == "http_requests_total" || m == "a" {
		return []sources.Label{{Name: "job", Value: "checkout"}, {Name: "b", Value: "c"}}
	}
	return nil
}

// v2Seeds are the fuzz seeds of FuzzRemoteWriteV2 and a few more.
func v2Seeds(t testing.TB) [][]byte {
	seeds := fuzzSeedFiles(t, "FuzzRemoteWriteV2")
	for _, req := range extraV2Requests() {
		b, err := req.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// Unknown fields everywhere, a start timestamp, repeated fields.
	var ts []byte
	ts = protowire.AppendTag(ts, 1, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 1)
	ts = protowire.AppendTag(ts, 9, protowire.BytesType)
	ts = protowire.AppendString(ts, "junk")
	ts = protowire.AppendTag(ts, 1, protowire.BytesType)
	ts = protowire.AppendBytes(ts, []byte{2, 3, 4})
	var smp []byte
	smp = protowire.AppendTag(smp, 1, protowire.Fixed64Type)
	smp = protowire.AppendFixed64(smp, math.Float64bits(7))
	smp = protowire.AppendTag(smp, 7, protowire.Fixed32Type)
	smp = protowire.AppendFixed32(smp, 1)
	smp = protowire.AppendTag(smp, 3, protowire.VarintType)
	smp = protowire.AppendVarint(smp, 99)
	smp = protowire.AppendTag(smp, 2, protowire.VarintType)
	smp = protowire.AppendVarint(smp, 5000)
	ts = protowire.AppendTag(ts, 2, protowire.BytesType)
	ts = protowire.AppendBytes(ts, smp)
	ts = protowire.AppendTag(ts, 5, protowire.BytesType)
	ts = protowire.AppendBytes(ts, []byte{0x08, 0x01})
	ts = protowire.AppendTag(ts, 5, protowire.BytesType)
	ts = protowire.AppendBytes(ts, []byte{0x18, 0x00})
	ts = protowire.AppendTag(ts, 6, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 10)
	var req []byte
	req = protowire.AppendTag(req, 5, protowire.BytesType)
	req = protowire.AppendBytes(req, ts)
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendString(req, "")
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendString(req, "__name__")
	req = protowire.AppendTag(req, 3, protowire.StartGroupType)
	req = protowire.AppendTag(req, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, 1)
	req = protowire.AppendTag(req, 3, protowire.EndGroupType)
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendString(req, "up")
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendString(req, "job")
	req = protowire.AppendTag(req, 4, protowire.BytesType)
	req = protowire.AppendString(req, "__name__")
	seeds = append(seeds, req)
	return seeds
}

func extraV2Requests() []*writev2.Request {
	syms := []string{"", "__name__", "http_requests_total", "job", "checkout", "other", "code", "200", "a", "b", "c", "up", "w1"}
	ser := func(refs ...uint32) *writev2.TimeSeries {
		return &writev2.TimeSeries{LabelsRefs: refs, Samples: []*writev2.Sample{{Value: 1, Timestamp: 1000}},
			Metadata: &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER}}
	}
	hist := &writev2.Histogram{Timestamp: 1000, Schema: 0, Sum: 3, Count: &writev2.Histogram_CountInt{CountInt: 3},
		ZeroCount: &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1}, PositiveSpans: []*writev2.BucketSpan{{Offset: 0, Length: 2}},
		PositiveDeltas: []int64{1, 0}}
	return []*writev2.Request{
		{Symbols: syms, Timeseries: []*writev2.TimeSeries{
			ser(1, 2, 3, 4, 6, 7), ser(1, 2, 3, 5, 6, 7), ser(1, 2, 9, 10), ser(1, 8, 9, 10), ser(1, 8, 3, 4),
			ser(1, 11, 3, 5), ser(1, 12), ser(3, 4), ser(1, 2, 1, 11), ser(1, 0, 3, 4),
			{LabelsRefs: []uint32{1, 11}, Histograms: []*writev2.Histogram{hist, hist}},
			{LabelsRefs: []uint32{1, 2, 3, 4}, Histograms: []*writev2.Histogram{hist}},
			{LabelsRefs: []uint32{1, 11}, Samples: []*writev2.Sample{{Value: 1}}, Histograms: []*writev2.Histogram{hist}},
			{LabelsRefs: []uint32{1, 11, 3, 4}, Exemplars: []*writev2.Exemplar{{LabelsRefs: []uint32{3, 4}}, {LabelsRefs: []uint32{3}}}},
		}},
		{Symbols: syms, Timeseries: []*writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 11}, Exemplars: []*writev2.Exemplar{{LabelsRefs: []uint32{3, 4}}, {LabelsRefs: []uint32{3, 40}}}},
		}},
		{Symbols: syms, Timeseries: []*writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 11}, Metadata: &writev2.Metadata{UnitRef: 13}},
		}},
		{Symbols: []string{"", "__name__", "up", "__name__", "w2"}, Timeseries: []*writev2.TimeSeries{ser(1, 2, 3, 4), ser(3, 2), ser(1, 4)}},
		// The door's label name twice in the table.
		{Symbols: []string{"", "__name__", "http_requests_total", "job", "checkout", "job", "checkout", "other", "b", "c"}, Timeseries: []*writev2.TimeSeries{
			ser(1, 2, 3, 4), ser(1, 2, 5, 6), ser(1, 2, 5, 4), ser(1, 2, 3, 7), ser(1, 2, 5, 7), ser(1, 2, 8, 9), ser(1, 2, 9, 8)}},
		// A door's label name that no series has.
		{Symbols: []string{"", "__name__", "http_requests_total", "b", "c", "job"}, Timeseries: []*writev2.TimeSeries{
			ser(1, 2, 3, 4), ser(1, 2, 3, 3), ser(1, 2, 4, 3)}},
	}
}

// formatBatch writes what a decoder left in a batch, NaNs told apart.
func formatBatch(b *batch) string {
	var sb strings.Builder
	for _, ps := range [][]sources.PromPoint{b.floats, b.hists} {
		for _, p := range ps {
			fmt.Fprintf(&sb, "%s %s t=%d c=%d v=%x", p.Labels, p.Type, p.TimestampMs, p.CreatedMs, math.Float64bits(p.Value))
			if p.Histogram != nil {
				fmt.Fprintf(&sb, " h=%+v", *p.Histogram)
			}
			sb.WriteByte('\n')
		}
		sb.WriteString("--\n")
	}
	var reasons []string
	for r, n := range b.drops {
		reasons = append(reasons, r+"="+strconv.Itoa(n))
	}
	sort.Strings(reasons)
	fmt.Fprintf(&sb, "drops %v written %+v buckets %d", reasons, b.written, b.buckets)
	if b.refused != nil {
		fmt.Fprintf(&sb, " refused %s", b.refused)
	}
	return sb.String()
}

func refBatch(r *Receiver) *batch {
	return &batch{r: r, drops: map[string]int{}, wants: map[string]bool{}, doors: map[string][]sources.Label{}, buckets: r.cfg.MaxNativeBuckets}
}

// diffV2 decodes data with both decoders and compares. The wire-level one
// decodes a copy that is overwritten before its batch is read: nothing it
// keeps may point into the body.
func diffV2(t *testing.T, r *Receiver, data []byte) {
	t.Helper()
	want := refBatch(r)
	wantErr := r.decodeV2Ref(data, want)
	body := append([]byte(nil), data...)
	got := r.getBatch()
	defer r.putBatch(got)
	gotErr := r.decodeV2(body, got)
	for i := range body {
		body[i] = 0xa5
	}
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("error %v, want %v (body %q)", gotErr, wantErr, data)
	}
	if gotErr != nil {
		return
	}
	if g, w := formatBatch(got), formatBatch(want); g != w {
		t.Fatalf("batch:\n%s\nwant:\n%s\n(body %q)", g, w, data)
	}
}

func diffReceiver() *Receiver {
	return NewReceiver(Config{Appender: nil, Filter: diffFilter{}, MaxLabelsPerSeries: 6, MaxLabelNameBytes: 12,
		MaxLabelValueBytes: 24, MaxNativeBuckets: 40})
}

func TestDecodeV2MatchesGenerated(t *testing.T) {
	r := diffReceiver()
	for _, seed := range v2Seeds(t) {
		diffV2(t, r, seed)
		// Every truncation and every single-byte change of the seed.
		for n := range seed {
			diffV2(t, r, seed[:n])
		}
		for i := range seed {
			for _, c := range []byte{0x00, 0x01, 0x02, 0x08, 0x0a, 0x0b, 0x0c, 0x10, 0x12, 0x7f, 0x80, 0xff} {
				m := append([]byte(nil), seed...)
				m[i] = c
				diffV2(t, r, m)
			}
		}
	}
}

func FuzzDecodeV2MatchesGenerated(f *testing.F) {
	for _, seed := range v2Seeds(f) {
		f.Add(seed)
	}
	r := diffReceiver()
	f.Fuzz(func(t *testing.T, data []byte) {
		diffV2(t, r, data)
	})
}

func FuzzValidateHistogram(f *testing.F) {
	for _, h := range []*writev2.Histogram{
		{Timestamp: 1000, Schema: -3, Sum: 3, Count: &writev2.Histogram_CountInt{CountInt: 3},
			ZeroCount: &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1}, PositiveSpans: []*writev2.BucketSpan{{Offset: -2, Length: 2}},
			PositiveDeltas: []int64{1, 0}, NegativeSpans: []*writev2.BucketSpan{{Offset: 1, Length: 1}}, NegativeDeltas: []int64{-1},
			ResetHint: writev2.Histogram_RESET_HINT_GAUGE, ZeroThreshold: 0.1},
		{Count: &writev2.Histogram_CountFloat{CountFloat: 3}, ZeroCount: &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: 1},
			PositiveSpans: []*writev2.BucketSpan{{Offset: 0, Length: 2}}, PositiveCounts: []float64{1, 2}, NegativeCounts: []float64{4},
			CustomValues: []float64{1, 2}},
		// The compliance suite's: a count (99) its buckets (23) do not add
		// up to, and custom buckets.
		{Sum: 1, Count: &writev2.Histogram_CountInt{CountInt: 99}, PositiveSpans: []*writev2.BucketSpan{{Offset: 0, Length: 3}, {Offset: 2, Length: 2}},
			PositiveDeltas: []int64{1, 2, 1, 3, 1}},
		{Sum: 0.05, Schema: -53, Count: &writev2.Histogram_CountInt{CountInt: 30}, PositiveSpans: []*writev2.BucketSpan{{Offset: 0, Length: 6}},
			PositiveDeltas: []int64{2, 1, 2, 3, -1, -2}, CustomValues: []float64{0.1, 0.5, 1, 2.5, 5, 10}},
	} {
		b, err := h.MarshalVT()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &writev2.Histogram{}
		got, want := validateHistogram(data), h.UnmarshalVT(data)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("validateHistogram: %v, UnmarshalVT: %v", got, want)
		}
		// checkHistogram, on the wire, refuses what sources.CheckNative
		// refuses of the generated type.
		if want == nil {
			if got, _ := checkHistogram(data); got != checkHistogramRef(h) {
				t.Fatalf("checkHistogram: %q, on the generated type: %q (%+v)", got, checkHistogramRef(h), h)
			}
		}
	})
}

// Requests decoded at once share nothing: each has its own pooled batch.
func TestConcurrentDecodesMatch(t *testing.T) {
	r := diffReceiver()
	type want struct {
		body []byte
		v2   bool
		out  string
	}
	var wants []want
	for _, v2 := range []bool{false, true} {
		seeds := v1Seeds(t)
		if v2 {
			seeds = v2Seeds(t)
		}
		for _, seed := range seeds {
			b := refBatch(r)
			var err error
			if v2 {
				err = r.decodeV2Ref(seed, b)
			} else {
				err = r.decodeV1Ref(seed, b)
			}
			wants = append(wants, want{seed, v2, outcome(err, b)})
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				w := wants[(g*7+i)%len(wants)]
				body := append([]byte(nil), w.body...)
				b := r.getBatch()
				var err error
				if w.v2 {
					err = r.decodeV2(body, b)
				} else {
					err = r.decodeV1(body, b)
				}
				for i := range body {
					body[i] = 0
				}
				if got := outcome(err, b); got != w.out {
					t.Errorf("got %s\nwant %s", got, w.out)
				}
				r.putBatch(b)
			}
		}()
	}
	wg.Wait()
}

// outcome is the error of a decode, or what it left in the batch: a
// request refused is refused whole, whatever was decoded before.
func outcome(err error, b *batch) string {
	if err != nil {
		return err.Error()
	}
	return formatV1Batch(b)
}

// checkHistogram runs for every histogram sample, those of series no guard
// reads included: it must allocate nothing.
func TestCheckHistogramAllocatesNothing(t *testing.T) {
	h := &writev2.Histogram{Sum: 1, Count: &writev2.Histogram_CountInt{CountInt: 99},
		PositiveSpans: []*writev2.BucketSpan{{Offset: 0, Length: 3}, {Offset: 2, Length: 2}}, PositiveDeltas: []int64{1, 2, 1, 3, 1},
		NegativeSpans: []*writev2.BucketSpan{{Offset: 0, Length: 1}}, NegativeCounts: []float64{1}}
	b, err := h.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	if n := testing.AllocsPerRun(100, func() { reason, _ = checkHistogram(b) }); n != 0 {
		t.Errorf("checkHistogram: %v allocations", n)
	}
	if reason != "" {
		t.Errorf("mixed integer and float buckets refused as %q: they are invalid_histogram, counted where the series is kept", reason)
	}
	h.NegativeSpans, h.NegativeCounts = nil, nil
	if b, err = h.MarshalVT(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { reason, _ = checkHistogram(b) }); n != 0 || reason != sources.DropInconsistentHistogram {
		t.Errorf("checkHistogram: %v allocations, %q", n, reason)
	}
}
