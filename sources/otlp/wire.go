package otlp

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// The streaming decoder puts the door in front of pdata. Most series of an
// export are read by no guard (another metric, another service), and
// decoding them into pdata (one object per attribute, point and value)
// is most of what an export costs. So a protobuf export is walked on the
// wire first (protowire; nothing is allocated for a series it cuts): it is checked to be a message pdata
// accepts, its points are counted (MaxPoints), and the metrics and points
// the Filter drops at the door are cut out. What is left, the metrics a
// guard reads with their points that may be a guard's, is copied into a
// smaller export that pdata decodes and convert flattens as before.
//
// Only what convert would drop without a trace is cut: a metric the Filter
// does not want, a point whose labels no door matches and that no check
// before the door (label limits, a gauge's value) would reject. A point
// the walk is not sure of (a non-string attribute, a duplicate name, a
// label near the limits) is kept and left to convert. So pdata stays the
// reference, convert stays the one place of every rule, and the samples,
// rejections and state are the same as decoding the whole export
// (FuzzStreamingMatchesPdata checks it for any input).
//
// A body the walk does not accept (malformed, or a layout left to pdata:
// the deprecated instrumentation_library_metrics, attributes nested deeper
// than maxWireDepth) goes to pdata whole, which answers the same as it
// always did: the walk is stricter than pdata, never laxer.

// errLeftToPdata: the walk does not accept the body; pdata decodes it whole.
var errLeftToPdata = errors.New("otlp: export left to pdata")

// maxWireDepth bounds the nesting of attribute values the walk follows
// (pdata's own bound is 100); a deeper one goes to pdata.
const maxWireDepth = 32

// trimmed is a body cut down by trim, in a buffer from trimBuffers.
type trimmed struct {
	buf    *[]byte
	points int // the data points of the whole export, as pdata counts them
}

var trimBuffers = sync.Pool{New: func() any { return new([]byte) }}

func (t trimmed) bytes() []byte { return *t.buf }

// release returns the buffer; pdata copies what it keeps of it. One grown
// past 1 MiB by a big export is left to the collector.
func (t trimmed) release() {
	if cap(*t.buf) <= 1<<20 {
		trimBuffers.Put(t.buf)
	}
}

// trim walks a protobuf ExportMetricsServiceRequest and cuts out what the
// Filter drops at the door; see the top of this file.
//
// The walk checks the export as validMessage does as it goes, in one pass:
// what it walks itself (down to a kept metric's points and their
// attributes) it checks field by field as it reads them (validField), the
// rest it hands to validMessage. The depths it passes on are those
// validMessage would reach them at (the request is at 0).
func (r *Receiver) trim(body []byte) (trimmed, error) {
	buf := trimBuffers.Get().(*[]byte)
	w := trimmer{r: r, out: (*buf)[:0]}
	var err error
	for b := body; len(b) > 0 && err == nil; {
		var v []byte
		var sub *wireMessage
		if _, _, v, sub, b, err = validField(b, msgRequest); err == nil && sub != nil {
			err = w.resourceMetrics(v) // the request's one message field
		}
	}
	*buf = w.out
	if err == nil && w.spoilt {
		err = errLeftToPdata
	}
	if err != nil {
		trimmed{buf: buf}.release()
		return trimmed{}, err
	}
	return trimmed{buf: buf, points: w.points}, nil
}

// trimmer writes the cut-down export. A message is opened when the first
// thing to keep in it is found, with room for its length in as many bytes
// as the whole message's length takes: what is kept of a message is never
// longer than the message. The length is written when it is closed, padded
// to that room (a varint may carry leading zero groups; pdata reads them).
type trimmer struct {
	r      *Receiver
	out    []byte
	points int
	spoilt bool // a length did not fit its room

	// The ResourceMetrics and ScopeMetrics being walked: where their
	// lengths go once opened (-1: not yet), and the lengths' sizes.
	rm, sm         int
	rmSize, smSize int
	resources      [][]byte // the Resource fields of the ResourceMetrics

	// The doors of the metric being kept (doorsAll: none to check), and
	// for each, how often the resource names its label and with what
	// value.
	doorsSet  bool
	doorsName string
	doors     []sources.Label
	doorsAll  bool
	resDoors  []labelSeen
	resLabels int
	resUnsure bool // a resource attribute the walk cannot judge
}

