package scrape

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
)

// Media types of the expositions rollguard reads.
const (
	contentProto       = "application/vnd.google.protobuf"
	contentOpenMetrics = "application/openmetrics-text"
	contentText        = "text/plain"
)

// protocolHeaders are the Accept values of the scrape protocols.
var protocolHeaders = map[string]string{
	configs.ScrapeProtocolProto:          contentProto + ";proto=io.prometheus.client.MetricFamily;encoding=delimited",
	configs.ScrapeProtocolOpenMetrics100: contentOpenMetrics + ";version=1.0.0",
	configs.ScrapeProtocolOpenMetrics001: contentOpenMetrics + ";version=0.0.1",
	configs.ScrapeProtocolText004:        contentText + ";version=0.0.4",
}

// acceptHeader offers the protocols in order of preference, as Prometheus
// does, and anything else last so that a target with no negotiation at all
// still answers (in text, which is what such targets speak).
func acceptHeader(protocols []string) string {
	var b strings.Builder
	weight := len(protocolHeaders) + 1
	for _, p := range protocols {
		h, ok := protocolHeaders[p]
		if !ok {
			continue
		}
		b.WriteString(h)
		b.WriteString(";q=0.")
		b.WriteString(strconv.Itoa(weight))
		b.WriteByte(',')
		weight--
	}
	b.WriteString("*/*;q=0.")
	b.WriteString(strconv.Itoa(weight))
	return b.String()
}

// ErrUnsupportedContentType means the target answered in a format rollguard cannot read.
var ErrUnsupportedContentType = errors.New("scrape: unsupported content type")

// parseTarget is what parse attaches to every point of one target.
type parseTarget struct {
	// labels are the target's labels (job, instance, static labels), sorted.
	labels sources.Labels
	// honorLabels keeps the exposed value of a clashing label.
	honorLabels bool
	// defaultMs is the timestamp of points that carry none: the scrape's start.
	defaultMs int64
}

// parse decodes one scrape body (text 0.0.4, OpenMetrics 1.0 or delimited
// protobuf, chosen by contentType; an empty one means text) into points that
// carry the target's labels. Invalid native histograms are left out and
// counted in drops; any other problem fails the whole body, so that a
// truncated or corrupt scrape never yields part of its series.
func parse(body []byte, contentType string, t parseTarget, drops map[string]int) ([]sources.PromPoint, error) {
	if strings.TrimSpace(contentType) == "" {
		contentType = contentText + "; version=0.0.4"
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnsupportedContentType, contentType, err)
	}
	var format int
	switch {
	case mt == contentText && (params["version"] == "" || params["version"] == "0.0.4"):
		format = formatText
	case mt == contentOpenMetrics && (params["version"] == "" || params["version"] == "1.0.0" || params["version"] == "0.0.1"):
		format = formatOpenMetrics
	case mt == contentProto && (params["proto"] == "" || params["proto"] == "io.prometheus.client.MetricFamily") &&
		(params["encoding"] == "" || params["encoding"] == "delimited"):
		format = formatProto
	default:
		return nil, fmt.Errorf("%w %q: rollguard reads %s, %s and %s", ErrUnsupportedContentType, contentType,
			protocolHeaders[configs.ScrapeProtocolProto], protocolHeaders[configs.ScrapeProtocolOpenMetrics100],
			protocolHeaders[configs.ScrapeProtocolText004])
	}
	// OpenMetrics' _created series are read as series and matched to their
	// points afterwards: the parser's own StartTimestamp looks ahead through
	// the rest of the family for every point, which is quadratic in the
	// family's size when there are no _created lines.
	p, err := textparse.New(body, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if p == nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnsupportedContentType, contentType, err)
	}
	b := pointBuilder{target: t, types: map[string]model.MetricType{}}
	var (
		out         []sources.PromPoint
		ls          labels.Labels
		created     map[string]int64 // by createdKey, in ms
		denseBudget = int64(maxNativeBucketsPerScrape)
	)
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", mt, err)
		}
		switch entry {
		case textparse.EntryType:
			name, typ := p.Type()
			b.types[string(name)] = typ
		case textparse.EntrySeries:
			_, ts, v := p.Series()
			p.Labels(&ls)
			pt := b.point(ls, ts, v, nil)
			if format == formatOpenMetrics && pt.Type != model.MetricTypeUnknown {
				if fam, ok := strings.CutSuffix(ls.Get(model.MetricNameLabel), "_created"); ok && b.family(fam+"_created") == fam {
					if created == nil {
						created = map[string]int64{}
					}
					created[createdKey(fam, pt.Labels)] = int64(v * 1000)
					continue
				}
			}
			if format == formatProto {
				pt.CreatedMs = p.StartTimestamp()
			}
			out = append(out, pt)
		case textparse.EntryHistogram:
			_, ts, h, fh := p.Histogram()
			w := nativeWidth(h, fh)
			if w > maxNativeWidth || w > denseBudget {
				drops[DropNativeTooWide]++
				continue
			}
			denseBudget -= w
			ph, ok := nativeHistogram(h, fh)
			if !ok {
				drops[sources.DropBadHistogram]++
				continue
			}
			p.Labels(&ls)
			pt := b.point(ls, ts, 0, ph)
			pt.CreatedMs = p.StartTimestamp()
			out = append(out, pt)
		}
	}
	if len(created) > 0 {
		for i := range out {
			pt := &out[i]
			if pt.Type == model.MetricTypeUnknown || pt.Type == model.MetricTypeGauge {
				continue
			}
			if fam := b.family(pt.Labels.Get(model.MetricNameLabel)); fam != "" {
				pt.CreatedMs = created[createdKey(fam, pt.Labels)]
			}
		}
	}
	return out, nil
}

