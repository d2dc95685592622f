package remotewrite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Remote write 2.0 is read at the wire level (see v2.go), and must accept
// and refuse exactly what the exp module's generated vtproto code does,
// with the same messages: these are that code's primitives. Its quirks are
// kept on purpose: a varint may have ten bytes of which the bits past 64
// are dropped (and uint32 fields keep the low 32 bits), a field number is
// the tag shifted right by three and truncated to int32, a packed varint
// or double may run past the end of its packed field (only the end of the
// enclosing message bounds it), and unknown fields are skipped by
// protohelpers.Skip, which matches a group's end by depth alone.

var (
	errIntOverflow          = errors.New("proto: integer overflow")
	errInvalidLength        = errors.New("proto: negative length found during unmarshaling")
	errUnexpectedEndOfGroup = errors.New("proto: unexpected end of group")
)

// vtVarint reads the varint at d[i:] and returns it and the index after it.
func vtVarint(d []byte, i int) (uint64, int, error) {
	if i < len(d) && d[i] < 0x80 {
		return uint64(d[i]), i + 1, nil
	}
	return vtVarintSlow(d, i)
}

func vtVarintSlow(d []byte, i int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, i, errIntOverflow
		}
		if i >= len(d) {
			return 0, i, io.ErrUnexpectedEOF
		}
		b := d[i]
		i++
		v |= uint64(b&0x7F) << shift
		if b < 0x80 {
			return v, i, nil
		}
	}
}

// vtTag reads a field tag: the field number as the generated code computes
// it (int32(wire >> 3)), the wire type and the whole tag value.
func vtTag(d []byte, i int) (num int32, typ int, wire uint64, next int, err error) {
	if i < len(d) && d[i] < 0x80 {
		w := d[i]
		return int32(w >> 3), int(w & 7), uint64(w), i + 1, nil
	}
	wire, next, err = vtVarintSlow(d, i)
	return int32(wire >> 3), int(wire & 7), wire, next, err
}

// vtCheckTag is the generated code's check of a tag, for message msg.
func vtCheckTag(msg string, num int32, typ int, wire uint64) error {
	if typ == 4 {
		return fmt.Errorf("proto: %s: wiretype end group for non-group", msg)
	}
	if num <= 0 {
		return fmt.Errorf("proto: %s: illegal tag %d (wire type %d)", msg, num, wire)
	}
	return nil
}

// vtWrongType is the generated code's error for a known field of another wire type.
func vtWrongType(typ int, field string) error {
	return fmt.Errorf("proto: wrong wireType = %d for field %s", typ, field)
}

