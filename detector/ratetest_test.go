package detector

import (
	"math/rand/v2"
	"testing"
)

// The before/after test at the null's edge alarms at most alpha of the time
// over many looks, and catches a doubled rate.
func TestRateTest(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const runs, alpha = 1000, 0.05
	alarms := 0
	for i := 0; i < runs; i++ {
		rt := NewRateTest(0.01, alpha)
		for k := 0; k < 120; k++ {
			rt.Observe(poisson(r, 10), 1000)
		}
		if rt.Regressed() {
			alarms++
		}
	}
	if rate := float64(alarms) / runs; rate > alpha+0.02 {
		t.Errorf("false-alarm rate %v above %v", rate, alpha)
	}
	rt := NewRateTest(0.01, alpha)
	for k := 0; k < 30 && !rt.Regressed(); k++ {
		rt.Observe(poisson(r, 20), 1000)
	}
	if !rt.Regressed() {
		t.Error("a doubled rate was not caught in 30 ticks of 1000")
	}
}

func TestRateUpperBound(t *testing.T) {
	if u := rateUpperBound(10, 1000, 0.005); !(u > 0.015 && u < 0.03) {
		t.Errorf("UCB(10/1000) = %v", u)
	}
	if u := rateUpperBound(0, 1000, 0.005); !(u > 0.003 && u < 0.006) {
		t.Errorf("UCB(0/1000) = %v", u)
	}
	if u := rateUpperBound(0, 0, 0.005); u != 1 {
		t.Errorf("UCB with no data = %v", u)
	}
}
