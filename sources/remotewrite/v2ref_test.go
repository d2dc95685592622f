package remotewrite

import (
	"fmt"
	"unicode/utf8"
	"unsafe"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rollguard/rollguard/sources"
)

// The 2.0 decoder as it was before the wire-level one (v2.go), through
// the exp module's generated writev2.Request.UnmarshalVT: the reference
// the wire-level decoder is checked against (v2diff_test.go).

// decodeV2Ref decodes an io.prometheus.write.v2.Request with the generated
// types of client_golang's exp module and resolves its symbol references.
// Any malformed reference fails the whole request.
func (r *Receiver) decodeV2Ref(buf []byte, b *batch) error {
	var req writev2.Request
	if err := req.UnmarshalVT(buf); err != nil {
		return err
	}
	syms := req.Symbols
	for i, ts := range req.Timeseries {
		if err := checkRefsRef(ts.LabelsRefs, len(syms)); err != nil {
			return fmt.Errorf("timeseries[%d].labels_refs: %w", i, err)
		}
		if md := ts.Metadata; md != nil {
			if int(md.HelpRef) >= len(syms) || int(md.UnitRef) >= len(syms) {
				return fmt.Errorf("timeseries[%d].metadata: help_ref %d or unit_ref %d out of range: the request has %d symbols",
					i, md.HelpRef, md.UnitRef, len(syms))
			}
		}
		for j, ex := range ts.Exemplars {
			if err := checkRefsRef(ex.LabelsRefs, len(syms)); err != nil {
				return fmt.Errorf("timeseries[%d].exemplars[%d].labels_refs: %w", i, j, err)
			}
		}
		r.addV2Ref(ts, syms, b)
	}
	return nil
}

func checkRefsRef(refs []uint32, symbols int) error {
	if len(refs)%2 != 0 {
		return fmt.Errorf("odd number of references (%d): labels are name and value pairs", len(refs))
	}
	for _, ref := range refs {
		if int64(ref) >= int64(symbols) {
			return fmt.Errorf("symbol reference %d out of range: the request has %d symbols", ref, symbols)
		}
	}
	return nil
}

// addV2 adds one series (whose references are valid) to the batch, or
// counts why not.
func (r *Receiver) addV2Ref(ts *writev2.TimeSeries, syms []string, b *batch) {
	refs := ts.LabelsRefs
	np, nh, ne := len(ts.Samples), len(ts.Histograms), len(ts.Exemplars)
	if np > 0 && nh > 0 {
		// The specification forbids both in one series: which to believe?
		b.drop(DropMixedSeries, np+nh)
		return
	}
	if reason := r.labelLimitRef(len(refs)/2,
		func(i int) int { return len(syms[refs[2*i]]) },
		func(i int) int { return len(syms[refs[2*i+1]]) }); reason != "" {
		b.drop(reason, np+nh)
		return
	}
	name := ""
	for i := 0; i < len(refs); i += 2 {
		if syms[refs[i]] == model.MetricNameLabel {
			name = syms[refs[i+1]]
		}
	}
	labels := func() sources.Labels {
		ls := make(sources.Labels, len(refs)/2)
		for i := range ls {
			ls[i] = sources.Label{Name: syms[refs[2*i]], Value: syms[refs[2*i+1]]}
		}
		return ls
	}
	if name == "" {
		ms := int64(0)
		if np > 0 {
			ms = ts.Samples[0].Timestamp
		} else if nh > 0 {
			ms = ts.Histograms[0].Timestamp
		}
		b.refuse(sources.DropNoName, np+nh, labels, ms)
		return
	}
	if reason := labelRefusalRef(len(refs)/2, func(i int) ([]byte, []byte) {
		return unsafeBytesRef(syms[refs[2*i]]), unsafeBytesRef(syms[refs[2*i+1]])
	}); reason != "" {
		b.refuse(reason, np+nh, labels, firstTimestampV2Ref(ts))
		return
	}
	hists := ts.Histograms[:0:0]
	for _, h := range ts.Histograms {
		if reason := checkHistogramRef(h); reason != "" {
			b.refuse(reason, 1, labels, h.Timestamp)
			nh--
			continue
		}
		hists = append(hists, h)
	}
	if !b.wanted(name) || !throughDoorRef(b.doorsOf(name), len(refs)/2, func(i int) ([]byte, []byte) {
		return unsafeBytesRef(syms[refs[2*i]]), unsafeBytesRef(syms[refs[2*i+1]])
	}) {
		b.accept(np, nh, ne)
		return
	}
	ls := make(sources.Labels, len(refs)/2)
	for i := range ls {
		ls[i] = sources.Label{Name: syms[refs[2*i]], Value: syms[refs[2*i+1]]}
	}
	ls, ok := finishLabelsRef(ls)
	if !ok {
		b.drop(DropInvalidLabel, np+nh)
		return
	}
	typ := model.MetricTypeUnknown
	if ts.Metadata != nil {
		typ = metricType(int32(ts.Metadata.Type))
	}
	for _, s := range ts.Samples {
		created := ts.CreatedTimestamp
		if st := startTimestampRef(s.ProtoReflect().GetUnknown(), v2SampleStartTimestamp); st != 0 {
			created = st
		}
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: s.Timestamp, CreatedMs: created, Value: s.Value})
	}
	b.written.samples += np
	for _, h := range hists {
		created := ts.CreatedTimestamp
		if st := startTimestampRef(h.ProtoReflect().GetUnknown(), v2HistogramStartTimestamp); st != 0 {
			created = st
		}
		b.addHistogram(ls, typ, created, h)
	}
	b.written.exemplars += ne
}

