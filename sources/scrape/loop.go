package scrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
)

const userAgent = "rollguard-scrape/1"

// pool is one scrape job: its HTTP client, its target groups (static and
// from files) and a loop per target.
type pool struct {
	m      *Manager
	cfg    configs.ScrapeConfig
	client *http.Client
	accept string
	ctx    context.Context
	cancel context.CancelFunc
	sds    []*fileSD

	mu    sync.Mutex
	files []map[string][]configs.TargetGroup // per file_sd config: file -> groups
	loops map[string]*loop                   // by target key
}

func (m *Manager) newPool(c configs.ScrapeConfig) (*pool, error) {
	client, err := commoncfg.NewClientFromConfig(c.HTTPClientConfig, "scrape_"+c.JobName)
	if err != nil {
		return nil, err
	}
	p := &pool{
		m: m, cfg: c, client: client, accept: acceptHeader(c.ScrapeProtocols),
		files: make([]map[string][]configs.TargetGroup, len(c.FileSDConfigs)),
		loops: map[string]*loop{},
	}
	for i, fc := range c.FileSDConfigs {
		p.sds = append(p.sds, &fileSD{pool: p, idx: i, cfg: fc, done: make(chan struct{})})
	}
	return p, nil
}

// begin reads the target files once, starts the loops and the file
// watchers. The caller holds m.mu and has checked that m is not stopped.
// A pool gets its context here, not in newPool, so that one built for a
// configuration that is never committed holds nothing.
func (p *pool) begin() {
	p.ctx, p.cancel = context.WithCancel(p.m.ctx)
	for _, sd := range p.sds {
		sd.refresh()
	}
	p.sync()
	for _, sd := range p.sds {
		p.m.wg.Add(1)
		go func() {
			defer p.m.wg.Done()
			sd.run(p.ctx, p.m.start)
		}()
	}
}

// stop ends the pool's goroutines and waits for them.
func (p *pool) stop() {
	p.cancel()
	for _, sd := range p.sds {
		<-sd.done
	}
	p.mu.Lock()
	loops := p.loops
	p.loops = map[string]*loop{}
	p.mu.Unlock()
	for _, l := range loops {
		<-l.done
		p.m.metrics.forget(l.t.job, l.t.instance)
	}
	p.client.CloseIdleConnections()
}

func (p *pool) setFileGroups(idx int, groups map[string][]configs.TargetGroup) {
	p.mu.Lock()
	p.files[idx] = groups
	p.mu.Unlock()
}

// sync starts a loop for every new target and stops those of targets gone.
func (p *pool) sync() {
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	want := map[string]target{}
	add := func(g configs.TargetGroup) {
		for _, addr := range g.Targets {
			t := newTarget(p.cfg, addr, g.Labels)
			want[t.key] = t
		}
	}
	for _, g := range p.cfg.StaticConfigs {
		add(g)
	}
	for _, files := range p.files {
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, g := range files[n] {
				add(g)
			}
		}
	}
	var gone []*loop
	for k, l := range p.loops {
		if _, ok := want[k]; !ok {
			l.cancel()
			gone = append(gone, l)
			delete(p.loops, k)
		}
	}
	for k, t := range want {
		if _, ok := p.loops[k]; ok {
			continue
		}
		l := p.newLoop(t)
		p.loops[k] = l
		p.m.log.Debug("scrape target added", "job", t.job, "instance", t.instance, "url", t.url)
		p.m.wg.Add(1)
		go func() {
			defer p.m.wg.Done()
			l.run(p.m.start)
		}()
	}
	p.mu.Unlock()
	for _, l := range gone {
		<-l.done
		p.m.metrics.forget(l.t.job, l.t.instance)
		p.m.log.Info("scrape target removed", "job", l.t.job, "instance", l.t.instance)
	}
}

func (p *pool) sortedLoops() []*loop {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*loop, 0, len(p.loops))
	for _, l := range p.loops {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].t.key < out[j].t.key })
	return out
}

// target is one endpoint to scrape and the labels its points get.
type target struct {
	job, instance string
	url           string
	// labels are the public ones (job, instance, group labels), sorted.
	labels sources.Labels
	// key identifies the target: its labels, scheme and path.
	key string
}

