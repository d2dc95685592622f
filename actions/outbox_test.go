package actions

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// outboxMsg is a small command-like message with a header.
func outboxMsg(i int) Message {
	return Message{
		Subject: fmt.Sprintf("rollguard.cmd.rollback.checkout-%d", i),
		ID:      fmt.Sprintf("cmd-%d", i),
		Data:    []byte(fmt.Sprintf(`{"specversion":"1.0","id":"cmd-%d"}`, i)),
		Header:  map[string]string{"Rollguard-Signature": fmt.Sprintf("sig-%d", i)},
	}
}

func openOutbox(t testing.TB, path string) *Outbox {
	t.Helper()
	o, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// reopen closes o and opens its file again.
func reopen(t testing.TB, o *Outbox) *Outbox {
	t.Helper()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return openOutbox(t, o.path)
}

// sameMessages compares by content: an empty Data or Header equals a nil one.
func sameMessages(a, b []Message) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d messages, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Subject != b[i].Subject || a[i].ID != b[i].ID || !bytes.Equal(a[i].Data, b[i].Data) || !maps.Equal(a[i].Header, b[i].Header) {
			return fmt.Errorf("message %d is %+v, want %+v", i, a[i], b[i])
		}
	}
	return nil
}

func wantPending(t testing.TB, o *Outbox, want []Message) {
	t.Helper()
	if err := sameMessages(o.Pending(), want); err != nil {
		t.Fatal(err)
	}
	if o.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", o.Len(), len(want))
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestOutboxAppendAckReopenKeepsOrderAndContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "nested", "outbox.log") // directories are created
	o := openOutbox(t, path)
	wantPending(t, o, nil)
	var ms []Message
	for i := range 6 {
		ms = append(ms, outboxMsg(i))
	}
	if err := o.Append(ms[0]); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(ms[1:4]...); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(2); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(ms[4:]...); err != nil {
		t.Fatal(err)
	}
	wantPending(t, o, ms[2:])

	o = reopen(t, o)
	wantPending(t, o, ms[2:])
	if err := o.Ack(1); err != nil {
		t.Fatal(err)
	}
	o = reopen(t, o)
	wantPending(t, o, ms[3:])
	// Appending after a reopen continues the same order.
	if err := o.Append(outboxMsg(6)); err != nil {
		t.Fatal(err)
	}
	o = reopen(t, o)
	wantPending(t, o, append(ms[3:6:6], outboxMsg(6)))
}

func TestOutboxReopenAfterAckingEverythingIsEmptyAndSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, path)
	for i := range 10 {
		if err := o.Append(outboxMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Ack(4); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(6); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != int64(len(outboxMagic)) {
		t.Errorf("file is %d bytes after acking everything, want %d (the header)", got, len(outboxMagic))
	}
	o = reopen(t, o)
	wantPending(t, o, nil)
	if err := o.Append(outboxMsg(10)); err != nil {
		t.Fatal(err)
	}
	o = reopen(t, o)
	wantPending(t, o, []Message{outboxMsg(10)})
}

// TestOutboxTornTail cuts the file at every offset inside its last record,
// as a crash during that record's write would: the earlier records survive,
// the file is repaired, and appending afterwards works.
func TestOutboxTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		last []Message // the record that is torn
	}{
		{"single message", []Message{outboxMsg(2)}},
		{"batch (all or nothing)", []Message{outboxMsg(2), outboxMsg(3), outboxMsg(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox")
			o := openOutbox(t, path)
			kept := []Message{outboxMsg(0), outboxMsg(1)}
			for _, m := range kept {
				if err := o.Append(m); err != nil {
					t.Fatal(err)
				}
			}
			good := fileSize(t, path)
			if err := o.Append(tc.last...); err != nil {
				t.Fatal(err)
			}
			o.Close()
			full, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for cut := good; cut < int64(len(full)); cut++ {
				torn := filepath.Join(dir, fmt.Sprintf("torn-%d", cut))
				if err := os.WriteFile(torn, full[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				o, err := OpenOutbox(torn)
				if err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				if err := sameMessages(o.Pending(), kept); err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				if got := fileSize(t, torn); got != good {
					t.Fatalf("cut at %d: file is %d bytes after open, want the torn tail cut to %d", cut, got, good)
				}
				if err := o.Append(outboxMsg(9)); err != nil {
					t.Fatal(err)
				}
				o = reopen(t, o)
				if err := sameMessages(o.Pending(), append(kept[:2:2], outboxMsg(9))); err != nil {
					t.Fatalf("cut at %d, then append: %v", cut, err)
				}
				o.Close()
				os.Remove(torn)
			}
		})
	}
}

// TestOutboxZeroFilledTail is the other face of a crash: the file's size
// reached the disk but its last block did not.
func TestOutboxZeroFilledTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, path)
	if err := o.Append(outboxMsg(0)); err != nil {
		t.Fatal(err)
	}
	good := fileSize(t, path)
	o.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()
	o = openOutbox(t, path)
	wantPending(t, o, []Message{outboxMsg(0)})
	if got := fileSize(t, path); got != good {
		t.Errorf("file is %d bytes, want %d", got, good)
	}
}

