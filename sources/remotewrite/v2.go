package remotewrite

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// Remote write 2.0 is decoded at the wire level, like 1.0: the symbols
// table becomes string views into the decoded body, the series are walked
// one by one, and a series' metric name and door labels are looked up by
// symbol reference before anything is allocated for it. Only the series
// handed on get their strings copied (once per symbol and request), and
// their histograms decoded with the exp module's generated type.
//
// The decoder accepts and refuses exactly what that generated code
// (writev2.Request.UnmarshalVT) does, with the same messages, and in the
// same order: a malformed field anywhere wins over a bad reference, which
// is reported for the first series that has one. See vtwire.go.
const (
	v2RequestSymbols    = 4
	v2RequestTimeseries = 5

	v2SeriesLabelsRefs = 1
	v2SeriesSamples    = 2
	v2SeriesHistograms = 3
	v2SeriesExemplars  = 4
	v2SeriesMetadata   = 5
	v2SeriesCreated    = 6

	v2SampleValue     = 1
	v2SampleTimestamp = 2

	v2ExemplarLabelsRefs = 1
	v2ExemplarValue      = 2
	v2ExemplarTimestamp  = 3

	v2MetadataType    = 1
	v2MetadataHelpRef = 3
	v2MetadataUnitRef = 4
)

// The start (created) timestamp moved in the 2.0 specification from the
// series (TimeSeries field 6, which the exp package's types still have) to
// every sample and histogram sample. The exp types keep the newer fields as
// unknown fields; both are read.
const (
	v2SampleStartTimestamp    = 3
	v2HistogramStartTimestamp = 17
)

type v2Sample struct {
	t     int64
	v     float64
	start int64 // the sample's start timestamp, or 0
}

// span is where a field's value is in the request body (or in a series).
// The decoder keeps offsets rather than views: they hold no pointers, so
// storing them costs the garbage collector nothing.
type span struct{ start, end int }

// v2Series is one TimeSeries, parsed and validated; hists are where its
// Histogram messages are in the series. It is reused from series to series.
type v2Series struct {
	refs      []uint32
	maxRef    uint32
	samples   []v2Sample
	hists     []span
	exemplars int
	// exErr is the reference error of exemplar exErrAt, the first with one.
	exErr   error
	exErrAt int
	hasMeta bool
	// The metadata fields, merged over repeated metadata messages.
	metaType         int32
	helpRef, unitRef uint32
	created          int64
}

func (s *v2Series) reset() {
	s.refs, s.samples, s.hists = s.refs[:0], s.samples[:0], s.hists[:0]
	s.maxRef, s.exemplars, s.exErrAt, s.hasMeta = 0, 0, 0, false
	s.metaType, s.helpRef, s.unitRef, s.created = 0, 0, 0, 0
	if s.exErr != nil {
		s.exErr = nil
	}
}

// v2State is the 2.0 decoder's state for one request, kept (with its
// buffers) in the pooled batch.
type v2State struct {
	// body is the request; syms and series are where its symbols and
	// series are in it. Symbols are read as string views into the body,
	// which must not outlive it.
	body   []byte
	syms   []span
	series []span
	// nameSym is the index of the symbol "__name__" when the table has it
	// once, nameNone when not at all, nameMany when more than once.
	nameSym int
	// maxSymLen is the length of the longest symbol.
	maxSymLen int
	// names holds, per symbol, what the label checks need of it as a
	// label name or value (symEmpty, symNotUTF8, its nameBit);
	// notUTF8 says whether any symbol is not UTF-8.
	names     []uint8
	notUTF8   bool
	dups      []uint32 // label names, for duplicateName
	doorNames []doorName
	s         v2Series
	unknown   []byte   // a sample's unknown fields
	exRefs    []uint32 // an exemplar's references
	// memo holds, per symbol, where in facts is what was worked out about
	// it in this request (entries of another generation are stale);
	// decisions are what the Filter said of the metric names.
	gen       uint32
	memo      []symMemo
	facts     []symFact
	decisions []nameDecision
}

const (
	nameNone = -1
	nameMany = -2
)

// What v2State.names says of a symbol: the low six bits are the number of
// its bit in a filter of label names (see nameBit).
const (
	symEmpty   = 1 << 6
	symNotUTF8 = 1 << 7
	symBit     = 1<<6 - 1
)

