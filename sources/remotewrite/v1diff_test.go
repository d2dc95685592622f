package remotewrite

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// The 1.0 decoder's fast paths must change nothing: it is checked against
// the decoder as it was (v1ref_test.go).

func fuzzSeedFiles(t testing.TB, target string) [][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, lit, ok := strings.Cut(strings.TrimSpace(string(raw)), "[]byte(")
		if !ok {
			t.Fatalf("%s: not a []byte seed", f.Name())
		}
		s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// v1Seeds are the fuzz seeds of FuzzRemoteWriteV1 and a request of the
// load generator's layout, with a long label value (a two-byte length).
func v1Seeds(t testing.TB) [][]byte {
	seeds := fuzzSeedFiles(t, "FuzzRemoteWriteV1")
	label := func(n, v string) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, n)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	var req []byte
	for i, job := range []string{"checkout", "other", "checkout", "b"} {
		var ts []byte
		for _, l := range [][2]string{{"__name__", "http_requests_total"}, {"code", "200"}, {"job", job},
			{"path", strings.Repeat("x", 100+i*20)}, {"version", "v" + strconv.Itoa(i)}, {"b", job}} {
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, label(l[0], l[1]))
		}
		var sb []byte
		sb = protowire.AppendTag(sb, 1, protowire.Fixed64Type)
		sb = protowire.AppendFixed64(sb, math.Float64bits(float64(i)))
		sb = protowire.AppendTag(sb, 2, protowire.VarintType)
		sb = protowire.AppendVarint(sb, uint64(1_700_000_000_000+i))
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendBytes(ts, sb)
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, ts)
	}
	var md []byte
	md = protowire.AppendTag(md, 1, protowire.VarintType)
	md = protowire.AppendVarint(md, 1)
	md = protowire.AppendTag(md, 2, protowire.BytesType)
	md = protowire.AppendString(md, "http_requests")
	req = protowire.AppendTag(req, 3, protowire.BytesType)
	req = protowire.AppendBytes(req, md)
	return append(seeds, req)
}

func formatV1Batch(b *batch) string {
	var fams []string
	for n, t := range b.families {
		fams = append(fams, n+"="+string(t))
	}
	sort.Strings(fams)
	return formatBatch(b) + fmt.Sprintf(" families %v", fams)
}

func diffV1(t *testing.T, r *Receiver, data []byte) {
	t.Helper()
	want := refBatch(r)
	wantErr := r.decodeV1Ref(data, want)
	body := append([]byte(nil), data...)
	got := r.getBatch()
	defer r.putBatch(got)
	gotErr := r.decodeV1(body, got)
	for i := range body {
		body[i] = 0xa5
	}
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("error %v, want %v (body %q)", gotErr, wantErr, data)
	}
	if gotErr != nil {
		return
	}
	if g, w := formatV1Batch(got), formatV1Batch(want); g != w {
		t.Fatalf("batch:\n%s\nwant:\n%s\n(body %q)", g, w, data)
	}
}

func TestDecodeV1MatchesReference(t *testing.T) {
	r := diffReceiver()
	r.cfg.MaxLabelValueBytes = 130
	for _, seed := range v1Seeds(t) {
		diffV1(t, r, seed)
		for n := range seed {
			diffV1(t, r, seed[:n])
		}
		for i := range seed {
			for _, c := range []byte{0x00, 0x01, 0x02, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x10, 0x12, 0x7f, 0x80, 0x81, 0xff} {
				m := append([]byte(nil), seed...)
				m[i] = c
				diffV1(t, r, m)
			}
		}
	}
}

func FuzzDecodeV1MatchesReference(f *testing.F) {
	for _, seed := range v1Seeds(f) {
		f.Add(seed)
	}
	r := diffReceiver()
	r.cfg.MaxLabelValueBytes = 130
	f.Fuzz(func(t *testing.T, data []byte) {
		diffV1(t, r, data)
	})
}
