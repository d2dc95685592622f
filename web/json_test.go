package web

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A value that does not encode (a NaN) is a 500 that says why, never an
// empty 200; the twin encodes.
func TestWriteJSONEncodeError(t *testing.T) {
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, map[string]float64{"ratio": math.NaN()})
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "encode the answer: json: unsupported value: NaN") {
		t.Errorf("NaN: %d %q", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	writeJSON(w, http.StatusOK, map[string]float64{"ratio": 0.5})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ratio": 0.5`) {
		t.Errorf("twin: %d %q", w.Code, w.Body.String())
	}
}
