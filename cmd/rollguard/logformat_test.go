package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logfmt/logfmt"
)

// TestLogFormat: rollguard run --log.format=logfmt writes logfmt that a
// logfmt decoder reads, and --log.format=json writes JSON, here for a start
// that fails on a missing configuration file.
func TestLogFormat(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yml")
	args := []string{"run", "--config.file=" + missing, "--storage.path=" + t.TempDir(), "--web.listen-address=127.0.0.1:0"}

	var out, errw bytes.Buffer
	if code := rollguard(append(args, "--log.format=logfmt"), &out, &errw); code != 1 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	d := logfmt.NewDecoder(strings.NewReader(errw.String()))
	found := false
	for d.ScanRecord() {
		kv := map[string]string{}
		var keys []string
		for d.ScanKeyval() {
			kv[string(d.Key())] = string(d.Value())
			keys = append(keys, string(d.Key()))
		}
		if len(keys) < 4 || strings.Join(keys[:4], " ") != "ts level logger msg" {
			t.Errorf("record starts %v", keys)
		}
		if kv["level"] == "error" && kv["msg"] == "start failed" && kv["logger"] == "rollguard" && strings.Contains(kv["error"], missing) {
			found = true
		}
	}
	if err := d.Err(); err != nil || !found {
		t.Errorf("not the logfmt start failure (%v):\n%s", err, errw.String())
	}

	errw.Reset()
	if code := rollguard(append(args, "--log.format=json"), &out, &errw); code != 1 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	var entry map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(errw.Bytes()), &entry); err != nil || entry["@message"] != "start failed" {
		t.Errorf("not the JSON start failure (%v): %s", err, errw.String())
	}
}
