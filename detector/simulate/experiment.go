package simulate

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Contender names a detector and builds a fresh one for each run.
type Contender struct {
	Name string
	New  func() Detector
}

// Scenario is a set of runs of the same traffic, every contender fed the
// same ticks in each run.
type Scenario struct {
	Name    string
	Traffic Traffic
	Runs    int
	// Ticks is the length of a run (360 ten-second ticks: one hour).
	Ticks int
	// Seed picks the scenario's runs; run i draws from PCG(Seed, i), so a run
	// is the same whichever worker simulates it and in whichever order.
	Seed       uint64
	Contenders []Contender
}

// Result holds, per contender, the tick index of its first alarm in each
// run (−1 when it never alarmed within the run).
type Result struct {
	Scenario Scenario
	Alarms   [][]int // [contender][run]
}

// Delays summarises one contender.
func (r Result) Delays(contender int) Delays { return Summarise(r.Alarms[contender]) }

// Simulate plays one run and returns each contender's first alarm tick.
// A run stops early once every contender has alarmed: nothing after that
// changes the result.
func Simulate(sc Scenario, run int) []int {
	c := NewCanary(sc.Traffic, sc.Seed, uint64(run))
	ds := make([]Detector, len(sc.Contenders))
	first := make([]int, len(sc.Contenders))
	for i, ct := range sc.Contenders {
		ds[i] = ct.New()
		first[i] = -1
	}
	pending := len(ds)
	for t := 0; t < sc.Ticks && pending > 0; t++ {
		k := c.Next()
		for i, d := range ds {
			if first[i] < 0 && d.Observe(k) {
				first[i] = t
				pending--
			}
		}
	}
	return first
}

// chunk is how many runs a worker takes at a time: small enough to balance
// two cores, large enough that handing out work costs nothing.
const chunk = 25

// Run plays every scenario on workers goroutines. progress, if not nil, is
// called (from the workers, serialised) with the runs done so far and the
// total. The results do not depend on workers or on scheduling.
func Run(ctx context.Context, scenarios []Scenario, workers int, progress func(done, total int)) ([]Result, error) {
	results := make([]Result, len(scenarios))
	alarms := make([][][]int, len(scenarios))
	runs := make([]int, len(scenarios))
	for i, sc := range scenarios {
		if err := sc.Traffic.Validate(); err != nil {
			return nil, fmt.Errorf("scenario %q: %w", sc.Name, err)
		}
		results[i] = Result{Scenario: sc, Alarms: newAlarms(len(sc.Contenders), sc.Runs)}
		alarms[i], runs[i] = results[i].Alarms, sc.Runs
	}
	if err := runAll(ctx, runs, alarms, workers, progress, func(i, run int) []int { return Simulate(scenarios[i], run) }); err != nil {
		return nil, err
	}
	return results, nil
}

func newAlarms(contenders, runs int) [][]int {
	a := make([][]int, contenders)
	for j := range a {
		a[j] = make([]int, runs)
	}
	return a
}

// runAll plays runs[i] runs of each scenario i, chunk by chunk, on workers
// goroutines: play(i, run) gives the contenders' first alarms, stored in
// alarms[i][contender][run]. Each run writes its own cells, so no two
// workers share one and the results do not depend on scheduling.
func runAll(ctx context.Context, runs []int, alarms [][][]int, workers int, progress func(done, total int), play func(i, run int) []int) error {
	type job struct{ sc, from, to int }
	var jobs []job
	total := 0
	for i, n := range runs {
		for from := 0; from < n; from += chunk {
			jobs = append(jobs, job{i, from, min(from+chunk, n)})
		}
		total += n
	}
	var (
		next atomic.Int64
		done int
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[n]
				for run := j.from; run < j.to; run++ {
					for c, at := range play(j.sc, run) {
						alarms[j.sc][c][run] = at
					}
				}
				if progress != nil {
					mu.Lock()
					done += j.to - j.from
					progress(done, total)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
