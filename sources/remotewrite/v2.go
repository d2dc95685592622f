package remotewrite

import (
	"fmt"
	"unsafe"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rollguard/rollguard/sources"
)

// The start (created) timestamp moved in the 2.0 specification from the
// series (TimeSeries field 6, which the exp package's types still have) to
// every sample and histogram sample. The exp types keep the newer fields as
// unknown fields; both are read.
const (
	v2SampleStartTimestamp    = 3
	v2HistogramStartTimestamp = 17
)

// decodeV2 decodes an io.prometheus.write.v2.Request with the generated
// types of client_golang's exp module and resolves its symbol references.
// Any malformed reference fails the whole request.
func (r *Receiver) decodeV2(buf []byte, b *batch) error {
	var req writev2.Request
	if err := req.UnmarshalVT(buf); err != nil {
		return err
	}
	syms := req.Symbols
	for i, ts := range req.Timeseries {
		if err := checkRefs(ts.LabelsRefs, len(syms)); err != nil {
			return fmt.Errorf("timeseries[%d].labels_refs: %w", i, err)
		}
		if md := ts.Metadata; md != nil {
			if int(md.HelpRef) >= len(syms) || int(md.UnitRef) >= len(syms) {
				return fmt.Errorf("timeseries[%d].metadata: help_ref %d or unit_ref %d out of range: the request has %d symbols",
					i, md.HelpRef, md.UnitRef, len(syms))
			}
		}
		for j, ex := range ts.Exemplars {
			if err := checkRefs(ex.LabelsRefs, len(syms)); err != nil {
				return fmt.Errorf("timeseries[%d].exemplars[%d].labels_refs: %w", i, j, err)
			}
		}
		r.addV2(ts, syms, b)
	}
	return nil
}

func checkRefs(refs []uint32, symbols int) error {
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
func (r *Receiver) addV2(ts *writev2.TimeSeries, syms []string, b *batch) {
	refs := ts.LabelsRefs
	np, nh, ne := len(ts.Samples), len(ts.Histograms), len(ts.Exemplars)
	if np > 0 && nh > 0 {
		// The specification forbids both in one series: which to believe?
		b.drop(DropMixedSeries, np+nh)
		return
	}
	if reason := r.labelLimit(len(refs)/2,
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
	if !b.wanted(name) || !throughDoor(b.doorsOf(name), len(refs)/2, func(i int) ([]byte, []byte) {
		return unsafeBytes(syms[refs[2*i]]), unsafeBytes(syms[refs[2*i+1]])
	}) {
		b.accept(np, nh, ne)
		return
	}
	ls := make(sources.Labels, len(refs)/2)
	for i := range ls {
		ls[i] = sources.Label{Name: syms[refs[2*i]], Value: syms[refs[2*i+1]]}
	}
	ls, ok := finishLabels(ls)
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
		if st := startTimestamp(s.ProtoReflect().GetUnknown(), v2SampleStartTimestamp); st != 0 {
			created = st
		}
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: s.Timestamp, CreatedMs: created, Value: s.Value})
	}
	b.written.samples += np
	for _, h := range ts.Histograms {
		created := ts.CreatedTimestamp
		if st := startTimestamp(h.ProtoReflect().GetUnknown(), v2HistogramStartTimestamp); st != 0 {
			created = st
		}
		b.addHistogram(ls, typ, created, h)
	}
	b.written.exemplars += ne
}

// startTimestamp finds a varint field among unknown fields (already
// validated by the decoder), or returns 0.
func startTimestamp(raw protoreflect.RawFields, num protowire.Number) int64 {
	var st int64
	f := fields{b: raw}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		if fl.num == num && fl.typ == protowire.VarintType {
			st = int64(fl.v)
		}
	}
	return st
}

// unsafeBytes views a string as bytes for comparison only.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
