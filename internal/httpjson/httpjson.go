// Package httpjson is how rollguard's HTTP endpoints (the web API, the
// rollout-controller gates) answer in JSON and refuse bodies that are not
// JSON, written once.
package httpjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
)

// Write answers v as JSON. It encodes before it answers, so that a value
// that does not encode is a 500 that says why, never an empty 200.
func Write(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		b.Reset()
		code = http.StatusInternalServerError
		_ = json.NewEncoder(&b).Encode(map[string]string{"status": "error", "error": "encode the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// Error answers {"status":"error","error":msg} with code.
func Error(w http.ResponseWriter, code int, msg string) {
	Write(w, code, map[string]string{"status": "error", "error": msg})
}

// Require answers 415 unless the request says its body is JSON. A browser
// can send a cross-site form or text/plain POST without asking the server
// first, but not one with Content-Type application/json, so this also
// stops forged requests from browsers too old to say where they come from.
func Require(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			Error(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted: send the body as JSON with Content-Type: application/json", ct))
			return
		}
		next(w, r)
	}
}