// TestOutboxCorruptMiddleRefusesToOpen: damage followed by an intact record
// did not come from a crash; OpenOutbox names the file and the offset and
// leaves the file alone rather than drop or reorder what it held.
func TestOutboxCorruptMiddleRefusesToOpen(t *testing.T) {
	first := int64(len(outboxMagic)) // offset of the first record
	for _, tc := range []struct {
		name string
		at   int64 // offset from the first record's start
	}{
		{"length", 1},
		{"kind", 4},
		{"header checksum", 6},
		{"payload checksum", 10},
		{"payload", outboxFrameLen + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox")
			o := openOutbox(t, path)
			for i := range 3 {
				if err := o.Append(outboxMsg(i)); err != nil {
					t.Fatal(err)
				}
			}
			o.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[first+tc.at] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = OpenOutbox(path)
			if !errors.Is(err, ErrOutboxCorrupt) {
				t.Fatalf("OpenOutbox = %v, want an error wrapping ErrOutboxCorrupt", err)
			}
			for _, want := range []string{path, fmt.Sprintf("offset %d", first), "move it aside"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, b) {
				t.Error("OpenOutbox changed a corrupt file")
			}
		})
	}
}

// TestOutboxCorruptLastRecordIsDiscarded: a damaged last record cannot be
// told from a torn write, and nobody was promised it was stored unless its
// fsync returned; the records before it survive.
func TestOutboxCorruptLastRecordIsDiscarded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, path)
	if err := o.Append(outboxMsg(0)); err != nil {
		t.Fatal(err)
	}
	good := fileSize(t, path)
	if err := o.Append(outboxMsg(1)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	b, _ := os.ReadFile(path)
	b[len(b)-2] ^= 0xff
	os.WriteFile(path, b, 0o600)
	o = openOutbox(t, path)
	wantPending(t, o, []Message{outboxMsg(0)})
	if got := fileSize(t, path); got != good {
		t.Errorf("file is %d bytes, want %d", got, good)
	}
}

func TestOutboxRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rollguard.yaml")
	content := []byte("guards:\n  - name: checkout\n")
	os.WriteFile(path, content, 0o600)
	_, err := OpenOutbox(path)
	if !errors.Is(err, ErrOutboxCorrupt) || !strings.Contains(err.Error(), "not a rollguard outbox file") {
		t.Fatalf("OpenOutbox = %v, want not a rollguard outbox file", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
		t.Error("OpenOutbox changed a file that is not an outbox")
	}
}

// TestOutboxTornHeader: a crash while a new file got its header.
func TestOutboxTornHeader(t *testing.T) {
	for _, content := range []string{"", outboxMagic[:7]} {
		path := filepath.Join(t.TempDir(), "outbox")
		os.WriteFile(path, []byte(content), 0o600)
		o := openOutbox(t, path)
		wantPending(t, o, nil)
		if err := o.Append(outboxMsg(0)); err != nil {
			t.Fatal(err)
		}
		o = reopen(t, o)
		wantPending(t, o, []Message{outboxMsg(0)})
	}
}

