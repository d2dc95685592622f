package remotewrite

import (
	"fmt"
	"math"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// The 1.0 decoder as it was before its fast paths (v1.go): the reference
// the decoder is checked against (v1diff_test.go).

type v1SeriesRef struct {
	names, values [][]byte
	samples       []v1Sample
	hists         []*writev2.Histogram
	exemplars     int
}

func (r *Receiver) decodeV1Ref(buf []byte, b *batch) error {
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
	var s v1SeriesRef
	i := 0
	f = fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		if fl.num != v1RequestTimeseries {
			continue
		}
		if err := s.parseRef(fl.b); err != nil {
			return fmt.Errorf("timeseries[%d]: %w", i, err)
		}
		r.addV1Ref(&s, b)
		i++
	}
	return nil
}

func (s *v1SeriesRef) parseRef(buf []byte) error {
	s.names, s.values, s.samples, s.hists, s.exemplars = s.names[:0], s.values[:0], s.samples[:0], nil, 0
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		switch fl.num {
		case v1SeriesLabels:
			if err := fl.want(protowire.BytesType, "labels"); err != nil {
				return err
			}
			name, value, err := parseLabelRef(fl.b)
			if err != nil {
				return fmt.Errorf("labels[%d]: %w", len(s.names), err)
			}
			s.names, s.values = append(s.names, name), append(s.values, value)
		case v1SeriesSamples:
			if err := fl.want(protowire.BytesType, "samples"); err != nil {
				return err
			}
			sm, err := parseSampleRef(fl.b)
			if err != nil {
				return fmt.Errorf("samples[%d]: %w", len(s.samples), err)
			}
			s.samples = append(s.samples, sm)
		case v1SeriesExemplars:
			if err := fl.want(protowire.BytesType, "exemplars"); err != nil {
				return err
			}
			if err := checkExemplarRef(fl.b); err != nil {
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

func parseSampleRef(buf []byte) (v1Sample, error) {
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

// addV1 adds one decoded series to the batch, or counts why not.
func (r *Receiver) addV1Ref(s *v1SeriesRef, b *batch) {
	np, nh := len(s.samples), len(s.hists)
	if reason := r.labelLimitRef(len(s.names),
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
	labels := func() sources.Labels {
		ls := make(sources.Labels, len(s.names))
		for i := range s.names {
			ls[i] = sources.Label{Name: string(s.names[i]), Value: string(s.values[i])}
		}
		return ls
	}
	if len(name) == 0 {
		ms := int64(0)
		if np > 0 {
			ms = s.samples[0].t
		} else if nh > 0 {
			ms = s.hists[0].Timestamp
		}
		b.refuse(sources.DropNoName, np+nh, labels, ms)
		return
	}
	if reason := labelRefusalRef(len(s.names), func(i int) ([]byte, []byte) { return s.names[i], s.values[i] }); reason != "" {
		ms := int64(0)
		if np > 0 {
			ms = s.samples[0].t
		} else if nh > 0 {
			ms = s.hists[0].Timestamp
		}
		b.refuse(reason, np+nh, labels, ms)
		return
	}
	hists := s.hists[:0:0]
	for _, h := range s.hists {
		if reason := checkHistogramRef(h); reason != "" {
			b.refuse(reason, 1, labels, h.Timestamp)
			nh--
			continue
		}
		hists = append(hists, h)
	}
	if !b.wantedBytes(name) || !throughDoorRef(b.doorsOf(string(name)), len(s.names),
		func(i int) ([]byte, []byte) { return s.names[i], s.values[i] }) {
		b.accept(np, nh, s.exemplars)
		return
	}
	ls := make(sources.Labels, len(s.names))
	for i := range s.names {
		ls[i] = sources.Label{Name: string(s.names[i]), Value: string(s.values[i])}
	}
	ls, ok := finishLabelsRef(ls)
	if !ok {
		b.drop(DropInvalidLabel, np+nh)
		return
	}
	typ := b.typeOf(ls.Get(model.MetricNameLabel))
	for _, sm := range s.samples {
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: sm.t, Value: sm.v})
	}
	b.written.samples += np
	for _, h := range hists {
		b.addHistogram(ls, typ, 0, h)
	}
	b.written.exemplars += s.exemplars
}

func parseLabelRef(buf []byte) (name, value []byte, err error) {
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

// checkExemplarRef validates an exemplar's structure; rollguard has no use for
// its content.
func checkExemplarRef(buf []byte) error {
	f := fields{b: buf}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		var err error
		switch fl.num {
		case v1ExemplarLabels:
			if err = fl.want(protowire.BytesType, "labels"); err == nil {
				_, _, err = parseLabelRef(fl.b)
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
