// Package replay runs recorded OTLP/JSON exports through the guards and the
// playbook on a virtual clock, with the daemon's own detector engine and
// playbook model, and tells the verdict timeline and the commands that
// would have gone out. Nothing is published.
package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources/otlp"
)

// File replays one recording through a fresh engine and prints its
// timeline and summary to w; warnings (rejected points) go to warn.
func File(cfg *configs.Config, file string, w, warn io.Writer) (*Report, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := New(cfg, w)
	if err := r.FeedAll(file, f, warn); err != nil {
		return &r.report, err
	}
	r.Finish()
	return &r.report, nil
}

// Report is what a replay found, for the summary and for tests.
type Report struct {
	Records     int
	Evaluations int
	Points      int
	Rejected    int64
	First, Last time.Time
	Deployments []*Deployment
	Commands    []Command
}

// Deployment is one deployment the engine opened during a replay.
type Deployment struct {
	detector.Deployment
	// Detected is the time of its first regressed verdict, zero if none;
	// DetectedOn names the signals that had regressed then.
	Detected   time.Time
	DetectedOn []string
	// State is each guard's state and Since when it has held; Last is
	// each guard's last verdict.
	State map[string]detector.State // by guard
	Since map[string]time.Time
	Last  map[string]detector.GuardVerdict
	ended bool
}

// Command is a command the playbook would have issued.
type Command struct {
	At     time.Time
	ID     string
	Action string
	Target string
}

// Replay runs recorded exports through the engine on a virtual clock: the
// clock is the data's time (the latest point seen), and the evaluations a
// daemon would have run every evaluation_interval are run as the clock
// passes their times, without sleeping.
type Replay struct {
	cfg      *configs.Config
	interval time.Duration
	// horizon is how long after the last data the engine's verdicts can
	// still change (no_data timeouts, promotion, mode decisions): later
	// evaluations without new data repeat the last one and are skipped, so
	// that a gap of years in a recording costs nothing.
	horizon  time.Duration
	engine   *detector.Engine
	receiver *otlp.Receiver
	w        io.Writer

	now      time.Time // what the engine's clock reads
	clock    time.Time // the latest data time
	nextEval time.Time // the next evaluation's time
	started  bool

	verdicts    []detector.GuardVerdict // handed over during Evaluate
	deployments map[string]*Deployment
	// model is the daemon's playbook, run on the replay's clock: no
	// actuator answers, so its ack timeouts take the next steps.
	model   *actions.Model
	printed map[string]int // by incident id: timeline entries printed
	report  Report
}

func New(cfg *configs.Config, w io.Writer) *Replay {
	r := &Replay{cfg: cfg, w: w, interval: time.Duration(cfg.Global.EvaluationInterval),
		deployments: map[string]*Deployment{}, printed: map[string]int{}}
	r.model = actions.NewModel(cfg, actions.Subjects{Prefix: cfg.NATS.SubjectPrefix}, r.interval, nil)
	r.horizon = max(time.Duration(cfg.Global.NoDataTimeout), time.Duration(cfg.Global.PromotionHold))
	for _, g := range cfg.Guards {
		r.horizon = max(r.horizon, time.Duration(g.Baseline.Window))
	}
	r.horizon += 3 * r.interval
	r.engine = detector.NewEngine(cfg, detector.EngineOptions{
		Handler:      detector.VerdictFunc(func(v detector.GuardVerdict) { r.verdicts = append(r.verdicts, v) }),
		Incidents:    detector.IncidentsFunc(func(id string) detector.Phase { return r.model.Phases()[id] }),
		OnDeployment: func(d detector.Deployment) { r.apply(r.model.Deployment(d, r.now)) },
		Now:          func() time.Time { return r.now },
	})
	r.receiver = otlp.NewReceiver(otlp.Config{
		Appender:            r.engine,
		Filter:              r.engine,
		MaxRequestBytes:     cfg.OTLP.MaxRequestBytes,
		MaxSeries:           cfg.Limits.MaxSeries,
		MaxLabels:           cfg.Limits.MaxLabelsPerSeries,
		MaxLabelValueLength: cfg.Limits.MaxLabelValueLength,
	})
	return r
}