const (
	formatText = iota + 1
	formatOpenMetrics
	formatProto
)

// createdKey identifies the series of a family that one _created line
// belongs to: all of a histogram's buckets, its count and its sum share it.
func createdKey(family string, ls sources.Labels) string {
	var sb strings.Builder
	sb.WriteString(family)
	for _, l := range ls {
		switch l.Name {
		case model.MetricNameLabel, model.BucketLabel, model.QuantileLabel:
			continue
		}
		sb.WriteByte(0xff)
		sb.WriteString(l.Name)
		sb.WriteByte(0xfe)
		sb.WriteString(l.Value)
	}
	return sb.String()
}

type pointBuilder struct {
	target parseTarget
	// types are the metric families' types by family name.
	types map[string]model.MetricType
}

func (b *pointBuilder) point(ls labels.Labels, ts *int64, v float64, h *sources.PromHistogram) sources.PromPoint {
	pt := sources.PromPoint{
		Labels:      b.labels(ls),
		TimestampMs: b.target.defaultMs,
		Value:       v,
		Histogram:   h,
	}
	if ts != nil {
		pt.TimestampMs = *ts
	}
	pt.Type = b.typeOf(ls.Get(model.MetricNameLabel))
	return pt
}

// familySuffixes are the series-name suffixes each family type may use.
var familySuffixes = map[model.MetricType][]string{
	model.MetricTypeCounter:        {"_total", "_created"},
	model.MetricTypeHistogram:      {"_bucket", "_count", "_sum", "_created"},
	model.MetricTypeSummary:        {"_count", "_sum", "_created"},
	model.MetricTypeGaugeHistogram: {"_bucket", "_gcount", "_gsum"},
	model.MetricTypeInfo:           {"_info"},
}

// typeOf finds the type of a series from its family's metadata: the text
// format names a counter's family with its _total, OpenMetrics without.
func (b *pointBuilder) typeOf(name string) model.MetricType {
	if fam := b.family(name); fam != "" {
		return b.types[fam]
	}
	return model.MetricTypeUnknown
}

// family is the name of the metric family a series belongs to, or "" when
// no metadata names one.
func (b *pointBuilder) family(name string) string {
	if _, ok := b.types[name]; ok {
		return name
	}
	i := strings.LastIndexByte(name, '_')
	if i <= 0 {
		return ""
	}
	t, ok := b.types[name[:i]]
	if !ok {
		return ""
	}
	for _, s := range familySuffixes[t] {
		if s == name[i:] {
			return name[:i]
		}
	}
	return ""
}

// labels merges the exposed labels with the target's. On a clash the
// target's value wins and the exposed one is kept as exported_<name>, unless
// honor_labels is set, as in Prometheus. Empty values mean "no label".
func (b *pointBuilder) labels(ls labels.Labels) sources.Labels {
	target := b.target.labels
	exposed := make(sources.Labels, 0, ls.Len()+len(target))
	renamed := false
	ls.Range(func(l labels.Label) {
		if l.Value == "" {
			return
		}
		name := l.Name
		if target.Get(name) != "" && !b.target.honorLabels {
			name = "exported_" + name
			for target.Get(name) != "" || ls.Has(name) {
				name = "exported_" + name
			}
			renamed = true
		}
		exposed = append(exposed, sources.Label{Name: name, Value: l.Value})
	})
	for _, l := range target {
		if b.target.honorLabels && ls.Get(l.Name) != "" {
			continue
		}
		if renamed {
			exposed = append(exposed, l)
			continue
		}
		// Both are sorted and share no name: insert in place, no sort needed.
		i, _ := slices.BinarySearchFunc(exposed, l.Name, func(x sources.Label, name string) int { return strings.Compare(x.Name, name) })
		exposed = slices.Insert(exposed, i, l)
	}
	if renamed {
		return exposed.Sort()
	}
	return exposed
}