// symbolInfo is what v2State.names holds of a symbol.
func symbolInfo(sym []byte) uint8 {
	n := len(sym)
	if n == 0 {
		return symEmpty
	}
	info := nameBit(n, sym[0], sym[n-1])
	if !ascii(sym) && !utf8.Valid(sym) {
		info |= symNotUTF8
	}
	return info
}

// symMemo is small: there is one for every symbol of a request.
type symMemo struct {
	gen  uint32
	fact int32 // 1 + the index in facts, or 0
}

// symFact is what was worked out about a symbol that is a metric name or
// a label of a series handed on.
type symFact struct {
	// decision is 1 + the index in decisions of this symbol as a metric name, or 0.
	decision int32
	copied   bool
	copy     string // the symbol, copied out of the request
}

type nameDecision struct {
	want  bool
	doors []sources.Label
	// doorRefs are, for each door, the symbol of its label name (see doorNameRef).
	doorRefs []int
}

// doorName is a door's label name and its symbol: nameNone if the request
// does not have it, nameMany if it has it more than once.
type doorName struct {
	name string
	ref  int
}

// begin readies the per-symbol memo for a request of n symbols.
func (st *v2State) begin(n int) {
	st.gen++
	if st.gen == 0 {
		clear(st.memo)
		st.gen = 1
	}
	if cap(st.memo) < n {
		st.memo = make([]symMemo, n, n+n/4)
	}
	st.memo = st.memo[:n]
	clear(st.facts)
	clear(st.decisions)
	clear(st.doorNames)
	st.facts, st.decisions, st.doorNames = st.facts[:0], st.decisions[:0], st.doorNames[:0]
}

// release drops the request body, and what a large request would leave pinned.
func (st *v2State) release() {
	st.body = nil
	clear(st.facts)
	st.s.reset()
	s := &st.s
	st.syms, st.series, st.facts = shrink(st.syms), shrink(st.series), shrink(st.facts)
	st.names, st.dups = shrink(st.names), shrink(st.dups)
	st.memo, st.unknown, st.exRefs = shrink(st.memo), shrink(st.unknown), shrink(st.exRefs)
	s.refs, s.samples, s.hists = shrink(s.refs), shrink(s.samples), shrink(s.hists)
}

// shrink empties a buffer kept for the next request, or drops it if it
// grew large.
func shrink[T any](s []T) []T {
	if cap(s) > 1<<16 {
		return nil
	}
	return s[:0]
}

// decodeV2 decodes an io.prometheus.write.v2.Request into the batch. Any
// malformed field or reference fails the whole request.
func (r *Receiver) decodeV2(buf []byte, b *batch) error {
	st := &b.v2
	topErr := st.scan(buf)
	nsyms := len(st.syms)
	st.begin(nsyms)
	var refErr error
	for i, sp := range st.series {
		raw := buf[sp.start:sp.end]
		if err := st.parseSeries(raw, nsyms); err != nil {
			return err
		}
		if err := b.countPoints(len(st.s.samples) + len(st.s.hists)); err != nil {
			return err
		}
		if topErr != nil || refErr != nil {
			continue // only looking for a malformed series, which would win
		}
		if err := st.s.checkRefs(i, nsyms); err != nil {
			refErr = err
			continue
		}
		r.addV2(st, b, raw)
	}
	if topErr != nil {
		return topErr
	}
	return refErr
}

