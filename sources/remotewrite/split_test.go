package remotewrite_test

import (
	"strings"
	"testing"

	"github.com/rollguard/rollguard/sources/remotewrite"
)

// Prometheus shards remote write by series, so the series of one classic
// histogram scrape (_bucket per le, _count, _sum) usually arrive in
// different requests. The receiver converts them series by series, so a
// split histogram gives the same increments as a whole one.
func TestClassicHistogramSplitAcrossRequests(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			mk := func(name, le string, ts int64, v float64) series {
				kv := []string{"__name__", name, "job", "checkout"}
				if le != "" {
					kv = append(kv, "le", le)
				}
				return series{labels: kv, typ: "histogram", family: "rt", samples: []pt{{ts, v}}}
			}
			for _, s := range []struct {
				ts               int64
				b1, b2, inf, sum float64
			}{{1000, 5, 8, 10, 2}, {2000, 7, 12, 15, 3}} {
				for _, req := range []any{
					p.build(mk("rt_bucket", "0.1", s.ts, s.b1), mk("rt_bucket", "0.5", s.ts, s.b2)),
					p.build(mk("rt_bucket", "+Inf", s.ts, s.inf), mk("rt_count", "", s.ts, s.inf), mk("rt_sum", "", s.ts, s.sum)),
				} {
					if resp := f.send(req); resp.code != 204 {
						t.Fatalf("%d %s", resp.code, resp.body)
					}
				}
			}
			want := []string{
				`histogram rt{job="checkout"} @2000 count=0 sum=0 le=0.1:2`,
				`histogram rt{job="checkout"} @2000 count=0 sum=0 le=0.5:4`,
				`histogram rt{job="checkout"} @2000 count=0 sum=0 le=+Inf:5`,
				`histogram rt{job="checkout"} @2000 count=5 sum=0`,
				`histogram rt{job="checkout"} @2000 count=0 sum=1`,
			}
			if got := f.rec.got(); !equal(got, want) {
				t.Errorf("a classic histogram split over two requests gives\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