// vtBytes reads a length-delimited value at d[i:]: it is d[start:end].
func vtBytes(d []byte, i int) (start, end int, err error) {
	var n uint64
	if i < len(d) && d[i] < 0x80 {
		n, i = uint64(d[i]), i+1
	} else if n, i, err = vtVarintSlow(d, i); err != nil {
		return 0, 0, err
	}
	ln := int(n)
	if ln < 0 {
		return 0, 0, errInvalidLength
	}
	end = i + ln
	if end < 0 {
		return 0, 0, errInvalidLength
	}
	if end > len(d) {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return i, end, nil
}

// vtFixed64 reads the eight bytes at d[i:].
func vtFixed64(d []byte, i int) (uint64, int, error) {
	if i+8 > len(d) {
		return 0, i, io.ErrUnexpectedEOF
	}
	return binary.LittleEndian.Uint64(d[i:]), i + 8, nil
}

// vtSkipField skips the unknown field whose tag starts at d[pre], as the
// generated code does, and returns the index after it.
func vtSkipField(d []byte, pre int) (int, error) {
	skippy, err := vtSkip(d[pre:])
	if err != nil {
		return 0, err
	}
	if skippy < 0 || pre+skippy < 0 {
		return 0, errInvalidLength
	}
	if pre+skippy > len(d) {
		return 0, io.ErrUnexpectedEOF
	}
	return pre + skippy, nil
}

// vtSkip is protohelpers.Skip: the length of the first field of d.
func vtSkip(dAtA []byte) (n int, err error) {
	l := len(dAtA)
	iNdEx := 0
	depth := 0
	for iNdEx < l {
		var wire uint64
		for shift := uint(0); ; shift += 7 {
			if shift >= 64 {
				return 0, errIntOverflow
			}
			if iNdEx >= l {
				return 0, io.ErrUnexpectedEOF
			}
			b := dAtA[iNdEx]
			iNdEx++
			wire |= (uint64(b) & 0x7F) << shift
			if b < 0x80 {
				break
			}
		}
		wireType := int(wire & 0x7)
		switch wireType {
		case 0:
			for shift := uint(0); ; shift += 7 {
				if shift >= 64 {
					return 0, errIntOverflow
				}
				if iNdEx >= l {
					return 0, io.ErrUnexpectedEOF
				}
				iNdEx++
				if dAtA[iNdEx-1] < 0x80 {
					break
				}
			}
		case 1:
			iNdEx += 8
		case 2:
			var length int
			for shift := uint(0); ; shift += 7 {
				if shift >= 64 {
					return 0, errIntOverflow
				}
				if iNdEx >= l {
					return 0, io.ErrUnexpectedEOF
				}
				b := dAtA[iNdEx]
				iNdEx++
				length |= (int(b) & 0x7F) << shift
				if b < 0x80 {
					break
				}
			}
			if length < 0 {
				return 0, errInvalidLength
			}
			iNdEx += length
		case 3:
			depth++
		case 4:
			if depth == 0 {
				return 0, errUnexpectedEndOfGroup
			}
			depth--
		case 5:
			iNdEx += 4
		default:
			return 0, fmt.Errorf("proto: illegal wireType %d", wireType)
		}
		if iNdEx < 0 {
			return 0, errInvalidLength
		}
		if depth == 0 {
			return iNdEx, nil
		}
	}
	return 0, io.ErrUnexpectedEOF
}

// vtPackedVarints reads a repeated varint field of wire type 0 (one value)
// or 2 (packed), calling add for each value; other wire types are an error
// naming field.
func vtPackedVarints(d []byte, i, typ int, field string, add func(uint64)) (int, error) {
	switch typ {
	case 0:
		v, i, err := vtVarint(d, i)
		if err != nil {
			return i, err
		}
		add(v)
		return i, nil
	case 2:
		start, end, err := vtBytes(d, i)
		if err != nil {
			return i, err
		}
		i = start
		for i < end {
			var v uint64
			// Bounded by the message, not the packed field, as in the generated code.
			if v, i, err = vtVarint(d, i); err != nil {
				return i, err
			}
			add(v)
		}
		return i, nil
	}
	return i, vtWrongType(typ, field)
}

// vtPackedDoubles validates a repeated double field of wire type 1 (one
// value) or 2 (packed), calling add (when not nil) for each value.
func vtPackedDoubles(d []byte, i, typ int, field string, add func(float64)) (int, error) {
	var v uint64
	var err error
	switch typ {
	case 1:
		if v, i, err = vtFixed64(d, i); err == nil && add != nil {
			add(math.Float64frombits(v))
		}
		return i, err
	case 2:
		start, end, err := vtBytes(d, i)
		if err != nil {
			return i, err
		}
		i = start
		for i < end {
			// Bounded by the message, not the packed field, as in the generated code.
			if v, i, err = vtFixed64(d, i); err != nil {
				return i, err
			}
			if add != nil {
				add(math.Float64frombits(v))
			}
		}
		return i, nil
	}
	return i, vtWrongType(typ, field)
}

func ignoreValue(uint64) {}

// validateHistogram accepts and refuses what writev2.Histogram.UnmarshalVT
// does, allocating nothing: a histogram of a series no one wants is
// checked and skipped.
func validateHistogram(d []byte) error { return walkHistogram(d, nil) }

// walkHistogram is validateHistogram, adding up the histogram's counts
// into h when h is not nil (see checkHistogram): the fields are read where
// the generated code reads them, its quirks included.
func walkHistogram(d []byte, h *histogramSums) error {
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if err := vtCheckTag("Histogram", num, typ, wire); err != nil {
			return err
		}
		i = next
		var v uint64
		switch num {
		case 1, 4, 6, 14, 15: // count_int, schema, zero_count_int, reset_hint, timestamp
			if typ != 0 {
				return vtWrongType(typ, histogramFields[num])
			}
			v, i, err = vtVarint(d, i)
			if h != nil && err == nil {
				h.varint(num, v)
			}
		case 2, 3, 5, 7: // count_float, sum, zero_threshold, zero_count_float
			if typ != 1 {
				return vtWrongType(typ, histogramFields[num])
			}
			v, i, err = vtFixed64(d, i)
			if h != nil && err == nil {
				h.fixed(num, math.Float64frombits(v))
			}
		case 8, 11: // negative_spans, positive_spans
			if typ != 2 {
				return vtWrongType(typ, histogramFields[num])
			}
			var start, end int
			if start, end, err = vtBytes(d, i); err != nil {
				return err
			}
			if err := validateBucketSpan(d[start:end], h, num); err != nil {
				return err
			}
			i = end
		case 9, 12: // negative_deltas, positive_deltas
			add := ignoreValue
			if h != nil {
				side := sideOf(num)
				add = func(v uint64) { h.delta(side, v) }
			}
			i, err = vtPackedVarints(d, i, typ, histogramFields[num], add)
		case 10, 13, 16: // negative_counts, positive_counts, custom_values
			var add func(float64)
			if h != nil && num != 16 {
				side := sideOf(num)
				add = func(c float64) { h.count(side, c) }
			}
			i, err = vtPackedDoubles(d, i, typ, histogramFields[num], add)
		default:
			i, err = vtSkipField(d, pre)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var histogramFields = [...]string{
	1: "CountInt", 2: "CountFloat", 3: "Sum", 4: "Schema", 5: "ZeroThreshold", 6: "ZeroCountInt",
	7: "ZeroCountFloat", 8: "NegativeSpans", 9: "NegativeDeltas", 10: "NegativeCounts", 11: "PositiveSpans",
	12: "PositiveDeltas", 13: "PositiveCounts", 14: "ResetHint", 15: "Timestamp", 16: "CustomValues",
}

// validateBucketSpan validates a BucketSpan, adding its length to h's
// spans of field num when h is not nil.
func validateBucketSpan(d []byte, h *histogramSums, num int32) error {
	var length uint64
	i := 0
	for i < len(d) {
		pre := i
		num, typ, wire, next, err := vtTag(d, i)
		if err != nil {
			return err
		}
		if err := vtCheckTag("BucketSpan", num, typ, wire); err != nil {
			return err
		}
		i = next
		var v uint64
		switch num {
		case 1, 2:
			if typ != 0 {
				return vtWrongType(typ, [...]string{1: "Offset", 2: "Length"}[num])
			}
			v, i, err = vtVarint(d, i)
			if num == 2 {
				length = uint64(uint32(v))
			}
		default:
			i, err = vtSkipField(d, pre)
		}
		if err != nil {
			return err
		}
	}
	if h != nil {
		h.spans[sideOf(num)] += length
	}
	return nil
}