func newTarget(c configs.ScrapeConfig, addr string, groupLabels map[string]string) target {
	scheme, path := c.Scheme, c.MetricsPath
	var ls sources.Labels
	for k, v := range groupLabels {
		switch {
		case k == configs.SchemeLabel:
			scheme = v
		case k == configs.MetricsPathLabel:
			path = v
		case strings.HasPrefix(k, model.ReservedLabelPrefix), v == "":
		default:
			ls = append(ls, sources.Label{Name: k, Value: v})
		}
	}
	if groupLabels[model.JobLabel] == "" {
		ls = append(ls, sources.Label{Name: model.JobLabel, Value: c.JobName})
	}
	if groupLabels[model.InstanceLabel] == "" {
		ls = append(ls, sources.Label{Name: model.InstanceLabel, Value: addr})
	}
	ls = ls.Sort()
	u := url.URL{Scheme: scheme, Host: addr, Path: path}
	if len(c.Params) > 0 {
		u.RawQuery = url.Values(c.Params).Encode()
	}
	return target{
		job: ls.Get(model.JobLabel), instance: ls.Get(model.InstanceLabel),
		url: u.String(), labels: ls, key: ls.String() + " " + u.String(),
	}
}

// loop scrapes one target every interval until its context ends.
type loop struct {
	p      *pool
	t      target
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	scrapeMu sync.Mutex // one scrape of a target at a time: its points stay in order
	lastSize int
	// lastMs is the timestamp the last scrape gave its points: each scrape's
	// is later, even two within a millisecond, since a second point at a
	// series' timestamp is a duplicate and counts nothing.
	lastMs int64

	mu sync.Mutex
	st TargetStatus
}

func (p *pool) newLoop(t target) *loop {
	ctx, cancel := context.WithCancel(p.ctx)
	l := &loop{p: p, t: t, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	lm := make(map[string]string, len(t.labels))
	for _, x := range t.labels {
		lm[x.Name] = x.Value
	}
	l.st = TargetStatus{Job: t.job, Instance: t.instance, URL: t.url, Labels: lm, Health: HealthUnknown}
	return l
}

// run waits for the manager to start, then scrapes at a fixed offset within
// the interval (spreading the targets' scrapes) and every interval after.
func (l *loop) run(start <-chan struct{}) {
	defer close(l.done)
	select {
	case <-start:
	case <-l.ctx.Done():
		return
	}
	interval := time.Duration(l.p.cfg.ScrapeInterval)
	h := fnv.New64a()
	_, _ = h.Write([]byte(l.t.key))
	first := time.NewTimer(time.Duration(h.Sum64() % uint64(interval)))
	select {
	case <-first.C:
	case <-l.ctx.Done():
		first.Stop()
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		_ = l.scrape(l.ctx)
		select {
		case <-tick.C:
		case <-l.ctx.Done():
			return
		}
	}
}

func (l *loop) status() TargetStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.Labels = maps.Clone(st.Labels)
	return st
}

// scrapeError is a failed scrape with the reason it is counted under.
type scrapeError struct {
	reason string
	err    error
}

func (e *scrapeError) Error() string { return e.err.Error() }
func (e *scrapeError) Unwrap() error { return e.err }

// Reasons a scrape fails, as counted in rollguard_scrape_errors_total.
const (
	reasonTimeout     = "timeout"
	reasonHTTP        = "http"
	reasonStatus      = "status"
	reasonTooLarge    = "body_too_large"
	reasonRead        = "read"
	reasonContentType = "content_type"
	reasonParse       = "parse"
	reasonAppend      = "append"
)

