package logfmt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/hashicorp/go-hclog"
)

type record [][2]string

// decode parses logfmt with go-logfmt's decoder.
func decode(t *testing.T, s string) []record {
	t.Helper()
	var out []record
	d := logfmt.NewDecoder(strings.NewReader(s))
	for d.ScanRecord() {
		var r record
		for d.ScanKeyval() {
			r = append(r, [2]string{string(d.Key()), string(d.Value())})
		}
		out = append(out, r)
	}
	if err := d.Err(); err != nil {
		t.Fatalf("not logfmt: %v\n%s", err, s)
	}
	return out
}

// TestHclogAsLogfmt: what hclog logs through Options is logfmt that a
// logfmt decoder reads back exactly, whatever the values hold.
func TestHclogAsLogfmt(t *testing.T) {
	var out bytes.Buffer
	log := New(&hclog.LoggerOptions{Name: "rollguard", Level: hclog.Debug, Output: &out})
	log.Named("web").Info("deployment announced", "deployment", "d-1", "service", "checkout", "weight", 12.5, "count", 3)
	log.Warn(`a message with "quotes", = and spaces`, "error", errors.New("dial tcp: connection refused"),
		"multi", "line one\nline two", "empty", "", "unicode", "größe", "ok", true, "list", []string{"a", "b c"},
		"weird key=x", "v", "took", 1500*time.Millisecond)
	log.Debug("no fields")
	log.Trace("below the level")

	recs := decode(t, out.String())
	if len(recs) != 3 || strings.Count(out.String(), "\n") != 3 {
		t.Fatalf("want 3 lines:\n%s", out.String())
	}
	get := func(r record, k string) (string, bool) {
		for _, kv := range r {
			if kv[0] == k {
				return kv[1], true
			}
		}
		return "", false
	}
	for i, r := range recs {
		keys := []string{}
		for _, kv := range r[:4] {
			keys = append(keys, kv[0])
		}
		if strings.Join(keys, " ") != "ts level logger msg" {
			t.Errorf("line %d starts %v", i, keys)
		}
		if ts, _ := get(r, "ts"); func() error { _, err := time.Parse(time.RFC3339Nano, ts); return err }() != nil {
			t.Errorf("line %d: ts %q", i, ts)
		}
	}
	want := []map[string]string{{
		"level": "info", "logger": "rollguard.web", "msg": "deployment announced",
		"deployment": "d-1", "service": "checkout", "weight": "12.5", "count": "3",
	}, {
		"level": "warn", "logger": "rollguard", "msg": `a message with "quotes", = and spaces`,
		"error": "dial tcp: connection refused", "multi": "line one\nline two", "empty": "", "unicode": "größe",
		"ok": "true", "list": `["a","b c"]`, "weird_key_x": "v", "took": "1.5s",
	}, {
		"level": "debug", "logger": "rollguard", "msg": "no fields",
	}}
	for i, w := range want {
		if len(recs[i]) != len(w)+1 { // + ts
			t.Errorf("line %d: %d keys, want %d: %v", i, len(recs[i]), len(w)+1, recs[i])
		}
		for k, v := range w {
			if got, ok := get(recs[i], k); !ok || got != v {
				t.Errorf("line %d: %s=%q, want %q", i, k, got, v)
			}
		}
	}
	// The fields keep the order they were given in.
	var order []string
	for _, kv := range recs[0][4:] {
		order = append(order, kv[0])
	}
	if strings.Join(order, " ") != "deployment service weight count" {
		t.Errorf("order %v", order)
	}
}

// TestLine is the exact text of a line, quoting as logfmt does.
func TestLine(t *testing.T) {
	at := time.Date(2026, 12, 5, 1, 10, 18, 299e6, time.UTC)
	got := string(Line(at, "rollguard.playbook", hclog.Warn, "regression detected: opening incident",
		"guard", "checkout", "dry_run", false, "note", `say "hi"`, "n", nil, "obj", map[string]int{"a": 1}, "hex", hclog.Hex(255), "odd"))
	want := `ts=2026-12-05T01:10:18.299Z level=warn logger=rollguard.playbook msg="regression detected: opening incident" guard=checkout dry_run=false note="say \"hi\"" n=nil obj="{\"a\":1}" hex=0xff EXTRA_VALUE_AT_END=odd` + "\n"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestLevel: the logger's level, set at start or later, filters.
func TestLevel(t *testing.T) {
	var out bytes.Buffer
	log := New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &out}).Named("x").With("replica", "a")
	log.Info("hidden")
	log.Warn("shown")
	log.SetLevel(hclog.Info)
	log.Info("now shown")
	recs := decode(t, out.String())
	if len(recs) != 2 || recs[0][3][1] != "shown" || recs[1][3][1] != "now shown" || recs[1][4] != [2]string{"replica", "a"} || recs[1][2] != [2]string{"logger", "x"} {
		t.Errorf("%q", out.String())
	}
}
