package remotewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
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

// v1Series is one TimeSeries: buf is its message, and labels are where its
// label names and values are in it. It is reused from series to series, and
// series holds where the request's series are between the two passes.
// Offsets rather than views: they hold no pointers, so storing them costs
// the garbage collector nothing.
type v1Series struct {
	buf       []byte
	labels    []v1Label
	samples   []v1Sample
	hists     []*writev2.Histogram
	histSpans []span // where the hists are in buf
	exemplars int
	series    []span
	dups      []span // label names, for duplicateName
}

type v1Label struct{ name, value span }

func (s *v1Series) name(i int) []byte  { return s.buf[s.labels[i].name.start:s.labels[i].name.end] }
func (s *v1Series) value(i int) []byte { return s.buf[s.labels[i].value.start:s.labels[i].value.end] }

// The one-byte tags of the common layout, read without the generic path.
const (
	tagV1Timeseries = v1RequestTimeseries<<3 | 2
	tagV1Labels     = v1SeriesLabels<<3 | 2
	tagV1Samples    = v1SeriesSamples<<3 | 2
	tagV1Value      = v1SampleValue<<3 | 1
	tagV1Timestamp  = v1SampleTimestamp<<3 | 0
)

// shortBytes reads a length-delimited field of a one-byte tag at the start
// of b whose length has one or two bytes, and is there: the value and what
// follows. ok is false for anything else, which the generic path reads
// (with the same result, or the error).
func shortBytes(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n, h := int(b[1]), 2
	if n >= 0x80 {
		if len(b) < 3 || b[2] >= 0x80 {
			return nil, nil, false
		}
		n, h = n&0x7f|int(b[2])<<7, 3
	}
	if n > len(b)-h {
		return nil, nil, false
	}
	return b[h : h+n], b[h+n:], true
}