// labelSeen counts the attributes named as a door's label, and keeps the
// last one's value.
type labelSeen struct {
	n     int
	value []byte
}

// resourceMetrics walks a ResourceMetrics (at depth 1) twice: for its
// resources first (validField refuses the deprecated
// instrumentation_library_metrics, which pdata migrates), then for its
// scope metrics, whose fields the first pass has checked but not their
// contents.
func (w *trimmer) resourceMetrics(b []byte) error {
	w.rm, w.sm = -1, -1
	w.resources = w.resources[:0]
	for rest := b; len(rest) > 0; {
		num, _, v, sub, next, err := validField(rest, msgResourceMetrics)
		if err != nil {
			return err
		}
		rest = next
		if sub == nil || num == 2 {
			continue
		}
		if err := validMessage(v, sub, 2); err != nil {
			return err
		}
		if num == 1 {
			w.resources = append(w.resources, v)
		}
	}
	w.rmSize = protowire.SizeVarint(uint64(len(b)))
	for len(b) > 0 {
		num, typ, v, rest, ok := nextField(b)
		if !ok {
			return errLeftToPdata // not reached: checked above
		}
		b = rest
		if num != 2 || typ != protowire.BytesType {
			continue
		}
		w.sm, w.smSize = -1, protowire.SizeVarint(uint64(len(v)))
		if err := w.scopeMetrics(v); err != nil {
			return err
		}
		if w.sm >= 0 {
			w.close(w.sm, w.smSize)
		}
	}
	if w.rm >= 0 {
		w.close(w.rm, w.rmSize)
	}
	return nil
}

// scopeMetrics walks a ScopeMetrics, at depth 2.
func (w *trimmer) scopeMetrics(b []byte) error {
	for len(b) > 0 {
		num, _, v, sub, rest, err := validField(b, msgScopeMetrics)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case sub == nil:
		case num == 2:
			err = w.metric(v)
		default:
			err = validMessage(v, sub, 3)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openScope opens the ResourceMetrics (with its resource, as sent) and
// the ScopeMetrics a kept metric goes in, if not open yet.
func (w *trimmer) openScope() {
	if w.rm < 0 {
		w.rm = w.open(1, w.rmSize)
		for _, res := range w.resources {
			w.out = protowire.AppendTag(w.out, 1, protowire.BytesType)
			w.out = protowire.AppendBytes(w.out, res)
		}
	}
	if w.sm < 0 {
		w.sm = w.open(2, w.smSize)
	}
}

// open writes the tag of a length-delimited field and room for its
// length, lenSize bytes (as many as the length of the field as sent
// needs), and returns where the length goes.
func (w *trimmer) open(num protowire.Number, lenSize int) int {
	w.out = protowire.AppendTag(w.out, num, protowire.BytesType)
	at := len(w.out)
	for range lenSize {
		w.out = append(w.out, 0)
	}
	return at
}

// close writes the length of the field opened at at, in lenSize bytes.
// One that does not fit (not reached: see trimmer) spoils the export,
// which goes to pdata whole.
func (w *trimmer) close(at, lenSize int) {
	n := uint64(len(w.out) - at - lenSize)
	if n>>(7*lenSize) != 0 {
		w.spoilt = true
	}
	for i := range lenSize - 1 {
		w.out[at+i] = byte(n&0x7f) | 0x80
		n >>= 7
	}
	w.out[at+lenSize-1] = byte(n)
}

// The data fields of a Metric (a oneof: the last one sent wins).
const (
	dataGauge     = 5
	dataSum       = 7
	dataHistogram = 9
	dataExpHist   = 10
	dataSummary   = 11
)

// metric walks a Metric, at depth 3; its data at 4, their points at 5.
func (w *trimmer) metric(b []byte) error {
	var name, data []byte
	var dataNum protowire.Number
	var dataMsg *wireMessage
	named := false
	for fields := b; len(fields) > 0; {
		num, _, v, sub, rest, err := validField(fields, msgMetric)
		if err != nil {
			return err
		}
		fields = rest
		switch num {
		case 1:
			name, named = v, true // the last one wins
		case dataGauge, dataSum, dataHistogram, dataExpHist, dataSummary:
			// A oneof: the last one sent wins, the others are only
			// checked.
			if data != nil {
				if err := validMessage(data, dataMsg, 4); err != nil {
					return err
				}
			}
			data, dataNum, dataMsg = v, num, sub
		default:
			if sub != nil {
				if err := validMessage(v, sub, 4); err != nil {
					return err
				}
			}
		}
	}
	// The name is asked about in place: the Filter does not keep it.
	if !w.r.cfg.Filter.Wants(bytesString(name)) {
		if data == nil {
			return nil
		}
		n, err := validPoints(data, dataMsg)
		w.points += n
		return err
	}
	// A metric is written with its first kept point (with the fields of
	// its data but the points): a metric none of whose points is kept
	// adds nothing to what convert makes. One without data is written
	// bare: convert rejects it (unsupported_type_empty).
	lenSize, dataLenSize := protowire.SizeVarint(uint64(len(b))), protowire.SizeVarint(uint64(len(data)))
	at, d := -1, -1
	open := func() {
		w.openScope()
		at = w.open(2, lenSize)
		if named { // else not a byte more than was sent: pdata reads no name as ""
			w.out = protowire.AppendTag(w.out, 1, protowire.BytesType)
			w.out = protowire.AppendBytes(w.out, name)
		}
		if data == nil {
			return
		}
		d = w.open(dataNum, dataLenSize)
		_ = eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num != 1 {
				w.out = appendField(w.out, num, typ, v)
			}
			return nil
		})
	}
	if data == nil {
		open()
		w.close(at, lenSize)
		return nil
	}
	w.doorsOf(name)
	for fields := data; len(fields) > 0; {
		num, typ, v, sub, rest, err := validField(fields, dataMsg)
		if err != nil {
			return err
		}
		fields = rest
		if sub == nil {
			continue
		}
		// A data message's one message field is its points'.
		w.points++
		keep, err := w.keepPoint(dataNum, sub, v)
		if err != nil {
			return err
		}
		if keep {
			if at < 0 {
				open()
			}
			w.out = appendField(w.out, num, typ, v)
		}
	}
	if at >= 0 {
		w.close(d, dataLenSize)
		w.close(at, lenSize)
	}
	return nil
}

