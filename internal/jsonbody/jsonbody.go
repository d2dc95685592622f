// Package jsonbody decodes the small JSON documents people send rollguard
// (deployment announcements, approvals, incident close and acknowledge)
// the same way everywhere: one object, no unknown fields, nothing after
// it, and errors that tell the sender what to fix. It knows nothing of
// HTTP or NATS: an error of the reader itself (a body over its limit) is
// returned unchanged, for the caller to answer.
package jsonbody

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// readErr remembers the error of the reader under the decoder.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// Decode reads one JSON object from r into v. what names the document in
// errors ("deployment"); example is a valid one, shown when the body is empty.
func Decode(r io.Reader, v any, what, example string) error {
	rr := &readErr{r: r}
	dec := json.NewDecoder(rr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case rr.err != nil:
			return rr.err
		case errors.Is(err, io.EOF):
			return errors.New("the body is empty: send a JSON object like " + example)
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("decode %s: %s must be %s, not %s", what, te.Field, kind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Errorf("decode %s: %s", what, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return fmt.Errorf("decode %s: trailing data after the JSON object", what)
	}
	return nil
}

func kind(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "a list"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	}
	return "a " + goKind
}