func (r *Receiver) decodeV1(buf []byte, b *batch) error {
	// Metadata first, so that it types the series of its request wherever it is.
	s := &b.v1
	series := s.series[:0]
	nMeta := 0
	f := fields{b: buf}
	for len(f.b) > 0 {
		if f.b[0] == tagV1Timeseries {
			if v, rest, ok := shortBytes(f.b); ok {
				end := len(buf) - len(rest)
				series, f.b = append(series, span{end - len(v), end}), rest
				continue
			}
		}
		fl, ok := f.next()
		if !ok {
			break
		}
		switch fl.num {
		case v1RequestTimeseries:
			if err := fl.want(protowire.BytesType, "timeseries"); err != nil {
				return err
			}
			end := len(buf) - len(f.b)
			series = append(series, span{end - len(fl.b), end})
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
	s.series = series
	if f.err != nil {
		return fmt.Errorf("write request: %w", f.err)
	}
	for i, sp := range series {
		if err := s.parse(buf[sp.start:sp.end]); err != nil {
			return fmt.Errorf("timeseries[%d]: %w", i, err)
		}
		if err := b.countPoints(len(s.samples) + len(s.hists)); err != nil {
			return err
		}
		r.addV1(s, b)
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

// release drops the request body, and what a large request would leave pinned.
func (s *v1Series) release() {
	s.buf, s.hists = nil, nil
	s.labels, s.samples, s.series = shrink(s.labels), shrink(s.samples), shrink(s.series)
	s.histSpans, s.dups = shrink(s.histSpans), shrink(s.dups)
}

func (s *v1Series) parse(buf []byte) error {
	s.buf, s.labels, s.samples, s.exemplars = buf, s.labels[:0], s.samples[:0], 0
	s.histSpans = s.histSpans[:0]
	if s.hists != nil {
		s.hists = nil
	}
	f := fields{b: buf}
	for len(f.b) > 0 {
		// The common layout first.
		switch f.b[0] {
		case tagV1Labels:
			if v, rest, ok := shortBytes(f.b); ok {
				l, err := parseLabelAt(v, len(buf)-len(rest)-len(v))
				if err != nil {
					return fmt.Errorf("labels[%d]: %w", len(s.labels), err)
				}
				s.labels, f.b = append(s.labels, l), rest
				continue
			}
		case tagV1Samples:
			if v, rest, ok := shortBytes(f.b); ok {
				sm, err := parseSample(v)
				if err != nil {
					return fmt.Errorf("samples[%d]: %w", len(s.samples), err)
				}
				s.samples, f.b = append(s.samples, sm), rest
				continue
			}
		}
		fl, ok := f.next()
		if !ok {
			break
		}
		switch fl.num {
		case v1SeriesLabels:
			if err := fl.want(protowire.BytesType, "labels"); err != nil {
				return err
			}
			l, err := parseLabelAt(fl.b, len(buf)-len(f.b)-len(fl.b))
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(s.labels), err)
			}
			s.labels = append(s.labels, l)
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
			end := len(buf) - len(f.b)
			s.histSpans = append(s.histSpans, span{end - len(fl.b), end})
		}
	}
	return f.err
}

// parseLabelAt parses a Label message that is at offset base of its
// series: the label is where its name and value are in the series.
func parseLabelAt(buf []byte, base int) (l v1Label, err error) {
	// The common layout first: name then value, each shorter than 128
	// bytes (a one-byte length), and nothing else.
	if len(buf) >= 4 && buf[0] == 0x0a && buf[1] < 0x80 {
		n := 2 + int(buf[1])
		if len(buf) >= n+2 && buf[n] == 0x12 && buf[n+1] < 0x80 && len(buf) == n+2+int(buf[n+1]) {
			return v1Label{span{base + 2, base + n}, span{base + n + 2, base + len(buf)}}, nil
		}
	}
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		end := base + len(buf) - len(f.b)
		switch fl.num {
		case v1LabelName:
			if err := fl.want(protowire.BytesType, "name"); err != nil {
				return v1Label{}, err
			}
			l.name = span{end - len(fl.b), end}
		case v1LabelValue:
			if err := fl.want(protowire.BytesType, "value"); err != nil {
				return v1Label{}, err
			}
			l.value = span{end - len(fl.b), end}
		}
	}
	return l, f.err
}

func parseSample(buf []byte) (v1Sample, error) {
	// The common layout first: the value, then the timestamp, and nothing else.
	if len(buf) >= 11 && buf[0] == tagV1Value && buf[9] == tagV1Timestamp {
		if t, n := protowire.ConsumeVarint(buf[10:]); n == len(buf)-10 {
			return v1Sample{t: int64(t), v: math.Float64frombits(binary.LittleEndian.Uint64(buf[1:9]))}, nil
		}
	}
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
				_, err = parseLabelAt(fl.b, 0)
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
	name, reason, refusal := r.labelLimitV1(s)
	if reason != "" {
		b.drop(reason, np+nh)
		return
	}
	if len(name) == 0 {
		b.refuse(sources.DropNoName, np+nh, s.viewLabels, s.firstTimestamp())
		return
	}
	if refusal != "" {
		b.refuse(refusal, np+nh, s.viewLabels, s.firstTimestamp())
		return
	}
	// What the specification refuses is checked before the door, so that a
	// series answers the same whether a guard reads it or not.
	for i, sp := range s.histSpans {
		if reason, ms := checkHistogram(s.buf[sp.start:sp.end]); reason != "" {
			b.refuse(reason, 1, s.viewLabels, ms)
			s.hists[i] = nil
			nh--
		}
	}
	if want, doors := b.decisionOf(name); !want || !s.throughDoor(doors) {
		b.accept(np, nh, s.exemplars)
		return
	}
	ls := normaliseLabels(s.copyLabels(b))
	typ := b.typeOf(ls.Get(model.MetricNameLabel))
	for _, sm := range s.samples {
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: sm.t, Value: sm.v})
	}
	b.written.samples += np
	for _, h := range s.hists {
		if h != nil {
			b.addHistogram(ls, typ, 0, h)
		}
	}
	b.written.exemplars += s.exemplars
}

// viewLabels are the series' labels, for a message.
func (s *v1Series) viewLabels() sources.Labels {
	ls := make(sources.Labels, len(s.labels))
	for i := range s.labels {
		ls[i] = sources.Label{Name: string(s.name(i)), Value: string(s.value(i))}
	}
	return ls
}

// firstTimestamp is the timestamp of the series' first point, to name it.
func (s *v1Series) firstTimestamp() int64 {
	switch {
	case len(s.samples) > 0:
		return s.samples[0].t
	case len(s.hists) > 0:
		return s.hists[0].Timestamp
	}
	return 0
}

