package sources

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A cumulative point as a test feeds it, and what the tracker made of it.
type feedPoint struct {
	key        SeriesKey
	name       string
	start, now int64
	v          float64
	hist       bool // a classic histogram: v is the count, bounds and counts follow
	bounds     []float64
	counts     []float64
}

type feedResult struct {
	inc     float64
	buckets []float64
	from    int64
	ok      bool
	err     error
}

func (p feedPoint) feed(c *Cumulative) feedResult {
	if p.hist {
		dc, _, db, from, ok, err := c.Histogram(p.key, p.start, p.now, p.v, p.v/2, p.bounds, p.counts)
		return feedResult{inc: dc, buckets: db, from: from, ok: ok, err: err}
	}
	inc, from, ok, err := c.Counter(p.key, p.start, p.now, p.v)
	return feedResult{inc: inc, from: from, ok: ok, err: err}
}

// sameOutcome says whether the twin's result for a point matches the
// concurrent run's. A new series refused for its cohort's budget may be
// refused for the total in the twin: the twin admits every series the
// concurrent run admitted in a round before it refuses any, so the total
// it sees is the round's final one.
func sameOutcome(conc, twin feedResult) bool {
	if errors.Is(conc.err, ErrCohortSeriesLimit) && errors.Is(twin.err, ErrSeriesLimit) {
		return true
	}
	return conc.err == twin.err && conc.inc == twin.inc && conc.from == twin.from && conc.ok == twin.ok &&
		equalFloats(conc.buckets, twin.buckets)
}

// concurrentRounds is the traffic of TestCumulativeConcurrentMatchesSequential:
// rounds[r][w] are the points worker w feeds in round r, in its order.
// Every worker sends its copy of the shared series' points (as HA pairs
// of senders and retries do: one copy counts, the rest are duplicates),
// plus series of its own, some of which go quiet and expire, and a few
// new series each round that race for the series budgets. Counters reset
// (the value drops, or the start moves), histograms change layout.
func concurrentRounds(workers, rounds int, wall func(r int) int64) [][][]feedPoint {
	rng := rand.New(rand.NewSource(16))
	cohorts := []Cohort{0, 0xa1, 0xa1, 0xa1, 0xb1} // the junk of 0xa1 meets its budget
	layouts := [][]float64{{0.1, 0.5, 1}, {0.1, 0.25, 0.5, 1, 5}}
	type series struct {
		p        feedPoint
		step     float64
		until    int // last round it is fed
		from     int // first round it is fed
		layout   int
		resetAt  int
		restarts bool
	}
	newSeries := func(name string, from, until int) *series {
		s := &series{
			p: feedPoint{key: StringKey(name).In(cohorts[rng.Intn(len(cohorts))]), name: name,
				start: cumOld, hist: rng.Intn(5) == 0},
			step: float64(1 + rng.Intn(5)), from: from, until: until, resetAt: 3 + rng.Intn(7), restarts: rng.Intn(2) == 0,
			layout: rng.Intn(2),
		}
		if rng.Intn(2) == 0 {
			s.p.start = wall(from) - int64(time.Minute) // fresh: its first point counts
		}
		return s
	}
	var shared []*series
	for i := range 200 {
		shared = append(shared, newSeries(fmt.Sprint("shared", i), 0, rounds))
	}
	own := make([][]*series, workers)
	for w := range workers {
		for i := range 150 {
			until := rounds
			if i%3 == 0 {
				until = rounds / 3 // goes quiet, expires, leaves room
			}
			own[w] = append(own[w], newSeries(fmt.Sprint("own", w, "/", i), 0, until))
		}
		for r := range rounds {
			for i := range 6 {
				own[w] = append(own[w], newSeries(fmt.Sprint("churn", w, "/", r, "/", i), r, r+3+rng.Intn(rounds)))
			}
		}
	}
	point := func(s *series, r int) feedPoint {
		p := s.p
		p.now = wall(r)
		k := r - s.from
		p.v = s.step * float64(k+1)
		if k >= s.resetAt { // a reset: counting again from 0
			p.v = s.step * float64(k-s.resetAt)
			if s.restarts {
				p.start = wall(s.from+s.resetAt) - int64(time.Second)
			}
		}
		if p.hist {
			p.bounds = layouts[s.layout]
			if k >= s.resetAt+2 {
				p.bounds = layouts[1-s.layout]
			}
			p.counts = make([]float64, len(p.bounds)+1)
			for i := range p.counts {
				p.counts[i] = p.v * float64(i+1) / float64(len(p.counts))
			}
		}
		return p
	}
	out := make([][][]feedPoint, rounds)
	for r := range rounds {
		out[r] = make([][]feedPoint, workers)
		for w := range workers {
			var pts []feedPoint
			for _, s := range shared {
				pts = append(pts, point(s, r))
			}
			for _, s := range own[w] {
				if r >= s.from && r <= s.until {
					pts = append(pts, point(s, r))
				}
			}
			rng.Shuffle(len(pts), func(i, j int) { pts[i], pts[j] = pts[j], pts[i] })
			out[r][w] = pts
		}
	}
	return out
}

