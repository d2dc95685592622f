package actions

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// outboxFuzzSeeds are real outbox files, written by an Outbox, and damaged
// and hostile variants of them.
func outboxFuzzSeeds(f *testing.F) [][]byte {
	dir := f.TempDir()
	read := func(o *Outbox) []byte {
		b, err := os.ReadFile(o.path)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	o, err := OpenOutbox(filepath.Join(dir, "outbox"))
	if err != nil {
		f.Fatal(err)
	}
	defer o.Close()
	seeds := [][]byte{read(o)} // just the header
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(o.Append(outboxMsg(0)))
	seeds = append(seeds, read(o))
	must(o.Append(outboxMsg(1), outboxMsg(2), Message{Subject: "s", ID: "empty"}))
	must(o.Ack(2))
	must(o.Append(Message{Subject: "s", ID: "bin", Data: []byte{0, 0xff}, Header: map[string]string{"a": "", "b": "✓"}}))
	withAcks := read(o)
	seeds = append(seeds, withAcks)

	torn := bytes.Clone(withAcks[:len(withAcks)-3])
	middle := bytes.Clone(withAcks)
	middle[len(outboxMagic)+outboxFrameLen+2] ^= 1
	hugeLength := append([]byte(outboxMagic), appendOutboxRecord(nil, outboxKindBatch, nil)...)
	copy(hugeLength[len(outboxMagic):], []byte{0xff, 0xff, 0xff, 0x7f})
	hugeCount := append([]byte(outboxMagic), appendOutboxRecord(nil, outboxKindBatch, []byte{0xff, 0xff, 0xff, 0xff, 0x0f})...)
	badAck := append(bytes.Clone(withAcks), appendOutboxRecord(nil, outboxKindAck, []byte{9})...)
	return append(seeds, torn, middle, hugeLength, hugeCount, badAck,
		[]byte{}, []byte(outboxMagic[:5]), []byte("not an outbox at all"))
}

// FuzzOutbox feeds arbitrary bytes to decodeOutbox: it must not panic, the
// valid prefix it reports must decode alone to the same messages, and
// what it decodes must survive encoding and decoding unchanged. The same
// bytes also go in as the payload of one record with intact checksums
// (kind from the first byte), which the fuzzer could not forge, so that
// record decoding is explored too.
func FuzzOutbox(f *testing.F) {
	for _, seed := range outboxFuzzSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte{outboxKindBatch, 1, 1, 's', 1, 'i', 0, 2, 1, 'b', 0, 1, 'a', 0}) // header keys out of order
	f.Add([]byte{outboxKindAck, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkOutboxDecode(t, b)
		if len(b) > 0 && len(b) <= maxOutboxRecord {
			framed := appendOutboxRecord([]byte(outboxMagic), b[0]%3, b[1:])
			checkOutboxDecode(t, framed)
		}
	})
}

func checkOutboxDecode(t *testing.T, b []byte) {
	t.Helper()
	msgs, valid, err := decodeOutbox(b)
	if valid < 0 || valid > len(b) {
		t.Fatalf("validLen %d out of [0, %d]", valid, len(b))
	}
	if err == nil && valid < len(b) && valid >= len(outboxMagic) {
		if next, unsure := nextOutboxFrame(b, valid+1); next >= 0 || unsure {
			t.Fatalf("tail from %d discarded though an intact record may follow at %d", valid, next)
		}
	}
	prefix, n, perr := decodeOutbox(b[:valid])
	if perr != nil || n != valid {
		t.Fatalf("valid prefix of %d bytes decodes to %d, %v", valid, n, perr)
	}
	if e := sameMessages(prefix, msgs); e != nil {
		t.Fatalf("valid prefix: %v", e)
	}
	enc, eerr := encodeOutbox(msgs)
	if eerr != nil {
		t.Fatalf("encode decoded messages: %v", eerr)
	}
	again, n, derr := decodeOutbox(enc)
	if derr != nil || n != len(enc) {
		t.Fatalf("re-encoded file decodes to %d of %d bytes, %v", n, len(enc), derr)
	}
	if e := sameMessages(again, msgs); e != nil {
		t.Fatalf("round trip: %v", e)
	}
	if enc2, _ := encodeOutbox(again); !bytes.Equal(enc2, enc) {
		t.Fatal("encoding is not deterministic")
	}
}