// feedAll reads the recording line by line. Blank lines are skipped; any
// other line that is not an OTLP/JSON export request stops the replay with
// an error naming the file and line.
func (r *Replay) FeedAll(file string, in io.Reader, warn io.Writer) error {
	limit := int(min(r.cfg.OTLP.MaxRequestBytes, 1<<30))
	sc := bufio.NewScanner(in)
	// A token must be shorter than the larger of the buffer's capacity and max.
	sc.Buffer(make([]byte, 0, min(64<<10, limit)), limit+1)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		er, err := decodeRecord(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, n, err)
		}
		rejected, reason, err := r.feed(er)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, n, err)
		}
		if rejected > 0 {
			fmt.Fprintf(warn, "%s:%d: %d data points rejected: %s\n", file, n, rejected, reason)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than otlp.max_request_bytes (%d bytes)", file, n+1, limit)
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// decodeRecord decodes one line. The pdata decoder ignores trailing bytes
// and reports syntax errors in its parser's terms, so the JSON is checked
// first.
func decodeRecord(line []byte) (pmetricotlp.ExportRequest, error) {
	const what = "not an OTLP/JSON export request"
	if !json.Valid(line) {
		var v any
		err := json.Unmarshal(line, &v)
		return pmetricotlp.ExportRequest{}, fmt.Errorf("%s: %w", what, err)
	}
	if line[0] != '{' {
		return pmetricotlp.ExportRequest{}, fmt.Errorf("%s: a JSON object is expected, like {\"resourceMetrics\":[...]}", what)
	}
	er := pmetricotlp.NewExportRequest()
	if err := er.UnmarshalJSON(line); err != nil {
		return pmetricotlp.ExportRequest{}, fmt.Errorf("%s: %w", what, err)
	}
	return er, nil
}

// feed runs the evaluations due before the record's time, then hands the
// record to the OTLP receiver (conversion and cumulative normalisation
// exactly as over HTTP) at the record's time.
func (r *Replay) feed(er pmetricotlp.ExportRequest) (rejected int64, reason string, err error) {
	md := er.Metrics()
	points := md.DataPointCount()
	if points == 0 {
		r.report.Records++
		return 0, "", nil
	}
	t, ok := recordTime(md)
	if !ok {
		return 0, "", errors.New("no data point has a time (timeUnixNano): a replay needs the time of each export")
	}
	if !r.started {
		r.started = true
		r.report.First, r.clock, r.now = t, t, t
		r.nextEval = t.Add(r.interval)
	}
	r.advance(t)
	if t.After(r.clock) {
		r.clock = t
	}
	r.now = r.clock
	resp, err := r.receiver.Export(context.Background(), er)
	if err != nil {
		return 0, "", err
	}
	r.report.Records++
	r.report.Points += points
	r.report.Last = r.clock
	r.observeDeployments()
	ps := resp.PartialSuccess()
	r.report.Rejected += ps.RejectedDataPoints()
	return ps.RejectedDataPoints(), ps.ErrorMessage(), nil
}

// recordTime is the latest point time of an export.
func recordTime(md pmetric.Metrics) (time.Time, bool) {
	var latest pcommon.Timestamp
	see := func(ts pcommon.Timestamp) {
		if ts > latest {
			latest = ts
		}
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for p := 0; p < m.Gauge().DataPoints().Len(); p++ {
						see(m.Gauge().DataPoints().At(p).Timestamp())
					}
				case pmetric.MetricTypeSum:
					for p := 0; p < m.Sum().DataPoints().Len(); p++ {
						see(m.Sum().DataPoints().At(p).Timestamp())
					}
				case pmetric.MetricTypeHistogram:
					for p := 0; p < m.Histogram().DataPoints().Len(); p++ {
						see(m.Histogram().DataPoints().At(p).Timestamp())
					}
				case pmetric.MetricTypeExponentialHistogram:
					for p := 0; p < m.ExponentialHistogram().DataPoints().Len(); p++ {
						see(m.ExponentialHistogram().DataPoints().At(p).Timestamp())
					}
				case pmetric.MetricTypeSummary:
					for p := 0; p < m.Summary().DataPoints().Len(); p++ {
						see(m.Summary().DataPoints().At(p).Timestamp())
					}
				}
			}
		}
	}
	return latest.AsTime(), latest != 0
}

// advance runs every evaluation due before t. An evaluation at time b sees
// every record stamped at or before b, as a daemon's tick at b would see
// exports made before it.
func (r *Replay) advance(t time.Time) {
	for r.nextEval.Before(t) {
		if r.nextEval.Sub(r.clock) > r.horizon {
			// Nothing can change until new data: skip towards t (in
			// several jumps when the gap is beyond what a Duration holds).
			k := max(t.Sub(r.nextEval)/r.interval, 1)
			r.nextEval = r.nextEval.Add(k * r.interval)
			continue
		}
		r.evaluate(r.nextEval)
		r.nextEval = r.nextEval.Add(r.interval)
	}
}