// Bounds on native histograms. Spans describe buckets sparsely, so a few
// bytes can ask for millions of dense buckets: a histogram may span at most
// maxNativeWidth buckets (a schema-8 histogram over 256 doublings) and one
// scrape at most maxNativeBucketsPerScrape (8 MiB of counts).
const (
	maxNativeWidth            = 1 << 16
	maxNativeBucketsPerScrape = 1 << 20
	// DropNativeTooWide counts native histograms refused for their width.
	DropNativeTooWide = "native_histogram_too_wide"
)

// nativeWidth is the number of dense buckets the histogram's spans cover.
func nativeWidth(h *histogram.Histogram, fh *histogram.FloatHistogram) int64 {
	switch {
	case h != nil:
		return spanWidth(h.PositiveSpans) + spanWidth(h.NegativeSpans)
	case fh != nil:
		return spanWidth(fh.PositiveSpans) + spanWidth(fh.NegativeSpans)
	}
	return 0
}

func spanWidth(spans []histogram.Span) int64 {
	var idx, first, last int64
	seen := false
	for i, s := range spans {
		if i > 0 {
			idx += int64(s.Offset)
		} else {
			idx = int64(s.Offset)
		}
		if s.Length > 0 {
			if !seen {
				first, seen = idx, true
			}
			last = idx + int64(s.Length) - 1
		}
		idx += int64(s.Length)
	}
	if !seen {
		return 0
	}
	return last - first + 1
}

// nativeHistogram converts a parsed native histogram, whose integer bucket
// counts are deltas, into the OpenTelemetry bucket convention with absolute
// counts. Custom-bucket histograms (NHCB) and invalid ones are refused.
func nativeHistogram(h *histogram.Histogram, fh *histogram.FloatHistogram) (*sources.PromHistogram, bool) {
	switch {
	case h != nil:
		if h.Schema < histogram.ExponentialSchemaMin || h.Schema > histogram.ExponentialSchemaMax || h.Validate() != nil {
			return nil, false
		}
		pos, ok1 := sources.BucketsFromSpans(spans(h.PositiveSpans), absolute(h.PositiveBuckets))
		neg, ok2 := sources.BucketsFromSpans(spans(h.NegativeSpans), absolute(h.NegativeBuckets))
		if !ok1 || !ok2 {
			return nil, false
		}
		return &sources.PromHistogram{
			Count: float64(h.Count), Sum: h.Sum, Gauge: h.CounterResetHint == histogram.GaugeType,
			Native: sources.NativeHistogram{Scale: h.Schema, ZeroThreshold: h.ZeroThreshold,
				ZeroCount: float64(h.ZeroCount), Positive: pos, Negative: neg},
		}, true
	case fh != nil:
		if fh.Schema < histogram.ExponentialSchemaMin || fh.Schema > histogram.ExponentialSchemaMax || fh.Validate() != nil {
			return nil, false
		}
		pos, ok1 := sources.BucketsFromSpans(spans(fh.PositiveSpans), fh.PositiveBuckets)
		neg, ok2 := sources.BucketsFromSpans(spans(fh.NegativeSpans), fh.NegativeBuckets)
		if !ok1 || !ok2 {
			return nil, false
		}
		return &sources.PromHistogram{
			Count: fh.Count, Sum: fh.Sum, Gauge: fh.CounterResetHint == histogram.GaugeType,
			Native: sources.NativeHistogram{Scale: fh.Schema, ZeroThreshold: fh.ZeroThreshold,
				ZeroCount: fh.ZeroCount, Positive: pos, Negative: neg},
		}, true
	}
	return nil, false
}

func spans(in []histogram.Span) []sources.Span {
	out := make([]sources.Span, len(in))
	for i, s := range in {
		out[i] = sources.Span{Offset: s.Offset, Length: s.Length}
	}
	return out
}

// absolute decodes the delta-encoded bucket counts of an integer histogram.
func absolute(deltas []int64) []float64 {
	out := make([]float64, len(deltas))
	var c int64
	for i, d := range deltas {
		c += d
		out[i] = float64(c)
	}
	return out
}