// doorsOf sets the doors of the metric name, and what the resource says
// of their labels.
func (w *trimmer) doorsOf(name []byte) {
	if !w.doorsSet || w.doorsName != string(name) {
		w.doorsSet = true
		n := string(name)
		w.doorsName = n
		w.doors = nil
		df, ok := w.r.cfg.Filter.(sources.DoorFilter)
		if ok {
			w.doors = df.Doors(n)
		}
		w.doorsAll = !ok || w.doors == nil
	}
	if w.doorsAll {
		return
	}
	w.resDoors = w.resDoors[:0]
	for range w.doors {
		w.resDoors = append(w.resDoors, labelSeen{})
	}
	w.resLabels, w.resUnsure = 0, false
	for _, res := range w.resources {
		_ = eachField(res, func(num protowire.Number, _ protowire.Type, v []byte) error {
			if num == 1 {
				w.resLabels++
				if !w.label(v, w.resDoors) {
					w.resUnsure = true
				}
			}
			return nil
		})
	}
}

// label notes a KeyValue attribute under the doors it names. It is false
// when the walk cannot tell what convert would make of it: a value that is
// not a string (convert spells it), a key or value sent twice, a key or
// value over the length limits (convert rejects the point).
func (w *trimmer) label(kv []byte, seen []labelSeen) bool {
	if key, str, ok := stringAttr(kv); ok {
		return w.note(key, str, seen)
	}
	var key, value []byte
	keys, values, others := 0, 0, 0
	_ = eachField(kv, func(num protowire.Number, _ protowire.Type, v []byte) error {
		switch num {
		case 1:
			key, keys = v, keys+1
		case 2:
			value, values = v, values+1
		default:
			others++
		}
		return nil
	})
	if keys != 1 || values > 1 || others > 0 {
		return false
	}
	var str []byte // no value: convert spells it ""
	if values == 1 {
		n := 0
		var kind protowire.Number
		_ = eachField(value, func(num protowire.Number, _ protowire.Type, v []byte) error {
			n, kind, str = n+1, num, v
			return nil
		})
		switch {
		case n > 1:
			return false
		case n == 1 && (kind == 2 || kind == 3):
			// A bool or an int (status codes are): convert spells it
			// in at most 20 bytes, which matters only for a door's label.
			return w.shortValue(key)
		case n == 1 && kind != 1:
			return false
		}
	}
	return w.note(key, str, seen)
}

