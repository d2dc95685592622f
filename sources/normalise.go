package sources

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"sync/atomic"
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
//
// A point changes the state only when it is taken: a point refused (too
// far ahead of the wall clock, out of order, a duplicate, a new series over
// a budget) leaves the series as it was, its idle time included, so a
// series whose sender went wrong still expires.
//
// It is safe for concurrent use, and one receiver's concurrent requests
// share one: the series are split over cumShards shards by their hash,
// each with its own lock, so that points of different series rarely wait
// on each other (one lock for all was most of the ingest path's lock
// wait, issue 16). The budgets stay exact: a new series is admitted under
// one more lock, taken only for a series not yet tracked and by the sweep.
type Cumulative struct {
	// shards hold the series, keyed by a 64-bit hash of the series key,
	// so that steady state holds no label strings (a collision needs
	// ~2^32 series); a series lives in the shard its hash's top bits name.
	shards [cumShards]cumShard

	// admission guards the budgets: the count of series and of each
	// cohort's. Taken after a shard's lock, never before one.
	admission sync.Mutex
	cohorts   map[Cohort]int // counted only when perCohort bounds them
	tracked   atomic.Int64   // series in all shards; written under admission

	lastSweep atomic.Int64

	boundsMu sync.Mutex
	bounds   map[uint64][]float64 // classic bucket layouts, shared by series

	maxSeries int
	// maxAhead bounds how far (ns) a point may be stamped after the wall
	// clock; 0: no bound.
	maxAhead int64
	// perCohort bounds the series of one cohort; 0: no bound.
	perCohort int
	ttl       time.Duration
	// clock is the wall clock idleness is measured on: the points' own
	// timestamps only order points, since one skewed client must not make
	// every other series look idle.
	clock func() time.Time
}

// cumShards is how many locks the series are split over: enough that
// the goroutines of a few dozen cores seldom meet on one; the 64 empty
// maps cost a few kilobytes a tracker.
const cumShards = 64

type cumShard struct {
	mu     sync.Mutex
	series map[uint64]*cumState
	// The pad keeps each shard's lock on a cache line (and the adjacent
	// line the CPU fetches with it) of its own: shards sharing a line
	// would still contend in the cache.
	_ [128 - 16]byte
}

func (c *Cumulative) shard(key SeriesKey) *cumShard {
	return &c.shards[key.hash>>58] // 64 shards: the top 6 bits
}

type cumState struct {
	start, last int64
	seen        int64 // wall clock of the last point taken
	cohort      Cohort
	value       float64
	count, sum  float64
	buckets     []float64
	bounds      []float64
	native      *NativeHistogram
}

// Option sets a bound of a Cumulative.
type Option func(*Cumulative)

// MaxAhead refuses points stamped more than d after the wall clock they
// arrive at (ErrTooFarAhead): one point from the year 2200 would otherwise
// become the series' last point and every later, correct point would look
// out of order. Zero or less: no bound.
func MaxAhead(d time.Duration) Option {
	return func(c *Cumulative) { c.maxAhead = max(int64(d), 0) }
}

// MaxSeriesPerCohort refuses a new series of a cohort that already holds
// n series (ErrCohortSeriesLimit), so that junk series of one version
// cannot take the room another version (the canary) needs. Series keyed
// without a cohort are bounded by the total only. Zero or less: no bound.
func MaxSeriesPerCohort(n int) Option {
	return func(c *Cumulative) { c.perCohort = max(n, 0) }
}

