package otlp

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
)

// TestTrimmerLengthRoom: a length written in the room open left for it
// reads back, padded; one that does not fit spoils the export (it goes
// to pdata whole) rather than writing a length pdata would misread.
func TestTrimmerLengthRoom(t *testing.T) {
	for _, tc := range []struct {
		room, n int
		spoilt  bool
	}{{1, 0, false}, {1, 127, false}, {1, 128, true}, {2, 5, false}, {2, 16383, false}, {2, 16384, true}} {
		w := trimmer{}
		at := w.open(2, tc.room)
		w.out = append(w.out, make([]byte, tc.n)...)
		w.close(at, tc.room)
		if w.spoilt != tc.spoilt {
			t.Errorf("room %d, length %d: spoilt %v, want %v", tc.room, tc.n, w.spoilt, tc.spoilt)
			continue
		}
		if tc.spoilt {
			continue
		}
		num, _, v, rest, ok := nextField(w.out)
		if !ok || num != 2 || len(v) != tc.n || len(rest) != 0 {
			t.Errorf("room %d, length %d: read back field %d of %d bytes (ok %v), %d bytes after", tc.room, tc.n, num, len(v), ok, len(rest))
		}
	}
}

// doorsOf is a door table for one metric and one service label value.
type doorsOf struct{ metric, label, service string }

func (d doorsOf) Wants(m string) bool { return m == d.metric }

func (d doorsOf) Doors(m string) []sources.Label {
	return []sources.Label{{Name: d.label, Value: d.service}}
}

func (d doorsOf) WantsSeries(m string, ls sources.Labels) bool {
	return m == d.metric && ls.Get(d.label) == d.service
}

// TestTrimAllocatesNothingPerSeries: the walk over an export whose series
// are all another service's, or all another metric's, allocates as much
// for 2,000 of them as for 20: the door costs no allocation per series.
func TestTrimAllocatesNothingPerSeries(t *testing.T) {
	export := func(n int) []byte {
		md := pmetric.NewMetrics()
		for i := range n {
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr("job", "svc-"+strconv.Itoa(i%97))
			m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			m.SetName("http_requests_total")
			dp := m.SetEmptySum().DataPoints().AppendEmpty()
			dp.Attributes().PutStr("route", "/r"+strconv.Itoa(i))
			dp.Attributes().PutInt("code", 200)
			dp.SetDoubleValue(1)
		}
		b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	small, big := export(20), export(2000)
	for _, f := range []doorsOf{{"http_requests_total", "job", "checkout"}, {"other", "job", "checkout"}} {
		r := NewReceiver(Config{Filter: f})
		allocs := func(body []byte) float64 {
			return testing.AllocsPerRun(20, func() {
				tr, err := r.trim(body)
				if err != nil {
					t.Fatal(err)
				}
				if tr.points != bytes.Count(body, []byte("/r")) {
					t.Fatalf("%d points counted", tr.points)
				}
				tr.release()
			})
		}
		if a, b := allocs(small), allocs(big); b > a {
			t.Errorf("metric %s: %v allocations walking 20 series, %v walking 2,000", f.metric, a, b)
		}
	}
}

// TestStringAttrFastPath: stringAttr's reading of one-byte tags and
// lengths reads what field-by-field reading does, whatever the bytes: a
// KeyValue either way round, with lengths about the one-byte bound, and
// each of them with a byte changed or cut short.
func TestStringAttrFastPath(t *testing.T) {
	kv := func(keyFirst bool, key, str string) []byte {
		anyValue := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(str))
		k := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(key))
		v := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), anyValue)
		if keyFirst {
			return append(k, v...)
		}
		return append(v, k...)
	}
	var cases [][]byte
	for _, kl := range []int{0, 1, 5, 125, 126, 127, 128, 130} {
		for _, sl := range []int{0, 1, 5, 123, 124, 125, 126, 127, 128} {
			for _, keyFirst := range []bool{true, false} {
				cases = append(cases, kv(keyFirst, strings.Repeat("k", kl), strings.Repeat("s", sl)))
			}
		}
	}
	n := len(cases)
	for _, c := range cases[:n] {
		for i := range c {
			for _, b := range []byte{0x00, 0x02, 0x0a, 0x12, 0x7f, 0x80, 0x85, 0xff, c[i] + 1, c[i] - 1} {
				m := bytes.Clone(c)
				m[i] = b
				cases = append(cases, m)
			}
			cases = append(cases, c[:i])
		}
	}
	for _, c := range cases {
		k1, v1, ok1 := stringAttr(c)
		k2, v2, ok2 := stringAttrFields(c)
		if ok1 != ok2 || !bytes.Equal(k1, k2) || !bytes.Equal(v1, v2) {
			t.Fatalf("%x: stringAttr %q %q %v, field by field %q %q %v", c, k1, v1, ok1, k2, v2, ok2)
		}
	}
}