// scan reads the request's top level: the symbols and the series, not yet
// parsed. err is the first malformed field of the top level, which comes
// after every series collected.
func (st *v2State) scan(d []byte) error {
	st.body = d
	st.nameSym, st.maxSymLen = nameNone, 0
	st.names, st.notUTF8 = st.names[:0], false
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if typ == 4 || num <= 0 {
			return vtCheckTag("Request", num, typ, wire)
		}
		i = next
		switch num {
		case v2RequestSymbols:
			if typ != 2 {
				return vtWrongType(typ, "Symbols")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			st.maxSymLen = max(st.maxSymLen, end-start)
			if string(d[start:end]) == model.MetricNameLabel {
				if st.nameSym == nameNone {
					st.nameSym = len(st.syms)
				} else {
					st.nameSym = nameMany
				}
			}
			info := symbolInfo(d[start:end])
			st.notUTF8 = st.notUTF8 || info&symNotUTF8 != 0
			st.syms, st.names = append(st.syms, span{start, end}), append(st.names, info)
			i = end
		case v2RequestTimeseries:
			if typ != 2 {
				return vtWrongType(typ, "Timeseries")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			st.series = append(st.series, span{start, end})
			i = end
		default:
			if i, err = vtSkipField(d, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseSeries parses and validates one TimeSeries into st.s.
func (st *v2State) parseSeries(d []byte, nsyms int) error {
	s := &st.s
	s.reset()
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if typ == 4 || num <= 0 {
			return vtCheckTag("TimeSeries", num, typ, wire)
		}
		i = next
		switch num {
		case v2SeriesLabelsRefs:
			var v uint64
			switch typ {
			case 0:
				if v, i, err = vtVarint(d, i); err != nil {
					return err
				}
				s.addRef(uint32(v))
			case 2:
				start, end, err := vtBytes(d, i)
				if err != nil {
					return err
				}
				i = start
				refs, maxRef := s.refs, s.maxRef
				for i < end {
					// Bounded by the series, not the packed field, as in the generated code.
					if b := d[i]; b < 0x80 {
						v, i = uint64(b), i+1
					} else if v, i, err = vtVarintSlow(d, i); err != nil {
						return err
					}
					refs = append(refs, uint32(v))
					maxRef = max(maxRef, uint32(v))
				}
				s.refs, s.maxRef = refs, maxRef
			default:
				return vtWrongType(typ, "LabelsRefs")
			}
		case v2SeriesSamples:
			if typ != 2 {
				return vtWrongType(typ, "Samples")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			sm, err := st.parseSample(d[start:end])
			if err != nil {
				return err
			}
			s.samples = append(s.samples, sm)
			i = end
		case v2SeriesHistograms:
			if typ != 2 {
				return vtWrongType(typ, "Histograms")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			if err := validateHistogram(d[start:end]); err != nil {
				return err
			}
			s.hists = append(s.hists, span{start, end})
			i = end
		case v2SeriesExemplars:
			if typ != 2 {
				return vtWrongType(typ, "Exemplars")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			if err := st.parseExemplar(d[start:end], nsyms); err != nil {
				return err
			}
			s.exemplars++
			i = end
		case v2SeriesMetadata:
			if typ != 2 {
				return vtWrongType(typ, "Metadata")
			}
			start, end, err := vtBytes(d, i)
			if err != nil {
				return err
			}
			s.hasMeta = true
			if err := s.parseMetadata(d[start:end]); err != nil {
				return err
			}
			i = end
		case v2SeriesCreated:
			if typ != 0 {
				return vtWrongType(typ, "CreatedTimestamp")
			}
			var v uint64
			if v, i, err = vtVarint(d, i); err != nil {
				return err
			}
			s.created = int64(v)
		default:
			if i, err = vtSkipField(d, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *v2Series) addRef(ref uint32) {
	s.refs = append(s.refs, ref)
	s.maxRef = max(s.maxRef, ref)
}

func (st *v2State) parseSample(d []byte) (v2Sample, error) {
	var sm v2Sample
	// The common layout first: the value, then the timestamp, and nothing else.
	if len(d) >= 11 && d[0] == v2SampleValue<<3|1 && d[9] == v2SampleTimestamp<<3|0 {
		if t, end, err := vtVarint(d, 10); err == nil && end == len(d) {
			sm.v, sm.t = math.Float64frombits(binary.LittleEndian.Uint64(d[1:9])), int64(t)
			return sm, nil
		}
	}
	unknown := st.unknown[:0]
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return sm, err
		}
		if typ == 4 || num <= 0 {
			return sm, vtCheckTag("Sample", num, typ, wire)
		}
		i = next
		var v uint64
		switch num {
		case v2SampleValue:
			if typ != 1 {
				return sm, vtWrongType(typ, "Value")
			}
			if i+8 > len(d) {
				return sm, io.ErrUnexpectedEOF
			}
			sm.v = math.Float64frombits(binary.LittleEndian.Uint64(d[i:]))
			i += 8
		case v2SampleTimestamp:
			if typ != 0 {
				return sm, vtWrongType(typ, "Timestamp")
			}
			if v, i, err = vtVarint(d, i); err != nil {
				return sm, err
			}
			sm.t = int64(v)
		default:
			if i, err = vtSkipField(d, pre); err != nil {
				return sm, err
			}
			unknown = append(unknown, d[pre:i]...)
		}
	}
	if len(unknown) > 0 {
		sm.start = startTimestamp(unknown, v2SampleStartTimestamp)
		st.unknown = unknown
	}
	return sm, nil
}

// parseExemplar validates an exemplar and checks its references, keeping
// the first error for when the series' own references are found good.
func (st *v2State) parseExemplar(d []byte, nsyms int) error {
	refs := st.exRefs[:0]
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if typ == 4 || num <= 0 {
			return vtCheckTag("Exemplar", num, typ, wire)
		}
		i = next
		switch num {
		case v2ExemplarLabelsRefs:
			i, err = vtPackedVarints(d, i, typ, "LabelsRefs", func(v uint64) { refs = append(refs, uint32(v)) })
		case v2ExemplarValue:
			if typ != 1 {
				return vtWrongType(typ, "Value")
			}
			_, i, err = vtFixed64(d, i)
		case v2ExemplarTimestamp:
			if typ != 0 {
				return vtWrongType(typ, "Timestamp")
			}
			_, i, err = vtVarint(d, i)
		default:
			i, err = vtSkipField(d, pre)
		}
		if err != nil {
			return err
		}
	}
	st.exRefs = refs
	if s := &st.s; s.exErr == nil {
		if err := checkRefs(refs, nsyms); err != nil {
			s.exErr, s.exErrAt = err, s.exemplars
		}
	}
	return nil
}

// parseMetadata reads a Metadata message over what earlier ones of the
// series set, as the generated code merges them.
func (s *v2Series) parseMetadata(d []byte) error {
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if typ == 4 || num <= 0 {
			return vtCheckTag("Metadata", num, typ, wire)
		}
		i = next
		var v uint64
		switch num {
		case v2MetadataType, v2MetadataHelpRef, v2MetadataUnitRef:
			if typ != 0 {
				return vtWrongType(typ, [...]string{v2MetadataType: "Type", v2MetadataHelpRef: "HelpRef", v2MetadataUnitRef: "UnitRef"}[num])
			}
			if v, i, err = vtVarint(d, i); err != nil {
				return err
			}
			switch num {
			case v2MetadataType:
				s.metaType = int32(v)
			case v2MetadataHelpRef:
				s.helpRef = uint32(v)
			default:
				s.unitRef = uint32(v)
			}
		default:
			if i, err = vtSkipField(d, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRefs checks a parsed series' references: its labels, its metadata,
// then its exemplars.
func (s *v2Series) checkRefs(i, nsyms int) error {
	if len(s.refs)%2 != 0 || int64(s.maxRef) >= int64(nsyms) {
		if err := checkRefs(s.refs, nsyms); err != nil {
			return fmt.Errorf("timeseries[%d].labels_refs: %w", i, err)
		}
	}
	if s.hasMeta && (int64(s.helpRef) >= int64(nsyms) || int64(s.unitRef) >= int64(nsyms)) {
		return fmt.Errorf("timeseries[%d].metadata: help_ref %d or unit_ref %d out of range: the request has %d symbols",
			i, s.helpRef, s.unitRef, nsyms)
	}
	if s.exErr != nil {
		return fmt.Errorf("timeseries[%d].exemplars[%d].labels_refs: %w", i, s.exErrAt, s.exErr)
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

// sym is a symbol, as a view into the request body.
func (st *v2State) sym(ref uint32) string {
	sp := st.syms[ref]
	if sp.end == sp.start {
		return ""
	}
	return unsafe.String(&st.body[sp.start], sp.end-sp.start)
}

// symLen is the length of a symbol.
func (st *v2State) symLen(ref uint32) int {
	sp := st.syms[ref]
	return sp.end - sp.start
}

// isName says whether a symbol is "__name__".
func (st *v2State) isName(ref uint32) bool {
	switch st.nameSym {
	case nameNone:
		return false
	case nameMany:
		return st.sym(ref) == model.MetricNameLabel
	}
	return int(ref) == st.nameSym
}

// entry is what was worked out about a symbol in this request.
func (st *v2State) entry(ref uint32) *symFact {
	m := &st.memo[ref]
	if m.gen != st.gen || m.fact == 0 {
		st.facts = append(st.facts, symFact{})
		*m = symMemo{gen: st.gen, fact: int32(len(st.facts))}
	}
	return &st.facts[m.fact-1]
}

// decision is what the Filter says of the metric named by a symbol, asked
// once a request.
func (st *v2State) decision(ref uint32, b *batch) *nameDecision {
	m := st.entry(ref)
	if m.decision == 0 {
		name := strings.Clone(st.sym(ref)) // the Filter may keep it
		d := nameDecision{want: b.wanted(name)}
		if d.want {
			d.doors = b.doorsOf(name)
			if d.doors != nil {
				d.doorRefs = make([]int, len(d.doors))
				for i, door := range d.doors {
					d.doorRefs[i] = st.doorNameRef(door.Name)
				}
			}
		}
		st.decisions = append(st.decisions, d)
		m.decision = int32(len(st.decisions))
	}
	return &st.decisions[m.decision-1]
}

// doorNameRef finds the symbol of a door's label name, once a request:
// symbol tables are deduplicated, so a series has the door's label when it
// has that symbol as a label name.
func (st *v2State) doorNameRef(name string) int {
	for _, dn := range st.doorNames {
		if dn.name == name {
			return dn.ref
		}
	}
	ref := nameNone
	for k, sp := range st.syms {
		if sp.end-sp.start == len(name) && string(st.body[sp.start:sp.end]) == name {
			if ref != nameNone {
				ref = nameMany
				break
			}
			ref = k
		}
	}
	st.doorNames = append(st.doorNames, doorName{name, ref})
	return ref
}

// str is a symbol copied out of the request, once a request.
func (st *v2State) str(ref uint32) string {
	m := st.entry(ref)
	if !m.copied {
		m.copy, m.copied = strings.Clone(st.sym(ref)), true
	}
	return m.copy
}

// addV2 adds the parsed series (whose references are valid) to the batch,
// or counts why not.
func (r *Receiver) addV2(st *v2State, b *batch, raw []byte) {
	s := &st.s
	refs := s.refs
	np, nh, ne := len(s.samples), len(s.hists), s.exemplars
	if np > 0 && nh > 0 {
		// The specification forbids both in one series: which to believe?
		b.drop(DropMixedSeries, np+nh)
		return
	}
	if reason := r.labelLimitRefs(st, refs); reason != "" {
		b.drop(reason, np+nh)
		return
	}
	name, refusal := st.checkLabels(refs)
	if name < 0 || st.symLen(uint32(name)) == 0 {
		b.refuse(sources.DropNoName, np+nh, st.viewLabels, s.firstTimestamp(raw))
		return
	}
	if refusal != "" {
		b.refuse(refusal, np+nh, st.viewLabels, s.firstTimestamp(raw))
		return
	}
	// What the specification refuses is checked before the door, so that a
	// series answers the same whether a guard reads it or not.
	for i, sp := range s.hists {
		if reason, ms := checkHistogram(raw[sp.start:sp.end]); reason != "" {
			b.refuse(reason, 1, st.viewLabels, ms)
			s.hists[i] = span{-1, -1}
			nh--
		}
	}
	if d := st.decision(uint32(name), b); !d.want || !throughDoorRefs(d, refs, st) {
		b.accept(np, nh, ne)
		return
	}
	ls := b.newLabels(len(refs) / 2)
	for i := range ls {
		ls[i] = sources.Label{Name: st.str(refs[2*i]), Value: st.str(refs[2*i+1])}
	}
	ls = normaliseLabels(ls)
	typ := model.MetricTypeUnknown
	if s.hasMeta {
		typ = metricType(s.metaType)
	}
	for _, sm := range s.samples {
		created := s.created
		if sm.start != 0 {
			created = sm.start
		}
		b.floats = append(b.floats, sources.PromPoint{Labels: ls, Type: typ, TimestampMs: sm.t, CreatedMs: created, Value: sm.v})
	}
	b.written.samples += np
	for _, sp := range s.hists {
		if sp.start < 0 {
			continue // refused before the door
		}
		h := &writev2.Histogram{}
		if err := h.UnmarshalVT(raw[sp.start:sp.end]); err != nil {
			// Cannot happen: validateHistogram took it.
			b.drop(sources.DropBadHistogram, 1)
			continue
		}
		created := s.created
		if st := startTimestamp(h.ProtoReflect().GetUnknown(), v2HistogramStartTimestamp); st != 0 {
			created = st
		}
		b.addHistogram(ls, typ, created, h)
	}
	b.written.exemplars += ne
}

// viewLabels are the parsed series' labels, as views into the request,
// for a message.
func (st *v2State) viewLabels() sources.Labels {
	refs := st.s.refs
	ls := make(sources.Labels, len(refs)/2)
	for i := range ls {
		ls[i] = sources.Label{Name: st.sym(refs[2*i]), Value: st.sym(refs[2*i+1])}
	}
	return ls
}

// firstTimestamp is the timestamp of the parsed series' first point (raw
// is the series), to name it.
func (s *v2Series) firstTimestamp(raw []byte) int64 {
	switch {
	case len(s.samples) > 0:
		return s.samples[0].t
	case len(s.hists) > 0:
		_, ms := checkHistogram(raw[s.hists[0].start:s.hists[0].end])
		return ms
	}
	return 0
}

// labelLimitRefs returns the drop reason of a series whose labels break a
// limit, or "".
func (r *Receiver) labelLimitRefs(st *v2State, refs []uint32) string {
	if len(refs)/2 > r.cfg.MaxLabelsPerSeries {
		return DropLabelCount
	}
	maxName, maxValue := r.cfg.MaxLabelNameBytes, r.cfg.MaxLabelValueBytes
	if st.maxSymLen <= maxName && st.maxSymLen <= maxValue {
		return "" // no symbol is too long
	}
	syms := st.syms
	for i := 0; i+1 < len(refs); i += 2 {
		if sp := syms[refs[i]]; sp.end-sp.start > maxName {
			return DropLabelName
		}
		if sp := syms[refs[i+1]]; sp.end-sp.start > maxValue {
			return DropLabelValue
		}
	}
	return ""
}

// checkLabels returns the symbol of a series' metric name (the value of its
// last __name__ label; -1 if there is none), and why the specification
// refuses its labels (sources.DropInvalidLabel, sources.DropDuplicateLabel),
// or "".
func (st *v2State) checkLabels(refs []uint32) (name int, refusal string) {
	name = -1
	infos, nameSym := st.names, st.nameSym
	var seen, twice uint64 // the filter of the names (see nameBit), and its bits set twice
	var flags uint8
	for i := 0; i+1 < len(refs); i += 2 {
		n := refs[i]
		info := infos[n]
		flags |= info
		bit := uint64(1) << (info & symBit)
		twice |= seen & bit
		seen |= bit
		if int(n) == nameSym {
			name = int(refs[i+1]) // the last one wins, as in Labels.Sort
		}
	}
	if nameSym == nameMany {
		for i := 0; i+1 < len(refs); i += 2 {
			if st.isName(refs[i]) {
				name = int(refs[i+1])
			}
		}
	}
	switch {
	case flags&symEmpty != 0:
		return name, sources.DropInvalidLabel
	case st.notUTF8 && !st.utf8Labels(refs):
		return name, sources.DropInvalidLabel
	case twice != 0 && st.duplicateName(refs):
		return name, sources.DropDuplicateLabel
	}
	return name, ""
}

// utf8Labels says whether the symbols of a series' labels are UTF-8.
func (st *v2State) utf8Labels(refs []uint32) bool {
	for _, ref := range refs {
		if st.names[ref]&symNotUTF8 != 0 {
			return false
		}
	}
	return true
}

// duplicateName says whether two of a series' labels have the same name:
// the same symbol, or the same string in a table that repeats it.
func (st *v2State) duplicateName(refs []uint32) bool {
	dups := st.dups[:0]
	for i := 0; i+1 < len(refs); i += 2 {
		dups = append(dups, refs[i])
	}
	st.dups = dups
	slices.SortFunc(dups, func(a, b uint32) int { return strings.Compare(st.sym(a), st.sym(b)) })
	for i := 1; i < len(dups); i++ {
		if st.sym(dups[i]) == st.sym(dups[i-1]) {
			return true
		}
	}
	return false
}

// throughDoorRefs reports whether a series carries one of the door labels,
// or there are none (see sources.DoorFilter). A label is a door's when its
// name is the symbol of the door's name (or, in a table that has it more
// than once, the same string) and its value is the door's.
func throughDoorRefs(d *nameDecision, refs []uint32, st *v2State) bool {
	if d.doors == nil {
		return true
	}
	for j, door := range d.doors {
		switch ref := d.doorRefs[j]; ref {
		case nameNone:
			// No series of the request has this label.
		case nameMany:
			for i := 0; i+1 < len(refs); i += 2 {
				if st.sym(refs[i]) == door.Name && st.sym(refs[i+1]) == door.Value {
					return true
				}
			}
		default:
			for i := 0; i+1 < len(refs); i += 2 {
				if int(refs[i]) == ref && st.sym(refs[i+1]) == door.Value {
					return true
				}
			}
		}
	}
	return false
}

// startTimestamp finds a varint field among unknown fields (already
// validated by the decoder), or returns 0.
func startTimestamp(raw []byte, num protowire.Number) int64 {
	var st int64
	f := fields{b: raw}
	for fl, ok := f.next(); ok; fl, ok = f.next() {
		if fl.num == num && fl.typ == protowire.VarintType {
			st = int64(fl.v)
		}
	}
	return st
}
