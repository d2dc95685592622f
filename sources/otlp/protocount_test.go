package otlp

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// TestProtoPoints: counting on the wire agrees with pdata's count after
// decoding, for every kind of metric, over several resources and scopes;
// a metric without data counts nothing, and a truncated body counts what
// came before the cut without panicking.
func TestProtoPoints(t *testing.T) {
	md := pmetric.NewMetrics()
	for r := 0; r < 3; r++ {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		for s := 0; s < 2; s++ {
			ms := rm.ScopeMetrics().AppendEmpty().Metrics()
			for i := 0; i < r+s+1; i++ { // 15 rounds in all, of 6 points each
				ms.AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(1)
				sum := ms.AppendEmpty().SetEmptySum()
				sum.DataPoints().AppendEmpty()
				sum.DataPoints().AppendEmpty()
				h := ms.AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty()
				h.ExplicitBounds().FromRaw([]float64{1, 2})
				h.BucketCounts().FromRaw([]uint64{1, 2, 3})
				ms.AppendEmpty().SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Positive().BucketCounts().FromRaw([]uint64{1})
				ms.AppendEmpty().SetEmptySummary().DataPoints().AppendEmpty().SetCount(3)
				ms.AppendEmpty().SetName("no data")
			}
		}
	}
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	want := md.DataPointCount()
	if got := protoPoints(body); got != want || want != 6*15 {
		t.Errorf("protoPoints = %d, DataPointCount = %d", got, want)
	}
	for _, cut := range []int{0, 1, len(body) / 3, len(body) - 1} {
		if got := protoPoints(body[:cut]); got > want {
			t.Errorf("protoPoints of the first %d bytes = %d, more than the whole (%d)", cut, got, want)
		}
	}
}
