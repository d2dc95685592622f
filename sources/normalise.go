package sources

import (
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// freshSeries is how young (start to first point) a cumulative series may be
// for its first point to count in full. An older series seen for the first
// time (rollguard restarted, a long-running process) only sets the base, so
// hours of history never land in one tick.
const freshSeries = 5 * time.Minute

// Cumulative turns cumulative points into increments, aware of resets
// (a value going down, or a new start time). It holds one entry per series
// and forgets series not seen for its ttl.
type Cumulative struct {
	mu sync.Mutex
	// series is keyed by a 64-bit hash of the series key, so that steady
	// state holds no label strings (a collision needs ~2^32 series).
	series    map[uint64]*cumState
	bounds    map[uint64][]float64 // classic bucket layouts, shared by series
	maxSeries int
	ttl       time.Duration
	lastSweep int64
	// clock is the wall clock idleness is measured on: the points' own
	// timestamps only order points, since one skewed client must not make
	// every other series look idle.
	clock func() time.Time
}

type cumState struct {
	start, last int64
	seen        int64 // wall clock of the last point
	value       float64
	count, sum  float64
	buckets     []float64
	bounds      []float64
	native      *NativeHistogram
}

// NewCumulative tracks at most maxSeries series, forgetting those idle for ttl.
func NewCumulative(maxSeries int, ttl time.Duration) *Cumulative {
	return &Cumulative{series: map[uint64]*cumState{}, bounds: map[uint64][]float64{}, maxSeries: maxSeries, ttl: ttl, clock: time.Now}
}

// SetClock replaces the wall clock (tests).
func (c *Cumulative) SetClock(f func() time.Time) { c.clock = f }

// ErrSeriesLimit means a new series was refused because the tracker is full.
var ErrSeriesLimit = errorString("sources: too many series tracked")

type errorString string

func (e errorString) Error() string { return string(e) }

// SeriesKey identifies a series in the cumulative state: a 64-bit hash of
// its metric name and labels (a collision needs billions of series).
type SeriesKey uint64

// Key hashes a metric name, a part (such as "_bucket" or ""), and labels.
// 0xff never occurs in UTF-8, so it separates names and values unambiguously.
func Key(metric, part string, ls Labels) SeriesKey {
	d := xxhash.New()
	_, _ = d.WriteString(metric)
	_, _ = d.WriteString(part)
	for _, l := range ls {
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Name)
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Value)
	}
	return SeriesKey(d.Sum64())
}

var sep = []byte{0xff}

// StringKey keys a series by an arbitrary string.
func StringKey(s string) SeriesKey { return SeriesKey(xxhash.Sum64String(s)) }

func (c *Cumulative) state(key SeriesKey, start, _ int64) (*cumState, bool, error) {
	wall := c.clock().UnixNano()
	c.sweep(wall)
	h := uint64(key)
	st, ok := c.series[h]
	if ok {
		st.seen = wall
		return st, false, nil
	}
	if len(c.series) >= c.maxSeries {
		return nil, false, ErrSeriesLimit
	}
	st = &cumState{start: start, seen: wall}
	c.series[h] = st
	return st, true, nil
}

// internBounds returns a shared copy of a bucket layout: most series of a
// histogram have the same bounds.
func (c *Cumulative) internBounds(b []float64) []float64 {
	d := xxhash.New()
	var buf [8]byte
	for _, f := range b {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(f))
		_, _ = d.Write(buf[:])
	}
	h := d.Sum64()
	if s, ok := c.bounds[h]; ok && sameBounds(s, b) {
		return s
	}
	s := append([]float64(nil), b...)
	if len(c.bounds) < 10_000 {
		c.bounds[h] = s
	}
	return s
}

func (c *Cumulative) sweep(now int64) {
	if now-c.lastSweep < int64(c.ttl)/4 {
		return
	}
	c.lastSweep = now
	for k, st := range c.series {
		if now-st.seen > int64(c.ttl) {
			delete(c.series, k)
		}
	}
}

func fresh(start, now int64) bool {
	return start > 0 && now-start <= int64(freshSeries)
}

