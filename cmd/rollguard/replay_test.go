package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/replay"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/recordings")

const recordingsDir = "../../testdata/recordings"

var recordingConfig = filepath.Join(recordingsDir, "rollguard.yaml")

func loadRecordingConfig(t testing.TB) *configs.Config {
	t.Helper()
	cfg, err := configs.Load(recordingConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReplayRecordings replays each recording through the CLI and compares
// its output with the golden file; the commands are asserted in code too.
func TestReplayRecordings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		commands int // flag_kill commands for new-checkout-flow
	}{
		{"bad-canary", 1},
		{"healthy-canary", 0},
		{"bad-all-at-once", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recording := filepath.Join(recordingsDir, tc.name+".jsonl")
			var stdout, stderr bytes.Buffer
			code := rollguard([]string{"replay", "--config.file=" + recordingConfig, recording}, &stdout, &stderr)
			if code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			golden := filepath.Join(recordingsDir, tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/rollguard -run Replay -update)", err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("output differs from %s (go test ./cmd/rollguard -run Replay -update rewrites it):\ngot:\n%s\nwant:\n%s", golden, got, want)
			}

			rep, err := replay.File(loadRecordingConfig(t), recording, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Deployments) != 1 {
				t.Fatalf("deployments = %d, want 1 (v1 -> v2)", len(rep.Deployments))
			}
			d := rep.Deployments[0]
			if d.Service != "checkout" || d.PreviousVersion != "v1" || d.Version != "v2" {
				t.Errorf("deployment %s %s -> %s, want checkout v1 -> v2", d.Service, d.PreviousVersion, d.Version)
			}
			// The daemon's playbook: a flag kill at detection; no actuator
			// answers a replay, so the rollback follows one ack_timeout later.
			if tc.commands == 0 && len(rep.Commands) != 0 {
				t.Fatalf("commands = %+v, want none", rep.Commands)
			}
			if tc.commands > 0 {
				if len(rep.Commands) != 2 {
					t.Fatalf("commands = %+v, want flag_kill then rollback", rep.Commands)
				}
				kill, rb := rep.Commands[0], rep.Commands[1]
				wantID := actions.CommandID(d.ID, actions.ActionFlagKill, "new-checkout-flow")
				if kill.Action != actions.ActionFlagKill || kill.Target != "new-checkout-flow" || kill.ID != wantID {
					t.Errorf("command %+v, want flag_kill new-checkout-flow with id %s", kill, wantID)
				}
				if kill.At.Before(d.StartedAt) || !kill.At.Equal(d.Detected) {
					t.Errorf("command at %v, deployment started %v and detected %v", kill.At, d.StartedAt, d.Detected)
				}
				if rb.Action != actions.ActionRollback || rb.Target != "v1" || rb.At.Sub(kill.At) != time.Minute {
					t.Errorf("second command %+v, want rollback to v1 one ack_timeout (1m) after the kill", rb)
				}
			}
			if detected := !d.Detected.IsZero(); detected != (tc.commands > 0) {
				t.Errorf("detected = %v, want %v", detected, tc.commands > 0)
			}
			// One hour of data, evaluated every 10 s: every boundary after
			// the first record up to the last one.
			if rep.Evaluations != 360 {
				t.Errorf("evaluations = %d, want 360", rep.Evaluations)
			}
		})
	}
}