// finish runs the last evaluation, at the first evaluation time at or
// after the last record, and prints the summary.
func (r *Replay) Finish() {
	if r.started {
		r.evaluate(r.nextEval)
	}
	r.summary()
}

func (r *Replay) evaluate(at time.Time) {
	r.now = at
	r.verdicts = r.verdicts[:0]
	r.report.Evaluations++
	r.engine.Evaluate()
	r.observeDeployments()
	for _, v := range r.verdicts {
		r.verdict(v)
	}
	r.apply(r.model.Tick(at))
}

// apply carries out the model's effects on the replay's engine (nothing is
// published) and prints what the playbook did: state changes and commands.
func (r *Replay) apply(eff actions.Effects) {
	for _, m := range eff.Messages {
		r.model.Published(m.ID, r.now) // as if JetStream had stored it at once
	}
	for _, x := range eff.Restarts {
		r.engine.Verify(x.Deployment.ID, x.From)
	}
	for _, e := range eff.Ends {
		if e.Reason == actions.EndRolledBack {
			r.engine.EndDeployment(e.DeploymentID, e.Reason)
		} else {
			r.engine.NextGeneration(e.DeploymentID)
		}
	}
	incs := r.model.Incidents()
	sort.Slice(incs, func(i, j int) bool { return incs[i].OpenedAt.Before(incs[j].OpenedAt) })
	for _, inc := range incs {
		for _, e := range inc.Timeline[r.printed[inc.ID]:] {
			switch {
			case e.Kind == actions.EntryState && e.To != "" && e.To != "deployed":
				fmt.Fprintf(r.w, "%s incident %s %s: %s\n", r.rel(e.At), inc.ID, e.To, e.Reason)
			case e.Kind == actions.EntryCommand && e.CommandID != "":
				c := commandOf(inc, e.CommandID)
				if c.Status == actions.CommandHeld || c.Status == actions.CommandCancelled {
					fmt.Fprintf(r.w, "%s command %s %s %s: %s (id %s)\n", r.rel(e.At), c.Action, targetOf(c), c.Status, c.HoldReason, c.ID)
					continue
				}
				rc := Command{At: e.At, ID: c.ID, Action: c.Action, Target: targetOf(c)}
				r.report.Commands = append(r.report.Commands, rc)
				fmt.Fprintf(r.w, "%s command %s %s (id %s)%s\n", r.rel(rc.At), rc.Action, rc.Target, rc.ID, dryRun(c.DryRun))
			}
		}
		r.printed[inc.ID] = len(inc.Timeline)
	}
}

func commandOf(inc actions.Incident, id string) actions.CommandRecord {
	for _, c := range inc.Commands {
		if c.ID == id {
			return c
		}
	}
	return actions.CommandRecord{ID: id}
}

// targetOf names what a command acts on: the flag, the version to return
// to, or the audited window.
func targetOf(c actions.CommandRecord) string {
	switch {
	case c.Target.Flag != "":
		return c.Target.Flag
	case c.Target.Version != "":
		return c.Target.Version
	}
	return "window"
}

func dryRun(dry bool) string {
	if dry {
		return " (dry run)"
	}
	return ""
}

func deploymentKey(d detector.Deployment) string {
	return d.ID + "@" + strconv.FormatInt(d.StartedAt.UnixNano(), 10)
}

// observeDeployments prints the deployments the engine opened or ended
// since the last look.
func (r *Replay) observeDeployments() {
	ds := r.engine.Deployments()
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].StartedAt.Before(ds[j].StartedAt) })
	for _, d := range ds {
		rd := r.deployment(d)
		if d.EndedAt != nil && !rd.ended {
			rd.ended = true
			rd.Deployment = d
			fmt.Fprintf(r.w, "%s deployment %s %s %s -> %s ended: %s\n",
				r.rel(*d.EndedAt), d.ID, d.Service, d.PreviousVersion, d.Version, d.EndReason)
		}
	}
}

