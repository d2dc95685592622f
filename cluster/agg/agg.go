// Package agg is the wire format and the NATS transport of the partial
// aggregates sidecars publish (and replicas forward to a guard's owner),
// one message per guard per tick, on <prefix>.agg.<guard>, and that a
// central rollguard merges into its engine. It owns the encoding, its
// bounds, and the JetStream stream and consumer; it knows nothing of
// deployments, cohorts or tests.
//
// A message (version 1) is, in order:
//
//	magic "RGAG", version byte 1
//	tick: unix milliseconds, zig-zag varint
//	guard: string
//	strings: uvarint n, then n strings (signal names and versions, each once)
//	bounds: uvarint n, then n float64 (IEEE 754 bits, little endian), ascending
//	entries: uvarint n, then per entry:
//	  signal, version: uvarint indexes into strings
//	  total, bad: count
//	  cum: uvarint n, then n pairs (bound index delta from the previous
//	       pair, or from 0, as uvarint; count)
//
// A string is a uvarint length and UTF-8 bytes. A count is a uvarint 2k for
// a whole number k < 2^53, or the byte 0x01 and the float64's 8 bytes.
// Whole counts, the common case, take 1 to 3 bytes.
package agg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/rollguard/rollguard/detector"
)

// Limits of a message, checked by Encode and Decode alike.
const (
	// MaxMessageBytes bounds a message.
	MaxMessageBytes = 1 << 20
	// MaxEntries bounds each list of a message: strings, bounds,
	// aggregates, and the cumulative-bucket pairs of all aggregates together.
	MaxEntries = 100_000
)

const (
	magic   = "RGAG"
	version = 1
	// maxWhole is the largest whole count written as a uvarint: above it a
	// float64 no longer holds every integer.
	maxWhole = 1 << 53
)

var (
	// ErrMalformed wraps every reason a message does not decode.
	ErrMalformed = errors.New("agg: malformed message")
	// ErrTooLarge means a message is over MaxMessageBytes or MaxEntries.
	ErrTooLarge = errors.New("agg: message too large")
	// ErrInvalid means aggregates cannot be encoded as they are.
	ErrInvalid = errors.New("agg: invalid aggregate")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Encode writes one guard's aggregates of the tick at at. It refuses
// counts that are negative or not finite, a NaN bound, and messages over
// the limits.
func Encode(guard string, at time.Time, aggs []detector.Aggregate) ([]byte, error) {
	if guard == "" || !utf8.ValidString(guard) {
		return nil, fmt.Errorf("%w: guard name %q is empty or not UTF-8", ErrInvalid, guard)
	}
	if len(aggs) > MaxEntries {
		return nil, fmt.Errorf("%w: %d aggregates, more than %d", ErrTooLarge, len(aggs), MaxEntries)
	}
	strs := map[string]uint64{}
	var strList []string
	intern := func(s string) (uint64, error) {
		if !utf8.ValidString(s) {
			return 0, fmt.Errorf("%w: %q is not UTF-8", ErrInvalid, s)
		}
		if i, ok := strs[s]; ok {
			return i, nil
		}
		strs[s] = uint64(len(strList))
		strList = append(strList, s)
		return strs[s], nil
	}
	boundSet := map[float64]bool{}
	pairs := 0
	for i := range aggs {
		a := &aggs[i]
		if a.Guard != "" && a.Guard != guard {
			return nil, fmt.Errorf("%w: an aggregate of guard %q in a message of guard %q", ErrInvalid, a.Guard, guard)
		}
		if err := checkCount(a.Total, "total", guard, a); err != nil {
			return nil, err
		}
		if err := checkCount(a.Bad, "bad", guard, a); err != nil {
			return nil, err
		}
		for b, c := range a.Cum {
			if math.IsNaN(b) {
				return nil, fmt.Errorf("%w: %s/%s/%s has a NaN bucket bound", ErrInvalid, guard, a.Signal, a.Version)
			}
			if err := checkCount(c, "cum", guard, a); err != nil {
				return nil, err
			}
			boundSet[b] = true
		}
		if pairs += len(a.Cum); pairs > MaxEntries {
			return nil, fmt.Errorf("%w: more than %d bucket counts", ErrTooLarge, MaxEntries)
		}
		if _, err := intern(a.Signal); err != nil {
			return nil, err
		}
		if _, err := intern(a.Version); err != nil {
			return nil, err
		}
	}
	bounds := make([]float64, 0, len(boundSet))
	for b := range boundSet {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	boundIdx := make(map[float64]int, len(bounds))
	for i, b := range bounds {
		boundIdx[b] = i
	}

	buf := make([]byte, 0, 64+len(guard)+16*len(aggs)+10*len(bounds)+4*pairs)
	buf = append(buf, magic...)
	buf = append(buf, version)
	buf = binary.AppendVarint(buf, at.UnixMilli())
	buf = appendString(buf, guard)
	buf = binary.AppendUvarint(buf, uint64(len(strList)))
	for _, s := range strList {
		buf = appendString(buf, s)
	}
	buf = binary.AppendUvarint(buf, uint64(len(bounds)))
	for _, b := range bounds {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(b))
	}
	buf = binary.AppendUvarint(buf, uint64(len(aggs)))
	idx := make([]int, 0, 16)
	for i := range aggs {
		a := &aggs[i]
		buf = binary.AppendUvarint(buf, strs[a.Signal])
		buf = binary.AppendUvarint(buf, strs[a.Version])
		buf = appendCount(buf, a.Total)
		buf = appendCount(buf, a.Bad)
		idx = idx[:0]
		for b := range a.Cum {
			idx = append(idx, boundIdx[b])
		}
		sort.Ints(idx)
		buf = binary.AppendUvarint(buf, uint64(len(idx)))
		prev := 0
		for _, k := range idx {
			buf = binary.AppendUvarint(buf, uint64(k-prev))
			buf = appendCount(buf, a.Cum[bounds[k]])
			prev = k
		}
	}
	if len(buf) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(buf), MaxMessageBytes)
	}
	return buf, nil
}

