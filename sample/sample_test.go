package sample

import (
	"reflect"
	"testing"
)

func TestLabelsSort(t *testing.T) {
	tests := []struct {
		name string
		in   Labels
		want Labels
	}{
		{"empty", nil, nil},
		{"sorted by name", Labels{{"b", "2"}, {"c", "3"}, {"a", "1"}}, Labels{{"a", "1"}, {"b", "2"}, {"c", "3"}}},
		{
			// Resource attributes come first, point attributes last: the
			// point attribute wins.
			"the last of a duplicate name wins",
			Labels{{"service.name", "resource"}, {"a", "1"}, {"service.name", "point"}},
			Labels{{"a", "1"}, {"service.name", "point"}},
		},
		{
			"three of one name",
			Labels{{"x", "resource"}, {"x", "scope"}, {"y", "1"}, {"x", "point"}},
			Labels{{"x", "point"}, {"y", "1"}},
		},
		{"duplicates only", Labels{{"x", "1"}, {"x", "2"}}, Labels{{"x", "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := append(Labels(nil), tt.in...).Sort()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Sort(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLabelsGetAndString(t *testing.T) {
	ls := Labels{{"a", "1"}, {"b", "2"}}
	tests := []struct{ name, want string }{{"a", "1"}, {"b", "2"}, {"c", ""}}
	for _, tt := range tests {
		if got := ls.Get(tt.name); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	if got, want := ls.String(), `{a="1",b="2"}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got := (Labels{}).String(); got != "{}" {
		t.Errorf("empty String() = %s, want {}", got)
	}
}

// TestLabelsStringDistinct: String serves as a series key (a scrape
// target's, a classic histogram's group), so two different label sets must
// never render alike.
func TestLabelsStringDistinct(t *testing.T) {
	pairs := []struct{ a, b Labels }{
		{Labels{{"a", "1"}}, Labels{{"a", "2"}}},
		{Labels{{"a", "1"}}, Labels{{"a", "1"}, {"b", ""}}},
		{Labels{{"a", "1"}, {"b", "2"}}, Labels{{"a", `1",b="2`}}},
	}
	for _, p := range pairs {
		if p.a.String() == p.b.String() {
			t.Errorf("%#v and %#v both render as %s", p.a, p.b, p.a.String())
		}
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{{KindCounter, "counter"}, {KindGauge, "gauge"}, {KindHistogram, "histogram"}, {0, "unknown"}, {42, "unknown"}}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// TestLabelsSortAllocatesNothing: Sort is on every kept point's path (OTLP
// and remote write); sort.SliceStable allocated, slices.SortStableFunc does
// not.
func TestLabelsSortAllocatesNothing(t *testing.T) {
	in := Labels{{"job", "a"}, {"version", "v1"}, {"code", "200"}, {"method", "GET"}, {"route", "/x"}, {"zone", "z"}, {"instance", "i"}, {"le", "1"}}
	ls := make(Labels, len(in))
	if n := testing.AllocsPerRun(100, func() { copy(ls, in); _ = ls.Sort() }); n != 0 {
		t.Errorf("Sort of 8 labels: %v allocations, want 0", n)
	}
}
