package detector

import (
	"math"
	"strconv"
)

// dispersion estimates, from the data, how far the counts are from what
// independent requests would give: φ, the variance of a cohort's counts
// over the binomial variance (retries, bursts, per-pod noise,
// autocorrelation), and τ, the persistent spread of the pods' rates within
// a cohort. Both come only from the variation inside a cohort — between its
// pods, or between its ticks — never from the difference between the
// cohorts, which is what the test is about: a version effect moves every
// candidate pod and so leaves them untouched.
//
// Each estimate of φ is a Pearson χ² over its degrees of freedom, with a
// prior of dispPrior degrees of freedom at 1; φ is the largest, never below
// 1. Fields are exported for the checkpoint only.
type dispersion struct {
	// Tick: between the pods of a cohort within each tick.
	Tick pearson
	// Win: between the pods of a cohort, over windows of windowTicks.
	Win [len(windowTicks)]window
	// Temporal: between the ticks of a window, for a cohort reported as a
	// single block (no pod label).
	Temporal [2]temporal
	// Pods: each cohort's pods (slots) with their sums since the start,
	// for τ; at most maxPods a cohort.
	Pods [2]podSet
	// tau is the spread's lower confidence bound, and pods the blocks of
	// each cohort in the last tick with traffic.
	tau  float64
	pods [2]int
}

// pearson accumulates a Pearson χ² and its degrees of freedom.
type pearson struct{ Chi, DF float64 }

func (p pearson) phi() float64 { return (p.Chi + dispPrior) / (p.DF + dispPrior) }

// add adds the χ² of blocks bad/total around their pooled rate.
func (p *pearson) add(sumSq, bad, total float64, k int) {
	if k < 2 || total <= 0 {
		return
	}
	r := bad / total
	if r <= 0 || r >= 1 {
		return
	}
	p.Chi += math.Max(0, sumSq-bad*bad/total) / (r * (1 - r))
	p.DF += float64(k - 1)
}

// window sums each pod's counts over Len ticks, then adds their χ².
type window struct {
	Ticks int
	P     pearson
}

// temporal sums one cohort's tick counts over a window.
type temporal struct {
	Ticks             int
	SumSq, Bad, Total float64
	P                 pearson
}

// podSet is a cohort's pods: Names[i] is slot i, with sums since the
// start (Bad, Total) and over each window (WBad, WTotal).
type podSet struct {
	Names        []string
	Bad, Total   []float64
	WBad, WTotal [len(windowTicks)][]float64
	index        map[string]int
	last         []int // the slot of each position in the last tick
}

const (
	dispPrior = 20
	maxPods   = 512
)

// windowTicks are the windows φ is estimated over: 30 and 180 ticks (5 and
// 30 minutes at 10 s), so that correlation lasting that long shows.
var windowTicks = [...]int{30, 180}

// positional names blocks that carry no pod name.
var positional [64]string

func init() {
	for i := range positional {
		positional[i] = "#" + strconv.Itoa(i)
	}
}

func (d *dispersion) init() {
	for c := range d.Pods {
		ps := &d.Pods[c]
		ps.index = make(map[string]int, len(ps.Names))
		for i, n := range ps.Names {
			ps.index[n] = i
		}
		for w := range ps.WBad {
			for len(ps.WBad[w]) < len(ps.Names) {
				ps.WBad[w] = append(ps.WBad[w], 0)
				ps.WTotal[w] = append(ps.WTotal[w], 0)
			}
		}
	}
}

// slot is the slot of the block at position i, or −1 when the cohort has
// no room for another pod.
func (ps *podSet) slot(i int, b *Block) int {
	name := b.Pod
	if name == "" {
		if i < len(positional) {
			name = positional[i]
		} else {
			name = "#" + strconv.Itoa(i)
		}
	}
	if i < len(ps.last) && ps.last[i] >= 0 && ps.Names[ps.last[i]] == name {
		return ps.last[i]
	}
	s, ok := ps.index[name]
	if !ok {
		if len(ps.Names) >= maxPods {
			return -1
		}
		s = len(ps.Names)
		ps.index[name] = s
		ps.Names = append(ps.Names, name)
		ps.Bad = append(ps.Bad, 0)
		ps.Total = append(ps.Total, 0)
		for w := range ps.WBad {
			ps.WBad[w] = append(ps.WBad[w], 0)
			ps.WTotal[w] = append(ps.WTotal[w], 0)
		}
	}
	for len(ps.last) <= i {
		ps.last = append(ps.last, -1)
	}
	ps.last[i] = s
	return s
}