func TestOutboxHeadersAndPayloadsRoundTrip(t *testing.T) {
	want := []Message{
		{Subject: "rollguard.status.checkout", ID: "st-1", Data: []byte("{}"),
			Header: map[string]string{"Rollguard-Signature": "ed25519:AAAA", "Traceparent": "00-abc-def-01", "Empty": "", "Ünïcode": "✓ ok"}},
		{Subject: "rollguard.incident.checkout", ID: "inc-1", Data: []byte{0, 0xff, '\n', 0x80}}, // binary, no header
		{Subject: "rollguard.cmd.pause.checkout", ID: ""},                                        // no data, no ID
		{Subject: "s", ID: "big", Data: bytes.Repeat([]byte("x"), 300_000),
			Header: map[string]string{strings.Repeat("k", 200): strings.Repeat("v", 1000)}},
	}
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"))
	if err := o.Append(want...); err != nil {
		t.Fatal(err)
	}
	wantPending(t, o, want)
	o = reopen(t, o)
	wantPending(t, o, want)
}

// TestOutboxOwnsItsMessages: the caller may reuse what it appended, and
// changing the slice Pending returns changes nothing in the Outbox.
func TestOutboxOwnsItsMessages(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"))
	m := outboxMsg(0)
	if err := o.Append(m); err != nil {
		t.Fatal(err)
	}
	m.Data[0] = 'X'
	m.Header["Rollguard-Signature"] = "changed"
	p := o.Pending()
	p[0] = outboxMsg(7)
	wantPending(t, o, []Message{outboxMsg(0)})
}

// TestOutboxCompaction keeps a few messages pending through many appends
// and acks, so the file is never emptied by truncation: it must still
// stay within a bound, and keep order and content.
func TestOutboxCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, path)
	o.compactMin = 32 << 10
	big := func(i int) Message {
		m := outboxMsg(i)
		m.Data = bytes.Repeat([]byte{byte(i)}, 2048)
		return m
	}
	var want []Message
	var maxSize int64
	for i := range 400 {
		if err := o.Append(big(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, big(i))
		if len(want) > 5 {
			if err := o.Ack(3); err != nil {
				t.Fatal(err)
			}
			want = want[3:]
		}
		maxSize = max(maxSize, fileSize(t, path))
	}
	// Pending never exceeds 6 messages of about 2.1 KiB; without compaction
	// the file would hold all 400 (over 800 KiB).
	if bound := o.compactMin + 2*6*2200 + 2200; maxSize > bound {
		t.Errorf("file reached %d bytes, want at most %d", maxSize, bound)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	wantPending(t, o, want)
	o = reopen(t, o)
	wantPending(t, o, want)
}

func TestOutboxAckErrors(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"))
	if err := o.Ack(0); err != nil {
		t.Errorf("Ack(0) on an empty outbox = %v, want nil", err)
	}
	if err := o.Ack(1); err == nil || !strings.Contains(err.Error(), "ack of 1 messages, but 0 are pending") {
		t.Errorf("Ack(1) on an empty outbox = %v", err)
	}
	o.Append(outboxMsg(0), outboxMsg(1))
	if err := o.Ack(3); err == nil || !strings.Contains(err.Error(), o.path) {
		t.Errorf("Ack(3) of 2 = %v, want an error naming the file", err)
	}
	if err := o.Ack(-1); err == nil {
		t.Error("Ack(-1) = nil, want an error")
	}
	if err := o.Ack(0); err != nil {
		t.Errorf("Ack(0) = %v, want nil", err)
	}
	wantPending(t, o, []Message{outboxMsg(0), outboxMsg(1)}) // errors changed nothing
	o = reopen(t, o)
	wantPending(t, o, []Message{outboxMsg(0), outboxMsg(1)})
}

func TestOutboxAppendOverLimitChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o := openOutbox(t, path)
	o.Append(outboxMsg(0))
	size := fileSize(t, path)
	huge := Message{Subject: "s", ID: "huge", Data: make([]byte, maxOutboxRecord)}
	if err := o.Append(outboxMsg(1), huge); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("Append over the limit = %v", err)
	}
	wantPending(t, o, []Message{outboxMsg(0)})
	if got := fileSize(t, path); got != size {
		t.Errorf("file grew from %d to %d bytes", size, got)
	}
	if err := o.Append(); err != nil {
		t.Errorf("Append() = %v, want nil", err)
	}
}

