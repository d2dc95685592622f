package detector

import (
	"fmt"
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
	// Series: between the baseline's ticks, for a baseline reported as a
	// single block (no pod label), around its running rate.
	Series series
	// Lag: the lag-one autocorrelation of each pod's standardised
	// residuals (from its cohort's rate in the tick; the baseline's, and
	// the candidate's when it has pods to compare), which turns a
	// per-tick dispersion into a long-run one: (1+r)/(1−r).
	Lag lag
	// Pods: each cohort's pods (slots) with their sums since the start,
	// for τ; at most maxPods a cohort.
	Pods [2]podSet
	// Tau is the spread's lower confidence bound, and Now the blocks of
	// each cohort in the last tick with traffic.
	Tau float64
	Now [2]int
}

// series is a single-block cohort's running rate and its ticks' χ².
type series struct {
	Rate  float64
	Ticks int
	P     pearson
}

// lag accumulates products of standardised residuals one and two ticks
// apart. Prior is the lag-one correlation assumed before the data say
// otherwise, with the weight of dispPrior + Weight pairs: 0 for counts of
// requests, high for gauge readings (AssumeAutocorrelated).
type lag struct{ XY1, XY2, XX, N, Prior, Weight float64 }

// factor is the long-run variance over the one-tick variance: 1 + 2Σ_k r_k
// with r_k = r₁·d^(k−1), d read from the lag-two correlation where the
// lag-one one is clear of noise (a thresholded gauge's correlation decays
// slower than its lag-one value predicts), else d = r₁ (an AR(1)).
func (l lag) factor() float64 {
	w := dispPrior + l.Weight
	r1 := (l.XY1 + w*l.Prior) / (l.XX + w)
	if !(r1 > 0) {
		return 1
	}
	r1 = math.Min(r1, 0.99)
	d := r1
	if l.N > 0 && l.XX > 0 && l.XY1/l.XX > 3/math.Sqrt(l.N) {
		// The data's own decay, where their lag-one correlation is clear.
		d = math.Max(d, math.Min(l.XY2/l.XY1, 0.99))
	}
	return math.Min(1+2*r1/(1-d), 200)
}

// pearson accumulates a Pearson χ² and its degrees of freedom.
type pearson struct{ Chi, DF float64 }

func (p pearson) phi() float64 { return p.phiWith(dispPrior) }

// phiWith is the estimate with a prior of prior degrees of freedom at 1.
func (p pearson) phiWith(prior float64) float64 { return (p.Chi + prior) / (p.DF + prior) }

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

// podSet is a cohort's pods: Names[i] is slot i, with sums since the
// start (Bad, Total) and over each window (WBad, WTotal).
type podSet struct {
	Names        []string
	Bad, Total   []float64
	WBad, WTotal [len(windowTicks)][]float64
	// Resid and Resid2 are each slot's standardised residuals in the
	// ticks Seen and Seen2 (its last two).
	Resid, Resid2 []float64
	Seen, Seen2   []int
	Ticks         int // ticks of this cohort with traffic
	index         map[string]int
	last          []int // the slot of each position in the last tick
}

const (
	dispPrior   = 20
	seriesPrior = 40
	maxPods     = 512
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

// init rebuilds the pods' index, and checks a restored state: every
// slot's sums present, every number finite and not negative.
func (d *dispersion) init() error {
	for c := range d.Pods {
		ps := &d.Pods[c]
		n := len(ps.Names)
		if n > maxPods {
			return fmt.Errorf("%d pods, at most %d", n, maxPods)
		}
		if len(ps.Bad) != n || len(ps.Total) != n {
			return fmt.Errorf("%d pods with %d and %d sums", n, len(ps.Bad), len(ps.Total))
		}
		for w := range ps.WBad {
			if len(ps.WBad[w]) == 0 && len(ps.WTotal[w]) == 0 {
				ps.WBad[w], ps.WTotal[w] = make([]float64, n), make([]float64, n)
			}
			if len(ps.WBad[w]) != n || len(ps.WTotal[w]) != n {
				return fmt.Errorf("%d pods with %d and %d window sums", n, len(ps.WBad[w]), len(ps.WTotal[w]))
			}
		}
		if len(ps.Resid) == 0 && len(ps.Seen) == 0 && len(ps.Resid2) == 0 && len(ps.Seen2) == 0 {
			ps.Resid, ps.Seen, ps.Resid2, ps.Seen2 = make([]float64, n), make([]int, n), make([]float64, n), make([]int, n)
		}
		if len(ps.Resid) != n || len(ps.Seen) != n || len(ps.Resid2) != n || len(ps.Seen2) != n {
			return fmt.Errorf("%d pods with %d residuals", n, len(ps.Resid))
		}
		ps.index = make(map[string]int, n)
		for i, name := range ps.Names {
			if _, dup := ps.index[name]; dup {
				return fmt.Errorf("pod %q twice", name)
			}
			ps.index[name] = i
		}
		ps.last = nil
		for _, v := range [][]float64{ps.Bad, ps.Total, ps.WBad[0], ps.WBad[1], ps.WTotal[0], ps.WTotal[1], ps.Resid, ps.Resid2} {
			for _, x := range v {
				if math.IsNaN(x) || math.IsInf(x, 0) {
					return fmt.Errorf("a pod's sum is %v", x)
				}
			}
		}
	}
	for _, x := range []float64{d.Tick.Chi, d.Tick.DF, d.Win[0].P.Chi, d.Win[0].P.DF, d.Win[1].P.Chi, d.Win[1].P.DF,
		d.Series.Rate, d.Series.P.Chi, d.Series.P.DF, d.Lag.XX, d.Lag.N, d.Lag.Prior, d.Lag.Weight, d.Tau} {
		if !(x >= 0) || math.IsInf(x, 1) {
			return fmt.Errorf("a dispersion sum is %v", x)
		}
	}
	for _, x := range []float64{d.Lag.XY1, d.Lag.XY2} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("autocorrelation sum %v", x)
		}
	}
	if d.Lag.Prior > 1 {
		return fmt.Errorf("autocorrelation prior %v", d.Lag.Prior)
	}
	return nil
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
		ps.Resid, ps.Resid2 = append(ps.Resid, 0), append(ps.Resid2, 0)
		ps.Seen, ps.Seen2 = append(ps.Seen, 0), append(ps.Seen2, 0)
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

