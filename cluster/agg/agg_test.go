package agg_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/detector"
)

var tick = time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)

// latencyBounds are OpenTelemetry's advised HTTP duration buckets and +Inf.
var latencyBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, math.Inf(1)}

// realistic is one guard's tick: errors, latency and data integrity for a
// stable and a canary version, about 1,000 requests each.
func realistic(guard string) []detector.Aggregate {
	var out []detector.Aggregate
	for i, v := range []string{"v1.41.0", "v1.42.0"} {
		n := 1013.0 + float64(i)*17
		cum := map[float64]float64{}
		run := 0.0
		for k, b := range latencyBounds {
			run += math.Floor(n / float64(len(latencyBounds)+3-k))
			if math.IsInf(b, 1) {
				run = n
			}
			cum[b] = math.Min(run, n)
		}
		out = append(out,
			detector.Aggregate{Guard: guard, Signal: "errors", Version: v, Total: n, Bad: 11 + float64(i)*40},
			detector.Aggregate{Guard: guard, Signal: "latency", Version: v, Total: n, Cum: cum},
			detector.Aggregate{Guard: guard, Signal: "writes", Version: v, Total: n, Bad: 2})
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		aggs []detector.Aggregate
	}{
		{"realistic", realistic("checkout")},
		{"none", []detector.Aggregate{}},
		{"fractions and big counts", []detector.Aggregate{
			{Guard: "checkout", Signal: "pool", Version: "v2", Total: 0.5, Bad: 1 << 60},
			{Guard: "checkout", Signal: "latency", Version: "", Total: math.MaxFloat64,
				Cum: map[float64]float64{-1: 0, 0: 0.25, math.Inf(1): 3, math.Inf(-1): 0, 1e-300: 1<<53 - 1}},
			{Signal: "pool", Version: "v2"}, // Guard empty: the message's
		}},
		{"unicode", []detector.Aggregate{{Guard: "checkout", Signal: "errors", Version: "β-2 ✓", Total: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := agg.Encode("checkout", tick, tc.aggs)
			if err != nil {
				t.Fatal(err)
			}
			guard, at, got, err := agg.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]detector.Aggregate{}, tc.aggs...)
			for i := range want {
				want[i].Guard = "checkout"
			}
			if guard != "checkout" || !at.Equal(tick) || !reflect.DeepEqual(got, want) {
				t.Errorf("round trip\n got: %s %v %+v\nwant: %+v", guard, at, got, want)
			}
			again, err := agg.Encode(guard, at, got)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("encoding is not deterministic: %v", err)
			}
		})
	}
}