// checkHistogramRef is checkHistogram over the generated type, through
// sources.CheckNative: what the specification refuses of a histogram.
func checkHistogramRef(h *writev2.Histogram) string {
	if sources.IsStaleNaN(h.Sum) {
		return ""
	}
	_, isFloatCount := h.Count.(*writev2.Histogram_CountFloat)
	_, isFloatZero := h.ZeroCount.(*writev2.Histogram_ZeroCountFloat)
	hasDeltas := len(h.PositiveDeltas)+len(h.NegativeDeltas) > 0
	isFloat := isFloatCount || isFloatZero || len(h.PositiveCounts)+len(h.NegativeCounts) > 0
	if isFloat && hasDeltas {
		return ""
	}
	width := func(spans []*writev2.BucketSpan) int {
		n := uint64(0)
		for _, s := range spans {
			n += uint64(s.Length)
		}
		return int(n)
	}
	var nh sources.NativeHistogram
	count := h.GetCountFloat()
	if isFloat {
		nh.ZeroCount = h.GetZeroCountFloat()
		nh.Positive.Counts, nh.Negative.Counts = h.PositiveCounts, h.NegativeCounts
	} else {
		count, nh.ZeroCount = float64(h.GetCountInt()), float64(h.GetZeroCountInt())
		var ok1, ok2 bool
		nh.Positive.Counts, ok1 = absolute(h.PositiveDeltas)
		nh.Negative.Counts, ok2 = absolute(h.NegativeDeltas)
		if !ok1 || !ok2 {
			return ""
		}
	}
	if width(h.PositiveSpans) != len(nh.Positive.Counts) || width(h.NegativeSpans) != len(nh.Negative.Counts) {
		return ""
	}
	return sources.CheckNative(count, h.Sum, nh)
}

func startTimestampRef(raw protoreflect.RawFields, num protowire.Number) int64 {
	return startTimestamp(raw, num)
}

func unsafeBytesRef(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// labelRefusalRef is why the specification refuses a series' n labels, or
// "": a name empty, a name or value not UTF-8, then a name twice.
func labelRefusalRef(n int, at func(i int) (name, value []byte)) string {
	seen := map[string]bool{}
	twice := false
	for i := 0; i < n; i++ {
		name, value := at(i)
		if len(name) == 0 || !utf8.Valid(name) || !utf8.Valid(value) {
			return sources.DropInvalidLabel
		}
		twice = twice || seen[string(name)]
		seen[string(name)] = true
	}
	if twice {
		return sources.DropDuplicateLabel
	}
	return ""
}

func firstTimestampV2Ref(ts *writev2.TimeSeries) int64 {
	if len(ts.Samples) > 0 {
		return ts.Samples[0].Timestamp
	} else if len(ts.Histograms) > 0 {
		return ts.Histograms[0].Timestamp
	}
	return 0
}

// throughDoorRef reports whether a series carries one of the door labels, or
// there are none; at(i) gives its i-th label pair without allocating.
func throughDoorRef(doors []sources.Label, n int, at func(i int) (name, value []byte)) bool {
	if doors == nil {
		return true
	}
	for i := 0; i < n; i++ {
		name, value := at(i)
		for _, d := range doors {
			if string(name) == d.Name && string(value) == d.Value {
				return true
			}
		}
	}
	return false
}

// labelLimitRef returns the drop reason of a series whose labels break a limit,
// or "". n is the number of labels, and names and values their lengths.
func (r *Receiver) labelLimitRef(n int, nameLen, valueLen func(i int) int) string {
	if n > r.cfg.MaxLabelsPerSeries {
		return DropLabelCount
	}
	for i := 0; i < n; i++ {
		if nameLen(i) > r.cfg.MaxLabelNameBytes {
			return DropLabelName
		}
		if valueLen(i) > r.cfg.MaxLabelValueBytes {
			return DropLabelValue
		}
	}
	return ""
}

// finishLabelsRef validates and normalises a series' labels in place: names must
// be non-empty UTF-8 and values UTF-8; a label with an empty value is no
// label (as in PromQL); the result is sorted. ok is false for invalid labels.
func finishLabelsRef(ls sources.Labels) (sources.Labels, bool) {
	out := ls[:0]
	sorted := true
	for _, l := range ls {
		if l.Name == "" || !utf8.ValidString(l.Name) || !utf8.ValidString(l.Value) {
			return nil, false
		}
		if l.Value == "" {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Name >= l.Name {
			sorted = false
		}
		out = append(out, l)
	}
	if !sorted {
		out = out.Sort()
	}
	return out, true
}