// scrape fetches, parses, normalises and appends one scrape of the target.
// A failure appends nothing.
func (l *loop) scrape(ctx context.Context) error {
	l.scrapeMu.Lock()
	defer l.scrapeMu.Unlock()
	m := l.p.m
	start := time.Now()
	body, ct, err := l.fetch(ctx)
	var points []sources.PromPoint
	drops := map[string]int{}
	if err == nil {
		l.lastMs = max(start.UnixMilli(), l.lastMs+1)
		points, err = parse(body, ct, parseTarget{labels: l.t.labels, honorLabels: l.p.cfg.HonorLabels, defaultMs: l.lastMs}, drops)
		if err != nil {
			reason := reasonParse
			if errors.Is(err, ErrUnsupportedContentType) {
				reason = reasonContentType
			}
			err = &scrapeError{reason, err}
		}
	}
	appended := 0
	var refused *sources.Refusal
	if err == nil {
		var samples []sources.Sample
		samples, refused = m.conv.Convert(points, drops)
		if len(samples) > 0 {
			if aerr := m.cfg.Appender.Append(samples); aerr != nil {
				err = &scrapeError{reasonAppend, fmt.Errorf("append: %w", aerr)}
			} else {
				appended = len(samples)
			}
		}
	}
	dur := time.Since(start)
	for reason, n := range drops {
		m.metrics.dropped.WithLabelValues(reason).Add(float64(n))
	}
	if l.ctx.Err() != nil {
		return err // the target is going away: its status and series with it
	}
	m.metrics.appended.Add(float64(appended))
	m.metrics.duration.WithLabelValues(l.t.job, l.t.instance).Set(dur.Seconds())
	l.mu.Lock()
	wasUp := l.st.Health
	l.st.LastScrape, l.st.Duration = start, dur
	if err != nil {
		var se *scrapeError
		reason := reasonHTTP
		if errors.As(err, &se) {
			reason = se.reason
		}
		m.metrics.errors.WithLabelValues(l.t.job, reason).Inc()
		m.metrics.up.WithLabelValues(l.t.job, l.t.instance).Set(0)
		m.metrics.samples.WithLabelValues(l.t.job, l.t.instance).Set(0)
		l.st.Health, l.st.LastError, l.st.Samples = HealthDown, err.Error(), 0
	} else {
		m.metrics.up.WithLabelValues(l.t.job, l.t.instance).Set(1)
		m.metrics.samples.WithLabelValues(l.t.job, l.t.instance).Set(float64(len(points)))
		l.st.Health, l.st.LastError, l.st.Samples = HealthUp, "", len(points)
	}
	wasRefused := l.st.LastRefusal != ""
	l.st.LastRefusal = ""
	if refused != nil {
		l.st.LastRefusal = refused.String()
	}
	l.mu.Unlock()
	if refused != nil {
		// Loud when a target starts sending bad points, quiet while it goes on.
		log := m.log.Debug
		if !wasRefused {
			log = m.log.Warn
		}
		log("scrape points refused", "job", l.t.job, "instance", l.t.instance, "first", refused.String())
	}
	switch {
	case err != nil && wasUp != HealthDown:
		m.log.Warn("scrape failed", "job", l.t.job, "instance", l.t.instance, "error", err)
	case err == nil && wasUp == HealthDown:
		m.log.Info("scrape recovered", "job", l.t.job, "instance", l.t.instance)
	}
	return err
}

// fetch GETs the target within the scrape timeout and returns the body,
// uncompressed and at most body_size_limit bytes, and its content type.
func (l *loop) fetch(ctx context.Context) ([]byte, string, error) {
	cfg := &l.p.cfg
	timeout := time.Duration(cfg.ScrapeTimeout)
	limit := int64(cfg.BodySizeLimit)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) ([]byte, string, error) {
		reason := reasonHTTP
		if errors.Is(err, context.DeadlineExceeded) {
			reason = reasonTimeout
			err = fmt.Errorf("scrape timed out after %s: %w", timeout, err)
		}
		return nil, "", &scrapeError{reason, err}
	}
	readFail := func(err error) ([]byte, string, error) {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return nil, "", &scrapeError{reasonRead, err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.t.url, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", l.p.accept)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	resp, err := l.p.client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, "", &scrapeError{reasonStatus, fmt.Errorf("server returned HTTP status %s", resp.Status)}
	}
	tooLarge := &scrapeError{reasonTooLarge, fmt.Errorf("body larger than body_size_limit (%s)", cfg.BodySizeLimit)}
	var in io.Reader = resp.Body
	switch enc := strings.ToLower(resp.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		if resp.ContentLength > limit {
			return nil, "", tooLarge
		}
	case "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return readFail(fmt.Errorf("gzip: %w", err))
		}
		defer zr.Close()
		in = zr
	default:
		return nil, "", &scrapeError{reasonRead, fmt.Errorf("unsupported content encoding %q", enc)}
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(int64(l.lastSize)+512, limit+1)))
	// One byte past the limit tells an oversized body (or a decompression
	// bomb) without holding more than the limit.
	if _, err := buf.ReadFrom(io.LimitReader(in, limit+1)); err != nil {
		return readFail(fmt.Errorf("read body: %w", err))
	}
	if int64(buf.Len()) > limit {
		return nil, "", tooLarge
	}
	l.lastSize = buf.Len()
	return buf.Bytes(), resp.Header.Get("Content-Type"), nil
}