// TestEncodeRefuses: what cannot travel is refused with a clear error.
func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, guard string
		aggs        []detector.Aggregate
		want        error
		msg         string
	}{
		{"empty guard", "", nil, agg.ErrInvalid, "guard name"},
		{"other guard", "checkout", []detector.Aggregate{{Guard: "cart"}}, agg.ErrInvalid, `an aggregate of guard "cart"`},
		{"negative", "checkout", []detector.Aggregate{{Signal: "e", Version: "v", Total: -1}}, agg.ErrInvalid, "checkout/e/v: total -1 is negative or not finite"},
		{"NaN", "checkout", []detector.Aggregate{{Bad: math.NaN()}}, agg.ErrInvalid, "bad NaN"},
		{"Inf", "checkout", []detector.Aggregate{{Total: math.Inf(1)}}, agg.ErrInvalid, "total +Inf"},
		{"NaN bound", "checkout", []detector.Aggregate{{Cum: map[float64]float64{math.NaN(): 1}}}, agg.ErrInvalid, "NaN bucket bound"},
		{"negative cum", "checkout", []detector.Aggregate{{Cum: map[float64]float64{1: -2}}}, agg.ErrInvalid, "cum -2"},
		{"bad UTF-8", "checkout", []detector.Aggregate{{Version: "\xff"}}, agg.ErrInvalid, "not UTF-8"},
		{"too many", "checkout", make([]detector.Aggregate, agg.MaxEntries+1), agg.ErrTooLarge, "100001 aggregates"},
		{"too big", "checkout", []detector.Aggregate{{Version: strings.Repeat("v", agg.MaxMessageBytes)}}, agg.ErrTooLarge, "bytes, more than 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agg.Encode(tc.guard, tick, tc.aggs)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Encode: %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

// TestDecodeRejects: hostile or damaged messages are refused with an error
// that says what is wrong, never a panic or a partial result.
func TestDecodeRejects(t *testing.T) {
	good, err := agg.Encode("checkout", tick, realistic("checkout"))
	if err != nil {
		t.Fatal(err)
	}
	// header is a valid start up to the string table.
	header := append([]byte("RGAG\x01"), binary.AppendVarint(nil, tick.UnixMilli())...)
	header = append(header, 8)
	header = append(header, "checkout"...)
	with := func(parts ...[]byte) []byte { return append(append([]byte{}, header...), bytes.Join(parts, nil)...) }
	u := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	f := func(v float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)) }
	one := func(total []byte) []byte { // one string, no bounds, one aggregate
		return with(u(1), u(1), []byte("v"), u(0), u(1), u(0), u(0), total, u(0), u(0))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"empty", nil, agg.ErrMalformed, `no "RGAG" header`},
		{"json", []byte(`{"guard":"checkout"}`), agg.ErrMalformed, `no "RGAG" header`},
		{"future version", []byte("RGAG\x02rest"), agg.ErrMalformed, "version 2, this rollguard reads version 1"},
		{"oversized", append([]byte("RGAG\x01"), make([]byte, agg.MaxMessageBytes)...), agg.ErrTooLarge, "more than 1048576"},
		{"truncated", good[:len(good)-3], agg.ErrMalformed, ""},
		{"trailing", append(append([]byte{}, good...), 0), agg.ErrMalformed, "1 trailing bytes"},
		{"empty guard", []byte("RGAG\x01\x00\x00"), agg.ErrMalformed, "empty guard name"},
		{"lying string count", with(u(1 << 40)), agg.ErrTooLarge, "strings, more than 100000"},
		{"string count beyond the end", with(u(50)), agg.ErrMalformed, "50 strings announced"},
		{"too many aggregates", with(u(0), u(0), u(agg.MaxEntries+1)), agg.ErrTooLarge, "aggregates, more than 100000"},
		{"string index out of range", with(u(0), u(0), u(1), u(3), u(0)), agg.ErrMalformed, "signal index 3, 0 strings"},
		{"negative count", one(append([]byte{1}, f(-1)...)), agg.ErrMalformed, "total -1 is negative or not finite"},
		{"NaN count", one(append([]byte{1}, f(math.NaN())...)), agg.ErrMalformed, "total NaN"},
		{"infinite count", one(append([]byte{1}, f(math.Inf(1))...)), agg.ErrMalformed, "total +Inf"},
		{"unknown count form", one(u(3)), agg.ErrMalformed, "unknown count form 3"},
		{"whole count too big", one(u(1 << 62)), agg.ErrMalformed, "out of range"},
		{"overlong varint", one(bytes.Repeat([]byte{0xff}, 11)), agg.ErrMalformed, "truncated or overlong varint"},
		{"bounds not ascending", with(u(0), u(2), f(1), f(0.5)), agg.ErrMalformed, "bounds not strictly ascending"},
		{"NaN bound", with(u(0), u(1), f(math.NaN())), agg.ErrMalformed, "bounds not strictly ascending"},
		{"bound index out of range", with(u(1), u(1), []byte("v"), u(1), f(1), u(1), u(0), u(0), u(0), u(0), u(1), u(1), u(0)), agg.ErrMalformed, "bound index 0+1 out of order or range"},
		{"bound repeated", with(u(1), u(1), []byte("v"), u(2), f(1), f(2), u(1), u(0), u(0), u(0), u(0), u(2), u(0), u(0), u(0), u(0)), agg.ErrMalformed, "out of order"},
		{"invalid UTF-8", with(u(1), u(1), []byte{0xff}), agg.ErrMalformed, "is not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			guard, at, aggs, err := agg.Decode(tc.b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Decode: %v, want %v containing %q", err, tc.want, tc.msg)
			}
			if guard != "" || !at.IsZero() || aggs != nil {
				t.Errorf("a partial result with the error: %q %v %+v", guard, at, aggs)
			}
		})
	}
}

// TestCompact: a whole count takes a byte or few, a latency signal's bounds
// are written once per message whatever the versions.
func TestCompact(t *testing.T) {
	one, _ := agg.Encode("checkout", tick, realistic("checkout")[:3])
	two, _ := agg.Encode("checkout", tick, realistic("checkout"))
	if len(one) > 260 || len(two)-len(one) > 120 {
		t.Errorf("one version: %d bytes, two: %d", len(one), len(two))
	}
}