// firstRecord is the first line of a recording: one valid export of v1.
func firstRecord(t testing.TB) string {
	t.Helper()
	f, err := os.Open(filepath.Join(recordingsDir, "bad-canary.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		t.Fatal("bad-canary.jsonl is empty")
	}
	return sc.Text()
}

func TestReplayMalformedLine(t *testing.T) {
	good := firstRecord(t)
	untimed := `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"http.server.request.duration","histogram":{"dataPoints":[{"count":"5"}]}}]}]}]}`
	for _, tc := range []struct {
		name, line, config string
		want               string // stderr after "rollguard: replay: FILE:2: "
		prefix             bool   // the message only starts with want (the OTLP decoder's own words follow)
	}{
		{name: "not JSON", line: "not json",
			want: "not an OTLP/JSON export request: invalid character 'o' in literal null (expecting 'u')\n"},
		{name: "trailing bytes", line: `{"resourceMetrics":[]} {}`,
			want: "not an OTLP/JSON export request: invalid character '{' after top-level value\n"},
		{name: "array", line: `[{"resourceMetrics":[]}]`,
			want: "not an OTLP/JSON export request: a JSON object is expected, like {\"resourceMetrics\":[...]}\n"},
		{name: "wrong type", line: `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","histogram":{"dataPoints":[{"count":"many"}]}}]}]}]}`,
			want: "not an OTLP/JSON export request: ReadUint64: ", prefix: true},
		{name: "no time", line: untimed,
			want: "no data point has a time (timeUnixNano): a replay needs the time of each export\n"},
		{name: "too long", line: strings.Repeat(" ", 200) + "{}", config: "otlp:\n  max_request_bytes: 100\n",
			want: "line longer than otlp.max_request_bytes (100 bytes)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			config := recordingConfig
			if tc.config != "" {
				b, err := os.ReadFile(recordingConfig)
				if err != nil {
					t.Fatal(err)
				}
				config = filepath.Join(dir, "rollguard.yaml")
				if err := os.WriteFile(config, append(b, tc.config...), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			first := good
			if tc.config != "" {
				first = "" // a blank line is skipped, and the good one is too long here
			}
			file := filepath.Join(dir, "broken.jsonl")
			if err := os.WriteFile(file, []byte(first+"\n"+tc.line+"\n"+good+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := rollguard([]string{"replay", "--config.file=" + config, file}, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			want := "rollguard: replay: " + file + ":2: " + tc.want
			if got := stderr.String(); got != want && !(tc.prefix && strings.HasPrefix(got, want)) {
				t.Errorf("stderr:\n%q\nwant:\n%q", got, want)
			}
			if strings.Contains(stdout.String(), "summary") {
				t.Errorf("a failed replay printed a summary:\n%s", stdout.String())
			}
		})
	}
}

func TestReplayBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rollguard.yaml")
	if err := os.WriteFile(file, []byte("guards:\n  - name: checkout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := rollguard([]string{"replay", "--config.file=" + file, filepath.Join(recordingsDir, "healthy-canary.jsonl")}, &stdout, &stderr)
	want := file + ": guards[0].service: is empty (line 2)\n"
	if code != 1 || !strings.HasPrefix(stderr.String(), "rollguard: ") || !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want 1 and an error ending %q", code, stderr.String(), want)
	}
}

// export is one synthetic export of checkout at a time, with requests and
// bad requests.
func export(t testing.TB, version string, start, at time.Time, total, bad uint64) string {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.version", version)
	h := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	h.SetName("http.server.request.duration")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for _, p := range []struct {
		code  int64
		count uint64
	}{{200, total - bad}, {500, bad}} {
		dp := hist.DataPoints().AppendEmpty()
		dp.Attributes().PutInt("http.response.status_code", p.code)
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at))
		dp.SetCount(p.count)
		dp.ExplicitBounds().FromRaw([]float64{0.1})
		dp.BucketCounts().FromRaw([]uint64{p.count, 0})
	}
	b, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReplayClock checks the virtual clock: an evaluation at a boundary
// sees the records stamped at it, and a gap of a century in the data is
// crossed without running its millions of evaluations.
func TestReplayClock(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	late := t0.Add(100 * 365 * 24 * time.Hour)
	lines := []string{
		export(t, "v1", t0.Add(-5*time.Second), t0, 400, 4),
		// Exactly on the first boundary: the deployment opens, and the
		// evaluation at 00:00:10 already has a verdict on it.
		export(t, "v2", t0.Add(-5*time.Second), t0.Add(10*time.Second), 40, 0),
		export(t, "v2", t0.Add(-5*time.Second), late, 80, 0),
	}
	file := filepath.Join(t.TempDir(), "gap.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loadRecordingConfig(t)
	var out bytes.Buffer
	rep, err := replay.File(cfg, file, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"00:00:10 deployment d-9efbd2039229 checkout v1 -> v2 opened (implicit; flags new-checkout-flow)\n",
		"00:00:10 checkout inconclusive ",
		"records:    3 with 6 data points, from 2026-03-02T14:00:00Z (00:00:00) to 876000:00:00\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// The baseline went silent: no_data once no_data_timeout (2m) passed.
	if !strings.Contains(got, "00:02:20 checkout no_data ") {
		t.Errorf("no no_data verdict at 00:02:20:\n%s", got)
	}
	if rep.Evaluations > 1000 {
		t.Errorf("%d evaluations for a gap in which nothing can change", rep.Evaluations)
	}
	if len(rep.Commands) != 0 {
		t.Errorf("commands %+v, want none", rep.Commands)
	}
}

// TestReplayExtremeTimes: timestamps at both ends of what time.Time holds
// from OTLP's uint64 nanoseconds (a gap of 584 years, more than a
// time.Duration) neither hang the replay nor break its output.
func TestReplayExtremeTimes(t *testing.T) {
	at := func(version string, ns uint64) string {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		rm.Resource().Attributes().PutStr("service.version", version)
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("http.server.request.duration")
		dp := m.SetEmptyHistogram().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(ns))
		dp.SetCount(10)
		b, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	recording := strings.Join([]string{at("v1", 1<<63), at("v2", 1<<63-1), at("v2", 1<<63-1), at("v1", 1<<64-1)}, "\n")
	r := replay.New(loadRecordingConfig(t), io.Discard)
	if err := r.FeedAll("extreme.jsonl", strings.NewReader(recording), io.Discard); err != nil {
		t.Fatal(err)
	}
	r.Finish()
	if r.Report().Records != 4 || r.Report().Evaluations > 1000 {
		t.Errorf("records %d, evaluations %d", r.Report().Records, r.Report().Evaluations)
	}
}

func TestReplaySeveralRecordings(t *testing.T) {
	a := filepath.Join(recordingsDir, "healthy-canary.jsonl")
	b := filepath.Join(recordingsDir, "bad-canary.jsonl")
	var stdout, stderr bytes.Buffer
	if code := rollguard([]string{"replay", "--config.file=" + recordingConfig, a, b}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got := stdout.String()
	ia, ib := strings.Index(got, "==> "+a+" <==\n"), strings.Index(got, "\n==> "+b+" <==\n")
	if ia != 0 || ib < 0 {
		t.Fatalf("headers missing or out of order:\n%s", got)
	}
	// Each recording is replayed on its own: the healthy one issues
	// nothing, the bad one its command, as when replayed alone.
	if n := strings.Count(got[:ib], " command flag_kill "); n != 0 {
		t.Errorf("healthy part has %d commands", n)
	}
	if n := strings.Count(got[ib:], " command flag_kill "); n != 1 {
		t.Errorf("bad part has %d commands, want 1", n)
	}
}

// FuzzReplay: no recording, however broken, makes a replay panic or hang.
func FuzzReplay(f *testing.F) {
	good := firstRecord(f)
	t0 := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	f.Add(good + "\n")
	f.Add(export(f, "v1", t0, t0.Add(time.Second), 10, 1) + "\n" + export(f, "v2", t0, t0.Add(time.Hour), 10, 5) + "\n")
	f.Add(export(f, "v1", t0, t0, 10, 1) + "\n" + export(f, "v2", t0, t0.Add(-time.Hour), 10, 5) + "\n")
	f.Add("not json\n")
	f.Add("\n\n{}\n[]\n")
	f.Add(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"http.server.request.duration","histogram":{"dataPoints":[{"timeUnixNano":"18446744073709551615","count":"5"}]}}]}]}]}` + "\n")
	cfg := loadRecordingConfig(f)
	f.Fuzz(func(t *testing.T, recording string) {
		r := replay.New(cfg, io.Discard)
		if err := r.FeedAll("fuzz.jsonl", strings.NewReader(recording), io.Discard); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.jsonl:") {
				t.Errorf("error %q does not name the file and line", err)
			}
			return
		}
		r.Finish()
		if r.Report().Evaluations > 100_000 {
			t.Errorf("%d evaluations", r.Report().Evaluations)
		}
		_ = fmt.Sprint(r.Report())
	})
}

// TestReplayRunsThePlaybook: replay runs the daemon's playbook model, so
// its commands follow the same rules: a deployment that declares no flag
// gets a rollback first (replay once printed "no command" here), an action
// that needs approval is held, and dry run marks the commands; the healthy
// recording gets none of them.
func TestReplayRunsThePlaybook(t *testing.T) {
	b, err := os.ReadFile(recordingConfig)
	if err != nil {
		t.Fatal(err)
	}
	noFlag := strings.Replace(string(b), "    flags: [new-checkout-flow]\n", "", 1)
	for _, tc := range []struct {
		name, config, recording string
		want, not               []string
	}{
		{"no flag: rollback first", noFlag, "bad-canary",
			[]string{" command rollback v1 (id d-9efbd2039229/rollback/v1)\n", " incident inc-d-9efbd2039229 rolling_back: regression detected"},
			[]string{"flag_kill", "no command"}},
		{"approval holds the kill", string(b) + "playbook:\n  approval: [flag_kill]\n", "bad-canary",
			[]string{" command flag_kill new-checkout-flow held: awaiting approval (rollguard approve d-9efbd2039229/flag_kill/new-checkout-flow)"},
			[]string{"rollback"}},
		{"dry run", string(b) + "playbook:\n  dry_run: true\n", "bad-canary",
			[]string{" command flag_kill new-checkout-flow (id d-9efbd2039229/flag_kill/new-checkout-flow) (dry run)\n"}, nil},
		{"healthy twin", noFlag, "healthy-canary", nil, []string{" command ", " incident "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := filepath.Join(t.TempDir(), "rollguard.yaml")
			if err := os.WriteFile(config, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := rollguard([]string{"replay", "--config.file=" + config, filepath.Join(recordingsDir, tc.recording+".jsonl")}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := stdout.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			body := got[:strings.Index(got, "--- summary")]
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("output has %q:\n%s", n, got)
				}
			}
		})
	}
}