// deployment returns the replay's record of d, printing its opening the
// first time.
func (r *Replay) deployment(d detector.Deployment) *Deployment {
	key := deploymentKey(d)
	if rd := r.deployments[key]; rd != nil {
		return rd
	}
	rd := &Deployment{Deployment: d, State: map[string]detector.State{}, Since: map[string]time.Time{},
		Last: map[string]detector.GuardVerdict{}}
	r.deployments[key] = rd
	r.report.Deployments = append(r.report.Deployments, rd)
	flags := "no flags"
	if len(d.Flags) > 0 {
		flags = "flags " + strings.Join(d.Flags, ", ")
	}
	fmt.Fprintf(r.w, "%s deployment %s %s %s -> %s opened (%s; %s)\n",
		r.rel(d.StartedAt), d.ID, d.Service, d.PreviousVersion, d.Version, d.Source, flags)
	return rd
}

// verdict prints a guard's verdict when its state changed and hands it to
// the playbook's model, which issues the commands as the daemon would.
func (r *Replay) verdict(v detector.GuardVerdict) {
	rd := r.deployment(v.Deployment)
	rd.Last[v.Guard] = v
	if prev, seen := rd.State[v.Guard]; !seen || prev != v.State {
		rd.State[v.Guard], rd.Since[v.Guard] = v.State, v.At
		fmt.Fprintf(r.w, "%s %s %-12s %s\n", r.rel(v.At), v.Guard, v.State, detector.Explain(v))
	}
	if v.State == detector.StateRegressed && rd.Detected.IsZero() {
		rd.Detected = v.At
		for _, ev := range v.Signals {
			if ev.State == detector.StateRegressed {
				rd.DetectedOn = append(rd.DetectedOn, ev.Signal)
			}
		}
	}
	r.apply(r.model.Verdict(v, v.At))
}

// rel is t relative to the first record, as [-]HH:MM:SS.
func (r *Replay) rel(t time.Time) string {
	return clockTime(t.Sub(r.report.First))
}

func clockTime(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	s := int64(d / time.Second)
	return fmt.Sprintf("%s%02d:%02d:%02d", sign, s/3600, s/60%60, s%60)
}

func (r *Replay) summary() {
	rep := &r.report
	fmt.Fprintln(r.w, "--- summary")
	if !r.started {
		fmt.Fprintf(r.w, "records:    %d, none with data points\n", rep.Records)
	} else {
		fmt.Fprintf(r.w, "records:    %d with %d data points, from %s (00:00:00) to %s\n",
			rep.Records, rep.Points, rep.First.UTC().Format(time.RFC3339), r.rel(rep.Last))
	}
	if rep.Rejected > 0 {
		fmt.Fprintf(r.w, "rejected:   %d data points\n", rep.Rejected)
	}
	if len(rep.Deployments) == 0 {
		fmt.Fprintln(r.w, "deployment: none (every guarded service reported one version)")
	}
	for _, d := range rep.Deployments {
		fmt.Fprintf(r.w, "deployment: %s %s %s -> %s, started %s\n", d.ID, d.Service, d.PreviousVersion, d.Version, r.rel(d.StartedAt))
		if d.Detected.IsZero() {
			fmt.Fprintln(r.w, "detected:   no")
		} else {
			fmt.Fprintf(r.w, "detected:   %s, %s after the deployment started, on %s\n",
				r.rel(d.Detected), d.Detected.Sub(d.StartedAt).Round(time.Second), strings.Join(d.DetectedOn, ", "))
		}
		guards := make([]string, 0, len(d.State))
		for g := range d.State {
			guards = append(guards, g)
		}
		sort.Strings(guards)
		for _, g := range guards {
			last := d.Last[g]
			fmt.Fprintf(r.w, "final:      %s %s since %s; at %s:\n", g, d.State[g], r.rel(d.Since[g]), r.rel(last.At))
			for _, ev := range last.Signals {
				fmt.Fprintf(r.w, "  %-12s %s\n", ev.State, detector.Describe(ev))
			}
		}
		if d.EndedAt != nil {
			fmt.Fprintf(r.w, "ended:      %s, %s\n", r.rel(*d.EndedAt), d.EndReason)
		}
	}
	if len(rep.Commands) == 0 {
		fmt.Fprintln(r.w, "commands:   none")
		return
	}
	fmt.Fprintf(r.w, "commands:   %d\n", len(rep.Commands))
	for _, c := range rep.Commands {
		fmt.Fprintf(r.w, "  %s %s %s (id %s)\n", r.rel(c.At), c.Action, c.Target, c.ID)
	}
}

// Report is what the replay has found so far.
func (r *Replay) Report() *Report { return &r.report }
