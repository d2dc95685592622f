package otlp

import "testing"

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
