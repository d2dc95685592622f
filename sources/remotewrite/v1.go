package remotewrite

import (
	"fmt"
	"math"
	"unicode/utf8"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// Remote write 1.0 reads the prometheus.WriteRequest wire format directly
// (the field numbers of Prometheus' prompb/remote.proto and types.proto)
// rather than through prompb's gogo types: a series of no interest passes
// without a string or struct allocated for it, and the tests, which build
// their requests with prompb, check this decoder against Prometheus' own
// encoder. The 1.0 Histogram message is the same as 2.0's, so the exp
// module's generated 2.0 type decodes it.
const (
	v1RequestTimeseries = 1
	v1RequestMetadata   = 3

	v1SeriesLabels     = 1
	v1SeriesSamples    = 2
	v1SeriesExemplars  = 3
	v1SeriesHistograms = 4

	v1LabelName  = 1
	v1LabelValue = 2

	v1SampleValue     = 1
	v1SampleTimestamp = 2

	v1ExemplarLabels    = 1
	v1ExemplarValue     = 2
	v1ExemplarTimestamp = 3

	v1MetadataType   = 1
	v1MetadataFamily = 2
)

// field is one decoded protobuf field: v holds a varint or fixed value, b a
// length-delimited one (a view into the request).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// fields iterates over the fields of one message.
type fields struct {
	b   []byte
	err error
}

func (f *fields) next() (field, bool) {
	if f.err != nil || len(f.b) == 0 {
		return field{}, false
	}
	num, typ, n := protowire.ConsumeTag(f.b)
	if n < 0 {
		f.err = protowire.ParseError(n)
		return field{}, false
	}
	f.b = f.b[n:]
	fl := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		fl.v, n = protowire.ConsumeVarint(f.b)
	case protowire.Fixed64Type:
		fl.v, n = protowire.ConsumeFixed64(f.b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(f.b)
		fl.v = uint64(v)
	case protowire.BytesType:
		fl.b, n = protowire.ConsumeBytes(f.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, f.b)
	}
	if n < 0 {
		f.err = protowire.ParseError(n)
		return field{}, false
	}
	f.b = f.b[n:]
	return fl, true
}

// want checks the wire type of a known field.
func (fl field) want(typ protowire.Type, name string) error {
	if fl.typ != typ {
		return fmt.Errorf("%s (field %d) has wire type %d, want %d", name, fl.num, fl.typ, typ)
	}
	return nil
}

type v1Sample struct {
	t int64
	v float64
}

// v1Series is one TimeSeries, its labels still views into the request. It
// is reused from series to series.
type v1Series struct {
	names, values [][]byte
	samples       []v1Sample
	hists         []*writev2.Histogram
	exemplars     int
}

func (r *Receiver) decodeV1(buf []byte, b *batch) error {
	// Metadata first, so that it types the series of its request wherever it is.
	var nSeries, nMeta int
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1RequestTimeseries:
			if err := fl.want(protowire.BytesType, "timeseries"); err != nil {
				return err
			}
			nSeries++
		case v1RequestMetadata:
			if err := fl.want(protowire.BytesType, "metadata"); err != nil {
				return err
			}
			if err := b.metadataV1(fl.b); err != nil {
				return fmt.Errorf("metadata[%d]: %w", nMeta, err)
			}
			nMeta++
		}
	}
	if f.err != nil {
		return fmt.Errorf("write request: %w", f.err)
	}
	if nSeries == 0 {
		return nil
	}
	var s v1Series
	i := 0
	f = fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		if fl.num != v1RequestTimeseries {
			continue
		}
		if err := s.parse(fl.b); err != nil {
			return fmt.Errorf("timeseries[%d]: %w", i, err)
		}
		r.addV1(&s, b)
		i++
	}
	return nil
}

func (b *batch) metadataV1(buf []byte) error {
	var (
		typ    int32
		family []byte
	)
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1MetadataType:
			if err := fl.want(protowire.VarintType, "type"); err != nil {
				return err
			}
			typ = int32(fl.v)
		case v1MetadataFamily:
			if err := fl.want(protowire.BytesType, "metric_family_name"); err != nil {
				return err
			}
			family = fl.b
		}
	}
	if f.err != nil {
		return f.err
	}
	t := metricType(typ)
	if len(family) == 0 || t == model.MetricTypeUnknown || !utf8.Valid(family) {
		return nil // nothing to learn from it
	}
	if b.families == nil {
		b.families = map[string]familyType{}
	}
	b.families[string(family)] = t
	return nil
}