// labelLimitV1 returns the drop reason of a series whose labels break a
// limit, or "", and its metric name (the value of its last __name__
// label); refusal is why the specification refuses its labels
// (sources.DropInvalidLabel, sources.DropDuplicateLabel), or "".
func (r *Receiver) labelLimitV1(s *v1Series) (name []byte, reason, refusal string) {
	if len(s.labels) > r.cfg.MaxLabelsPerSeries {
		return nil, DropLabelCount, ""
	}
	maxName, maxValue := r.cfg.MaxLabelNameBytes, r.cfg.MaxLabelValueBytes
	buf := s.buf
	var names, twice uint64 // the filter of the names (see nameBit), and its bits set twice
	empty := false
	for _, l := range s.labels {
		n := l.name.end - l.name.start
		if n > maxName {
			return nil, DropLabelName, ""
		}
		if l.value.end-l.value.start > maxValue {
			return nil, DropLabelValue, ""
		}
		if n == 0 {
			empty = true
			continue
		}
		bit := uint64(1) << nameBit(n, buf[l.name.start], buf[l.name.end-1])
		twice |= names & bit
		names |= bit
		if string(buf[l.name.start:l.name.end]) == model.MetricNameLabel {
			name = buf[l.value.start:l.value.end] // the last one wins, as in Labels.Sort
		}
	}
	switch {
	case empty || !s.utf8Labels():
		refusal = sources.DropInvalidLabel
	case twice != 0 && s.duplicateName():
		refusal = sources.DropDuplicateLabel
	}
	return name, "", refusal
}

// utf8Labels says whether the series' label names and values are UTF-8
// (its names not empty). In the common layout every byte from the first
// label to the last, tags and lengths included, is ASCII: one look at them
// all says so.
func (s *v1Series) utf8Labels() bool {
	if len(s.labels) == 0 {
		return true
	}
	first, last := s.labels[0], s.labels[len(s.labels)-1]
	// An absent name or value is at 0: the span is then wider than needed.
	if ascii(s.buf[min(first.name.start, first.value.start):max(last.name.end, last.value.end)]) {
		return true
	}
	for i := range s.labels {
		if !utf8.Valid(s.name(i)) || !utf8.Valid(s.value(i)) {
			return false
		}
	}
	return true
}

// duplicateName says whether two of the series' labels have the same name:
// sorted where they are in the request (dups is kept for the next series).
func (s *v1Series) duplicateName() bool {
	dups := s.dups[:0]
	for _, l := range s.labels {
		dups = append(dups, l.name)
	}
	s.dups = dups
	buf := s.buf
	slices.SortFunc(dups, func(a, b span) int { return bytes.Compare(buf[a.start:a.end], buf[b.start:b.end]) })
	for i := 1; i < len(dups); i++ {
		if bytes.Equal(buf[dups[i].start:dups[i].end], buf[dups[i-1].start:dups[i-1].end]) {
			return true
		}
	}
	return false
}

// throughDoor reports whether the series carries one of the door labels,
// or there are none (see sources.DoorFilter).
func (s *v1Series) throughDoor(doors []sources.Label) bool {
	if doors == nil {
		return true
	}
	for _, l := range s.labels {
		n := s.buf[l.name.start:l.name.end]
		for _, d := range doors {
			if string(n) == d.Name && string(s.buf[l.value.start:l.value.end]) == d.Value {
				return true
			}
		}
	}
	return false
}

// copyLabels copies the series' labels out of the request, into one
// string (one allocation), in the batch's label space.
func (s *v1Series) copyLabels(b *batch) sources.Labels {
	n := 0
	for _, l := range s.labels {
		n += l.name.end - l.name.start + l.value.end - l.value.start
	}
	var sb strings.Builder
	sb.Grow(n)
	for i := range s.labels {
		sb.Write(s.name(i))
		sb.Write(s.value(i))
	}
	all := sb.String()
	ls := b.newLabels(len(s.labels))
	for i, l := range s.labels {
		n, v := l.name.end-l.name.start, l.value.end-l.value.start
		ls[i] = sources.Label{Name: all[:n], Value: all[n : n+v]}
		all = all[n+v:]
	}
	return ls
}

// addHistogram adds one native histogram sample, or counts why not.
func (b *batch) addHistogram(ls sources.Labels, typ model.MetricType, createdMs int64, h *writev2.Histogram) {
	if sources.IsStaleNaN(h.Sum) {
		// The series ended: accepted, and nothing to count.
		b.written.histograms++
		return
	}
	if h.Schema == schemaCustomBuckets {
		b.addCustomBuckets(ls, typ, createdMs, h)
		return
	}
	ph, reason := nativeHistogram(h, typ == model.MetricTypeGaugeHistogram, &b.buckets, b.r.cfg.MaxBucketsPerHistogram)
	if reason != "" {
		b.drop(reason, 1)
		if b.refused == nil && sources.Rejected(reason) {
			b.refused = sources.NewRefusal(ls, h.Timestamp, reason)
		}
		return
	}
	b.hists = append(b.hists, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: h.Timestamp, CreatedMs: createdMs, Histogram: ph})
	b.written.histograms++
}