// pointLabel is label for a point's attribute (at depth 6), which it
// checks as validMessage does. A string attribute as exporters write it
// is checked as it is read; any other goes through validMessage first.
func (w *trimmer) pointLabel(kv []byte, seen []labelSeen) (bool, error) {
	if key, str, ok := stringAttr(kv); ok {
		return w.note(key, str, seen), nil
	}
	if err := validMessage(kv, msgKeyValue, 6); err != nil {
		return false, err
	}
	return w.label(kv, seen), nil
}

// shortValue judges an attribute whose value convert spells in at most 20
// bytes: sure unless it may be over the limits or is named as a door's
// label.
func (w *trimmer) shortValue(key []byte) bool {
	if max := w.r.cfg.MaxLabelValueLength; len(key) > max || max < 20 {
		return false
	}
	for _, d := range w.doors {
		if string(key) == d.Name {
			return false
		}
	}
	return true
}

// note counts a string attribute under the doors it names; false when it
// is over the length limits.
func (w *trimmer) note(key, str []byte, seen []labelSeen) bool {
	if max := w.r.cfg.MaxLabelValueLength; len(key) > max || len(str) > max {
		return false
	}
	for i, d := range w.doors {
		if string(key) == d.Name {
			seen[i].n++
			seen[i].value = str
		}
	}
	return true
}