func (s *v1Series) parse(buf []byte) error {
	s.names, s.values, s.samples, s.hists, s.exemplars = s.names[:0], s.values[:0], s.samples[:0], nil, 0
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1SeriesLabels:
			if err := fl.want(protowire.BytesType, "labels"); err != nil {
				return err
			}
			name, value, err := parseLabel(fl.b)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(s.names), err)
			}
			s.names, s.values = append(s.names, name), append(s.values, value)
		case v1SeriesSamples:
			if err := fl.want(protowire.BytesType, "samples"); err != nil {
				return err
			}
			sm, err := parseSample(fl.b)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(s.samples), err)
			}
			s.samples = append(s.samples, sm)
		case v1SeriesExemplars:
			if err := fl.want(protowire.BytesType, "exemplars"); err != nil {
				return err
			}
			if err := checkExemplar(fl.b); err != nil {
				return fmt.Errorf("exemplars[%d]: %w", s.exemplars, err)
			}
			s.exemplars++
		case v1SeriesHistograms:
			if err := fl.want(protowire.BytesType, "histograms"); err != nil {
				return err
			}
			h := &writev2.Histogram{}
			if err := h.UnmarshalVT(fl.b); err != nil {
				return fmt.Errorf("histograms[%d]: %w", len(s.hists), err)
			}
			s.hists = append(s.hists, h)
		}
	}
	return f.err
}

func parseLabel(buf []byte) (name, value []byte, err error) {
	// The common layout first: name then value, each shorter than 128
	// bytes (a one-byte length), and nothing else.
	if len(buf) >= 4 && buf[0] == 0x0a && buf[1] < 0x80 {
		n := 2 + int(buf[1])
		if len(buf) >= n+2 && buf[n] == 0x12 && buf[n+1] < 0x80 && len(buf) == n+2+int(buf[n+1]) {
			return buf[2:n], buf[n+2:], nil
		}
	}
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1LabelName:
			if err := fl.want(protowire.BytesType, "name"); err != nil {
				return nil, nil, err
			}
			name = fl.b
		case v1LabelValue:
			if err := fl.want(protowire.BytesType, "value"); err != nil {
				return nil, nil, err
			}
			value = fl.b
		}
	}
	return name, value, f.err
}

func parseSample(buf []byte) (v1Sample, error) {
	var s v1Sample
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1SampleValue:
			if err := fl.want(protowire.Fixed64Type, "value"); err != nil {
				return s, err
			}
			s.v = math.Float64frombits(fl.v)
		case v1SampleTimestamp:
			if err := fl.want(protowire.VarintType, "timestamp"); err != nil {
				return s, err
			}
			s.t = int64(fl.v)
		}
	}
	return s, f.err
}

// checkExemplar validates an exemplar's structure; rollguard has no use for
// its content.
func checkExemplar(buf []byte) error {
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		var err error
		switch fl.num {
		case v1ExemplarLabels:
			if err = fl.want(protowire.BytesType, "labels"); err == nil {
				_, _, err = parseLabel(fl.b)
			}
		case v1ExemplarValue:
			err = fl.want(protowire.Fixed64Type, "value")
		case v1ExemplarTimestamp:
			err = fl.want(protowire.VarintType, "timestamp")
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

// addV1 adds one decoded series to the batch, or counts why not.
func (r *Receiver) addV1(s *v1Series, b *batch) {
	np, nh := len(s.samples), len(s.hists)
	if reason := r.labelLimit(len(s.names),
		func(i int) int { return len(s.names[i]) },
		func(i int) int { return len(s.values[i]) }); reason != "" {
		b.drop(reason, np+nh)
		return
	}
	var name []byte
	for i, n := range s.names {
		if string(n) == model.MetricNameLabel {
			name = s.values[i] // the last one wins, as in Labels.Sort
		}
	}
	if len(name) == 0 {
		b.drop(sources.DropNoName, np+nh)
		return
	}
	if !b.wantedBytes(name) || !throughDoor(b.doorsOf(string(name)), len(s.names),
		func(i int) ([]byte, []byte) { return s.names[i], s.values[i] }) {
		b.accept(np, nh, s.exemplars)
		return
	}
	ls := make(sources.Labels, len(s.names))
	for i := range s.names {
		ls[i] = sources.Label{Name: string(s.names[i]), Value: string(s.values[i])}
	}
	ls, ok := finishLabels(ls)
	if !ok {
		b.drop(DropInvalidLabel, np+nh)
		return
	}
	typ := b.typeOf(ls.Get(model.MetricNameLabel))
	for _, sm := range s.samples {
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: sm.t, Value: sm.v})
	}
	b.written.samples += np
	for _, h := range s.hists {
		b.addHistogram(ls, typ, 0, h)
	}
	b.written.exemplars += s.exemplars
}

// addHistogram adds one native histogram sample, or counts why not.
func (b *batch) addHistogram(ls sources.Labels, typ model.MetricType, createdMs int64, h *writev2.Histogram) {
	if isStale(h.Sum) {
		// The series ended: accepted, and nothing to count.
		b.written.histograms++
		return
	}
	ph, reason := nativeHistogram(h, typ == model.MetricTypeGaugeHistogram, &b.buckets)
	if reason != "" {
		b.drop(reason, 1)
		return
	}
	b.hists = append(b.hists, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: h.Timestamp, CreatedMs: createdMs, Histogram: ph})
	b.written.histograms++
}