// Counter returns the increment of a cumulative counter point. ok is false
// when the point only sets the base (first point of an old series).
//
// from is when the increment began: the series' previous point, or its
// start for a first point or a reset (the previous point when the start is
// unknown). The detector leaves out increments that began before a test
// (re)started, so that data from before a mitigation or a restart never
// counts in a test of what came after.
func (c *Cumulative) Counter(key SeriesKey, start, now int64, v float64) (inc float64, from int64, ok bool, err error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, 0, false, nil // a counter is never negative
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, isNew, err := c.state(key, start, now)
	if err != nil {
		return 0, 0, false, err
	}
	if !isNew && now < st.last {
		return 0, 0, false, nil // out of order: already counted, and the state stays
	}
	from = intervalStart(isNew, start, st)
	defer func() { st.last, st.value = now, v }()
	switch {
	case isNew && !fresh(start, now):
		return 0, 0, false, nil
	case isNew:
		return v, from, true, nil
	case start != st.start || v < st.value:
		st.start = start
		return v, from, true, nil // reset: the new value is all new
	}
	return v - st.value, from, true, nil
}

// intervalStart is when the increment of a point began (see Counter).
func intervalStart(isNew bool, start int64, st *cumState) int64 {
	switch {
	case isNew:
		return start
	case start != st.start && start > 0:
		return start
	}
	return st.last
}

// Histogram turns a cumulative histogram point into increments. bounds are
// the explicit upper bounds; counts has len(bounds)+1 entries (the last is +Inf).
// from is when the increments began (see Counter).
func (c *Cumulative) Histogram(key SeriesKey, start, now int64, count, sum float64, bounds, counts []float64) (dCount, dSum float64, dBuckets []float64, from int64, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, isNew, err := c.state(key, start, now)
	if err != nil {
		return 0, 0, nil, 0, false, err
	}
	if !isNew && now < st.last {
		return 0, 0, nil, 0, false, nil
	}
	from = intervalStart(isNew, start, st)
	reset := isNew || start != st.start || count < st.count || !sameBounds(bounds, st.bounds) || len(counts) != len(st.buckets)
	dBuckets = make([]float64, len(counts))
	if reset {
		dCount, dSum = count, sum
		copy(dBuckets, counts)
		ok = !isNew || fresh(start, now)
	} else {
		dCount, dSum = count-st.count, sum-st.sum
		for i := range counts {
			dBuckets[i] = counts[i] - st.buckets[i]
			if dBuckets[i] < 0 { // a bucket cannot shrink without a reset
				dBuckets[i] = 0
			}
		}
		ok = true
	}
	st.start, st.last, st.count, st.sum = start, now, count, sum
	st.buckets = append(st.buckets[:0], counts...)
	if !sameBounds(st.bounds, bounds) {
		st.bounds = c.internBounds(bounds)
	}
	return dCount, dSum, dBuckets, from, ok, nil
}

func sameBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Len is the number of series tracked.
func (c *Cumulative) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.series)
}

// Native turns a cumulative exponential/native histogram point into
// increments. A change of scale is merged by downscaling both points to the
// coarser one; a bucket or count going down is a reset.
// from is when the increments began (see Counter).
func (c *Cumulative) Native(key SeriesKey, start, now int64, count, sum float64, h NativeHistogram) (dCount, dSum float64, dh NativeHistogram, from int64, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, isNew, err := c.state(key, start, now)
	if err != nil {
		return 0, 0, NativeHistogram{}, 0, false, err
	}
	if !isNew && now < st.last {
		return 0, 0, NativeHistogram{}, 0, false, nil
	}
	from = intervalStart(isNew, start, st)
	ok = true
	dCount, dSum, dh = count, sum, h
	switch {
	case isNew:
		ok = fresh(start, now)
	case start != st.start || count < st.count || st.native == nil:
	default:
		if d, fine := sub(h, *st.native); fine {
			dCount, dSum, dh = count-st.count, sum-st.sum, d
		}
	}
	st.start, st.last, st.count, st.sum = start, now, count, sum
	cp := h
	st.native = &cp
	return dCount, dSum, dh, from, ok, nil
}