// phi is the dispersion to temper the next tick with.
func (d *dispersion) phi() float64 {
	phi := math.Max(1, d.Tick.phi())
	for _, w := range d.Win {
		phi = math.Max(phi, w.P.phi())
	}
	for _, t := range d.Temporal {
		phi = math.Max(phi, t.P.phi())
	}
	return phi
}

// observe learns from one tick's blocks, per cohort.
func (d *dispersion) observe(cand, base []Block) {
	for c, blocks := range [2][]Block{cand, base} {
		ps := &d.Pods[c]
		var sumSq, bad, total float64
		k := 0
		for i := range blocks {
			b := &blocks[i]
			if !(b.Total > 0) || !(b.Bad >= 0) {
				continue
			}
			k++
			sumSq += b.Bad * b.Bad / b.Total
			bad += b.Bad
			total += b.Total
			if s := ps.slot(i, b); s >= 0 {
				ps.Bad[s] += b.Bad
				ps.Total[s] += b.Total
				for w := range ps.WBad {
					ps.WBad[w][s] += b.Bad
					ps.WTotal[w][s] += b.Total
				}
			}
		}
		if k == 0 {
			continue
		}
		d.pods[c] = k
		d.Tick.add(sumSq, bad, total, k)
		if k == 1 {
			t := &d.Temporal[c]
			t.Ticks++
			t.SumSq += sumSq
			t.Bad += bad
			t.Total += total
			if t.Ticks == windowTicks[0] {
				t.P.add(t.SumSq, t.Bad, t.Total, t.Ticks)
				t.Ticks, t.SumSq, t.Bad, t.Total = 0, 0, 0, 0
			}
		}
	}
	for w := range d.Win {
		win := &d.Win[w]
		win.Ticks++
		if win.Ticks < windowTicks[w] {
			continue
		}
		win.Ticks = 0
		for c := range d.Pods {
			ps := &d.Pods[c]
			var sumSq, bad, total float64
			k := 0
			for s := range ps.Names {
				if n := ps.WTotal[w][s]; n > 0 {
					k++
					sumSq += ps.WBad[w][s] * ps.WBad[w][s] / n
					bad += ps.WBad[w][s]
					total += n
				}
				ps.WBad[w][s], ps.WTotal[w][s] = 0, 0
			}
			win.P.add(sumSq, bad, total, k)
		}
	}
	d.tau = d.spreadBound()
}

// spreadBound is a lower confidence bound (90 %) on the relative spread τ
// of the pods' rates within a cohort, from their sums since the start:
// DerSimonian–Laird's moment estimator with the χ² quantile in place of
// its mean, and the counts' variance inflated by φ.
func (d *dispersion) spreadBound() float64 {
	phi := d.phi()
	var q, df, c float64
	for i := range d.Pods {
		ps := &d.Pods[i]
		var sumSq, bad, total, sw, sw2 float64
		k := 0
		for s := range ps.Names {
			if n := ps.Total[s]; n > 0 {
				k++
				sumSq += ps.Bad[s] * ps.Bad[s] / n
				bad += ps.Bad[s]
				total += n
			}
		}
		if k < 2 || bad <= 0 || bad >= total {
			continue
		}
		r := bad / total
		for s := range ps.Names {
			// Weights of the relative rates r_i/r: N_i·r/(φ(1−r)).
			w := ps.Total[s] * r / (phi * (1 - r))
			sw += w
			sw2 += w * w
		}
		q += math.Max(0, sumSq-bad*bad/total) / (r * (1 - r)) / phi
		df += float64(k - 1)
		c += sw - sw2/sw
	}
	if df == 0 || c <= 0 {
		return 0
	}
	return math.Sqrt(math.Max(0, q-chi2Quantile(df, 0.9)) / c)
}

// spread is τ·√(1/k_c + 1/k_b): the spread of the difference between the
// cohorts' mean pod rates that pods alone would make.
func (d *dispersion) spread() float64 {
	if d.tau == 0 || d.pods[0] == 0 || d.pods[1] == 0 {
		return 0
	}
	return d.tau * math.Sqrt(1/float64(d.pods[0])+1/float64(d.pods[1]))
}

// z is the standard normal's upper a quantile.
func (d *dispersion) z(a float64) float64 { return math.Sqrt2 * math.Erfinv(1-2*a) }

// chi2Quantile is the p quantile of χ² with df degrees of freedom
// (Wilson–Hilferty; within 1 % for df ≥ 2 at p = 0.9).
func chi2Quantile(df, p float64) float64 {
	z := math.Sqrt2 * math.Erfinv(2*p-1)
	h := 2 / (9 * df)
	v := 1 - h + z*math.Sqrt(h)
	return df * v * v * v
}