// NewCumulative tracks at most maxSeries series, forgetting those idle for ttl.
func NewCumulative(maxSeries int, ttl time.Duration, opts ...Option) *Cumulative {
	c := &Cumulative{bounds: map[uint64][]float64{}, cohorts: map[Cohort]int{},
		maxSeries: maxSeries, ttl: ttl, clock: time.Now}
	for i := range c.shards {
		c.shards[i].series = map[uint64]*cumState{}
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// SetClock replaces the wall clock (tests); call it before any point.
func (c *Cumulative) SetClock(f func() time.Time) { c.clock = f }

// The reasons a point is refused. Each is a drop reason of its own (see
// DropReason); the point changes no state.
var (
	// ErrSeriesLimit means a new series was refused because the tracker is full.
	ErrSeriesLimit = dropError{DropSeriesLimit, "sources: too many series tracked"}
	// ErrCohortSeriesLimit means a new series was refused because its
	// cohort (service and version) holds as many series as it may.
	ErrCohortSeriesLimit = dropError{DropVersionSeriesLimit, "sources: too many series tracked for one service version"}
	// ErrTooFarAhead means a point is stamped too far after the wall clock.
	ErrTooFarAhead = dropError{DropTooFarAhead, "sources: point stamped too far ahead of the receive time"}
	// ErrOutOfOrder means a point is older than the series' last point:
	// what it counted is already counted.
	ErrOutOfOrder = dropError{DropOutOfOrder, "sources: point older than the series' last point"}
	// ErrDuplicate means a point has the timestamp of the series' last
	// point: a second copy of a sample (the same series twice in one
	// request, or a retry) counts nothing, whatever its value.
	ErrDuplicate = dropError{DropDuplicate, "sources: point has the timestamp of the series' last point"}
	// ErrInvalidValue means a counter value is NaN, infinite or negative.
	ErrInvalidValue = dropError{DropInvalidValue, "sources: counter value is NaN, infinite or negative"}
)

// dropError is a refusal that names its drop reason.
type dropError struct{ reason, msg string }

func (e dropError) Error() string { return e.msg }

// DropReason is the drop reason of an error the tracker returns: the
// reason label inputs count the point under.
func DropReason(err error) string {
	var d dropError
	if errors.As(err, &d) {
		return d.reason
	}
	return DropSeriesLimit
}

// SeriesKey identifies a series in the cumulative state: a 64-bit hash of
// its metric name and labels (a collision needs billions of series), and
// the cohort whose budget it counts in.
type SeriesKey struct {
	hash   uint64
	cohort Cohort
}

// In returns the key counted in cohort c's budget.
func (k SeriesKey) In(c Cohort) SeriesKey {
	k.cohort = c
	return k
}

// Cohort identifies the service version a series belongs to, for the
// per-version series budget (see MaxSeriesPerCohort); 0 is none.
type Cohort uint64

// CohortOf hashes the values of the named labels that ls carries (the
// guards' service and version labels): series of one service version
// share a cohort. It allocates nothing. A series with none of them has no
// cohort (0).
func CohortOf(ls Labels, names []string) Cohort {
	var h uint64
	found := false
	for _, n := range names {
		if v := ls.Get(n); v != "" {
			h = h*0x9e3779b97f4a7c15 ^ xxhash.Sum64String(n) ^ xxhash.Sum64String(v)*0xc2b2ae3d27d4eb4f
			found = true
		}
	}
	if !found {
		return 0
	}
	return Cohort(h | 1) // never 0
}

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
	return SeriesKey{hash: d.Sum64()}
}

var sep = []byte{0xff}

// StringKey keys a series by an arbitrary string.
func StringKey(s string) SeriesKey { return SeriesKey{hash: xxhash.Sum64String(s)} }

// CheckTime refuses a point stamped now (Unix ns) further after the wall
// clock than the tracker's bound (ErrTooFarAhead). The tracker checks its
// own points; inputs call it for points that keep no state (gauges).
func (c *Cumulative) CheckTime(now int64) error {
	if c.maxAhead > 0 && now-c.clock().UnixNano() > c.maxAhead {
		return ErrTooFarAhead
	}
	return nil
}

// lock locks the shard of key's series for a point stamped now and sweeps
// idle series first; it says why the point is refused if it is too far
// ahead (and then locks nothing). The caller unlocks the shard.
func (c *Cumulative) lock(key SeriesKey, now int64) (sh *cumShard, wall int64, err error) {
	wall = c.clock().UnixNano()
	if c.maxAhead > 0 && now-wall > c.maxAhead {
		return nil, 0, ErrTooFarAhead
	}
	c.sweep(wall) // before any shard is held: it takes each one in turn
	sh = c.shard(key)
	sh.mu.Lock()
	return sh, wall, nil
}

// state finds or makes a series' state for a point stamped now, with its
// shard locked (see lock), or says why the point is refused; a refused
// point changes nothing.
func (c *Cumulative) state(sh *cumShard, key SeriesKey, start, now, wall int64) (*cumState, bool, error) {
	st, ok := sh.series[key.hash]
	switch {
	case ok && now < st.last:
		return nil, false, ErrOutOfOrder
	case ok && now == st.last:
		return nil, false, ErrDuplicate
	case ok:
		st.seen = wall
		return st, false, nil
	}
	counted := c.perCohort > 0 && key.cohort != 0
	if err := c.admit(key.cohort, counted); err != nil {
		return nil, false, err
	}
	st = &cumState{start: start, seen: wall}
	if counted {
		st.cohort = key.cohort
	}
	sh.series[key.hash] = st
	return st, true, nil
}

// admit counts a new series in the budgets or says which one is spent.
// Both are checked and counted under one lock, so each holds exactly, as
// if the points came one at a time.
func (c *Cumulative) admit(cohort Cohort, counted bool) error {
	c.admission.Lock()
	defer c.admission.Unlock()
	if c.tracked.Load() >= int64(c.maxSeries) {
		return ErrSeriesLimit
	}
	if counted && c.cohorts[cohort] >= c.perCohort {
		return ErrCohortSeriesLimit
	}
	c.tracked.Add(1)
	if counted {
		c.cohorts[cohort]++
	}
	return nil
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
	c.boundsMu.Lock()
	defer c.boundsMu.Unlock()
	if s, ok := c.bounds[h]; ok && sameBounds(s, b) {
		return s
	}
	s := append([]float64(nil), b...)
	if len(c.bounds) < 10_000 {
		c.bounds[h] = s
	}
	return s
}

// sweep forgets the series idle for longer than the ttl, at most every
// quarter ttl: the one caller that claims the sweep walks every shard,
// locking one at a time, while the others go on.
func (c *Cumulative) sweep(now int64) {
	last := c.lastSweep.Load()
	if now-last < int64(c.ttl)/4 || !c.lastSweep.CompareAndSwap(last, now) {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, st := range sh.series {
			if now-st.seen > int64(c.ttl) {
				delete(sh.series, k)
				c.forget(st.cohort)
			}
		}
		sh.mu.Unlock()
	}
}

// forget takes a series that was admitted out of the budgets.
func (c *Cumulative) forget(cohort Cohort) {
	c.admission.Lock()
	defer c.admission.Unlock()
	c.tracked.Add(-1)
	if cohort != 0 {
		if c.cohorts[cohort]--; c.cohorts[cohort] <= 0 {
			delete(c.cohorts, cohort)
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
	if !ValidCounter(v) {
		return 0, 0, false, ErrInvalidValue
	}
	sh, wall, err := c.lock(key, now)
	if err != nil {
		return 0, 0, false, err
	}
	defer sh.mu.Unlock()
	st, isNew, err := c.state(sh, key, start, now, wall)
	if err != nil {
		return 0, 0, false, err
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
	sh, wall, err := c.lock(key, now)
	if err != nil {
		return 0, 0, nil, 0, false, err
	}
	defer sh.mu.Unlock()
	st, isNew, err := c.state(sh, key, start, now, wall)
	if err != nil {
		return 0, 0, nil, 0, false, err
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
func (c *Cumulative) Len() int { return int(c.tracked.Load()) }

// Native turns a cumulative exponential/native histogram point into
// increments. A change of scale is merged by downscaling both points to the
// coarser one; a bucket or count going down is a reset.
// from is when the increments began (see Counter).
func (c *Cumulative) Native(key SeriesKey, start, now int64, count, sum float64, h NativeHistogram) (dCount, dSum float64, dh NativeHistogram, from int64, ok bool, err error) {
	sh, wall, err := c.lock(key, now)
	if err != nil {
		return 0, 0, NativeHistogram{}, 0, false, err
	}
	defer sh.mu.Unlock()
	st, isNew, err := c.state(sh, key, start, now, wall)
	if err != nil {
		return 0, 0, NativeHistogram{}, 0, false, err
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
