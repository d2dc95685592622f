// Package logfmt is an hclog logger that writes logfmt
// (https://brandur.org/logfmt): one line per entry of key=value pairs —
// ts, level, logger and msg first, then the entry's own pairs in the order
// they were given — each value quoted when it holds a space, '=', '"' or a
// control character, as github.com/go-logfmt/logfmt writes it. hclog's own
// text format is not logfmt: its level, module and message are a bracketed
// header before the pairs.
package logfmt

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/hashicorp/go-hclog"
)

// TimeFormat is how ts is written: RFC 3339 in milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// New returns an hclog logger with o's name and level that writes logfmt
// to o.Output (stderr when nil). It is hclog's intercept logger, whose
// own output is discarded, with a sink that writes each entry; its level
// is the logger's (SetLevel included), and Named, With and the other
// hclog methods behave as hclog's.
func New(o *hclog.LoggerOptions) hclog.Logger {
	opts := *o
	w := opts.Output
	if w == nil {
		w = hclog.DefaultOutput
	}
	opts.Output, opts.JSONFormat = io.Discard, false
	l := hclog.NewInterceptLogger(&opts)
	l.RegisterSink(&sink{w: w, level: l.GetLevel, now: time.Now})
	return l
}

type sink struct {
	mu    sync.Mutex
	w     io.Writer
	level func() hclog.Level
	now   func() time.Time
}

// Accept writes one entry.
func (s *sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	if level < s.level() || level == hclog.Off {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.w.Write(Line(s.now(), name, level, msg, args...))
}

// Line is one entry as a logfmt line, with its newline.
func Line(t time.Time, name string, level hclog.Level, msg string, args ...any) []byte {
	var b []byte
	buf := &appender{b: &b}
	enc := logfmt.NewEncoder(buf)
	_ = enc.EncodeKeyval("ts", t.UTC().Format(TimeFormat))
	_ = enc.EncodeKeyval("level", levelName(level))
	if name != "" {
		_ = enc.EncodeKeyval("logger", name)
	}
	_ = enc.EncodeKeyval("msg", msg)
	if len(args)%2 != 0 {
		if st, ok := args[len(args)-1].(hclog.CapturedStacktrace); ok {
			args = append(args[:len(args)-1], "stacktrace", string(st))
		} else {
			args = append(args[:len(args)-1], hclog.MissingKey, args[len(args)-1])
		}
	}
	for i := 0; i+1 < len(args); i += 2 {
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		_ = enc.EncodeKeyval(key(k), Value(args[i+1]))
	}
	_ = enc.EndRecord()
	return b
}

type appender struct{ b *[]byte }

func (a *appender) Write(p []byte) (int, error) { *a.b = append(*a.b, p...); return len(p), nil }

func levelName(l hclog.Level) string {
	switch l {
	case hclog.Trace:
		return "trace"
	case hclog.Debug:
		return "debug"
	case hclog.Info:
		return "info"
	case hclog.Warn:
		return "warn"
	case hclog.Error:
		return "error"
	}
	return "all"
}

// Value is how a value is written, as hclog's text format writes it where
// that is one word: an error's message, a Stringer's String (durations as
// 1.5s), hclog.Format, Hex, Octal and Binary as hclog formats them, numbers
// and booleans as Go writes them; lists, maps and structs as their JSON.
func Value(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		return v
	case error:
		return v.Error()
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		f, _ := v[0].(string)
		return fmt.Sprintf(f, v[1:]...)
	case hclog.Hex:
		return "0x" + strconv.FormatInt(int64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatInt(int64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatInt(int64(v), 2)
	case fmt.Stringer:
		return v.String()
	case []byte:
		return string(v)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct, reflect.Pointer:
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// key makes a key logfmt can write: spaces, '=', '"' and control
// characters become '_' (go-logfmt refuses them).
func key(k string) string {
	b := []rune(k)
	for i, r := range b {
		if r <= ' ' || r == '=' || r == '"' || r == 0x7f {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}