func checkCount(c float64, what, guard string, a *detector.Aggregate) error {
	if !(c >= 0) || math.IsInf(c, 1) {
		return fmt.Errorf("%w: %s/%s/%s: %s %v is negative or not finite", ErrInvalid, guard, a.Signal, a.Version, what, c)
	}
	return nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendCount(buf []byte, c float64) []byte {
	if c == math.Trunc(c) && c < maxWhole {
		return binary.AppendUvarint(buf, uint64(c)<<1)
	}
	buf = append(buf, 1)
	return binary.LittleEndian.AppendUint64(buf, math.Float64bits(c))
}

// reader reads a message, remembering the first error.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = malformed("at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("%s: truncated or overlong varint", what)
		return 0
	}
	r.off += n
	return v
}

// count reads a list length: at most MaxEntries, and at most the bytes
// left (each item takes one byte at least), so a lying length cannot make
// the decoder allocate.
func (r *reader) count(what string) int {
	n := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if n > MaxEntries {
		r.err = fmt.Errorf("%w: %d %s, more than %d", ErrTooLarge, n, what, MaxEntries)
		return 0
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("%d %s announced, %d bytes left", n, what, len(r.b)-r.off)
		return 0
	}
	return int(n)
}

func (r *reader) float64(what string) float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.fail("%s: truncated", what)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.off:]))
	r.off += 8
	return v
}

func (r *reader) string(what string) string {
	n := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("%s: %d bytes announced, %d left", what, n, len(r.b)-r.off)
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	if !utf8.ValidString(s) {
		r.fail("%s %q is not UTF-8", what, s)
	}
	return s
}

func (r *reader) countValue(what string) float64 {
	u := r.uvarint(what)
	switch {
	case r.err != nil:
		return 0
	case u&1 == 0:
		if u>>1 >= maxWhole {
			r.fail("%s: whole count %d out of range", what, u>>1)
		}
		return float64(u >> 1)
	case u != 1:
		r.fail("%s: unknown count form %d", what, u)
		return 0
	}
	c := r.float64(what)
	if r.err == nil && (!(c >= 0) || math.IsInf(c, 1)) {
		r.fail("%s %v is negative or not finite", what, c)
	}
	return c
}

// Decode reads a message written by Encode. It rejects a message over the
// limits, of another version, with counts that are negative or not finite,
// or that does not decode exactly (trailing bytes included), with an error
// that says what and where.
func Decode(b []byte) (guard string, at time.Time, aggs []detector.Aggregate, err error) {
	if len(b) > MaxMessageBytes {
		return "", time.Time{}, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(b), MaxMessageBytes)
	}
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return "", time.Time{}, nil, malformed("not an aggregate message (no %q header)", magic)
	}
	if b[len(magic)] != version {
		return "", time.Time{}, nil, malformed("version %d, this rollguard reads version %d: upgrade the central before the sidecars", b[len(magic)], version)
	}
	r := &reader{b: b, off: len(magic) + 1}
	ms, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("tick: truncated or overlong varint")
	} else {
		r.off += n
	}
	guard = r.string("guard")
	if r.err == nil && guard == "" {
		r.fail("empty guard name")
	}
	strs := make([]string, r.count("strings"))
	for i := range strs {
		strs[i] = r.string("string")
	}
	bounds := make([]float64, r.count("bounds"))
	for i := range bounds {
		bounds[i] = r.float64("bound")
		if r.err == nil && (math.IsNaN(bounds[i]) || i > 0 && !(bounds[i] > bounds[i-1])) {
			r.fail("bounds not strictly ascending at %d (%v)", i, bounds[i])
		}
	}
	aggs = make([]detector.Aggregate, r.count("aggregates"))
	str := func(what string) string {
		i := r.uvarint(what)
		if r.err == nil && i >= uint64(len(strs)) {
			r.fail("%s index %d, %d strings", what, i, len(strs))
			return ""
		}
		if r.err != nil {
			return ""
		}
		return strs[i]
	}
	pairs := 0
	for i := range aggs {
		a := &aggs[i]
		a.Guard = guard
		a.Signal = str("signal")
		a.Version = str("version")
		a.Total = r.countValue("total")
		a.Bad = r.countValue("bad")
		k := r.count("bucket counts")
		if pairs += k; pairs > MaxEntries && r.err == nil {
			r.err = fmt.Errorf("%w: more than %d bucket counts", ErrTooLarge, MaxEntries)
		}
		if k > 0 && r.err == nil {
			a.Cum = make(map[float64]float64, k)
		}
		prev := uint64(0)
		for j := 0; j < k && r.err == nil; j++ {
			d := r.uvarint("bound index")
			if r.err != nil {
				break
			}
			if (j > 0 && d == 0) || d >= uint64(len(bounds)) || prev+d >= uint64(len(bounds)) {
				r.fail("bound index %d+%d out of order or range (%d bounds)", prev, d, len(bounds))
				break
			}
			prev += d
			a.Cum[bounds[prev]] = r.countValue("bucket count")
		}
		if r.err != nil {
			break
		}
	}
	if r.err == nil && r.off != len(b) {
		r.fail("%d trailing bytes", len(b)-r.off)
	}
	if r.err != nil {
		return "", time.Time{}, nil, r.err
	}
	return guard, time.UnixMilli(ms), aggs, nil
}