// phi is the dispersion to temper the next tick with: the largest of the
// estimates, the one-tick ones made long-run by the autocorrelation.
func (d *dispersion) phi() float64 { return d.phis().total }

// phis are the dispersion within one tick (between the pods of a cohort,
// or the baseline's ticks around its running rate) and over the long run
// (that, times the autocorrelation's factor, or over windows of ticks,
// whichever is larger); both at least 1.
func (d *dispersion) phis() phiPair {
	// A single block's ticks give one degree of freedom each: their
	// estimate gets a heavier prior, lest a few noisy ticks early on
	// temper a clear regression.
	tick := math.Max(1, math.Max(d.Tick.phi(), d.Series.P.phiWith(seriesPrior)))
	total := tick * d.Lag.factor()
	for _, w := range d.Win {
		total = math.Max(total, w.P.phi())
	}
	return phiPair{tick, total}
}

// observe learns from one tick's blocks, per cohort. A tick of a common
// shock (shock) teaches the variation between pods as any other, but not
// the variation between ticks: the shock is not the counts' dispersion.
func (d *dispersion) observe(cand, base []Block, shock bool) {
	traffic := false
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
		}
		if k == 0 {
			continue
		}
		traffic = true
		ps.Ticks++
		d.Now[c] = k
		d.Tick.add(sumSq, bad, total, k)
		// The rate residuals are read against: the cohort's own in this
		// tick when it has pods to compare, else (the baseline only) its
		// running rate. A candidate without pods has nothing to compare
		// that a version effect would not move.
		rate := bad / total
		if k == 1 {
			if c == candidate {
				rate = math.NaN()
			} else {
				s := &d.Series
				rate = s.Rate
				if shock {
					rate = math.NaN() // no residual, no lag pair
				} else if s.Ticks >= 3 && s.Rate > 0 && s.Rate < 1 {
					dev := bad - total*s.Rate
					s.P.Chi += dev * dev / (total * s.Rate * (1 - s.Rate))
					s.P.DF++
				} else {
					rate = math.NaN()
				}
				if !shock {
					s.Ticks++
					s.Rate += (bad/total - s.Rate) / float64(min(s.Ticks, 30))
				}
			}
		}
		for i := range blocks {
			b := &blocks[i]
			if !(b.Total > 0) || !(b.Bad >= 0) {
				continue
			}
			s := ps.slot(i, b)
			if s < 0 {
				continue
			}
			ps.Bad[s] += b.Bad
			ps.Total[s] += b.Total
			for w := range ps.WBad {
				ps.WBad[w][s] += b.Bad
				ps.WTotal[w][s] += b.Total
			}
			if rate > 0 && rate < 1 {
				r := (b.Bad - b.Total*rate) / math.Sqrt(b.Total*rate*(1-rate))
				d.Lag.XX += r * r
				if ps.Seen[s] == ps.Ticks-1 && ps.Ticks > 1 {
					d.Lag.XY1 += r * ps.Resid[s]
					d.Lag.N++
				}
				if ps.Seen2[s] == ps.Ticks-2 && ps.Ticks > 2 {
					d.Lag.XY2 += r * ps.Resid2[s]
				}
				ps.Resid2[s], ps.Seen2[s] = ps.Resid[s], ps.Seen[s]
				ps.Resid[s], ps.Seen[s] = r, ps.Ticks
			}
		}
	}
	if !traffic {
		return // a tick without traffic is no tick of the windows
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
	d.Tau = d.spreadBound()
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
	if d.Tau == 0 || d.Now[0] == 0 || d.Now[1] == 0 {
		return 0
	}
	return d.Tau * math.Sqrt(1/float64(d.Now[0])+1/float64(d.Now[1]))
}

// normalUpper is the standard normal's upper a quantile.
func normalUpper(a float64) float64 { return math.Sqrt2 * math.Erfinv(1-2*a) }

// chi2Quantile is the p quantile of χ² with df degrees of freedom
// (Wilson–Hilferty; within 1 % for df ≥ 2 at p = 0.9).
func chi2Quantile(df, p float64) float64 {
	z := math.Sqrt2 * math.Erfinv(2*p-1)
	h := 2 / (9 * df)
	v := 1 - h + z*math.Sqrt(h)
	return df * v * v * v
}
