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
	if name == "" {
		b.drop(sources.DropNoName, np+nh)
		return
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
	for _, h := range ts.Histograms {
		created := ts.CreatedTimestamp
		if st := startTimestampRef(h.ProtoReflect().GetUnknown(), v2HistogramStartTimestamp); st != 0 {
			created = st
		}
		b.addHistogram(ls, typ, created, h)
	}
	b.written.exemplars += ne
}

func startTimestampRef(raw protoreflect.RawFields, num protowire.Number) int64 {
	return startTimestamp(raw, num)
}

func unsafeBytesRef(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

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
