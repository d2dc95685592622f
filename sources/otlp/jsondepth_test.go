package otlp

import (
	"strings"
	"testing"
)

// TestCheckJSONDepth: brackets count only outside strings, escapes
// included; the limit itself is allowed, one more level is not.
func TestCheckJSONDepth(t *testing.T) {
	for _, tt := range []struct {
		name string
		doc  string
		max  int
		ok   bool
	}{
		{"flat object", `{"a":1}`, 1, true},
		{"at the limit", `{"a":[{"b":[]}]}`, 4, true},
		{"one past the limit", `{"a":[{"b":[{}]}]}`, 4, false},
		{"arrays alone", strings.Repeat("[", 65) + strings.Repeat("]", 65), 64, false},
		{"brackets in a string", `{"a":"` + strings.Repeat("[{", 100) + `"}`, 2, true},
		{"an escaped quote does not end the string", `{"a":"\"` + strings.Repeat("[", 100) + `"}`, 2, true},
		{"an escaped backslash does end it", `{"a":"\\",` + `"b":[[[]]]}`, 3, false},
		{"closing brackets never opened make no room", `]]]]{"a":[[[]]]}`, 2, false},
		{"empty", ``, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkJSONDepth([]byte(tt.doc), tt.max)
			if (err == nil) != tt.ok {
				t.Fatalf("checkJSONDepth(%q, %d) = %v, want ok=%v", tt.doc, tt.max, err, tt.ok)
			}
		})
	}
}