func TestOutboxClosed(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"))
	o.Append(outboxMsg(0))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := o.Append(outboxMsg(1)); !errors.Is(err, ErrOutboxClosed) {
		t.Errorf("Append after Close = %v, want ErrOutboxClosed", err)
	}
	if err := o.Ack(1); !errors.Is(err, ErrOutboxClosed) {
		t.Errorf("Ack after Close = %v, want ErrOutboxClosed", err)
	}
	var nilOutbox *Outbox
	if err := nilOutbox.Close(); err != nil {
		t.Errorf("Close on nil = %v", err)
	}
}

// TestOutboxConcurrentAppend appends from several goroutines while others
// read and ack: nothing is lost, each goroutine's messages keep their
// order, and the file agrees with memory.
func TestOutboxConcurrentAppend(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"))
	const writers, each = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := o.Append(Message{Subject: "s", ID: fmt.Sprintf("%d-%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var acked []Message
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { // a publisher: delivers the first pending message now and then
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := o.Pending()
			if len(p) == 0 {
				runtime.Gosched()
				continue
			}
			if err := o.Ack(1); err != nil {
				t.Error(err)
				return
			}
			acked = append(acked, p[0])
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()

	all := append(acked, o.Pending()...)
	if len(all) != writers*each {
		t.Fatalf("%d messages appended and acked, want %d", len(all), writers*each)
	}
	next := make([]int, writers)
	for _, m := range all {
		var w, i int
		fmt.Sscanf(m.ID, "%d-%d", &w, &i)
		if i != next[w] {
			t.Fatalf("writer %d: message %d came where %d was due", w, i, next[w])
		}
		next[w]++
	}
	want := o.Pending()
	o = reopen(t, o)
	wantPending(t, o, want)
}

// TestOutboxFormatIsStable pins the file format: a change here breaks the
// outboxes of running installations.
func TestOutboxFormatIsStable(t *testing.T) {
	got, err := encodeOutbox([]Message{{Subject: "s", ID: "i", Data: []byte("d"), Header: map[string]string{"k": "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "rollguard outbox v1\n" +
		"\x0c\x00\x00\x00\x01" + // payload length 12, kind batch
		"\x17\x40\x3b\x92" + // CRC-32C of the five bytes before (computed independently)
		"\xcf\xe9\xe5\x97" + // CRC-32C of the payload
		"\x01" + "\x01s\x01i\x01d" + "\x01\x01k\x01v" // one message: subject, id, data, one header
	if string(got) != want {
		t.Errorf("encoded\n%q\nwant\n%q", got, want)
	}
	// An ack record drops messages from the front.
	b := appendOutboxRecord(got, outboxKindAck, []byte{1})
	msgs, n, err := decodeOutbox(b)
	if err != nil || n != len(b) || len(msgs) != 0 {
		t.Errorf("decode with ack = %v, %d, %v; want none pending", msgs, n, err)
	}
}

// TestOutboxDecodeRejectsMalformedRecords: records with intact checksums
// but contents no Outbox writes are corruption wherever they are, never a
// torn tail.
func TestOutboxDecodeRejectsMalformedRecords(t *testing.T) {
	one := []byte{1, 1, 's', 1, 'i', 0, 0} // a batch of one message
	for _, tc := range []struct {
		name    string
		kind    byte
		payload []byte
		want    string
	}{
		{"unknown kind", 7, one, "unknown record kind 7 (written by a newer rollguard?)"},
		{"empty batch payload", outboxKindBatch, nil, "batch: bad varint"},
		{"count over contents", outboxKindBatch, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "batch message 1 of 4294967295: bad varint"},
		{"field past the record", outboxKindBatch, []byte{1, 9, 's'}, "batch message 1 of 1: field of 9 bytes runs past the record"},
		{"trailing bytes", outboxKindBatch, append(bytes.Clone(one), 0), "batch: 1 trailing bytes"},
		{"header keys out of order", outboxKindBatch, []byte{1, 1, 's', 1, 'i', 0, 2, 1, 'b', 0, 1, 'a', 0}, `batch message 1 of 1: header key "a" out of order`},
		{"duplicate header key", outboxKindBatch, []byte{1, 1, 's', 1, 'i', 0, 2, 1, 'a', 0, 1, 'a', 0}, `batch message 1 of 1: header key "a" out of order`},
		{"ack beyond pending", outboxKindAck, []byte{2}, "ack of 2 messages, but 1 are pending"},
		{"ack of nothing", outboxKindAck, []byte{0}, "ack of 0 messages, but 1 are pending"},
		{"ack trailing bytes", outboxKindAck, []byte{1, 1}, "ack: trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendOutboxRecord([]byte(outboxMagic), outboxKindBatch, one)
			at := len(b)
			b = appendOutboxRecord(b, tc.kind, tc.payload) // the last record
			msgs, valid, err := decodeOutbox(b)
			want := fmt.Sprintf("corrupt record at offset %d: %s", at, tc.want)
			if err == nil || err.Error() != want || !errors.Is(err, ErrOutboxCorrupt) {
				t.Fatalf("decodeOutbox = %v, want %q", err, want)
			}
			if valid != at || len(msgs) != 1 || msgs[0].ID != "i" {
				t.Errorf("valid prefix = %d bytes, %v; want %d bytes and the first message", valid, msgs, at)
			}
		})
	}
}

func BenchmarkOutboxAppend(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			o := openOutbox(b, filepath.Join(b.TempDir(), "outbox"))
			ms := make([]Message, batch)
			for i := range ms {
				ms[i] = outboxMsg(i)
				ms[i].Data = bytes.Repeat([]byte("x"), 512) // a signed command is about this size
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := o.Append(ms...); err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 { // keep the file small, as a publisher would
					if err := o.Ack(o.Len()); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
		})
	}
}

func BenchmarkOutboxDecode(b *testing.B) {
	ms := make([]Message, 10_000)
	for i := range ms {
		ms[i] = outboxMsg(i)
	}
	enc, err := encodeOutbox(ms)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeOutbox(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOutboxRecoversAfterAFailedWrite: a write that fails (a full disk)
// loses nothing already stored and refuses changes meanwhile; once writing
// works again the Outbox reopens its file by itself, with no restart and
// no person, and goes on. The twin within the retry interval still refuses.
func TestOutboxRecoversAfterAFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	o, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Append(Message{Subject: "s", ID: "before"}); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(path) // writes through it fail, as on a full disk
	if err != nil {
		t.Fatal(err)
	}
	good := o.f
	o.f = ro
	if o.Degraded() != nil {
		t.Fatal("degraded before any failure")
	}
	if err := o.Append(Message{Subject: "s", ID: "lost"}); err == nil {
		t.Fatal("a failed write was reported stored")
	}
	good.Close()
	o.reopenEvery = time.Hour
	if err := o.Degraded(); err == nil || !strings.Contains(err.Error(), "write") {
		t.Fatalf("degraded after a failed write: %v", err)
	}
	if err := o.Append(Message{Subject: "s", ID: "too-soon"}); err == nil || !strings.Contains(err.Error(), "unusable since an earlier failure") {
		t.Fatalf("append within the retry interval: %v", err)
	}
	o.reopenEvery = 0
	if err := o.Degraded(); err != nil { // asking reopens: no append needed
		t.Fatalf("still degraded once writing works again: %v", err)
	}
	if err := o.Append(Message{Subject: "s", ID: "after"}); err != nil {
		t.Fatalf("append once writing works again: %v", err)
	}
	var ids []string
	for _, m := range o.Pending() {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "before,after" {
		t.Errorf("pending %v, want before,after", ids)
	}
	o.Close()
	again, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Len() != 2 {
		t.Errorf("%d messages on disk, want 2", again.Len())
	}
}
