// Package sources owns every way metrics reach rollguard: decoding,
// normalising (cumulative to increments, resets) and handing samples to an
// Appender. It knows nothing of guards, detectors or NATS: what happens to a
// sample after Append is the caller's business.
package sources

import "github.com/rollguard/rollguard/sample"

// The shared sample types live in package sample, which the detector uses
// without depending on any input; these aliases keep the inputs' spelling.
type (
	Kind         = sample.Kind
	Label        = sample.Label
	Labels       = sample.Labels
	Bucket       = sample.Bucket
	Sample       = sample.Sample
	Appender     = sample.Appender
	Filter       = sample.Filter
	SeriesFilter = sample.SeriesFilter
	DoorFilter   = sample.DoorFilter
)

// The kinds of a Sample.
const (
	KindCounter   = sample.KindCounter
	KindGauge     = sample.KindGauge
	KindHistogram = sample.KindHistogram
)

// Doors asks f's DoorFilter, if it has one.
func Doors(f Filter, metric string) []Label {
	if df, ok := f.(DoorFilter); ok {
		return df.Doors(metric)
	}
	return nil
}

// WantsSeries asks f's SeriesFilter, if it has one.
func WantsSeries(f Filter, metric string, ls Labels) bool {
	sf, ok := f.(SeriesFilter)
	return !ok || sf.WantsSeries(metric, ls)
}

// FilterFunc adapts a function to Filter.
type FilterFunc func(metric string) bool

// Wants implements Filter.
func (f FilterFunc) Wants(metric string) bool { return f(metric) }