// Several goroutines feed one tracker at once: the shared series' copies
// from every goroutine race on the same series, every goroutine's new
// series race for the total and the per-cohort budgets, series expire and
// leave room. What each point got must be what a sequential twin gives
// for the same points fed one at a time in an order the concurrent run
// could have taken: per round, the points taken first, then those refused.
// It fails if a copy counts twice, an update is lost, a budget admits one
// series too many or refuses one it has room for, or an expiry is
// miscounted (and, under -race, on any unguarded access).
func TestCumulativeConcurrentMatchesSequential(t *testing.T) {
	const workers, rounds = 8, 30
	step := int64(cumTTL / 4) // each round's first point sweeps
	wall := func(r int) int64 { return cumT0 + int64(r)*step }
	traffic := concurrentRounds(workers, rounds, wall)
	newTracker := func(clock *atomic.Int64) *Cumulative {
		c := NewCumulative(1000, cumTTL, MaxAhead(10*time.Minute), MaxSeriesPerCohort(380))
		c.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
		return c
	}
	// The first point of a round sweeps; the test feeds it alone in both
	// runs, so that which series expired before a round is the same.
	sweeper := feedPoint{key: StringKey("sweeper"), start: cumOld}
	var clock atomic.Int64
	c := newTracker(&clock)
	got := make([][][]feedResult, rounds)
	for r := range rounds {
		clock.Store(wall(r))
		sw := sweeper
		sw.now, sw.v = wall(r), float64(r)
		if res := sw.feed(c); res.err != nil {
			t.Fatalf("round %d: the sweeper's point: %v", r, res.err)
		}
		got[r] = make([][]feedResult, workers)
		var wg sync.WaitGroup
		begin := make(chan struct{}) // the workers start together
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-begin
				res := make([]feedResult, len(traffic[r][w]))
				for i, p := range traffic[r][w] {
					res[i] = p.feed(c)
				}
				got[r][w] = res
			}()
		}
		close(begin)
		wg.Wait()
	}

	var twinClock atomic.Int64
	twin := newTracker(&twinClock)
	reasons := map[string]int{}
	tracked := map[string]bool{}
	full, admittedOnceFull := false, 0
	for r := range rounds {
		twinClock.Store(wall(r))
		sw := sweeper
		sw.now, sw.v = wall(r), float64(r)
		sw.feed(twin)
		for _, taken := range []bool{true, false} {
			for w := range workers {
				for i, p := range traffic[r][w] {
					conc := got[r][w][i]
					if (conc.err == nil) != taken {
						continue
					}
					if taken {
						reasons["taken"]++
						if full && !tracked[p.name] {
							admittedOnceFull++ // expiry left room
						}
						tracked[p.name] = true
					} else {
						reasons[DropReason(conc.err)]++
					}
					if want := p.feed(twin); !sameOutcome(conc, want) {
						t.Fatalf("round %d, worker %d, %s: concurrently %+v, sequentially %+v", r, w, p.name, conc, want)
					}
				}
			}
		}
		full = full || reasons[DropSeriesLimit] > 0
	}
	if c.Len() != twin.Len() {
		t.Errorf("Len() = %d, sequentially %d", c.Len(), twin.Len())
	}
	checkCumulativeBooks(t, c)
	t.Logf("points by outcome: %v; %d series admitted once the total was reached; %d series held", reasons, admittedOnceFull, c.Len())
	// The traffic must reach what it is meant to test.
	for _, reason := range []string{"taken", DropSeriesLimit, DropVersionSeriesLimit, DropDuplicate} {
		if reasons[reason] == 0 {
			t.Errorf("no point was refused for %s: %v", reason, reasons)
		}
	}
	if admittedOnceFull == 0 {
		t.Error("no series expired to leave room for a new one")
	}
}

// Points keep arriving while the clock moves on and sweeps walk the
// shards: the books (series counted in total and per cohort) still agree
// with the series held, and no budget is exceeded.
func TestCumulativeSweepsUnderLoad(t *testing.T) {
	const workers, perWorker, maxSeries, perCohort = 4, 3000, 2000, 900
	var clock atomic.Int64
	clock.Store(cumT0)
	c := NewCumulative(maxSeries, cumTTL, MaxSeriesPerCohort(perCohort))
	c.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if w == 0 && i%10 == 0 {
					clock.Add(int64(cumTTL / 8)) // one goroutine moves the clock
				}
				key := StringKey(fmt.Sprint(w, "/", i%700)).In(Cohort(i%3) * 0x11)
				_, _, _, _ = c.Counter(key, cumOld, clock.Load()+int64(i), float64(i))
			}
		}()
	}
	wg.Wait()
	checkCumulativeBooks(t, c)
	if n := c.Len(); n > maxSeries {
		t.Errorf("Len() = %d, over the limit %d", n, maxSeries)
	}
}

// checkCumulativeBooks fails t unless c's counts of series, in total and
// per cohort, are those of the series its shards hold.
func checkCumulativeBooks(t *testing.T, c *Cumulative) {
	t.Helper()
	held, perCohort := 0, map[Cohort]int{}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		held += len(sh.series)
		for k, st := range sh.series {
			if &c.shards[k>>58] != sh {
				t.Errorf("series %x held in shard %d", k, i)
			}
			if st.cohort != 0 {
				perCohort[st.cohort]++
			}
		}
		sh.mu.Unlock()
	}
	c.admission.Lock()
	defer c.admission.Unlock()
	if got := int(c.tracked.Load()); got != held {
		t.Errorf("%d series counted, %d held", got, held)
	}
	if len(perCohort) != len(c.cohorts) {
		t.Errorf("cohorts counted %v, held %v", c.cohorts, perCohort)
	}
	for co, n := range perCohort {
		if c.cohorts[co] != n {
			t.Errorf("cohort %x: %d series counted, %d held", co, c.cohorts[co], n)
		}
		if c.perCohort > 0 && n > c.perCohort {
			t.Errorf("cohort %x holds %d series, over its budget %d", co, n, c.perCohort)
		}
	}
}