// validPoints checks a data message (at depth 4) of a metric the Filter
// does not want, and counts its points.
func validPoints(data []byte, m *wireMessage) (int, error) {
	n := 0
	for len(data) > 0 {
		_, _, v, sub, rest, err := validField(data, m)
		if err != nil {
			return n, err
		}
		data = rest
		if sub != nil { // a data message's one message field is its points'
			n++
			if err := validMessage(v, sub, 5); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// keepPoint decides whether a data point (m, at depth 5) of a wanted
// metric is kept: it is cut only when convert would drop it at the door,
// silently. It checks the point as validMessage does.
func (w *trimmer) keepPoint(dataNum protowire.Number, m *wireMessage, p []byte) (bool, error) {
	var seen [4]labelSeen
	if w.doorsAll || w.resUnsure || len(w.doors) > len(seen) {
		return true, validMessage(p, m, 5)
	}
	attrsNum := protowire.Number(7) // number and summary points
	switch dataNum {
	case dataHistogram:
		attrsNum = 9
	case dataExpHist:
		attrsNum = 1
	}
	pt := seen[:len(w.doors)]
	labels, unsure := 0, false
	value := 0.0
	for len(p) > 0 {
		num, _, v, sub, rest, err := validField(p, m)
		if err != nil {
			return false, err
		}
		p = rest
		switch {
		case num == attrsNum:
			labels++
			switch {
			case !unsure:
				sure, err := w.pointLabel(v, pt)
				if err != nil {
					return false, err
				}
				unsure = !sure
			default:
				if err := validMessage(v, sub, 6); err != nil {
					return false, err
				}
			}
		case sub != nil: // an exemplar, or a summary's quantile
			if err := validMessage(v, sub, 6); err != nil {
				return false, err
			}
		case dataNum == dataGauge && num == 4: // as_double; the last value wins
			if len(v) == 8 {
				value = math.Float64frombits(binary.LittleEndian.Uint64(v))
			}
		case dataNum == dataGauge && num == 6: // as_int
			value = 0
		}
	}
	switch {
	case unsure, labels+w.resLabels > w.r.cfg.MaxLabels:
		return true, nil
	case dataNum == dataGauge && !finite(value):
		return true, nil // convert rejects it before it asks the door
	}
	for i, d := range w.doors {
		res, own := w.resDoors[i], pt[i]
		switch n := res.n + own.n; {
		case n > 1:
			return true, nil // which one wins is convert's to say
		case n == 0:
			if d.Value == "" {
				return true, nil
			}
		case own.n == 1 && string(own.value) == d.Value, res.n == 1 && string(res.value) == d.Value:
			return true, nil
		}
	}
	return false, nil
}

// appendField appends a field as eachField handed it.
func appendField(out []byte, num protowire.Number, typ protowire.Type, v []byte) []byte {
	out = protowire.AppendTag(out, num, typ)
	if typ == protowire.BytesType {
		return protowire.AppendBytes(out, v)
	}
	return append(out, v...)
}

// bytesString is b as a string without a copy, for a look-up that does not
// keep it while b is not written to.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// eachField calls f with each field of the message b: a length-delimited
// field's contents, any other field's value as sent. It stops at f's first
// error, or at a malformed field (errLeftToPdata).
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, v, rest, ok := nextField(b)
		if !ok {
			return errLeftToPdata
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// nextField reads the field at the front of b, as eachField hands it on,
// and what follows it. One-byte tags and lengths, most of an export's,
// are read without protowire.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, v, rest []byte, ok bool) {
	if len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[1] < 0x80 {
		if n := int(b[1]) + 2; b[0] >= 8 && n <= len(b) {
			return protowire.Number(b[0] >> 3), protowire.BytesType, b[2:n], b[n:], true
		}
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, false
	}
	b = b[n:]
	if typ == protowire.BytesType {
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return 0, 0, nil, nil, false
		}
		return num, typ, v, b[m:], true
	}
	m := protowire.ConsumeFieldValue(num, typ, b)
	if m < 0 {
		return 0, 0, nil, nil, false
	}
	return num, typ, b[:m], b[m:], true
}

// stringAttr reads a KeyValue as exporters write a string attribute: a
// key and a value that holds a string and nothing else, in either order
// (pdata writes the value first). ok is false for any other layout, which
// label reads field by field. A KeyValue it reads is one pdata decodes.
func stringAttr(kv []byte) (key, value []byte, ok bool) {
	// Most attributes are short: one-byte tags and lengths, read here
	// without a call (a byte under 0x80 is a whole varint).
	if len(kv) >= 6 {
		switch kv[0] {
		case 0x0a: // key, value: 0a K key... 12 A 0a S str...
			if k := int(kv[1]); k < 0x80 && 2+k+4 <= len(kv) && kv[2+k] == 0x12 {
				a := kv[2+k+2:]
				if n := int(kv[2+k+1]); n < 0x80 && n == len(a) && n >= 2 && a[0] == 0x0a && int(a[1]) == n-2 {
					return kv[2 : 2+k], a[2:], true
				}
			}
		case 0x12: // value, key: 12 A 0a S str... 0a K key...
			if n := int(kv[1]); n < 0x80 && n >= 2 && 2+n+2 <= len(kv) && kv[2] == 0x0a && int(kv[3]) == n-2 && kv[2+n] == 0x0a {
				if k := int(kv[2+n+1]); k < 0x80 && 2+n+2+k == len(kv) {
					return kv[2+n+2:], kv[4 : 2+n], true
				}
			}
		}
	}
	return stringAttrFields(kv)
}

// stringAttrFields is stringAttr field by field, any layout of varints.
func stringAttrFields(kv []byte) (key, value []byte, ok bool) {
	n1, t1, v1, rest, ok := nextField(kv)
	if !ok || len(rest) == 0 || t1 != protowire.BytesType {
		return nil, nil, false
	}
	n2, t2, v2, rest, ok := nextField(rest)
	if !ok || len(rest) != 0 || t2 != protowire.BytesType {
		return nil, nil, false
	}
	var any []byte
	switch {
	case n1 == 1 && n2 == 2:
		key, any = v1, v2
	case n1 == 2 && n2 == 1:
		key, any = v2, v1
	default:
		return nil, nil, false
	}
	num, typ, value, rest, ok := nextField(any)
	if !ok || num != 1 || typ != protowire.BytesType || len(rest) != 0 {
		return nil, nil, false
	}
	return key, value, true
}

// The validation walk: the messages of an export, field by field, as
// pdata's decoder reads them (go.opentelemetry.io/collector/pdata/internal,
// generated_proto_*.go). A known field sent with another wire type, an
// identifier of the wrong size, a packed list cut short, are errors there,
// so they are here; unknown fields are skipped, as there.

// fieldKind is how pdata reads a known field.
type fieldKind uint8

const (
	fieldUnknown fieldKind = iota
	fieldBytes             // a string, or bytes pdata copies
	fieldVarint
	fieldFixed64
	fieldMessage
	fieldPackedFixed64 // packed (a length, a multiple of 8) or one fixed64
	fieldPackedVarint  // packed or one varint
	fieldTraceID       // bytes, empty or 16
	fieldSpanID        // bytes, empty or 8
)

type wireField struct {
	kind fieldKind
	msg  *wireMessage
}

// wireMessage is a message's known fields by number (none is above 14).
type wireMessage [15]wireField

// The messages of an export; built once, by newWireMessages.
var (
	msgRequest         = newWireMessages()
	msgResourceMetrics = msgRequest[1].msg
	msgScopeMetrics    = msgResourceMetrics[2].msg
	msgMetric          = msgScopeMetrics[2].msg
	msgKeyValue        = msgResourceMetrics[1].msg[1].msg
)

func newWireMessages() *wireMessage {
	var (
		request, resourceMetrics, resource, keyValue, anyValue, arrayValue, kvList, entityRef,
		scopeMetrics, scope, metric, numberData, histData, expHistData, summaryData,
		numberPoint, histPoint, expHistPoint, expBuckets, summaryPoint, quantile, exemplar wireMessage
	)
	bytes, varint, fixed := wireField{kind: fieldBytes}, wireField{kind: fieldVarint}, wireField{kind: fieldFixed64}
	msg := func(m *wireMessage) wireField { return wireField{kind: fieldMessage, msg: m} }
	request[1] = msg(&resourceMetrics)
	resourceMetrics[1], resourceMetrics[2], resourceMetrics[3] = msg(&resource), msg(&scopeMetrics), bytes
	resource[1], resource[2], resource[3] = msg(&keyValue), varint, msg(&entityRef)
	keyValue[1], keyValue[2], keyValue[3] = bytes, msg(&anyValue), varint
	anyValue[1], anyValue[2], anyValue[3], anyValue[4] = bytes, varint, varint, fixed
	anyValue[5], anyValue[6], anyValue[7], anyValue[8] = msg(&arrayValue), msg(&kvList), bytes, varint
	arrayValue[1] = msg(&anyValue)
	kvList[1] = msg(&keyValue)
	entityRef[1], entityRef[2], entityRef[3], entityRef[4] = bytes, bytes, bytes, bytes
	scopeMetrics[1], scopeMetrics[2], scopeMetrics[3] = msg(&scope), msg(&metric), bytes
	scope[1], scope[2], scope[3], scope[4] = bytes, bytes, msg(&keyValue), varint
	metric[1], metric[2], metric[3] = bytes, bytes, bytes
	metric[5], metric[7], metric[9], metric[10], metric[11], metric[12] =
		msg(&numberData), msg(&numberData), msg(&histData), msg(&expHistData), msg(&summaryData), msg(&keyValue)
	// Gauge and Sum read alike: a gauge has no fields 2 and 3, which are
	// unknown to it, and skipped, whatever their wire type; so a gauge
	// is checked with its own message below.
	numberData[1], numberData[2], numberData[3] = msg(&numberPoint), varint, varint
	histData[1], histData[2] = msg(&histPoint), varint
	expHistData[1], expHistData[2] = msg(&expHistPoint), varint
	summaryData[1] = msg(&summaryPoint)
	numberPoint[7], numberPoint[2], numberPoint[3], numberPoint[4], numberPoint[6], numberPoint[5], numberPoint[8] =
		msg(&keyValue), fixed, fixed, fixed, fixed, msg(&exemplar), varint
	histPoint[9], histPoint[2], histPoint[3], histPoint[4], histPoint[5] = msg(&keyValue), fixed, fixed, fixed, fixed
	histPoint[6], histPoint[7] = wireField{kind: fieldPackedFixed64}, wireField{kind: fieldPackedFixed64}
	histPoint[8], histPoint[10], histPoint[11], histPoint[12] = msg(&exemplar), varint, fixed, fixed
	expHistPoint[1], expHistPoint[2], expHistPoint[3], expHistPoint[4], expHistPoint[5] = msg(&keyValue), fixed, fixed, fixed, fixed
	expHistPoint[6], expHistPoint[7], expHistPoint[8], expHistPoint[9] = varint, fixed, msg(&expBuckets), msg(&expBuckets)
	expHistPoint[10], expHistPoint[11], expHistPoint[12], expHistPoint[13], expHistPoint[14] = varint, msg(&exemplar), fixed, fixed, fixed
	expBuckets[1], expBuckets[2] = varint, wireField{kind: fieldPackedVarint}
	summaryPoint[7], summaryPoint[2], summaryPoint[3], summaryPoint[4], summaryPoint[5] = msg(&keyValue), fixed, fixed, fixed, fixed
	summaryPoint[6], summaryPoint[8] = msg(&quantile), varint
	quantile[1], quantile[2] = fixed, fixed
	exemplar[7], exemplar[2], exemplar[3], exemplar[6] = msg(&keyValue), fixed, fixed, fixed
	exemplar[5], exemplar[4] = wireField{kind: fieldTraceID}, wireField{kind: fieldSpanID}
	gauge := wireMessage{1: msg(&numberPoint)}
	metric[5] = msg(&gauge)
	return &request
}

// validMessage reports whether pdata decodes b as the message m; nil when
// it does (the walk may refuse what pdata takes: errLeftToPdata either way).
func validMessage(b []byte, m *wireMessage, depth int) error {
	if depth > maxWireDepth {
		return errLeftToPdata
	}
	for len(b) > 0 {
		_, _, v, sub, rest, err := validField(b, m)
		if err != nil {
			return err
		}
		if sub != nil {
			if err := validMessage(v, sub, depth+1); err != nil {
				return err
			}
		}
		b = rest
	}
	return nil
}

// validField reads the field at the front of b, a field of the message m,
// and checks it as validMessage does, all but the contents of a known
// message field: those are handed back with their message (sub) for the
// caller to check, with validMessage or as it walks them. v is a
// length-delimited field's contents, any other field's value as sent.
func validField(b []byte, m *wireMessage) (num protowire.Number, typ protowire.Type, v []byte, sub *wireMessage, rest []byte, err error) {
	num, typ, n := protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	if b[0] >= 0x80 || b[0] < 8 {
		if num, typ, n = protowire.ConsumeTag(b); n < 0 {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
	}
	b = b[n:]
	var f wireField
	if num < protowire.Number(len(m)) {
		f = m[num]
	}
	switch f.kind {
	case fieldUnknown:
		// Skipped as pdata skips it; but not a group, which pdata
		// skips its own way (it takes the first field in a group for
		// the group's end, so what follows one may read as an end of
		// group pdata refuses): no exporter sends one, pdata has the
		// last word.
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		if num == 1000 && m == msgResourceMetrics {
			return 0, 0, nil, nil, nil, errLeftToPdata // ResourceMetrics' deprecated scope metrics
		}
		return num, typ, b[:n], nil, b[n:], nil
	case fieldVarint:
		if typ != protowire.VarintType {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		_, n = protowire.ConsumeVarint(b)
	case fieldFixed64:
		if typ != protowire.Fixed64Type || len(b) < 8 {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		n = 8
	case fieldPackedFixed64:
		switch typ {
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			if v, n = protowire.ConsumeBytes(b); n >= 0 && len(v)%8 != 0 {
				return 0, 0, nil, nil, nil, errLeftToPdata
			}
		default:
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
	case fieldPackedVarint:
		switch typ {
		case protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			if v, n = protowire.ConsumeBytes(b); n >= 0 && !packedVarints(v) {
				return 0, 0, nil, nil, nil, errLeftToPdata
			}
		default:
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
	default: // length-delimited
		if typ != protowire.BytesType {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
			v, n = b[1:1+int(b[0])], 1+int(b[0]) // a one-byte length
		} else if v, n = protowire.ConsumeBytes(b); n < 0 {
			return 0, 0, nil, nil, nil, errLeftToPdata
		}
		switch f.kind {
		case fieldMessage:
			return num, typ, v, f.msg, b[n:], nil
		case fieldTraceID:
			if len(v) != 0 && len(v) != 16 {
				return 0, 0, nil, nil, nil, errLeftToPdata
			}
		case fieldSpanID:
			if len(v) != 0 && len(v) != 8 {
				return 0, 0, nil, nil, nil, errLeftToPdata
			}
		}
		return num, typ, v, nil, b[n:], nil
	}
	if n < 0 {
		return 0, 0, nil, nil, nil, errLeftToPdata
	}
	if typ == protowire.BytesType { // a packed list
		return num, typ, v, nil, b[n:], nil
	}
	return num, typ, b[:n], nil, b[n:], nil
}

// packedVarints reports whether b is varints end to end.
func packedVarints(b []byte) bool {
	for len(b) > 0 {
		_, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}
